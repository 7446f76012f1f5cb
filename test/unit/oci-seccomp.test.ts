import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cageProfile, ioctlAllowRules } from '../../lib/backends/oci-seccomp.js';

type Rule = ReturnType<typeof ioctlAllowRules>[number];

/** What a profile's ioctl rules answer for a request, read the way libseccomp's filter does. */
function verdict(rules: Rule[], request: number): string | undefined {
  const hit = rules.find((r) =>
    r.args!.every((a) => Number((BigInt(request) & BigInt(a.value)) === BigInt(a.valueTwo))),
  );
  return hit?.action;
}

describe("the container cages' seccomp profile", () => {
  const rules = ioctlAllowRules([0x5412, 0x541c]);

  it('refuses TIOCSTI and TIOCLINUX, with junk in the upper half too, and allows every other ioctl', () => {
    assert.equal(verdict(rules, 0x5412), 'SCMP_ACT_ERRNO');
    assert.equal(verdict(rules, 0x541c), 'SCMP_ACT_ERRNO');
    for (const other of [
      0, 1, 0x5401, 0x5410, 0x5413, 0x5414, 0x541e, 0x5413, 0x80045430, 0xc0045877, 0xffffffff,
    ])
      assert.equal(verdict(rules, other), 'SCMP_ACT_ALLOW', other.toString(16));
    for (let i = 0; i < 5000; i++) {
      const v = Math.floor(Math.random() * 2 ** 32);
      if (v !== 0x5412 && v !== 0x541c)
        assert.equal(verdict(rules, v), 'SCMP_ACT_ALLOW', v.toString(16));
    }
    // No allow rule matches a refused request: libseccomp would otherwise have two answers.
    for (const refused of [0x5412, 0x541c])
      assert.ok(
        !rules.some(
          (r) =>
            r.action === 'SCMP_ACT_ALLOW' &&
            r.args!.every((a) => (refused & a.value) >>> 0 === a.valueTwo),
        ),
      );
  });

  it("takes the keyring, perf and the new mount API out of the engine's allowlist and ioctl's unconditional rule", () => {
    const base = {
      defaultAction: 'SCMP_ACT_ERRNO',
      syscalls: [
        {
          names: ['read', 'ioctl', 'keyctl', 'perf_event_open', 'fsopen'],
          action: 'SCMP_ACT_ALLOW',
        },
      ],
    };
    const profile = JSON.parse(cageProfile(base)) as { defaultAction: string; syscalls: Rule[] };
    assert.equal(profile.defaultAction, 'SCMP_ACT_ERRNO');
    assert.deepEqual(profile.syscalls[0]!.names, ['read']);
    const deny = profile.syscalls.find((r) => r.names.includes('keyctl'))!;
    assert.equal(deny.action, 'SCMP_ACT_ERRNO');
    assert.ok(deny.names.includes('perf_event_open') && deny.names.includes('add_key'));
    assert.equal(profile.syscalls.find((r) => r.names.includes('fsopen'))!.errnoRet, 38);
    assert.ok(
      profile.syscalls
        .filter((r) => r.names.includes('ioctl'))
        .every((r) => r.args && r.args.length === 1),
      'every ioctl rule looks at the request',
    );
  });
});
