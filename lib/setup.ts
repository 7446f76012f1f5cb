import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { KagomeError } from './errors.js';
import { baseDirs } from '../xdg/basedirs.js';
import { findInPath } from './requirements.js';
import type { Env } from './runtime/paths.js';

// `kagome setup`: what a Debian package puts in /usr, put in the person's own folders for a
// kagome run from a clone or `npm install -g`: the D-Bus activation file (a call to
// io.kagome.Kagome starts the service) and the systemd user unit (where a systemd user manager
// runs: the service starts with the graphical session and its log goes to the journal).
// Both come from the templates in packaging/, with the paths of this installation filled in.
//
// Each file kagome writes carries a marker line, so `--remove` takes away exactly what setup
// wrote and never a file the person wrote or changed; running setup twice changes nothing.

const MARKER = '# Written by `kagome setup`; `kagome setup --remove` removes it.';

/** Where this installation's files are: bin/ with the kagome script, and the tree (README, packaging/). */
export function installationRoot(): string {
  // dist/lib/setup.js → the tree's root.
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
}

export interface SetupFile {
  path: string;
  content: string;
  /** what the file is for, in the report */
  what: string;
}

export function setupFiles(env: Env, root = installationRoot()): SetupFile[] {
  const dirs = baseDirs(env);
  // The Debian package ships the filled-in files in /usr (and not the templates).
  if (!fs.existsSync(path.join(root, 'packaging', 'dbus', 'io.kagome.Kagome.service.in'))) {
    throw new KagomeError(
      'Failed',
      `this kagome (${root}) was installed by its package, which already put the D-Bus activation file in /usr/share/dbus-1/services and the user unit in /usr/lib/systemd/user: there is nothing to set up`,
    );
  }
  const fill = (template: string) =>
    `${MARKER}\n` +
    fs
      .readFileSync(path.join(root, template), 'utf8')
      .replaceAll('@bindir@', path.join(root, 'bin'))
      .replaceAll('@docdir@', root);
  return [
    {
      path: path.join(dirs.dataHome, 'dbus-1', 'services', 'io.kagome.Kagome.service'),
      content: fill('packaging/dbus/io.kagome.Kagome.service.in'),
      what: 'D-Bus activation',
    },
    {
      path: path.join(dirs.configHome, 'systemd', 'user', 'kagome.service'),
      content: fill('packaging/systemd/kagome.service.in'),
      what: 'systemd user unit',
    },
  ];
}

export type SetupAction =
  'written' | 'unchanged' | 'removed' | 'absent' | 'kept (not written by kagome setup)';

export interface SetupReport {
  files: { path: string; what: string; action: SetupAction }[];
  /** what was done with the systemd user manager, or why nothing */
  systemd: string;
}

/** Is a systemd user manager running for this person? (its private socket is in the runtime folder) */
function userManager(env: Env): string | undefined {
  const systemctl = findInPath('systemctl', env.PATH);
  if (
    !systemctl ||
    !env.XDG_RUNTIME_DIR ||
    !fs.existsSync(path.join(env.XDG_RUNTIME_DIR, 'systemd', 'private'))
  )
    return undefined;
  return systemctl;
}

function systemctl(bin: string, env: Env, args: string[]): string {
  const r = spawnSync(bin, ['--user', ...args], {
    env: env as NodeJS.ProcessEnv,
    encoding: 'utf8',
  });
  if (r.status !== 0)
    throw new KagomeError(
      'Failed',
      `systemctl --user ${args.join(' ')} failed: ${(r.stderr || r.stdout || `exit ${r.status}`).trim()}`,
    );
  return r.stdout;
}

export function setup(env: Env, root = installationRoot()): SetupReport {
  const files = setupFiles(env, root).map((f) => {
    let current: string | undefined;
    try {
      current = fs.readFileSync(f.path, 'utf8');
    } catch {
      /* not there yet */
    }
    if (current === f.content) return { path: f.path, what: f.what, action: 'unchanged' as const };
    if (current !== undefined && !current.startsWith(MARKER)) {
      throw new KagomeError(
        'Failed',
        `${f.path} exists and was not written by kagome setup; move it away (or merge it by hand) and run kagome setup again`,
      );
    }
    fs.mkdirSync(path.dirname(f.path), { recursive: true });
    // Written beside and renamed: a half-written unit is never read.
    const tmp = `${f.path}.kagome-tmp`;
    fs.writeFileSync(tmp, f.content, { mode: 0o644 });
    fs.renameSync(tmp, f.path);
    return { path: f.path, what: f.what, action: 'written' as const };
  });
  const bin = userManager(env);
  let systemd =
    'no systemd user manager runs here: D-Bus activation starts the service at the first call';
  if (bin) {
    systemctl(bin, env, ['daemon-reload']);
    systemctl(bin, env, ['enable', 'kagome.service']);
    systemd =
      'enabled kagome.service for graphical sessions (systemctl --user enable kagome.service)';
  }
  return { files, systemd };
}

export function removeSetup(env: Env, root = installationRoot()): SetupReport {
  const bin = userManager(env);
  let systemd = 'no systemd user manager runs here';
  if (bin) {
    // Disabled before its file goes, so systemd removes its own links.
    const r = spawnSync(bin, ['--user', 'disable', 'kagome.service'], {
      env: env as NodeJS.ProcessEnv,
      encoding: 'utf8',
    });
    systemd =
      r.status === 0
        ? 'disabled kagome.service'
        : `kagome.service was not enabled (${(r.stderr || '').trim() || `exit ${r.status}`})`;
  }
  const files = setupFiles(env, root).map((f) => {
    let current: string;
    try {
      current = fs.readFileSync(f.path, 'utf8');
    } catch {
      return { path: f.path, what: f.what, action: 'absent' as const };
    }
    if (!current.startsWith(MARKER))
      return { path: f.path, what: f.what, action: 'kept (not written by kagome setup)' as const };
    fs.rmSync(f.path);
    return { path: f.path, what: f.what, action: 'removed' as const };
  });
  if (bin) systemctl(bin, env, ['daemon-reload']);
  return { files, systemd };
}
