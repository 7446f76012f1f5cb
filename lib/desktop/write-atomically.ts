import fsp from 'node:fs/promises';
import path from 'node:path';

/**
 * Replace `file` with `text` in one rename: readers (menus, file managers, the desktop's
 * notification server) see the old file or the new, never half. The temporary file is hidden
 * and does not end in `.desktop`, so no folder scanner takes it for an entry. With `mode` the
 * file gets exactly that mode (not filtered by the umask); without, 0644 under the umask.
 */
export async function writeAtomically(file: string, text: string, mode?: number): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.kagome-tmp`);
  try {
    await fsp.writeFile(tmp, text, { mode: mode ?? 0o644 });
    if (mode !== undefined) await fsp.chmod(tmp, mode);
    await fsp.rename(tmp, file);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}
