import { KagomeError } from './errors.js';
import { checkCageName } from './cage/name.js';
import type { CageStore } from './cage/store.js';
import type { Launcher, OpenResult } from './launcher.js';
import {
  adoptPassedFd,
  closeFds,
  closeHostFiles,
  openHostPaths,
  type HostFile,
} from './grants/host-file.js';
import type { FileGrants, Grant } from './grants/registry.js';
import { fileUriToPathBytes } from '../xdg/exec.js';

// The engine behind io.kagome.Files1 and `kagome open`/`kagome grant`: files chosen on the
// host, by descriptor or path, granted to a cage and optionally opened there.

export interface FilesOptions {
  writable?: boolean;
  persistent?: boolean;
  open?: boolean;
  app?: string;
  followSymlinks?: boolean;
  startupId?: string;
}

export class FilesService {
  constructor(
    private readonly launcher: Launcher,
    private readonly grants: FileGrants,
    private readonly store: CageStore,
  ) {}

  private async checkCage(cage: string): Promise<void> {
    checkCageName(cage);
    if (!(await this.store.exists(cage)))
      throw new KagomeError(
        'NoSuchCage',
        `no cage named "${cage}"; 'kagome cage list' shows the cages`,
      );
  }

  /** Descriptors passed by a caller; every one is closed whatever happens. */
  async grantFds(cage: string, fds: readonly number[], opts: FilesOptions): Promise<OpenResult> {
    const files: HostFile[] = [];
    // adoptPassedFd closes each descriptor it is given; the ones not reached are closed here.
    let next = 0;
    try {
      await this.checkCage(cage);
      for (; next < fds.length;) files.push(adoptPassedFd(fds[next++]!, opts.writable ?? false));
    } catch (e) {
      closeHostFiles(files);
      closeFds(fds.slice(next));
      throw e;
    }
    return this.finish(cage, files, opts);
  }

  async grantPaths(
    cage: string,
    paths: readonly Buffer[],
    opts: FilesOptions,
  ): Promise<OpenResult> {
    await this.checkCage(cage);
    return this.finish(
      cage,
      this.openAll(paths, opts.writable ?? false, opts.followSymlinks ?? false),
      opts,
    );
  }

  /** file:// URIs (and absolute paths) picked by a person: links followed, writable where the user may write. */
  async openUris(cage: string, uris: readonly string[], opts: FilesOptions): Promise<OpenResult> {
    await this.checkCage(cage);
    const paths = uris.map((u) => {
      const p = u.startsWith('/') ? Buffer.from(u) : fileUriToPathBytes(u);
      if (!p)
        throw new KagomeError(
          'NotSupported',
          `${JSON.stringify(u)} is not a local file; only files can be opened without naming a program (Launcher1.Launch passes other URIs to an app)`,
        );
      return p;
    });
    const files = this.openAll(paths, opts.writable ?? 'auto', true);
    return this.finish(cage, files, { ...opts, open: opts.open ?? true });
  }

  private openAll(
    paths: readonly Buffer[],
    writable: boolean | 'auto',
    followSymlinks: boolean,
  ): HostFile[] {
    if (paths.length === 0) throw new KagomeError('InvalidArgument', 'no files given');
    return openHostPaths(paths, { followSymlinks, writable });
  }

  private finish(cage: string, files: HostFile[], opts: FilesOptions): Promise<OpenResult> {
    return this.launcher.openFiles(cage, files, {
      open: opts.open === true || opts.app !== undefined,
      persistent: opts.persistent ?? false,
      ...(opts.app !== undefined ? { app: opts.app } : {}),
      ...(opts.startupId ? { startupId: opts.startupId } : {}),
    });
  }

  async list(cage: string): Promise<Grant[]> {
    await this.checkCage(cage);
    return this.grants.list(cage);
  }

  async revoke(cage: string, ids: readonly string[]): Promise<void> {
    checkCageName(cage);
    await this.grants.revoke(cage, ids);
  }
}
