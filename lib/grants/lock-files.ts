import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../log.js';

// A document two programs edit at once loses one's changes. LibreOffice guards against that
// with a lock file beside the document, ".~lock.NAME#", made with O_EXCL and holding who has
// it open (and, on the host, an fcntl lock, which the document portal refuses: libreoffice.ts).
// Through the portal that file does not reach anyone else: a file a cage makes in a document's
// folder is the portal's private temporary file of that cage (".xdp-.~lock.NAME#-XXXXXX" in the
// host folder, seen by nobody under the lock file's name), and the host's lock file, or another
// cage's, is not in the cage's folder. So kagome carries it: when one side (the host or a cage
// with the document granted read-write) holds a lock file of its own, every other side gets a
// copy of it under the lock file's name, and when no side holds one any more, the copies go.
// The second LibreOffice then finds the lock and says who has the document, as on one machine.
//
// What kagome wrote is recorded (content and path, in the runtime folder, so a restarted
// service knows its copies from a program's lock); a lock file that is not kagome's copy is
// never changed or removed. Two programs opening the same document within the same few
// milliseconds, before the copy is made, can both get it: the race LibreOffice has on a
// network share as well.

/** LibreOffice's lock file of a document named NAME (svl's DocumentLockFile). */
export function lockFileName(name: Buffer): Buffer {
  return Buffer.concat([Buffer.from('.~lock.'), name, Buffer.from('#')]);
}

/** The lock file of LibreOffice holds a few short fields; anything larger is not one and is not carried. */
export const MAX_LOCK_FILE = 4096;

/** Is `file` (a name in the host folder) the lock file `lock`, or the portal's backing file of a cage's lock file? */
export function concernsLock(file: Buffer, lock: Buffer): boolean {
  if (file.equals(lock)) return true;
  const prefix = Buffer.concat([Buffer.from('.xdp-'), lock, Buffer.from('-')]);
  return file.length > prefix.length && file.subarray(0, prefix.length).equals(prefix);
}

interface Doc {
  dir: Buffer;
  name: Buffer;
  lock: Buffer;
  /** cages that have it read-write through the portal, with the document's id */
  cages: Map<string, string>;
  running: boolean;
  again: boolean;
  idle: Promise<void>;
}

type LockState = Buffer | undefined | 'other';

/**
 * How a side's lock file is opened. The host folder is the user's: never through a link. A
 * cage's folder is the portal's, which holds regular files only (it refuses links, FIFOs and
 * folders there) and answers O_NOFOLLOW on them with ELOOP (xdg-desktop-portal 1.16).
 */
function openFlags(side: Side): number {
  return side.host ? fs.constants.O_NOFOLLOW : 0;
}

interface Side {
  file: Buffer;
  host: boolean;
}

