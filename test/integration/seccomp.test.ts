import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { World } from '../helpers/kagome.js';
import { SYSCALL_ATTEMPTS as ATTEMPTS, parseAttempts as parse } from '../helpers/probes.js';

// The seccomp filter of bubblewrap cages, from inside real cages, as the program an attacker
// controls would try it. Each attempt prints "NAME ok" or "NAME ERRNO"; every attempt is first
// made on the host by the same script, where it must not be refused the way the filter
// refuses it, so a test cannot pass because the machine forbids the call anyway.

describe('the seccomp filter of bubblewrap cages', () => {
  let w: World;
  let host: Record<string, string>;
  const inCage: Record<string, Record<string, string>> = {};

  before(async () => {
    w = await World.create();
    w.writeCage('filtered', '[Cage]\n');
    w.writeCage('nonested', '[Cage]\nNestedSandbox=false\n');
    const onHost = await execa('/usr/bin/python3', ['-c', ATTEMPTS], {
      reject: false,
      env: w.env,
      extendEnv: false,
    });
    host = parse(onHost.stdout);
    await execa('keyctl', ['purge', 'user', 'kagome-seccomp-test'], { reject: false });
    await w.startService();
    for (const cage of ['filtered', 'nonested']) {
      await w.launchCommand(cage, [
        'sh',
        '-c',
        `python3 -c '${ATTEMPTS.replace(/'/g, `'\\''`)}' > "$HOME/seccomp.tmp" 2>&1; mv "$HOME/seccomp.tmp" "$HOME/seccomp.out"`,
      ]);
      inCage[cage] = parse(await w.readFileWhenWritten(w.homeFile(cage, 'seccomp.out'), 20000));
    }
  });

  after(async () => {
    await execa('keyctl', ['purge', 'user', 'kagome-seccomp-test'], { reject: false });
    await w?.cleanup();
  });

  it('control: on the host none of the calls is refused with the errno the filter gives', () => {
    assert.equal(host.add_key, 'ok', 'the host user may add a key to its keyring');
    assert.equal(host.tiocsti, 'ok', 'TIOCSTI works on the host (dev.tty.legacy_tiocsti=1)');
    assert.notEqual(host.perf_event_open, 'EPERM');
    assert.ok(
      host.af_packet && host.af_packet !== 'EAFNOSUPPORT',
      `AF_PACKET exists on the host (${host.af_packet})`,
    );
    assert.notEqual(host.fsopen, 'ENOSYS');
    assert.equal(host.userns, 'ok');
    assert.equal(host.personality, 'ok');
  });

  it("a cage cannot touch the host user's kernel keyring, nor list its keys", async () => {
    assert.equal(inCage.filtered!.add_key, 'EPERM');
    const keys = await w.launchCommand('filtered', [
      'sh',
      '-c',
      '{ cat /proc/keys /proc/key-users; echo done; } > "$HOME/keys.tmp" 2>&1; mv "$HOME/keys.tmp" "$HOME/keys.out"',
    ]);
    assert.ok(keys);
    const listed = await w.readFileWhenWritten(w.homeFile('filtered', 'keys.out'));
    assert.equal(listed.trim(), 'done', `the cage sees no keys: ${listed}`);
    const onHost = await execa('cat', ['/proc/key-users']);
    assert.ok(onHost.stdout.trim().length > 0, 'control: the host lists its key users');
  });

  it('TIOCSTI, perf_event_open, personality and socket families beyond unix/inet/netlink are refused', () => {
    const c = inCage.filtered!;
    assert.equal(c.tiocsti, 'EPERM');
    assert.equal(c.perf_event_open, 'EPERM');
    assert.equal(c.personality, 'EPERM');
    assert.equal(c.af_packet, 'EAFNOSUPPORT');
  });

  it('the new mount API is ENOSYS, so programs fall back to calls the filter can read', () => {
    assert.equal(inCage.filtered!.fsopen, 'ENOSYS');
  });

  it('nested user namespaces (browser sandboxes) are allowed by default and refused with NestedSandbox=false', () => {
    assert.equal(inCage.filtered!.userns, 'ok');
    assert.equal(inCage.nonested!.userns, 'EPERM');
  });
});
