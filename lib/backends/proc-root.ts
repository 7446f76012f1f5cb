import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { ProcRef } from '../runtime/proc.js';

/** PATH lookup in a sandbox's root through /proc/PID/root, with no process started. */
export async function resolveInRoot(
  init: ProcRef,
  program: string,
  searchPath: string,
): Promise<string | undefined> {
  const root = `/proc/${init.pid}/root`;
  const candidates = program.includes('/')
    ? [program]
    : searchPath
        .split(':')
        .filter((d) => d.startsWith('/'))
        .map((d) => path.posix.join(d, program));
  for (const c of candidates) {
    if (!c.startsWith('/')) continue;
    try {
      // /proc/PID/root follows the sandbox's own symlinks (/bin -> usr/bin) inside its root.
      const st = await fsp.stat(root + c);
      if (!st.isFile()) continue;
      await fsp.access(root + c, fs.constants.X_OK);
      return c;
    } catch {
      continue;
    }
  }
  return undefined;
}
