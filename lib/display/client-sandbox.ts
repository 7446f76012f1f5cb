import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { IN_CAGE } from '../sandbox.js';

// The host-side xpra client parses everything the cage's xpra server sends, and that server is
// the cage's to replace. Debian 12's xpra 3.1.3 lacks xpra's 2026 client-side fixes (its
// SECURITY.md: #4950-#4952), and the client obeys the server's control requests (it opened
// "Session Info" and "Bug Report" windows on the host when a program in the cage asked). So the
// client runs in a bubblewrap sandbox of its own: the host's /usr and /etc read-only (fonts,
// icons, themes, Python), the host display's socket and cookie, the cage's xpra folder, and
// nothing else: no home, no session bus, no XDG_RUNTIME_DIR, no network, its own pid, ipc and
// uts namespaces. A compromised client can draw on the display it was given and read no file
// of the person's and call no service.
//
// What the client knows of the host it may tell the cage's server (xpra's hello carries the
// hostname, the user's real name, the machine id and the client's command line, and `xpra info`
// in the cage shows them). So the client sees the cage's folder where the cage sees it, not at
// its host path under XDG_RUNTIME_DIR, and its /etc says no more than the cage's: a passwd and
// group with only the user and nobody (no real name, no other accounts) and a machine id of its
// own. The hostname stays the host's (a new uts namespace starts with it): GDK writes it in every
// window's WM_CLIENT_MACHINE, and a window manager shows a window from another machine as remote
// (openbox added " (kagome-client)" to every title); the hello that would carry it to the cage
// leaves it out (lib/display/xpra.ts).

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
  /** a folder of the host the cage cannot see, with the files writeClientEtc wrote */
  etcDir: string;
}

/** Where the client finds the cage's folder, the path the cage itself knows it by. */
export const CLIENT_XPRA_DIR = IN_CAGE.xpraDir;

/** The files that stand in for the host's in the client's /etc. */
export function writeClientEtc(
  dir: string,
  user: { name: string; uid: number; gid: number },
): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const files: Record<string, string> = {
    passwd:
      `${user.name}:x:${user.uid}:${user.gid}:${user.name}:/home/client:/bin/sh\n` +
      (user.uid === 65534 ? '' : 'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n'),
    group: `${user.name}:x:${user.gid}:\n` + (user.gid === 65534 ? '' : 'nogroup:x:65534:\n'),
    // Valid, as libdbus wants one, and new at every start, so it ties the client to nothing.
    'machine-id': randomBytes(16).toString('hex') + '\n',
  };
  for (const [name, text] of Object.entries(files))
    fs.writeFileSync(path.join(dir, name), text, { mode: 0o600 });
}

/** bwrap arguments for a root of the host's /usr alone, with the merged-/usr links. */
export const HOST_USR = [
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
];

/** bwrap arguments around `argv` (xpra attach ...), or undefined when the display cannot be given alone. */
export function clientSandboxArgs(
  s: ClientSandbox,
  argv: string[],
  infoFd: number,
): string[] | undefined {
  const socket = displaySocket(s.display);
  if (!socket) return undefined;
  const args = [
    '--unshare-all',
    '--unshare-user',
    '--new-session',
    '--clearenv',
    '--info-fd',
    String(infoFd),
    ...HOST_USR,
    '--ro-bind',
    '/etc',
    '/etc',
    // A file the host's /etc lacks has nothing to hide, and a read-only /etc could not take it.
    ...['passwd', 'group', 'machine-id']
      .filter((f) => fs.existsSync(`/etc/${f}`))
      .flatMap((f) => ['--ro-bind', path.join(s.etcDir, f), `/etc/${f}`]),
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
    CLIENT_XPRA_DIR,
  ];
  const env: Record<string, string> = {
    DISPLAY: s.display,
    HOME: '/home/client',
    PATH: '/usr/bin:/bin',
    LANG: s.lang ?? 'C.UTF-8',
  };
  if (s.xauthority && s.xauthority.startsWith('/') && fs.existsSync(s.xauthority)) {
    args.push('--ro-bind', s.xauthority, '/home/client/.Xauthority');
    env.XAUTHORITY = '/home/client/.Xauthority';
  }
  for (const [k, v] of Object.entries(env)) args.push('--setenv', k, v);
  args.push('--chdir', '/home/client', '--', ...argv);
  return args;
}
