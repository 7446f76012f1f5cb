import fs from 'node:fs';
import { KagomeError } from '../errors.js';

// File operations in folders a cage can write, without ever following a link the cage made
// or blocking on a FIFO it planted. Node has no openat(2); a directory descriptor reached as
// /proc/self/fd/N resolves to that very directory (the kernel's magic link, not a path a cage
// could re-point), so "/proc/self/fd/N/NAME" with O_NOFOLLOW is openat(N, NAME, O_NOFOLLOW):
// one component at a time, each opened from the descriptor of the one before. Names are
// single components; anything else is refused.

export const O_DIRECTORY = fs.constants.O_DIRECTORY;
// Node opens every descriptor close-on-exec.
const NOFOLLOW = fs.constants.O_NOFOLLOW;

function at(dirFd: number, name: Buffer | string): Buffer {
  const bytes = Buffer.from(name);
  if (
    bytes.length === 0 ||
    bytes.includes(0x2f) ||
    bytes.includes(0) ||
    bytes.equals(Buffer.from('.')) ||
    bytes.equals(Buffer.from('..'))
  ) {
    throw new KagomeError(
      'InvalidArgument',
      `${JSON.stringify(bytes.toString())} is not a single file name`,
    );
  }
  return Buffer.concat([Buffer.from(`/proc/self/fd/${dirFd}/`), bytes]);
}

/** A folder the service made itself and no cage can replace (its parent is not in any cage). */
export function openOwnDir(path: string): number {
  const fd = fs.openSync(path, fs.constants.O_RDONLY | O_DIRECTORY | NOFOLLOW);
  if (!fs.fstatSync(fd).isDirectory()) {
    fs.closeSync(fd);
    throw new KagomeError('Failed', `${path} is not a folder`);
  }
  return fd;
}

/** A sub-folder, never through a link: ELOOP or ENOTDIR when the cage put something else there. */
export function openDirBeneath(dirFd: number, name: Buffer | string): number {
  return fs.openSync(at(dirFd, name), fs.constants.O_RDONLY | O_DIRECTORY | NOFOLLOW);
}

/** mkdir(2) does not follow a link in its last component: EEXIST if anything is there. */
export function mkdirBeneath(dirFd: number, name: Buffer | string, mode: number): void {
  fs.mkdirSync(at(dirFd, name), { mode });
}

/**
 * A regular file for reading, or undefined when it is gone. O_NONBLOCK: opening a FIFO for
 * reading would wait for a writer forever (a cage replaced its copies with FIFOs and the
 * service hung); the type is checked on the descriptor, after opening.
 */
export function openFileBeneath(dirFd: number, name: Buffer | string): number | undefined {
  let fd: number;
  try {
    fd = fs.openSync(at(dirFd, name), fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | NOFOLLOW);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw new KagomeError('NotPermitted', NOT_REGULAR);
    throw e;
  }
  if (!fs.fstatSync(fd).isFile()) {
    fs.closeSync(fd);
    throw new KagomeError('NotPermitted', NOT_REGULAR);
  }
  return fd;
}

/** A new file, created here and nowhere else: O_EXCL never follows a link and fails if anything is there. */
export function createFileBeneath(dirFd: number, name: Buffer | string, mode: number): number {
  return fs.openSync(
    at(dirFd, name),
    fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | NOFOLLOW,
    mode,
  );
}

/** Move an entry out from under a cage's reach (rename(2) moves a link itself, never its target). */
export function renameBeneath(
  fromDirFd: number,
  name: Buffer | string,
  toDirFd: number,
  toName: string,
): void {
  fs.renameSync(at(fromDirFd, name), at(toDirFd, toName));
}

const NOT_REGULAR = 'it is not a regular file (a link, a FIFO or a device was put in its place)';
const CHUNK = 1024 * 1024;

/**
 * Copy from one descriptor to another in chunks, at most `limit` bytes: never the whole file
 * in memory, and a file that grows past the limit while it is read stops the copy.
 * Returns the number of bytes copied.
 */
export function copyFd(from: number, to: number, limit: number, what: string): number {
  const buf = Buffer.allocUnsafe(CHUNK);
  let total = 0;
  for (;;) {
    const n = fs.readSync(from, buf, 0, CHUNK, total);
    if (n === 0) return total;
    if (total + n > limit)
      throw new KagomeError(
        'NotPermitted',
        `${what} is larger than ${limit} bytes, the limit for copies`,
      );
    let written = 0;
    while (written < n) written += fs.writeSync(to, buf, written, n - written, total + written);
    total += n;
  }
}

/** Whether two descriptors hold the same bytes, read in chunks. */
export function sameContent(a: number, b: number): boolean {
  const sa = fs.fstatSync(a);
  const sb = fs.fstatSync(b);
  if (sa.size !== sb.size) return false;
  const ba = Buffer.allocUnsafe(CHUNK);
  const bb = Buffer.allocUnsafe(CHUNK);
  for (let pos = 0; ;) {
    const na = fs.readSync(a, ba, 0, CHUNK, pos);
    const nb = fs.readSync(b, bb, 0, CHUNK, pos);
    if (na !== nb) return false;
    if (na === 0) return true;
    if (!ba.subarray(0, na).equals(bb.subarray(0, nb))) return false;
    pos += na;
  }
}
