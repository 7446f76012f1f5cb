import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { World } from '../helpers/kagome.js';

// The seccomp filter of bubblewrap cages, from inside real cages, as the program an attacker
// controls would try it. Each attempt prints "NAME ok" or "NAME ERRNO"; every attempt is first
// made on the host by the same script, where it must not be refused the way the filter
// refuses it, so a test cannot pass because the machine forbids the call anyway.

// python3 (the system's, the cage has the host's /usr) makes the raw calls.
const ATTEMPTS = String.raw`
import ctypes, errno, fcntl, os, socket, struct, sys, termios
libc = ctypes.CDLL(None, use_errno=True)
def report(name, fn):
    try:
        r = fn()
        print(name, 'ok' if r is None or r >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno())))
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, str(e.errno)))
# add_key(2): the user's keyring is the host user's, whatever the namespace
report('add_key', lambda: libc.syscall(248, b'user', b'kagome-seccomp-test', b'secret', 6, -4))
# TIOCSTI on our own controlling terminal: pushes input into it (the kernel allows it only
# there, so a child makes a new session and takes a fresh terminal as its own)
def tiocsti():
    m, s = os.openpty()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.setsid()
        fcntl.ioctl(s, termios.TIOCSCTTY, 0)
        try:
            fcntl.ioctl(s, termios.TIOCSTI, b'x')
            os.write(w, b'ok')
        except OSError as e:
            os.write(w, errno.errorcode.get(e.errno, str(e.errno)).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    print('tiocsti', os.read(r, 64).decode())
tiocsti()
# perf_event_open(2), a software clock of this process (allowed to users at paranoid <= 2)
def perf():
    attr = bytearray(128)
    struct.pack_into('IIQ', attr, 0, 1, 128, 0)
    struct.pack_into('Q', attr, 40, (1 << 5) | (1 << 6))  # exclude_kernel, exclude_hv: what a user may count
    buf = ctypes.create_string_buffer(bytes(attr))
    return libc.syscall(298, buf, 0, -1, -1, 0)
report('perf_event_open', perf)
# a socket family beyond unix, inet, inet6 and netlink: AF_PACKET (the host refuses it for
# want of CAP_NET_RAW, with EPERM: the filter answers before the kernel looks)
report('af_packet', lambda: socket.socket(17, socket.SOCK_RAW, 0).close())
# the new mount API
report('fsopen', lambda: libc.syscall(430, b'tmpfs', 0))
# a user namespace of its own, as Firefox's and Chromium's sandboxes make
report('userns', lambda: libc.unshare(0x10000000))
# a personality that turns off address randomisation
report('personality', lambda: libc.personality(0x0040000))
`;

function parse(out: string): Record<string, string> {
  return Object.fromEntries(
    out
      .trim()
      .split('\n')
      .filter((l) => / /.test(l))
      .map((l) => l.split(' ') as [string, string]),
  );
}

describe('the seccomp filter of bubblewrap cages', () => {
  let w: World;
  let host: Record<string, string>;
  const inCage: Record<string, Record<string, string>> = {};

  before(async () => {
    w = await World.create();
    w.writeCage('filtered', '[Cage]\n');
    w.writeCage('nonested', '[Cage]\nNestedSandbox=false\n');
    const onHost = await execa('/usr/bin/python3', ['-c', ATTEMPTS], { reject: false, env: w.env, extendEnv: false });
    host = parse(onHost.stdout);
    await execa('keyctl', ['purge', 'user', 'kagome-seccomp-test'], { reject: false });
    await w.startService();
    for (const cage of ['filtered', 'nonested']) {
      await w.launchCommand(cage, ['sh', '-c', `python3 -c '${ATTEMPTS.replace(/'/g, `'\\''`)}' > "$HOME/seccomp.tmp" 2>&1; mv "$HOME/seccomp.tmp" "$HOME/seccomp.out"`]);
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
    assert.ok(host.af_packet && host.af_packet !== 'EAFNOSUPPORT', `AF_PACKET exists on the host (${host.af_packet})`);
    assert.notEqual(host.fsopen, 'ENOSYS');
    assert.equal(host.userns, 'ok');
    assert.equal(host.personality, 'ok');
  });

  it("a cage cannot touch the host user's kernel keyring, nor list its keys", async () => {
    assert.equal(inCage.filtered!.add_key, 'EPERM');
    const keys = await w.launchCommand('filtered', ['sh', '-c', '{ cat /proc/keys /proc/key-users; echo done; } > "$HOME/keys.tmp" 2>&1; mv "$HOME/keys.tmp" "$HOME/keys.out"']);
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
