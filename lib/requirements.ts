import fs from 'node:fs';
import path from 'node:path';
import { KagomeError } from './errors.js';

// A missing program must be reported as the Debian package that provides it, since that is
// what the person has to install. One table, so every message says the same thing.
export const DEBIAN_PACKAGES: Record<string, string> = {
  bwrap: 'bubblewrap',
  xpra: 'xpra',
  Xvfb: 'xvfb',
  Xephyr: 'xserver-xephyr',
  xauth: 'xauth',
  slirp4netns: 'slirp4netns',
  nft: 'nftables',
  nsenter: 'util-linux',
  setpriv: 'util-linux',
  python3: 'python3',
  busctl: 'systemd',
  'dbus-daemon': 'dbus',
  'xdg-dbus-proxy': 'xdg-dbus-proxy',
  xdotool: 'xdotool',
  gio: 'libglib2.0-bin',
  import: 'imagemagick',
  'update-desktop-database': 'desktop-file-utils',
  pactl: 'pulseaudio-utils',
  xclip: 'xclip',
  podman: 'podman',
  docker: 'docker.io',
  lxc: 'lxd-client',
  mmdebstrap: 'mmdebstrap',
};

export function findInPath(
  program: string,
  envPath = process.env.PATH ?? '/usr/bin:/bin',
): string | undefined {
  if (program.includes('/')) return isExecutable(program) ? program : undefined;
  for (const dir of envPath.split(':')) {
    if (!dir) continue;
    const candidate = path.join(dir, program);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function isExecutable(p: string): boolean {
  try {
    const st = fs.statSync(p);
    if (!st.isFile()) return false;
    fs.accessSync(p, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function missingProgramError(program: string, purpose: string): KagomeError {
  const pkg = DEBIAN_PACKAGES[program];
  const how = pkg
    ? `install the Debian package '${pkg}' (sudo apt-get install ${pkg})`
    : `install it and make sure it is on PATH`;
  return new KagomeError(
    'MissingProgram',
    `${program} is needed ${purpose} but was not found: ${how}`,
  );
}

// Where Debian puts administration programs such as nft, which an ordinary user runs for
// namespaces of their own: not on such a user's PATH (Debian's /etc/profile).
const SBIN_DIRS = '/usr/local/sbin:/usr/sbin:/sbin';

/**
 * Resolve a host program or throw MissingProgram naming its Debian package. With `sbin`, the
 * sbin folders are searched after PATH.
 */
export function requireProgram(
  program: string,
  purpose: string,
  opts: { sbin?: boolean } = {},
): string {
  const envPath = process.env.PATH ?? '/usr/bin:/bin';
  const found = findInPath(program, opts.sbin ? `${envPath}:${SBIN_DIRS}` : envPath);
  if (!found) throw missingProgramError(program, purpose);
  return found;
}
