import { KagomeError } from '../errors.js';

/**
 * The pid bwrap reports on its --info-fd ({"child-pid": N}) once the namespaces exist. The
 * stream goes on being read to its end: bwrap writes the rest of its report after the pid, and
 * a reader gone early makes that write fail and bwrap give up.
 */
export function readBwrapInfo(stream: NodeJS.ReadableStream): Promise<number> {
  return new Promise((resolve, reject) => {
    let text = '';
    stream.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
      const m = /"child-pid"\s*:\s*(\d+)/.exec(text);
      if (m) resolve(Number(m[1]));
    });
    stream.on('end', () =>
      reject(
        new KagomeError(
          'BackendFailed',
          `bwrap ended without reporting its sandbox (${text.trim() || 'no output'})`,
        ),
      ),
    );
    stream.on('error', reject);
  });
}
