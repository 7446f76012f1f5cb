import fs, { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CAGE_SUFFIX, type CageStore } from './cage/store.js';
import type { CageManager } from './cage/manager.js';
import type { Notifier } from './notify.js';
import type { Logger } from './log.js';
import type { Env } from './runtime/paths.js';
import { baseDirs } from '../xdg/basedirs.js';
import { AppShadows, type SyncReport } from './desktop/app-shadows.js';
import { desktopFileId } from '../xdg/desktop-index.js';
import { sha256 } from './desktop/shadow.js';
import { BatchWatcher } from '../xdg/watcher.js';

// Programs in cages, as the desktop sees them: the shadow entries (xdg/app-shadows.ts) wired
// to kagome's cages, and, in the service, kept in sync with the originals and the cage files
// as they change on disk.

/**
 * The kagome-open that shadows run: the one installed with this kagome, by absolute path.
 * Not looked up in PATH: the CLI and a D-Bus-activated service see different PATHs, and each
 * would otherwise "correct" the other's shadows.
 */
export const KAGOME_OPEN = fileURLToPath(new URL('../../bin/kagome-open', import.meta.url));

export function appShadows(
  env: Env,
  store: CageStore,
  warn: (message: string) => void,
): AppShadows {
  const dirs = baseDirs(env);
  return new AppShadows({
    dataHome: dirs.dataHome,
    dataDirs: dirs.dataDirs.filter((d) => d !== dirs.dataHome),
    launcher: KAGOME_OPEN,
    nameFormat: async (cage) => (await store.read(cage)).appName,
    warn,
  });
}

export interface AppSyncDeps {
  shadows: AppShadows;
  store: CageStore;
  manager: CageManager;
  notifier: Notifier | undefined;
  log: Logger;
}

/**
 * The service's half: one full check at start (originals may have changed while it was not
 * running, e.g. an upgrade at boot), then a watcher on every applications folder and on the
 * cage folder. Nothing runs between changes: no timers, no polling.
 */
export class AppSync {
  private watcher: BatchWatcher | undefined;
  /** What was already told to the user, so a hand-edited shadow is reported once, not per event. */
  private readonly toldEdited = new Set<string>();
  private readonly appsDirs: string[];

  constructor(private readonly deps: AppSyncDeps) {
    this.appsDirs = deps.shadows.searchDirs.map((d) => path.join(d, 'applications'));
  }

  async start(): Promise<void> {
    const { shadows, store, log } = this.deps;
    await this.report(await shadows.sync());
    this.watcher = new BatchWatcher({
      accept: (p) => p.endsWith('.desktop') || p.endsWith(CAGE_SUFFIX),
      onBatch: (paths) => this.onBatch(paths),
      onError: (e) => log.warn(`watching applications and cage folders: ${e.message}`),
    });
    const dirs = [...this.appsDirs, store.dir].filter((d) => fs.existsSync(d));
    await this.watcher.start(dirs);
    log.info(`keeping menu entries in sync: watching ${dirs.join(', ')}`);
  }

  async stop(): Promise<void> {
    await this.watcher?.close();
  }

  private async onBatch(paths: ReadonlySet<string>): Promise<void> {
    const { shadows, store, manager } = this.deps;
    const ids = new Set<string>();
    const userFiles: string[] = [];
    let everything = false;
    for (const p of paths) {
      if (path.dirname(p) === store.dir) {
        if (p.endsWith(CAGE_SUFFIX)) await manager.configChanged(path.basename(p, CAGE_SUFFIX));
        everything = true; // a cage's AppName may have changed
      } else if (!p.endsWith('.desktop')) {
        everything = true; // a whole folder came or went
      } else if (path.dirname(p) === shadows.userApps) {
        userFiles.push(p);
      } else {
        for (const dir of this.appsDirs) {
          const id = desktopFileId(dir, p);
          if (id) ids.add(id);
        }
      }
    }
    const more = userFiles.length ? shadows.idsForPaths(userFiles) : new Set<string>();
    if (everything || !more) {
      await this.report(await shadows.sync());
      return;
    }
    for (const id of more) ids.add(id);
    if (ids.size) await this.report(await shadows.sync(ids));
  }

  private async report(r: SyncReport): Promise<void> {
    const { log, notifier } = this.deps;
    for (const x of r.updated)
      log.info(`cage ${x.cage}: updated ${x.path} from its changed original ${x.sourcePath}`);
    for (const x of r.dormant)
      log.info(
        `cage ${x.cage}: ${x.entryId} cannot be used any more (${x.reason}); its menu entry waits in ${x.path} until it can`,
      );
    for (const x of r.revived)
      log.info(`cage ${x.cage}: ${x.entryId} is installed again; its menu entry ${x.path} is back`);
    for (const x of r.problems)
      log.warn(`cage ${x.record.cage}: ${x.record.path} was not updated: ${x.reason}`);
    for (const x of r.edited) {
      // Told once per edited version: another edit is news, another event for the same one is not.
      const key = `${x.path}\0${await fsp.readFile(x.path).then(sha256, () => '')}`;
      if (this.toldEdited.has(key)) continue;
      this.toldEdited.add(key);
      const body = `${x.path} was edited by hand, so kagome did not update it from ${x.sourcePath}. To get updates again: kagome app add --force ${x.cage} ${x.entryId}`;
      log.warn(body);
      void notifier?.notify({
        summary: `Menu entry of ${x.entryId} not updated`,
        body,
        urgency: 'low',
        icon: 'dialog-warning',
      });
    }
    // Each replacement is reported by one sync only: the file is no shadow any more after it.
    for (const file of r.replaced) {
      const body = `${file} was replaced by an entry that does not go through a cage; programs started from it run unsandboxed. Put it back with 'kagome app add CAGE ${path.basename(file)}'`;
      log.warn(body);
      void notifier?.notify({
        summary: 'A caged program lost its cage',
        body,
        urgency: 'normal',
        icon: 'dialog-warning',
      });
    }
  }
}
