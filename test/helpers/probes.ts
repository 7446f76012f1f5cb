// Shell lines, run inside a cage and on the host alike, that say whether the host's X server
// (its socket file, its abstract socket, a real X client) and session bus can be reached.
// python3 is in every cage (xpra needs it): it connects to sockets without any X or D-Bus
// library deciding on our behalf. Each line prints "NAME open" or "NAME closed".

export function hostDisplayAndBusProbe(displayNumber: string, busPath: string): string[] {
  const py = [
    'import socket',
    'def tryc(addr):',
    '    s = socket.socket(socket.AF_UNIX)',
    '    try:',
    '        s.connect(addr); return "open"',
    '    except OSError:',
    '        return "closed"',
    `print("x-path", tryc("/tmp/.X11-unix/X${displayNumber}"))`,
    `print("x-abstract", tryc("\\0/tmp/.X11-unix/X${displayNumber}"))`,
    `print("bus", tryc(${JSON.stringify(busPath)}))`,
  ].join('\n');
  return [
    `python3 -c '${py}'`,
    `xwininfo -root -display :${displayNumber} >/dev/null 2>&1 && echo "x-client open" || echo "x-client closed"`,
  ];
}

/**
 * Calls a hostile program in a cage would make, each printed as "NAME ok" or "NAME ERRNO"
 * (python3, which every cage has: xpra needs it, makes the raw calls).
 */
export const SYSCALL_ATTEMPTS = String.raw`
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

/**
 * What a process in a cage can do to one key of the host user's (argv: the key's serial, the
 * serial of the user keyring holding it, and a name for a key it tries to add there): "NAME
 * RESULT" lines as SYSCALL_ATTEMPTS prints.
 * The read goes through possession: the host's user keyring is linked into the caller's own
 * session keyring first, which the key's default permissions (read by its possessor only)
 * otherwise stop.
 */
export const KEYRING_ATTEMPTS = String.raw`
import ctypes, errno, os, re, sys
libc = ctypes.CDLL(None, use_errno=True)
serial, keyring, added = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()
def result(r):
    return 'ok' if r >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
def keyctl(*a):
    return libc.syscall(250, *[ctypes.c_long(x) for x in a])
def listed(f, pattern):
    try:
        return 'listed' if re.search(pattern, open(f).read(), re.M) else 'unlisted'
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
print('proc_keys', listed('/proc/keys', '^%08x ' % serial))
print('proc_key_users', listed('/proc/key-users', '^ *%d:' % os.getuid()))
buf = ctypes.create_string_buffer(256)
print('describe', result(keyctl(6, serial, ctypes.addressof(buf), 256)))
print('link', result(keyctl(8, keyring, -3)))
r = keyctl(11, serial, ctypes.addressof(buf), 256)
print('read', buf.raw[:r].decode() if r >= 0 else result(r))
print('add_key', result(libc.syscall(248, b'user', added, b'x', 1, ctypes.c_long(keyring))))
print('unlink', result(keyctl(9, serial, keyring)))
`;

export function parseAttempts(out: string): Record<string, string> {
  return Object.fromEntries(
    out
      .trim()
      .split('\n')
      .filter((l) => / /.test(l))
      .map((l) => l.split(' ') as [string, string]),
  );
}
