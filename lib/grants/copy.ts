import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { KagomeError } from '../errors.js';
import type { Logger } from '../log.js';
import { BatchWatcher } from '../../xdg/watcher.js';
import { shown, type HostFile } from './host-file.js';
import type { GrantStore, ProvidedGrant, RestoredGrant } from './grant.js';
import {
  copyFd,
  createFileBeneath,
  mkdirBeneath,
  openDirBeneath,
  openFileBeneath,
  openOwnDir,
  renameBeneath,
  sameContent,
} from './beneath.js';

/** The largest copy made or written back: a cage could otherwise fill the host's disk or the service's memory. */
export const COPY_LIMIT = 1024 * 1024 * 1024;

// The fallback where the document portal cannot serve (no FUSE here, or a backend whose
// daemon cannot reach a FUSE mount): each granted file is copied into the cage's file folder,
// and a writable one is written back to the host file when the copy changes. Writing back
// goes into the host file itself (same inode, so its mode, owner and ACLs stay), and only if
// it is still the file that was granted. What it cannot do, and says in the README: a change
// made on the host after the grant does not reach the copy, and a read-only copy is only
// protected by its mode (0400), which a program in the cage could change; the host file is
// never written for a read-only grant whatever happens to the copy.
//
// The cage can write its folder: it may put links, FIFOs and huge files where its copies were,
// and race every step. So nothing here follows a path under a cage's folder: each step opens
// one name beneath the descriptor of the folder above (beneath.ts), types are checked on the
// descriptor, and copies are streamed with a size limit.

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
      // A link a cage plants in its folder must not send the watcher across the host's tree.
      followSymlinks: false,
      onBatch: async (paths) => {
        const touched = new Set<Held>();
        for (const p of paths) {
          const [cage, id] = path.relative(this.root, p).split(path.sep);
          const h = cage && id ? this.held.get(key(cage, id)) : undefined;
          if (h?.writable) touched.add(h);
        }
        for (const h of touched)
          await this.writeBack(h).catch((e: Error) => this.log.warn(e.message));
      },
      onError: (e) => this.log.warn(`watching granted copies: ${e.message}`),
    });
    await this.watcher.start([this.root]);
  }

  /**
   * A copy belongs to whoever owns its cage's folder. That is the user, except where a backend
   * handed the folder to the container's own user (LXD without id shifting, as root): then the
   * copy must be that user's too, or the program in the cage could not open it. Everything is
   * done on descriptors: the cage can write its folder, so a path there may be a link by now.
   */
  private placeCopy(cageFd: number, idFd: number, fileFd: number, writable: boolean): void {
    fs.fchmodSync(fileFd, writable ? 0o600 : 0o400);
    const owner = fs.fstatSync(cageFd);
    if (owner.uid !== process.getuid?.() || owner.gid !== process.getgid?.()) {
      fs.fchownSync(idFd, owner.uid, owner.gid);
      fs.fchownSync(fileFd, owner.uid, owner.gid);
    }
  }

  /**
   * Make the grant's folder and its copy from `source` (a descriptor the service opened on
   * the host), beneath the cage's folder, never through anything the cage put there.
   */
  private makeCopy(
    h: { cage: string; id: string; name: Buffer; writable: boolean },
    source: number,
  ): void {
    const cageFd = openOwnDir(path.join(this.root, h.cage));
    let idFd: number | undefined;
    let fileFd: number | undefined;
    try {
      mkdirBeneath(cageFd, h.id, 0o700);
      idFd = openDirBeneath(cageFd, h.id);
      fileFd = createFileBeneath(idFd, h.name, 0o600);
      copyFd(source, fileFd, COPY_LIMIT, `the granted file ${shown(h.name)}`);
      this.placeCopy(cageFd, idFd, fileFd, h.writable);
    } catch (e) {
      if (fileFd !== undefined) fs.closeSync(fileFd);
      fileFd = undefined;
      this.discard(cageFd, h.id);
      throw e;
    } finally {
      if (fileFd !== undefined) fs.closeSync(fileFd);
      if (idFd !== undefined) fs.closeSync(idFd);
      fs.closeSync(cageFd);
    }
  }

  /**
   * Take a grant's folder away: renamed out of the cage's folder first (rename moves a link
   * itself, never what it points to), then removed where no cage can reach it, so a link
   * swapped in during the removal cannot point it at a host folder.
   */
  private discard(cageFd: number, id: string): void {
    const trash = `.discard-${id}-${randomBytes(4).toString('hex')}`;
    const rootFd = openOwnDir(this.root);
    try {
      renameBeneath(cageFd, id, rootFd, trash);
    } catch {
      return; // nothing there
    } finally {
      fs.closeSync(rootFd);
    }
    fs.rmSync(path.join(this.root, trash), { recursive: true, force: true });
  }

  async add(
    cage: string,
    files: readonly HostFile[],
    opts: { persistent: boolean },
  ): Promise<ProvidedGrant[]> {
    await this.folderFor(cage);
    const out: ProvidedGrant[] = [];
    for (const f of files) {
      const id = randomBytes(4).toString('hex');
      const name = Buffer.from(path.posix.basename(f.path.toString('latin1')), 'latin1');
      const h: Held = {
        cage,
        id,
        hostPath: f.path,
        name,
        writable: f.writable,
        dev: f.dev,
        ino: f.ino,
      };
      // Read through the held descriptor: the very file that was checked.
      const source = fs.openSync(
        `/proc/self/fd/${f.fd}`,
        fs.constants.O_RDONLY | fs.constants.O_NONBLOCK,
      );
      try {
        this.makeCopy(h, source);
      } finally {
        fs.closeSync(source);
      }
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
      this.log.warn(
        `granted file ${shown(g.hostPath)} is gone from the host; cage ${cage} keeps its last copy`,
      );
      return;
    }
    // The identity recorded at grant time, not whatever is at the path now: a file put in its
    // place since is never written to (writeBack compares with these).
    const dev = g.dev ?? st.dev;
    const ino = g.ino ?? st.ino;
    const same = st.isFile() && st.dev === dev && st.ino === ino;
    if (!same)
      this.log.warn(
        `granted file ${shown(g.hostPath)} was replaced on the host since it was granted to cage ${cage}; changes in the cage will not be written to it`,
      );
    const h: Held = {
      cage,
      id: g.id,
      hostPath: g.hostPath,
      name: g.name,
      writable: g.writable,
      dev,
      ino,
    };
    await this.folderFor(cage);
    if (same && !this.copyExists(h)) {
      const source = fs.openSync(
        g.hostPath,
        fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK,
      );
      try {
        const now = fs.fstatSync(source);
        if (now.dev === dev && now.ino === ino) {
          // Whatever the cage left at the grant's place (a link to a host folder, say) goes.
          const cageFd = openOwnDir(path.join(this.root, cage));
          try {
            this.discard(cageFd, g.id);
          } finally {
            fs.closeSync(cageFd);
          }
          this.makeCopy(h, source);
        }
      } finally {
        fs.closeSync(source);
      }
    }
    this.held.set(key(cage, g.id), h);
  }

  /** Whether the grant's copy is there as a regular file in a real folder. */
  private copyExists(h: Held): boolean {
    const cageFd = openOwnDir(path.join(this.root, h.cage));
    try {
      const idFd = openDirBeneath(cageFd, h.id);
      try {
        const fd = openFileBeneath(idFd, h.name);
        if (fd === undefined) return false;
        fs.closeSync(fd);
        return true;
      } finally {
        fs.closeSync(idFd);
      }
    } catch {
      return false;
    } finally {
      fs.closeSync(cageFd);
    }
  }

  /**
   * Copy the cage's version into the host file in place, if the host file is still the one
   * granted. The copy is read without following links and only if it is a regular file within
   * the size limit, in chunks; it is written only into the granted inode.
   */
  private async writeBack(h: Held): Promise<void> {
    const cageFd = openOwnDir(path.join(this.root, h.cage));
    let idFd: number | undefined;
    let copy: number | undefined;
    try {
      try {
        idFd = openDirBeneath(cageFd, h.id);
        copy = openFileBeneath(idFd, h.name);
      } catch (e) {
        throw new KagomeError(
          'NotPermitted',
          `cage ${h.cage}'s copy of ${shown(h.hostPath)} was not written back: ${e instanceof KagomeError ? e.message : `its folder is not a folder any more (${(e as Error).message})`}`,
        );
      }
      if (copy === undefined) return; // deleted or mid-rename in the cage: the next event brings the new file
      const size = fs.fstatSync(copy).size;
      if (size > COPY_LIMIT)
        throw new KagomeError(
          'NotPermitted',
          `cage ${h.cage}'s copy of ${shown(h.hostPath)} is ${size} bytes, over the ${COPY_LIMIT}-byte limit for copies; it was not written back`,
        );
      let fd: number;
      try {
        fd = fs.openSync(
          h.hostPath,
          fs.constants.O_RDWR | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK,
        );
      } catch (e) {
        throw new KagomeError(
          'Failed',
          `cannot write cage ${h.cage}'s changes back to ${shown(h.hostPath)}: ${(e as Error).message}; its copy stays in the cage`,
        );
      }
      try {
        const st = fs.fstatSync(fd);
        if (st.dev !== h.dev || st.ino !== h.ino) {
          throw new KagomeError(
            'Failed',
            `${shown(h.hostPath)} was replaced on the host after it was granted to cage ${h.cage}; its changes in the cage were not written back`,
          );
        }
        if (sameContent(fd, copy)) return;
        // In place, then cut to length: a failure halfway leaves the file as long as it was.
        const written = copyFd(
          copy,
          fd,
          COPY_LIMIT,
          `cage ${h.cage}'s copy of ${shown(h.hostPath)}`,
        );
        fs.ftruncateSync(fd, written);
      } finally {
        fs.closeSync(fd);
      }
    } finally {
      if (copy !== undefined) fs.closeSync(copy);
      if (idFd !== undefined) fs.closeSync(idFd);
      fs.closeSync(cageFd);
    }
  }

  async revoke(cage: string, grant: { id: string }): Promise<void> {
    const h = this.held.get(key(cage, grant.id));
    if (h?.writable) await this.writeBack(h).catch((e: Error) => this.log.warn(e.message));
    this.held.delete(key(cage, grant.id));
    let cageFd: number;
    try {
      cageFd = openOwnDir(path.join(this.root, cage));
    } catch {
      return;
    }
    try {
      this.discard(cageFd, grant.id);
    } finally {
      fs.closeSync(cageFd);
    }
  }

  async close(): Promise<void> {
    await this.watcher?.close();
    this.watcher = undefined;
  }
}

function key(cage: string, id: string): string {
  return `${cage}/${id}`;
}
