import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { KagomeError } from '../errors.js';
import type { Logger } from '../log.js';
import { BatchWatcher } from '../../xdg/watcher.js';
import { shown, type HostFile } from './host-file.js';
import type { GrantStore, ProvidedGrant, RestoredGrant } from './grant.js';

// The fallback where the document portal cannot serve (no FUSE here, or a backend whose
// daemon cannot reach a FUSE mount): each granted file is copied into the cage's file folder,
// and a writable one is written back to the host file when the copy changes. Writing back
// goes into the host file itself (same inode, so its mode, owner and ACLs stay), and only if
// it is still the file that was granted. What it cannot do, and says in the README: a change
// made on the host after the grant does not reach the copy, and a read-only copy is only
// protected by its mode (0400), which a program in the cage could change; the host file is
// never written for a read-only grant whatever happens to the copy.

interface Held {
  cage: string;
  id: string;
  hostPath: Buffer;
  name: Buffer;
  writable: boolean;
  dev: number;
  ino: number;
}

export class CopyStore implements GrantStore {
  readonly kind = 'copy' as const;
  private readonly held = new Map<string, Held>();
  private watcher: BatchWatcher | undefined;

  constructor(
    private readonly root: string,
    private readonly log: Logger,
  ) {}

  async folderFor(cage: string): Promise<string> {
    const dir = path.join(this.root, cage);
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    await this.watch();
    return dir;
  }

  private async watch(): Promise<void> {
    if (this.watcher) return;
    this.watcher = new BatchWatcher({
      accept: () => true,
      depth: 3,
      onBatch: async (paths) => {
        const touched = new Set<Held>();
        for (const p of paths) {
          const [cage, id] = path.relative(this.root, p).split(path.sep);
          const h = cage && id ? this.held.get(key(cage, id)) : undefined;
          if (h?.writable) touched.add(h);
        }
        for (const h of touched) await this.writeBack(h).catch((e: Error) => this.log.warn(e.message));
      },
      onError: (e) => this.log.warn(`watching granted copies: ${e.message}`),
    });
    await this.watcher.start([this.root]);
  }

  /**
   * A copy belongs to whoever owns its cage's folder. That is the user, except where a backend
   * handed the folder to the container's own user (LXD without id shifting, as root): then the
   * copy must be that user's too, or the program in the cage could not open it.
   */
  private async placeCopy(cage: string, id: string, file: Buffer, writable: boolean): Promise<void> {
    await fsp.chmod(file, writable ? 0o600 : 0o400);
    const owner = await fsp.stat(path.join(this.root, cage));
    if (owner.uid !== process.getuid?.() || owner.gid !== process.getgid?.()) {
      await fsp.chown(path.join(this.root, cage, id), owner.uid, owner.gid);
      await fsp.chown(file, owner.uid, owner.gid);
    }
  }

  private copyPath(h: { cage: string; id: string; name: Buffer }): Buffer {
    return Buffer.concat([Buffer.from(path.join(this.root, h.cage, h.id) + '/'), h.name]);
  }

  async add(cage: string, files: readonly HostFile[], opts: { persistent: boolean }): Promise<ProvidedGrant[]> {
    await this.folderFor(cage);
    const out: ProvidedGrant[] = [];
    for (const f of files) {
      const id = randomBytes(4).toString('hex');
      const name = Buffer.from(path.posix.basename(f.path.toString('latin1')), 'latin1');
      const h: Held = { cage, id, hostPath: f.path, name, writable: f.writable, dev: f.dev, ino: f.ino };
      await fsp.mkdir(path.join(this.root, cage, id), { mode: 0o700 });
      // Read through the held descriptor: the very file that was checked.
      await fsp.copyFile(`/proc/self/fd/${f.fd}`, this.copyPath(h));
      await this.placeCopy(cage, id, this.copyPath(h), f.writable);
      this.held.set(key(cage, id), h);
      out.push({ id, name });
    }
    void opts;
    return out;
  }

  async restore(cage: string, g: RestoredGrant): Promise<void> {
    let st: fs.Stats;
    try {
      // lstat: the recorded path is the file's own; a link there now is something else.
      st = fs.lstatSync(g.hostPath);
    } catch {
      this.log.warn(`granted file ${shown(g.hostPath)} is gone from the host; cage ${cage} keeps its last copy`);
      return;
    }
    // The identity recorded at grant time, not whatever is at the path now: a file put in its
    // place since is never written to (writeBack compares with these).
    const dev = g.dev ?? st.dev;
    const ino = g.ino ?? st.ino;
    const same = st.isFile() && st.dev === dev && st.ino === ino;
    if (!same) this.log.warn(`granted file ${shown(g.hostPath)} was replaced on the host since it was granted to cage ${cage}; changes in the cage will not be written to it`);
    const h: Held = { cage, id: g.id, hostPath: g.hostPath, name: g.name, writable: g.writable, dev, ino };
    await this.folderFor(cage);
    if (!fs.existsSync(this.copyPath(h)) && same) {
      await fsp.mkdir(path.join(this.root, cage, g.id), { recursive: true, mode: 0o700 });
      await fsp.copyFile(g.hostPath, this.copyPath(h), fs.constants.COPYFILE_EXCL);
      await this.placeCopy(cage, g.id, this.copyPath(h), g.writable);
    }
    this.held.set(key(cage, g.id), h);
  }

  /** Copy the cage's version into the host file in place, if the host file is still the one granted. */
  private async writeBack(h: Held): Promise<void> {
    let data: Buffer;
    try {
      data = await fsp.readFile(this.copyPath(h));
    } catch {
      return; // deleted or mid-rename in the cage: the next event brings the new file
    }
    let fd: number;
    try {
      fd = fs.openSync(h.hostPath, fs.constants.O_RDWR | fs.constants.O_NOFOLLOW);
    } catch (e) {
      throw new KagomeError('Failed', `cannot write cage ${h.cage}'s changes back to ${shown(h.hostPath)}: ${(e as Error).message}; its copy stays in the cage`);
    }
    try {
      const st = fs.fstatSync(fd);
      if (st.dev !== h.dev || st.ino !== h.ino) {
        throw new KagomeError('Failed', `${shown(h.hostPath)} was replaced on the host after it was granted to cage ${h.cage}; its changes in the cage were not written back`);
      }
      if (fs.readFileSync(fd).equals(data)) return;
      fs.ftruncateSync(fd, 0);
      fs.writeSync(fd, data, 0, data.length, 0);
    } finally {
      fs.closeSync(fd);
    }
  }

  async revoke(cage: string, grant: { id: string }): Promise<void> {
    const h = this.held.get(key(cage, grant.id));
    if (h?.writable) await this.writeBack(h).catch((e: Error) => this.log.warn(e.message));
    this.held.delete(key(cage, grant.id));
    await fsp.rm(path.join(this.root, cage, grant.id), { recursive: true, force: true });
  }

  async close(): Promise<void> {
    await this.watcher?.close();
    this.watcher = undefined;
  }
}

function key(cage: string, id: string): string {
  return `${cage}/${id}`;
}
