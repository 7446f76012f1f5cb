import fs from 'node:fs';
import path from 'node:path';

// Each program launched into a cage writes to a log of its own, `log/PROGRAM.log` in the cage's
// runtime folder, instead of one cage.log mixed with xpra's and every other program's: a person
// looking for why Firefox did not start finds Firefox's lines only, and the service can quote
// them when a program dies right after its launch.
//
// The file is opened here and handed to the program as its stdout and stderr; no pipe runs
// through the service, so a restarted service breaks no program's output.

/** Bytes a log may reach before the next launch moves it to PROGRAM.log.old. */
const ROTATE_AT = 4 * 1024 * 1024;
/** What is read back for a report: the end of this launch's output. */
const TAIL_BYTES = 4096;

export interface ProgramLog {
  file: string;
  /** where this launch's output starts in the file */
  offset: number;
}

/** A file name from a program name: its last path element, only characters safe in any shell. */
export function programLogName(program: string): string {
  const base = program.split('/').filter(Boolean).pop() ?? '';
  const safe = base
    .replace(/[^A-Za-z0-9._+-]/g, '_')
    .replace(/^\.+/, '_')
    .slice(0, 64);
  return `${safe || 'program'}.log`;
}

/** Opens the program's log for appending, with a header line naming this launch; the caller closes the fd. */
export function openProgramLog(
  logDir: string,
  argv: string[],
  pid = 'starting',
): { fd: number; log: ProgramLog } {
  const file = path.join(logDir, programLogName(argv[0] ?? ''));
  try {
    if (fs.lstatSync(file).size > ROTATE_AT) fs.renameSync(file, `${file}.old`);
  } catch {
    /* no log yet */
  }
  const fd = fs.openSync(
    file,
    fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW,
    0o600,
  );
  fs.writeSync(
    fd,
    `--- ${new Date().toISOString()} ${pid}: ${JSON.stringify(argv).slice(0, 500)}\n`,
  );
  const offset = fs.fstatSync(fd).size;
  return { fd, log: { file, offset } };
}

/**
 * The last lines this launch printed, for a report: at most `lines` lines of the last 4 KiB,
 * control characters other than tabs shown as '?', so a program cannot dress up a notification.
 */
export function programLogTail(log: ProgramLog, lines = 8): string {
  let text = '';
  let fd: number | undefined;
  try {
    fd = fs.openSync(
      log.file,
      fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK,
    );
    const size = fs.fstatSync(fd).size;
    const start = Math.max(log.offset, size - TAIL_BYTES);
    const buf = Buffer.alloc(Math.max(0, size - start));
    fs.readSync(fd, buf, 0, buf.length, start);
    text = buf.toString('utf8');
  } catch {
    return '';
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
  return text
    .split('\n')
    .map((l) => l.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, '?').trimEnd())
    .filter((l) => l !== '')
    .slice(-lines)
    .join('\n');
}
