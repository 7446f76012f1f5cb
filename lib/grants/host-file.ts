import fs from 'node:fs';
import { KagomeError } from '../errors.js';

// A host file chosen to be granted, held by an O_PATH descriptor from the moment it is
// chosen: what is checked (a regular file, readable, writable if asked) is exactly what is
// granted, with no window in which the path could be swapped for something else. The
// document portal takes such descriptors (O_PATH, not O_NOFOLLOW), and so does the copy
// fallback through /proc/self/fd.

// Linux values (asm-generic); Node exposes O_NOFOLLOW but not O_PATH.
export const O_PATH = 0o10000000;
const O_NOFOLLOW = fs.constants.O_NOFOLLOW;
const ACCMODE = 0o3;

export interface HostFile {
  /** O_PATH descriptor, close-on-exec; the caller of close() owns it */
  fd: number;
  /** the path as the host knows it, as bytes: a file name need not be UTF-8 */
  path: Buffer;
  dev: number;
  ino: number;
  /** the file may be written through the grant */
  writable: boolean;
}

/** How writable a grant should be: asked for, refused, or whatever the user may do ('auto', for launches). */
export type WriteWish = boolean | 'auto';

export function shown(p: Buffer | string): string {
  return JSON.stringify(Buffer.isBuffer(p) ? p.toString('utf8') : p);
}

function procPath(fd: number): string {
  return `/proc/self/fd/${fd}`;
}

