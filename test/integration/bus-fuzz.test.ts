import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { World, REPO } from '../helpers/kagome.js';

// Callers the service must survive: messages dbus-next cannot read, wrong types, names too long
// or not names at all, and floods of Start, Stop and LaunchCommand on one cage. After each,
// the service still answers, the cage is in a clean state, and the service's memory stays
// bounded. Bounded in count and time: this is a fuzz test that stops by itself.

const F = 'io.kagome.Files1';

function vmRssKiB(pid: number): number {
  return Number(/^VmRSS:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
}

/** gdbus sends a handle as the plain index GVariant text gives it, with no descriptor attached. */
function gdbusGrantBadHandle(
  w: World,
  dest: string,
  objectPath: string,
  iface: string,
): Promise<{ exitCode?: number; stderr: string }> {
  return execa(
    'gdbus',
    [
      'call',
      '--session',
      '--timeout',
      '3',
      '--dest',
      dest,
      '--object-path',
      objectPath,
      '--method',
      `${iface}.GrantFiles`,
      'work',
      '[handle 7]',
      '{}',
    ],
    { env: w.env, extendEnv: false, reject: false },
  );
}

describe('the service survives hostile callers', () => {
  let w: World;
  let rssBefore = 0;

  before(async () => {
    w = await World.create();
    w.writeCage('work', '[Cage]\n');
    w.writeCage('flood', '[Cage]\nNetwork=full\n');
    await w.startService();
    // Warm: the first launch loads code paths the rest reuse.
    await w.launchCommand('work', ['true']);
    rssBefore = vmRssKiB(w.service!.child.pid!);
  });

  after(async () => {
    await w?.cleanup();
  });

  it('control: a plain dbus-next service dies of a handle index the message does not carry', async () => {
    // The same message to a service exported with dbus-next and nothing of kagome's guard.
    const script = `
      import dbus from 'dbus-next';
      const bus = dbus.sessionBus({ negotiateUnixFd: true });
      class Files extends dbus.interface.Interface {}
      Files.configureMembers({ methods: { GrantFiles: { inSignature: 'saha{sv}', outSignature: '' } } });
      Files.prototype.GrantFiles = function () {};
      bus.export('/io/kagome/Plain', new Files('io.kagome.Files1'));
      await bus.requestName('io.kagome.Plain', 0);
      console.log('ready');
      setInterval(() => {}, 1000);
    `;
    const file = path.join(REPO, 'dist', 'test', `plain-dbus-next-${process.pid}.mjs`);
    fs.writeFileSync(file, script);
    try {
      const plain = execa(process.execPath, [file], {
        env: w.env,
        extendEnv: false,
        reject: false,
        timeout: 20000,
      });
      await new Promise<void>((resolve) => plain.stdout!.once('data', () => resolve()));
      await gdbusGrantBadHandle(w, 'io.kagome.Plain', '/io/kagome/Plain', 'io.kagome.Files1');
      const ended = await plain;
      assert.notEqual(ended.exitCode, 0, 'the plain service exited');
      assert.match(ended.stderr, /No FDs available/);
    } finally {
      fs.rmSync(file, { force: true });
    }
  });

  it('kagome drops the unreadable message and goes on answering', async () => {
    const r = await gdbusGrantBadHandle(w, 'io.kagome.Kagome', '/io/kagome/Kagome', F);
    assert.notEqual(r.exitCode, 0, 'the caller gets no grant');
    assert.equal(w.service!.child.exitCode, null, 'the service is running');
    const cages = await w.dbus.Cages1.List();
    assert.ok('work' in cages);
    assert.match(
      w.service!.log(),
      /dropped a D-Bus message that could not be read: No FDs available/,
    );
  });

  it('wrong types, long and invalid names, unknown options: each a named error', async () => {
    const { Launcher1: L, Cages1: C, Files1: F } = w.dbus;
    const cases: [string, () => Promise<unknown>][] = [
      ['LaunchCommand', () => L.LaunchCommand('x'.repeat(100_000), ['true'], {})],
      ['LaunchCommand', () => L.LaunchCommand('work', [], {})],
      ['LaunchCommand', () => L.LaunchCommand('work', ['-'.repeat(70_000)], {})],
      ['Launch', () => L.Launch('work', '../../etc/passwd.desktop', [], {})],
      ['Launch', () => L.Launch('work', 'a'.repeat(5000) + '.desktop', ['\u0001'], {})],
      ['Start', () => C.Start('\u00e9\u00e9')],
      ['Stop', () => C.Stop('')],
      ['Get', () => C.Get('work/../x')],
      ['GrantPaths', () => F.GrantPaths('work', [Buffer.from('relative/path')], {})],
      ['Revoke', () => F.Revoke('work', ['not-an-id', 'x'.repeat(10_000)])],
      ['OpenURIs', () => F.OpenURIs('work', ['javascript:alert(1)', 'file:///%00'], {})],
    ];
    for (const [member, call] of cases) {
      const e = await w.rejection(call());
      assert.match(e.type, /^io\.kagome\.Error\./, `${member}: ${e.type} ${e.text.slice(0, 200)}`);
      assert.ok(e.text.length < 2000, `${member}: the error does not echo a huge argument back`);
    }
  });

  it('200 concurrent Start, Stop and LaunchCommand on one cage end in a clean state, and the service answers', async () => {
    const calls: Promise<unknown>[] = [];
    for (let i = 0; i < 200; i++) {
      const kind = i % 3;
      const p =
        kind === 0
          ? w.dbus.Cages1.Start('flood')
          : kind === 1
            ? w.dbus.Cages1.Stop('flood')
            : w.launchCommand('flood', ['sleep', '60']);
      calls.push(p.catch((e: { type?: string }) => e));
    }
    const results = await Promise.all(calls);
    for (const r of results) {
      if (r && typeof r === 'object' && 'type' in r)
        assert.match(
          String((r as { type: string }).type),
          /^io\.kagome\.Error\./,
          JSON.stringify(r).slice(0, 300),
        );
    }
    assert.equal(w.service!.child.exitCode, null, 'the service is running');
    // Whatever order they ran in, one more Stop leaves nothing of the cage behind.
    await w.dbus.Cages1.Stop('flood');
    const info = await w.dbus.Cages1.Get('flood');
    assert.equal(info.State?.value, 'stopped');
    const leftovers = (
      await execa('pgrep', ['-u', String(process.getuid!()), '-f', 'slirp4netns|kagome-flood'], {
        reject: false,
      })
    ).stdout.trim();
    assert.equal(leftovers, '', 'no slirp4netns or bwrap of the cage is left');
    await w.launchCommand('flood', ['true']);
    await w.dbus.Cages1.Stop('flood');
  });

  it("the service's memory after all of that stays bounded", () => {
    const after = vmRssKiB(w.service!.child.pid!);
    console.log(
      `service VmRSS: ${Math.round(rssBefore / 1024)} MiB before the fuzzing, ${Math.round(after / 1024)} MiB after`,
    );
    assert.ok(
      after < rssBefore * 2 + 64 * 1024,
      `VmRSS ${after} KiB after, ${rssBefore} KiB before`,
    );
  });
});
