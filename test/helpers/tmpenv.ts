// A throw-away XDG world for one test: every path a desktop program or kagome could
// write to points inside `root`, so tests never touch the real home directory and never
// see each other's state.

import { chmod, lstat, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TempEnvVars {
  HOME: string;
  XDG_CONFIG_HOME: string;
  XDG_DATA_HOME: string;
  XDG_STATE_HOME: string;
  XDG_CACHE_HOME: string;
  XDG_RUNTIME_DIR: string;
  XDG_DATA_DIRS: string;
}

export interface TempEnv {
  root: string;
  env: TempEnvVars;
  /** Removes `root` even if something inside was made read-only; safe to call twice. */
  cleanup(): Promise<void>;
}

export async function makeTempEnv(prefix = 'kagome-test-'): Promise<TempEnv> {
  const root = await mkdtemp(join(tmpdir(), prefix));
  const dir = (name: string): string => join(root, name);
  for (const name of ['home', 'config', 'data', 'state', 'cache', 'runtime']) {
    await mkdir(dir(name), { mode: 0o700 });
  }
  // mkdir's mode is filtered through the umask; the XDG spec insists on exactly 0700
  // for the runtime dir and some programs refuse to use it otherwise.
  await chmod(dir('runtime'), 0o700);

  let cleaned = false;
  return {
    root,
    env: {
      HOME: dir('home'),
      XDG_CONFIG_HOME: dir('config'),
      XDG_DATA_HOME: dir('data'),
      XDG_STATE_HOME: dir('state'),
      XDG_CACHE_HOME: dir('cache'),
      XDG_RUNTIME_DIR: dir('runtime'),
      XDG_DATA_DIRS: '/usr/local/share:/usr/share',
    },
    async cleanup() {
      if (cleaned) return;
      await makeTreeWritable(root);
      await rm(root, { recursive: true, force: true });
      cleaned = true;
    },
  };
}

// Deleting an entry needs write+search permission on its directory; a test that made a
// directory read-only (or a program that copied read-only trees, e.g. from /usr) would
// otherwise make rm fail with EACCES for a non-root user.
async function makeTreeWritable(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  // lstat + isDirectory never follows symlinks, so a link out of the tree is not chmodded.
  if (!st.isDirectory()) return;
  if ((st.mode & 0o700) !== 0o700) await chmod(path, (st.mode & 0o7777) | 0o700);
  for (const entry of await readdir(path)) await makeTreeWritable(join(path, entry));
}
