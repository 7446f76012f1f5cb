import fs from 'node:fs';
import { KagomeError } from '../errors.js';

// A cage that fails to start says why in its log (bwrap, kagome-enter, slirp4netns, xpra and
// the engines all print one line of cause), and the person at the screen sees only the
// D-Bus error or the notification. So the error carries that line.

const CAUSE =
  /\b(error|fail(ed|s|ure)?|cannot|can't|could not|unable|not permitted|permission denied|denied|no such|not found|refused|invalid|timed? ?out|no space)\b/i;

/** The last line of a log that states a cause, cleaned for a message; undefined if none does. */
export function decisiveLine(log: string): string | undefined {
  const lines = log
    .split('\n')
    .map((l) => l.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '').trim())
    .filter(Boolean);
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]!;
    if (CAUSE.test(line)) return line.length > 300 ? line.slice(0, 297) + '...' : line;
  }
  return undefined;
}

/** What the cage log gained since `from` (at most its last 64 KiB), '' when unreadable. */
export function logSince(file: string, from: number): string {
  let fd: number | undefined;
  try {
    fd = fs.openSync(
      file,
      fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK,
    );
    const size = fs.fstatSync(fd).size;
    const start = Math.max(from, size - 65536);
    const buf = Buffer.alloc(Math.max(0, size - start));
    fs.readSync(fd, buf, 0, buf.length, start);
    return buf.toString('utf8');
  } catch {
    return '';
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** The same error, with the log's decisive line added when the message does not have it yet. */
export function withCause(err: KagomeError, log: string): KagomeError {
  const line = decisiveLine(log);
  if (!line || err.message.includes(line)) return err;
  return new KagomeError(err.errorName, `${err.message}. The cage log says: ${line}`);
}
