import fs from 'node:fs';
import path from 'node:path';
import type { SetupOp } from '../sandbox.js';

// LibreOffice on documents granted through the document portal. Its start script (Debian's and
// upstream's) exports SAL_ENABLE_FILE_LOCKING=1, whatever the environment says, so that every
// file it opens for writing gets an fcntl write lock, and a lock that cannot be taken fails the
// open. The portal's FUSE file system (xdg-desktop-portal 1.16) answers every fcntl and flock
// lock with ENOSYS, so a granted document opened "in use, locked by Unknown User" (read-only),
// and with that bypassed a save still failed: the temporary file LibreOffice writes beside the
// document is opened with the same lock. strace of soffice.bin on a portal path shows both.
//
// In a bubblewrap cage (the host's /usr) the script is covered by a copy that leaves the
// variable unset, and nothing else: LibreOffice then protects a document with its lock file
// alone (.~lock.NAME# beside it, which it uses anyway), and lock-files.ts carries that file
// between the cage, the host and other cages. An unset variable is also what LibreOffice's
// own code takes as "no fcntl locks" (sal/osl/unx/file.cxx only tests that it is set).

/** The start script every LibreOffice command goes through (libreoffice, soffice, lowriter, the desktop entries). */
export const SOFFICE_SCRIPT = '/usr/lib/libreoffice/program/soffice';

const ASSIGN = /^\s*(?:export\s+)?SAL_ENABLE_FILE_LOCKING(?:=.*)?\s*$/;

/** The script with its SAL_ENABLE_FILE_LOCKING lines replaced, or undefined when it has none (nothing to change). */
export function withoutFcntlLocks(script: string): string | undefined {
  const lines = script.split('\n');
  let changed = false;
  const out = lines.map((line) => {
    if (!ASSIGN.test(line)) return line;
    changed = true;
    return '# kagome: no fcntl locks on documents granted through the document portal (it refuses them)\nunset SAL_ENABLE_FILE_LOCKING';
  });
  return changed ? out.join('\n') : undefined;
}

/**
 * The mount that covers the host's LibreOffice start script in a cage on the host's /usr, with
 * its copy written to `dir`; none when LibreOffice is not installed or its script sets nothing.
 * The copy is replaced by rename, so cages already running keep the one they mounted.
 */
export function libreOfficeOps(
  dir: string,
  script = SOFFICE_SCRIPT,
): { ops: SetupOp[]; note?: string } {
  let text: string;
  try {
    text = fs.readFileSync(script, 'utf8');
  } catch {
    return { ops: [] };
  }
  const changed = withoutFcntlLocks(text);
  if (changed === undefined)
    return {
      ops: [],
      note: `${script} no longer sets SAL_ENABLE_FILE_LOCKING; LibreOffice runs in cages as it is`,
    };
  const copy = path.join(dir, 'libreoffice-soffice');
  let current: string | undefined;
  try {
    current = fs.readFileSync(copy, 'utf8');
  } catch {
    current = undefined;
  }
  if (current !== changed) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const tmp = `${copy}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, changed, { mode: 0o755 });
    fs.renameSync(tmp, copy);
  }
  return { ops: [{ op: 'ro-bind', source: copy, dest: script }] };
}