/** Reads a lock file without blocking on a FIFO; 'other' for anything that is not a small regular file. */
async function readLock(side: Side): Promise<LockState> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(
      side.file,
      fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | openFlags(side),
    );
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? undefined : 'other';
  }
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.size > MAX_LOCK_FILE) return 'other';
    const buf = Buffer.alloc(MAX_LOCK_FILE + 1);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return bytesRead > MAX_LOCK_FILE ? 'other' : buf.subarray(0, bytesRead);
  } catch {
    return 'other';
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/** Made with O_EXCL, or (a copy of kagome's) rewritten in place. */
async function writeLock(side: Side, content: Buffer, create: boolean): Promise<void> {
  const c = fs.constants;
  const fh = await fsp.open(
    side.file,
    c.O_WRONLY | openFlags(side) | (create ? c.O_CREAT | c.O_EXCL : c.O_TRUNC),
    0o644,
  );
  try {
    await fh.writeFile(content);
  } finally {
    await fh.close();
  }
}

const key = (b: Buffer) => b.toString('base64');

export class LockMirror {
  private readonly docs = new Map<string, Doc>();
  private readonly watchers = new Map<string, { watcher: fs.FSWatcher; docs: Set<string> }>();
  /** what kagome wrote, by path */
  private readonly mirrors = new Map<string, Buffer>();
  private saving: Promise<void> = Promise.resolve();

  constructor(
    /** the host folder in which a cage sees a document (the portal's by-app/APP/ID) */
    private readonly viewDir: (cage: string, id: string) => string,
    /** where the record of kagome's copies is kept (the runtime folder: gone at logout, with the cages) */
    private readonly recordFile: string,
    private readonly log: Logger,
  ) {
    try {
      const data = JSON.parse(fs.readFileSync(recordFile, 'utf8')) as {
        mirrors?: { path: string; content: string }[];
      };
      for (const m of data.mirrors ?? [])
        this.mirrors.set(m.path, Buffer.from(m.content, 'base64'));
    } catch {
      /* none yet */
    }
  }

  /** A cage has the host file read-write through the portal, as document `id`, while it runs. */
  add(cage: string, id: string, hostPath: Buffer): void {
    const slash = hostPath.lastIndexOf(0x2f);
    if (slash < 0) return;
    const dir = slash === 0 ? Buffer.from('/') : hostPath.subarray(0, slash);
    const name = hostPath.subarray(slash + 1);
    const k = key(hostPath);
    let doc = this.docs.get(k);
    if (!doc) {
      doc = {
        dir,
        name,
        lock: lockFileName(name),
        cages: new Map(),
        running: false,
        again: false,
        idle: Promise.resolve(),
      };
      this.docs.set(k, doc);
      this.watch(k, doc);
    }
    doc.cages.set(cage, id);
    this.sync(doc);
  }

  /**
   * The cage no longer has the document (revoked, or the cage stopped): its own lock file there
   * goes (a program of a stopped cage holds nothing), and so do the copies made from it.
   */
  async remove(cage: string, id: string): Promise<void> {
    for (const [k, doc] of this.docs) {
      if (doc.cages.get(cage) !== id) continue;
      doc.cages.delete(cage);
      const view = this.viewLock(cage, id, doc);
      await fsp.unlink(view).catch(() => undefined);
      this.forget(view);
      this.sync(doc);
      await doc.idle;
      if (doc.cages.size === 0) this.unwatch(k, doc);
    }
  }

  /** Every document of a cage that stopped. */
  async cageStopped(cage: string): Promise<void> {
    for (const doc of [...this.docs.values()]) {
      const id = doc.cages.get(cage);
      if (id !== undefined) await this.remove(cage, id);
    }
  }

  async close(): Promise<void> {
    for (const w of this.watchers.values()) w.watcher.close();
    this.watchers.clear();
    await Promise.all([...this.docs.values()].map((d) => d.idle));
    await this.saving;
  }

  private viewLock(cage: string, id: string, doc: Doc): Buffer {
    return Buffer.concat([Buffer.from(`${this.viewDir(cage, id)}/`), doc.lock]);
  }

  private hostLock(doc: Doc): Buffer {
    return Buffer.concat([
      doc.dir,
      Buffer.from(doc.dir.equals(Buffer.from('/')) ? '' : '/'),
      doc.lock,
    ]);
  }

  private watch(k: string, doc: Doc): void {
    const dk = key(doc.dir);
    let w = this.watchers.get(dk);
    if (!w) {
      let watcher: fs.FSWatcher;
      try {
        watcher = fs.watch(doc.dir, { encoding: 'buffer', persistent: false }, (_event, file) =>
          this.changed(dk, file),
        );
      } catch (e) {
        this.log.warn(
          `lock files: cannot watch ${doc.dir.toString()}: ${(e as Error).message}; a program's lock on a document there is not seen by others`,
        );
        return;
      }
      watcher.on('error', () => undefined);
      w = { watcher, docs: new Set() };
      this.watchers.set(dk, w);
    }
    w.docs.add(k);
  }

  private unwatch(k: string, doc: Doc): void {
    this.docs.delete(k);
    const dk = key(doc.dir);
    const w = this.watchers.get(dk);
    if (!w) return;
    w.docs.delete(k);
    if (w.docs.size === 0) {
      w.watcher.close();
      this.watchers.delete(dk);
    }
  }

  private changed(dk: string, file: Buffer | null): void {
    const w = this.watchers.get(dk);
    if (!w) return;
    for (const k of w.docs) {
      const doc = this.docs.get(k);
      if (doc && (!file || concernsLock(file, doc.lock))) this.sync(doc);
    }
  }

  /** One pass at a time per document; changes during a pass make one more. */
  private sync(doc: Doc): void {
    if (doc.running) {
      doc.again = true;
      return;
    }
    doc.running = true;
    doc.idle = (async () => {
      do {
        doc.again = false;
        await this.pass(doc).catch((e: Error) =>
          this.log.warn(`lock files of ${doc.dir.toString()}/${doc.name.toString()}: ${e.message}`),
        );
      } while (doc.again);
      doc.running = false;
    })();
  }

  private async pass(doc: Doc): Promise<void> {
    const sides: Side[] = [
      { file: this.hostLock(doc), host: true },
      ...[...doc.cages].map(([cage, id]) => ({ file: this.viewLock(cage, id, doc), host: false })),
    ];
    const states = await Promise.all(sides.map(readLock));
    const ours = (i: number) => {
      const s = states[i];
      return Buffer.isBuffer(s) && this.mirrors.get(key(sides[i]!.file))?.equals(s) === true;
    };
    const origin = states.findIndex((s, i) => Buffer.isBuffer(s) && !ours(i));
    let changed = false;
    for (let i = 0; i < sides.length; i++) {
      const side = sides[i]!;
      const file = side.file;
      const state = states[i];
      if (origin >= 0) {
        const content = states[origin] as Buffer;
        if (i === origin || (Buffer.isBuffer(state) && !ours(i)) || state === 'other') continue;
        if (Buffer.isBuffer(state) && state.equals(content)) continue;
        try {
          // A copy of ours is brought up to date; where there is none, one is made, never over a program's.
          await writeLock(side, content, state === undefined);
          this.mirrors.set(key(file), content);
          changed = true;
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          // EEXIST: a program made its own meanwhile (the next pass sees it); ENOENT: the grant is going.
          if (code !== 'EEXIST' && code !== 'ENOENT')
            this.log.warn(`lock files: cannot write ${file.toString()}: ${(e as Error).message}`);
        }
      } else if (ours(i)) {
        await fsp.unlink(file).catch(() => undefined);
        changed = this.forget(file) || changed;
      } else if (state === undefined) {
        changed = this.forget(file) || changed;
      }
    }
    if (changed) this.save();
  }

  private forget(file: Buffer): boolean {
    const had = this.mirrors.delete(key(file));
    if (had) this.save();
    return had;
  }

  private save(): void {
    const data = JSON.stringify({
      version: 1,
      mirrors: [...this.mirrors].map(([p, c]) => ({ path: p, content: c.toString('base64') })),
    });
    this.saving = this.saving.then(async () => {
      try {
        await fsp.mkdir(path.dirname(this.recordFile), { recursive: true, mode: 0o700 });
        const tmp = `${this.recordFile}.${process.pid}.tmp`;
        await fsp.writeFile(tmp, data, { mode: 0o600 });
        await fsp.rename(tmp, this.recordFile);
      } catch (e) {
        this.log.warn(`lock files: cannot keep ${this.recordFile}: ${(e as Error).message}`);
      }
    });
  }
}