/** Open a path to grant. A final symbolic link is refused unless followSymlinks. */
export function openHostPath(
  p: Buffer,
  opts: { followSymlinks: boolean; writable: WriteWish },
): HostFile {
  if (p[0] !== 0x2f)
    throw new KagomeError(
      'InvalidArgument',
      `${shown(p)} is not an absolute path; give the full path of the file`,
    );
  if (p.includes(0)) throw new KagomeError('InvalidArgument', 'a path contains a NUL byte');
  let fd: number;
  try {
    fd = fs.openSync(p, O_PATH | (opts.followSymlinks ? 0 : O_NOFOLLOW));
  } catch (e) {
    throw openError(p, e);
  }
  let file: HostFile;
  try {
    file = checked(fd, p, opts.writable);
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
  if (opts.followSymlinks) return file;
  // The portal refuses O_NOFOLLOW descriptors; reopened through /proc it is the same inode.
  try {
    return { ...file, fd: fs.openSync(procPath(fd), O_PATH) };
  } finally {
    fs.closeSync(fd);
  }
}

/** Open several paths; on the first failure the ones already open are closed and the error is thrown. */
export function openHostPaths(
  paths: readonly Buffer[],
  opts: { followSymlinks: boolean; writable: WriteWish },
): HostFile[] {
  const out: HostFile[] = [];
  try {
    for (const p of paths) out.push(openHostPath(p, opts));
    return out;
  } catch (e) {
    closeHostFiles(out);
    throw e;
  }
}

/**
 * Take a descriptor a caller passed (over D-Bus): O_PATH or opened for reading; for a
 * writable grant it must be O_PATH on a file the user may write, or opened for writing.
 * The caller's descriptor is always closed; the result holds a new one.
 */
export function adoptPassedFd(fd: number, writable: WriteWish): HostFile {
  try {
    const flags = fdFlags(fd);
    let wish = writable;
    if ((flags & O_PATH) === 0) {
      const mode = flags & ACCMODE;
      if (mode === fs.constants.O_WRONLY)
        throw new KagomeError(
          'NotPermitted',
          'a file passed for granting was opened for writing only; open it for reading (or O_PATH)',
        );
      if (mode === fs.constants.O_RDONLY) {
        if (writable === true) {
          throw new KagomeError(
            'NotPermitted',
            `${shown(pathOfFd(fd))} was passed opened read-only, so it can only be granted read-only; open it read-write, or ask for a read-only grant`,
          );
        }
        wish = false;
      }
    }
    const p = pathOfFd(fd);
    let own: number;
    try {
      own = fs.openSync(procPath(fd), O_PATH);
    } catch (e) {
      throw openError(p, e);
    }
    try {
      return checked(own, p, wish);
    } catch (e) {
      fs.closeSync(own);
      throw e;
    }
  } finally {
    // Closing an fd that was never open must not hide the error that says so.
    closeFds([fd]);
  }
}

function checked(fd: number, p: Buffer, writable: WriteWish): HostFile {
  const st = fs.fstatSync(fd);
  if (st.isSymbolicLink()) {
    const target = readlinkBytes(p);
    throw new KagomeError(
      'NotPermitted',
      `${shown(p)} is a symbolic link${target ? ` to ${shown(target)}` : ''}; kagome grants the file a link points to only when asked (follow-symlinks), so that a link cannot smuggle in a file you did not choose`,
    );
  }
  if (st.isDirectory())
    throw new KagomeError(
      'NotSupported',
      `${shown(p)} is a folder; kagome grants single files (pick the files in it), so that a cage never gets a whole tree by accident`,
    );
  if (!st.isFile())
    throw new KagomeError(
      'NotSupported',
      `${shown(p)} is not a regular file (${kindOf(st)}); only regular files can be granted`,
    );
  if (st.nlink === 0)
    throw new KagomeError('NoSuchFile', `${shown(p)} was deleted before it could be granted`);
  // O_PATH checks no permission: opening through the descriptor does, on this very inode.
  probe(fd, p, fs.constants.O_RDONLY);
  let canWrite = false;
  if (writable !== false) {
    try {
      probe(fd, p, fs.constants.O_WRONLY);
      canWrite = true;
    } catch (e) {
      if (writable === true) {
        throw new KagomeError(
          'NotPermitted',
          `you can read ${shown(p)} but not write it (${(e as Error).message}); grant it read-only`,
        );
      }
    }
  }
  // Recorded under the path the kernel has for it: a followed link is shown as its target.
  return { fd, path: pathOfFd(fd), dev: st.dev, ino: st.ino, writable: canWrite };
}

function probe(fd: number, p: Buffer, flags: number): void {
  let probeFd: number;
  try {
    // O_NONBLOCK: never wait on anything; only regular files get here.
    probeFd = fs.openSync(procPath(fd), flags | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
  } catch (e) {
    throw openError(p, e);
  }
  fs.closeSync(probeFd);
}

function openError(p: Buffer, e: unknown): KagomeError {
  // '' for an error with no errno code, which the default case describes by its message.
  const code = (e as NodeJS.ErrnoException).code ?? '';
  switch (code) {
    case 'ENOENT':
      return new KagomeError('NoSuchFile', `${shown(p)} does not exist`);
    case 'ENOTDIR':
      return new KagomeError(
        'NoSuchFile',
        `${shown(p)} does not exist (a part of the path is not a folder)`,
      );
    case 'EACCES':
    case 'EPERM':
      return new KagomeError(
        'NotPermitted',
        `you may not read ${shown(p)} (permission denied), so it cannot be granted`,
      );
    case 'EROFS':
      return new KagomeError(
        'NotPermitted',
        `${shown(p)} is on a read-only file system; grant it read-only`,
      );
    case 'ELOOP':
      return new KagomeError('NotPermitted', `${shown(p)} goes through too many symbolic links`);
    case 'ENAMETOOLONG':
      return new KagomeError('InvalidArgument', `the path ${shown(p)} is too long`);
    default:
      return new KagomeError('Failed', `cannot open ${shown(p)}: ${(e as Error).message}`);
  }
}

function kindOf(st: fs.Stats): string {
  if (st.isFIFO()) return 'a named pipe';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a file';
}

function readlinkBytes(p: Buffer): Buffer | undefined {
  try {
    return fs.readlinkSync(p, { encoding: 'buffer' });
  } catch {
    return undefined;
  }
}

/** The path the kernel has for an open descriptor. */
export function pathOfFd(fd: number): Buffer {
  const p = fs.readlinkSync(procPath(fd), { encoding: 'buffer' });
  const deleted = Buffer.from(' (deleted)');
  if (
    p.length > deleted.length &&
    p.subarray(-deleted.length).equals(deleted) &&
    fs.fstatSync(fd).nlink === 0
  ) {
    throw new KagomeError(
      'NoSuchFile',
      `${shown(p.subarray(0, -deleted.length))} was deleted before it could be granted`,
    );
  }
  return p;
}

/** open(2) flags of a descriptor, from /proc (Node has no fcntl F_GETFL). */
function fdFlags(fd: number): number {
  let info: string;
  try {
    info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  } catch {
    throw new KagomeError('InvalidArgument', `file descriptor ${fd} is not open`);
  }
  const m = /^flags:\s*([0-7]+)$/m.exec(info);
  if (!m) throw new KagomeError('Failed', `cannot read the flags of file descriptor ${fd}`);
  return parseInt(m[1]!, 8);
}

export function closeHostFiles(files: readonly HostFile[]): void {
  closeFds(files.map((f) => f.fd));
}

export function closeFds(fds: readonly number[]): void {
  for (const fd of fds) {
    try {
      fs.closeSync(fd);
    } catch {
      /* already closed */
    }
  }
}
