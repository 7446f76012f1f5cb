import fsp from 'node:fs/promises';
import path from 'node:path';
import { KagomeError, asKagomeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { SandboxSpec } from '../sandbox.js';
import type { Backend, FileGrantMode } from '../backends/backend.js';
import { DOC_DIR_NAME, type GrantStore } from './grant.js';
import { closeHostFiles, type HostFile } from './host-file.js';
import { CAGE_NAME_PATTERN } from '../cage/name.js';
import { LockMirror } from './lock-files.js';
import { libreOfficeOps } from './libreoffice.js';

// Which files each cage has been granted, kept on disk so that nothing outlives its reason:
// a grant ends when its cage stops, unless it was made persistent; a service killed with
// grants active finds their records at its next start and revokes those of cages that are no
// longer running. Transient records live in XDG_RUNTIME_DIR (gone at logout, as the cages
// are), persistent ones in XDG_DATA_HOME.

export interface Grant {
  id: string;
  cage: string;
  /** the host file, as bytes */
  hostPath: Buffer;
  /** the file's name in the cage */
  name: Buffer;
  /** where the cage sees the file */
  pathInCage: Buffer;
  writable: boolean;
  persistent: boolean;
  grantedAt: string;
  store: GrantStore['kind'];
  /** the host file's identity when granted (absent in records from before it was kept) */
  dev?: number;
  ino?: number;
}

/** A Grant as kept on disk: its bytes in base64, nothing derived from where the cage is. */
type StoredGrant = Omit<Grant, 'cage' | 'hostPath' | 'name' | 'pathInCage'> & {
  hostPath: string;
  name: string;
};

/** What the registry asks of a cage's backend. */
export type GrantBackend = Pick<Backend, 'kind' | 'fileGrants'>;

export interface GrantDirs {
  transient: string;
  persistent: string;
}

/** Where a cage sees its granted files: <its runtime dir>/doc, flatpak's place for them. */
export function docDirInCage(spec: Pick<SandboxSpec, 'runtimeDir'>): string {
  return path.posix.join(spec.runtimeDir, DOC_DIR_NAME);
}

export class FileGrants {
  private readonly writes = new Map<string, Promise<void>>();
  /** cages whose backend cannot reach the document portal's FUSE mount: they get copies */
  private readonly copyCages = new Set<string>();
  /** cages on another machine, which no file of this one can reach: why, by cage */
  private readonly unreachable = new Map<string, string>();
  private copies: GrantStore | undefined;
  private readonly toldCopies = new Set<string>();
  /** cages whose programs see granted files as the host files themselves (the portal): lock files are carried for them */
  private readonly portalCages = new Set<string>();
  private locks: LockMirror | undefined;
  private toldLibreOffice = false;

  constructor(
    /** chosen at service start without holding it up: the portal may need activating */
    private readonly storeReady: Promise<GrantStore>,
    /** the copy store, made when a cage first needs it (a backend that cannot reach FUSE) */
    private readonly copyFallback: () => GrantStore,
    private readonly dirs: GrantDirs,
    /** the cage's runtime dir as the cage sees it (grants are listed without the cage running) */
    private readonly runtimeDirInCage: string,
    private readonly log: Logger,
  ) {}

  private fileOf(cage: string, persistent: boolean): string {
    return path.join(persistent ? this.dirs.persistent : this.dirs.transient, `${cage}.json`);
  }

  private async read(cage: string, persistent: boolean): Promise<StoredGrant[]> {
    try {
      const data = JSON.parse(await fsp.readFile(this.fileOf(cage, persistent), 'utf8')) as {
        grants?: StoredGrant[];
      };
      return Array.isArray(data.grants) ? data.grants : [];
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
        this.log.warn(
          `grant records ${this.fileOf(cage, persistent)} cannot be read (${(e as Error).message}); treating them as empty`,
        );
      return [];
    }
  }

  /** Read-modify-write of one record file, one at a time per file. */
  private update(
    cage: string,
    persistent: boolean,
    fn: (grants: StoredGrant[]) => StoredGrant[],
  ): Promise<void> {
    const file = this.fileOf(cage, persistent);
    const next = (this.writes.get(file) ?? Promise.resolve())
      .catch(() => undefined)
      .then(async () => {
        const before = await this.read(cage, persistent);
        const grants = fn(before);
        // Every grant touches both record files (a grant moves between them); most calls change
        // only one, and a launch with files should not write the other for nothing.
        if (JSON.stringify(grants) === JSON.stringify(before)) return;
        if (grants.length === 0) {
          await fsp.rm(file, { force: true });
          return;
        }
        await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
        const tmp = `${file}.${process.pid}.tmp`;
        await fsp.writeFile(tmp, JSON.stringify({ version: 1, cage, grants }, null, 2) + '\n', {
          mode: 0o600,
        });
        await fsp.rename(tmp, file);
      });
    this.writes.set(file, next);
    return next;
  }

  private toGrant(cage: string, s: StoredGrant): Grant {
    const name = Buffer.from(s.name, 'base64');
    return {
      id: s.id,
      cage,
      hostPath: Buffer.from(s.hostPath, 'base64'),
      name,
      pathInCage: Buffer.concat([
        Buffer.from(`${docDirInCage({ runtimeDir: this.runtimeDirInCage })}/${s.id}/`),
        name,
      ]),
      writable: s.writable,
      persistent: s.persistent,
      ...(s.dev !== undefined && s.ino !== undefined ? { dev: s.dev, ino: s.ino } : {}),
      grantedAt: s.grantedAt,
      store: s.store,
    };
  }

  private copyStore(preferred: GrantStore): GrantStore {
    if (preferred.kind === 'copy') return preferred;
    this.copies ??= this.copyFallback();
    return this.copies;
  }

  /** The store serving a cage: the preferred one, or copies for a cage whose backend cannot reach FUSE. */
  private async storeFor(cage: string): Promise<GrantStore> {
    const preferred = await this.storeReady;
    return this.copyCages.has(cage) ? this.copyStore(preferred) : preferred;
  }

  /** The store that made a grant, by the kind its record names; none when this service has no such store. */
  private async storeOfKind(kind: GrantStore['kind']): Promise<GrantStore | undefined> {
    const preferred = await this.storeReady;
    if (kind === preferred.kind) return preferred;
    return kind === 'copy' ? this.copyStore(preferred) : undefined;
  }

  /**
   * A cage runs (or is re-adopted) on a backend that cannot reach the document portal's FUSE
   * mount (a container engine's daemon, which the portal refuses): its grants are copies.
   * Said once per backend, by name, in the log.
   */
  private async useCopiesFor(cage: string, backend: string): Promise<void> {
    const preferred = await this.storeReady;
    this.copyCages.add(cage);
    if (preferred.kind !== 'copy' && !this.toldCopies.has(backend)) {
      this.toldCopies.add(backend);
      this.log.info(
        `file grants: ${backend} cannot mount the document portal's FUSE folder into its containers; files granted to ${backend} cages are copied in and written back when changed`,
      );
    }
  }

  /** A running cage found again after a restart: its grants are served by the store it started with. */
  async cageAdopted(cage: string, backend: GrantBackend, spec: SandboxSpec): Promise<void> {
    if ((await this.serveWith(cage, backend, spec)) === 'portal')
      await this.carryLocks(cage, await this.list(cage));
  }

  /** The lock files beside the cage's read-write documents are carried (lock-files.ts), where its store shows the host files. */
  private async carryLocks(cage: string, grants: readonly Grant[]): Promise<void> {
    const store = await this.storeFor(cage);
    if (!store.documentFolder) return;
    this.portalCages.add(cage);
    // In a folder of its own (so is LibreOffice's script): a NAME.json beside the records is cage NAME's.
    this.locks ??= new LockMirror(
      (c, id) => store.documentFolder!(c, id),
      path.join(this.dirs.transient, 'lock-files', 'copies.json'),
      this.log,
    );
    for (const g of grants)
      if (g.writable && g.store === store.kind) this.locks.add(cage, g.id, g.hostPath);
  }

  /** Which store serves the cage, from what its backend can mount. */
  private async serveWith(
    cage: string,
    backend: GrantBackend,
    spec: SandboxSpec,
  ): Promise<FileGrantMode> {
    const mode = backend.fileGrants(spec);
    this.unreachable.delete(cage);
    if (mode === 'portal') this.copyCages.delete(cage);
    else if (mode === 'copies') await this.useCopiesFor(cage, backend.kind);
    else
      this.unreachable.set(
        cage,
        `cage "${cage}" runs on another machine (${backend.kind} remote ${spec.remote ?? ''}), which no file of this one can reach; copy files into it with 'lxc file push'`,
      );
    return mode;
  }

  /** Grant files to a cage. The files' descriptors are closed whatever happens. */
  async add(
    cage: string,
    files: readonly HostFile[],
    opts: { persistent: boolean },
  ): Promise<Grant[]> {
    try {
      const unreachable = this.unreachable.get(cage);
      if (unreachable) throw new KagomeError('NotSupported', unreachable);
      const store = await this.storeFor(cage);
      const provided = await store.add(cage, files, opts);
      const now = new Date().toISOString();
      const stored = provided.map((p, i): StoredGrant => ({
        id: p.id,
        hostPath: files[i]!.path.toString('base64'),
        name: p.name.toString('base64'),
        writable: files[i]!.writable,
        dev: files[i]!.dev,
        ino: files[i]!.ino,
        persistent: opts.persistent,
        grantedAt: now,
        store: store.kind,
      }));
      const ids = new Set(stored.map((s) => s.id));
      // The same file granted again replaces its earlier grant (the portal reuses the document).
      await this.update(cage, opts.persistent, (old) => [
        ...old.filter((g) => !ids.has(g.id)),
        ...stored,
      ]);
      await this.update(cage, !opts.persistent, (old) => old.filter((g) => !ids.has(g.id)));
      this.log.info(
        `cage ${cage}: granted ${stored.length} file(s) ${opts.persistent ? 'persistently' : 'until it stops'}`,
      );
      const granted = stored.map((s) => this.toGrant(cage, s));
      if (this.portalCages.has(cage)) await this.carryLocks(cage, granted);
      return granted;
    } finally {
      closeHostFiles(files);
    }
  }

  async list(cage: string): Promise<Grant[]> {
    const all = [...(await this.read(cage, true)), ...(await this.read(cage, false))];
    return all.map((s) => this.toGrant(cage, s));
  }

  async revoke(cage: string, ids: readonly string[]): Promise<void> {
    const grants = await this.list(cage);
    const unknown = ids.filter((id) => !grants.some((g) => g.id === id));
    if (unknown.length) {
      throw new KagomeError(
        'InvalidArgument',
        `cage "${cage}" has no grant ${unknown.map((u) => JSON.stringify(u)).join(', ')}; 'kagome grants ${cage}' lists its grants`,
      );
    }
    for (const g of grants.filter((x) => ids.includes(x.id))) await this.drop(cage, g);
  }

  private async drop(cage: string, g: Grant): Promise<void> {
    await this.locks?.remove(cage, g.id);
    await (await this.storeOfKind(g.store))?.revoke(cage, g);
    await this.update(cage, g.persistent, (old) => old.filter((s) => s.id !== g.id));
  }

  /** Called before a cage starts: its file folder joins the sandbox, persistent grants are brought back. */
  async cageStarting(
    cage: string,
    spec: SandboxSpec,
    backend: GrantBackend = { kind: 'bubblewrap', fileGrants: () => 'portal' },
  ): Promise<void> {
    if ((await this.serveWith(cage, backend, spec)) === 'none') {
      this.log.info(`${this.unreachable.get(cage)}: its file folder stays empty`);
      return;
    }
    const store = await this.storeFor(cage);
    const folder = await store.folderFor(cage);
    spec.ops.push({ op: 'bind', source: folder, dest: docDirInCage(spec) });
    // A cage on the host's /usr runs the host's LibreOffice, whose start script turns on fcntl
    // locks, which the portal refuses (libreoffice.ts).
    if (store.documentFolder && backend.kind === 'bubblewrap') {
      const lo = libreOfficeOps(path.join(this.dirs.transient, 'programs'));
      spec.ops.push(...lo.ops);
      if (lo.note && !this.toldLibreOffice) {
        this.toldLibreOffice = true;
        this.log.info(lo.note);
      }
    }
    for (const g of await this.list(cage)) {
      if (!g.persistent) continue;
      if (g.store !== store.kind) {
        // Granted while the cage ran on a backend served by the other store: it moves over.
        await (await this.storeOfKind(g.store))?.revoke(cage, g).catch(() => undefined);
        await this.moveGrant(cage, g, store);
      } else if (store.restore) {
        await store
          .restore(cage, g)
          .catch((e) => this.log.warn(`cage ${cage}: ${asKagomeError(e).message}`));
      }
    }
    await this.carryLocks(cage, await this.list(cage));
  }

  private async moveGrant(cage: string, g: Grant, store: GrantStore): Promise<void> {
    if (!store.restore) return;
    try {
      await store.restore(cage, {
        id: g.id,
        hostPath: g.hostPath,
        name: g.name,
        writable: g.writable,
        ...(g.dev !== undefined && g.ino !== undefined ? { dev: g.dev, ino: g.ino } : {}),
      });
      await this.update(cage, true, (old) =>
        old.map((s) => (s.id === g.id ? { ...s, store: store.kind } : s)),
      );
    } catch (e) {
      this.log.warn(
        `cage ${cage}: grant ${g.id} could not be carried over: ${asKagomeError(e).message}`,
      );
    }
  }

  /** Called when a cage has stopped: its transient grants end. */
  async cageStopped(cage: string): Promise<void> {
    // Nothing of the cage runs: what its programs left beside its documents (a lock file of a
    // program that was killed) is stale, persistent grants included.
    if (this.portalCages.delete(cage)) {
      for (const g of await this.list(cage)) {
        await (await this.storeOfKind(g.store))?.clearBeside?.(cage, g).catch(() => undefined);
      }
      await this.locks?.cageStopped(cage);
    }
    const transient = (await this.read(cage, false)).map((s) => this.toGrant(cage, s));
    for (const g of transient) {
      await this.drop(cage, g).catch((e) =>
        this.log.warn(`cage ${cage}: revoking ${g.id}: ${asKagomeError(e).message}`),
      );
    }
    if (transient.length)
      this.log.info(`cage ${cage}: ${transient.length} grant(s) ended with the cage`);
  }

  /**
   * At service start, after running cages were re-adopted: grants of cages that stopped while
   * no service watched are revoked; those of running cages are taken up again.
   */
  async recover(running: ReadonlySet<string>): Promise<void> {
    const namesIn = async (dir: string): Promise<string[]> => {
      try {
        return (await fsp.readdir(dir))
          .filter((f) => f.endsWith('.json'))
          .map((f) => f.slice(0, -5))
          .filter((n) => CAGE_NAME_PATTERN.test(n));
      } catch {
        return [];
      }
    };
    const transient = await namesIn(this.dirs.transient);
    for (const cage of transient) if (!running.has(cage)) await this.cageStopped(cage);
    // A running cage's grants are taken up again, its persistent ones too, whether or not it
    // also has transient ones.
    const persistent = await namesIn(this.dirs.persistent);
    for (const cage of new Set([...transient, ...persistent])) {
      if (!running.has(cage)) continue;
      for (const g of await this.list(cage)) {
        await (await this.storeOfKind(g.store))?.restore?.(cage, g).catch(() => undefined);
      }
    }
  }

  async close(): Promise<void> {
    await this.locks?.close();
    await Promise.all(this.writes.values());
    await (await this.storeReady).close();
    await this.copies?.close();
  }
}
