import { execa } from 'execa';
import { requireProgram } from '../lib/requirements.js';
import { KagomeError } from '../lib/errors.js';
import { pathBytesToFileUri } from './exec.js';

// A file's MIME type by the shared-mime-info rules (name globs, then content), asked of GLib
// through `gio info`: the same answer the desktop's own file manager gives. The file is named
// by a file:// URI, which carries any file name (newlines, bytes that are not UTF-8) in plain
// ASCII. One gio process per file, run in parallel (about 10 ms each).

const ATTRIBUTE = /^\s*standard::content-type:\s*(\S+)\s*$/m;

export async function contentTypeOf(file: string | Buffer): Promise<string> {
  const gio = requireProgram('gio', 'to tell the type of a file to open');
  const uri = pathBytesToFileUri(Buffer.from(file));
  const r = await execa(gio, ['info', '--attributes=standard::content-type', '--', uri], { reject: false, env: { LC_ALL: 'C.UTF-8' }, extendEnv: true });
  const m = r.exitCode === 0 ? ATTRIBUTE.exec(String(r.stdout)) : null;
  if (!m) {
    throw new KagomeError('Failed', `cannot tell the type of ${JSON.stringify(Buffer.from(file).toString())}: ${String(r.stderr).trim() || 'gio info gave no content type'}`);
  }
  return m[1]!;
}
