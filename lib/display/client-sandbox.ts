import fs from 'node:fs';

// The host-side xpra client parses everything the cage's xpra server sends, and that server is
// the cage's to replace. Debian 12's xpra 3.1.3 lacks xpra's 2026 client-side fixes (its
// SECURITY.md: #4950-#4952), and the client obeys the server's control requests (it opened
// "Session Info" and "Bug Report" windows on the host when a program in the cage asked). So the
// client runs in a bubblewrap sandbox of its own: the host's /usr and /etc read-only (fonts,
// icons, themes, Python), the host display's socket and cookie, the cage's xpra folder, and
// nothing else: no home, no session bus, no XDG_RUNTIME_DIR, no network, its own pid, ipc and
// uts namespaces. A compromised client can draw on the display it was given and read no file
// of the person's and call no service.

/** ":N" or ":N.S" (a local display): the socket path; undefined for TCP or other forms. */
export function displaySocket(display: string): string | undefined {
  const m = /^(?:unix)?:(\d+)(?:\.\d+)?$/.exec(display);
  return m ? `/tmp/.X11-unix/X${m[1]}` : undefined;
}

export interface ClientSandbox {
  display: string;
  /** the host display's cookie file, when the host uses one */
  xauthority: string | undefined;
  /** the cage's xpra folder on the host, with the server's socket */
  xpraDir: string;
  lang: string | undefined;
}

/** bwrap arguments around `argv` (xpra attach ...), or undefined when the display cannot be given alone. */
export function clientSandboxArgs(s: ClientSandbox, argv: string[], infoFd: number): string[] | undefined {
  const socket = displaySocket(s.display);
  if (!socket) return undefined;
  const args = [
    '--unshare-all',
    '--unshare-user',
    '--new-session',
    '--hostname',
    'kagome-client',
    '--clearenv',
    '--info-fd',
    String(infoFd),
    '--ro-bind',
    '/usr',
    '/usr',
    '--symlink',
    'usr/bin',
    '/bin',
    '--symlink',
    'usr/lib',
    '/lib',
    '--symlink',
    'usr/lib64',
    '/lib64',
    '--symlink',
    'usr/sbin',
    '/sbin',
    '--ro-bind',
    '/etc',
    '/etc',
    '--ro-bind-try',
    '/var/cache/fontconfig',
    '/var/cache/fontconfig',
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    '--tmpfs',
    '/tmp',
    '--tmpfs',
    '/run',
    '--dir',
    '/home/client',
    '--ro-bind',
    socket,
    socket,
    '--bind',
    s.xpraDir,
    s.xpraDir,
  ];
  const env: Record<string, string> = { DISPLAY: s.display, HOME: '/home/client', PATH: '/usr/bin:/bin', LANG: s.lang ?? 'C.UTF-8' };
  if (s.xauthority && s.xauthority.startsWith('/') && fs.existsSync(s.xauthority)) {
    args.push('--ro-bind', s.xauthority, '/home/client/.Xauthority');
    env.XAUTHORITY = '/home/client/.Xauthority';
  }
  for (const [k, v] of Object.entries(env)) args.push('--setenv', k, v);
  args.push('--chdir', '/home/client', '--', ...argv);
  return args;
}
