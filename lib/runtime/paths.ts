import path from 'node:path';
import { baseDirs } from '../../xdg/basedirs.js';
import { KagomeError } from '../errors.js';

export type Env = Record<string, string | undefined>;

/** Every place kagome reads or writes, derived once from the environment. */
export interface Paths {
  /** $XDG_CONFIG_HOME/kagome/cages: the cage files, the user's to edit. */
  cagesDir: string;
  /** $XDG_DATA_HOME/kagome/homes: persistent private homes, one per cage. */
  homesDir: string;
  /** $XDG_RUNTIME_DIR/kagome: state of running cages; tmpfs, gone at logout, like the cages. '' when unset. */
  runtimeDir: string;
  /** $XDG_DATA_HOME/kagome/grants: persistent file grants, one record file per cage. */
  persistentGrantsDir: string;
  hostHome: string;
}

export function pathsFromEnv(env: Env): Paths {
  const dirs = baseDirs(env);
  if (!env.HOME)
    throw new KagomeError(
      'Failed',
      'HOME is not set: kagome needs a home directory to keep cage files and homes in',
    );
  const runtime = dirs.runtimeDir ?? '';
  return {
    cagesDir: path.join(dirs.configHome, 'kagome', 'cages'),
    homesDir: path.join(dirs.dataHome, 'kagome', 'homes'),
    runtimeDir: runtime ? path.join(runtime, 'kagome') : '',
    persistentGrantsDir: path.join(dirs.dataHome, 'kagome', 'grants'),
    hostHome: env.HOME,
  };
}

export interface CageRuntimePaths {
  dir: string;
  state: string;
  lock: string;
  /** bind-mounted into the cage at XPRA_DIR_IN_CAGE: the display socket crosses here. */
  xpraDir: string;
  etcDir: string;
  logDir: string;
}

export function cageRuntimePaths(paths: Paths, name: string): CageRuntimePaths {
  const dir = path.join(paths.runtimeDir, 'cages', name);
  return {
    dir,
    state: path.join(dir, 'state.json'),
    lock: path.join(dir, 'lock'),
    xpraDir: path.join(dir, 'xpra'),
    etcDir: path.join(dir, 'etc'),
    logDir: path.join(dir, 'log'),
  };
}

/** The service keeps running cages' state in XDG_RUNTIME_DIR; cage files alone do not need it. */
export function requireRuntimeDir(paths: Paths): string {
  if (!paths.runtimeDir) {
    throw new KagomeError(
      'Failed',
      'XDG_RUNTIME_DIR is not set: kagome keeps the state of running cages there. Log in through a session manager (systemd-logind sets it) or set it to a private directory with mode 0700',
    );
  }
  return paths.runtimeDir;
}
