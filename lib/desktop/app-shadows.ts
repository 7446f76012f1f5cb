// The shadow entries on disk: adding a program to a cage, removing it, listing, and bringing
// shadows up to date when their originals change.
//
// The shadow files are the only record of which program is in which cage: there is no
// second list to drift from what menus actually show. Where things live:
//   $XDG_DATA_HOME/applications/ID                  the shadow of the program's first cage
//   $XDG_DATA_HOME/applications/kagome-CAGE-ID      its shadows for further cages
//   $XDG_DATA_HOME/kagome/originals/applications/ID the user's own entry that a shadow had to
//                                                    replace (it had the same path); put back
//                                                    on removal
//   $XDG_DATA_HOME/kagome/dormant/NAME              shadows whose original was uninstalled;
//                                                    out of the menus, and put back when the
//                                                    original returns, so a reinstalled program
//                                                    never silently escapes its cage
// All writes are a rename of a complete file, so menus never read half a shadow.

import fs, { promises as fsp } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { KagomeError, asKagomeError } from '../errors.js';
import { findInPath, missingProgramError } from '../requirements.js';
import { Keyfile } from '../../xdg/keyfile.js';
import { removeCageEntry } from './cage-entry.js';
import {
  DesktopIndex,
  mapLimit,
  type DesktopEntryRef,
  type IndexProblem,
  type ProgramExists,
} from '../../xdg/desktop-index.js';
import {
  makeShadow,
  readShadow,
  isShadow,
  sha256,
  SHADOW_KEYS,
  type ShadowInfo,
} from './shadow.js';
import { writeAtomically } from './write-atomically.js';

export type AppState = 'active' | 'edited' | 'dormant';

export interface AppRecord {
  cage: string;
  /** The original's desktop file ID. */
  entryId: string;
  /** The shadow's own ID: the original's for the first cage, kagome-CAGE-ID for others. */
  shadowId: string;
  /** Where the shadow file is now. */
  path: string;
  primary: boolean;
  /** active: in the menus and current; edited: in the menus, changed by hand, left alone;
   *  dormant: its original is gone, so it waits outside the menus. */
  state: AppState;
  sourcePath: string;
}

export interface SyncReport {
  /** Rewritten because the original, or the cage's name format, changed. */
  updated: AppRecord[];
  /** Original gone (or no longer usable, said in `reason`): taken out of the menus. */
  dormant: (AppRecord & { reason: string })[];
  /** Original back: in the menus again. */
  revived: AppRecord[];
  /** Edited by hand and left alone although the original changed (a change of the cage's
   *  AppName alone does not count: it is not worth a warning). */
  edited: AppRecord[];
  /** Shadow files that some other program replaced with an entry that bypasses the cage. */
  replaced: string[];
  /** Shadows that could not be brought up to date, and why. */
  problems: { record: AppRecord; reason: string }[];
}

export interface AppShadowsOptions {
  /** $XDG_DATA_HOME */
  dataHome: string;
  /** $XDG_DATA_DIRS, in precedence order, without dataHome. */
  dataDirs: readonly string[];
  /** The kagome-open command written into shadows' Exec lines. */
  launcher: string;
  /** The cage's name format for menus; throws NoSuchCage for a cage that does not exist. */
  nameFormat(cage: string): Promise<string>;
  /** Refreshes the MIME cache of an applications folder; update-desktop-database by default. */
  updateDatabase?(dir: string): Promise<void>;
  /** Told about problems that do not undo the change (a MIME cache that could not be refreshed). */
  warn?(message: string): void;
  programExists?: ProgramExists;
}

const SUFFIX = '.desktop';
const IO_CONCURRENCY = 16;

interface CachedEntry {
  /** inode, size and mtime when read */
  key: string;
  text: string;
  info: ShadowInfo | undefined;
}
const SECONDARY_PREFIX = 'kagome-';
const MIME_CACHE = 'mimeinfo.cache';

export function secondaryId(cage: string, entryId: string): string {
  return `${SECONDARY_PREFIX}${cage}-${entryId}`;
}

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch {
    return false;
  }
}

async function readText(p: string): Promise<string | undefined> {
  try {
    return await fsp.readFile(p, 'utf8');
  } catch {
    return undefined;
  }
}

/** update-desktop-database on one folder; a missing tool costs only MIME cache freshness. */
export async function runUpdateDesktopDatabase(dir: string): Promise<void> {
  const tool = findInPath('update-desktop-database');
  if (!tool)
    throw missingProgramError(
      'update-desktop-database',
      'to refresh the MIME cache after menu entries change',
    );
  const r = await execa(tool, ['-q', dir], { reject: false, stdin: 'ignore' });
  if (r.exitCode !== 0)
    throw new KagomeError(
      'Failed',
      `update-desktop-database ${dir} failed: ${String(r.stderr || r.stdout).trim()}`,
    );
}

export class AppShadows {
  readonly userApps: string;
  readonly originalsApps: string;
  readonly dormantDir: string;
  private readonly stateDir: string;
  private readonly index: DesktopIndex;
  /** Active shadows seen by the last sync, to notice one replaced behind kagome's back. */
  private lastSeen = new Map<string, AppRecord>();
  private readonly cache = new Map<string, CachedEntry>();

  constructor(private readonly opts: AppShadowsOptions) {
    this.userApps = path.join(opts.dataHome, 'applications');
    this.stateDir = path.join(opts.dataHome, 'kagome');
    const originalsData = path.join(this.stateDir, 'originals');
    this.originalsApps = path.join(originalsData, 'applications');
    this.dormantDir = path.join(this.stateDir, 'dormant');
    // Displaced user entries first: they were the user's override of everything below.
    this.index = new DesktopIndex({
      dataDirs: [originalsData, opts.dataHome, ...opts.dataDirs],
      ...(opts.programExists ? { programExists: opts.programExists } : {}),
    });
  }

  /** Every folder whose applications/ can hold an original, in precedence order. */
  get searchDirs(): readonly string[] {
    return this.index.dataDirs;
  }

  /** The original entry behind an ID: never a shadow. */
  async resolveOriginal(id: string): Promise<DesktopEntryRef | undefined> {
    return this.index.lookup(id, { skip: isShadow });
  }

  /** Like resolveOriginal, but a missing original is an error that says why. */
  async requireOriginal(id: string): Promise<DesktopEntryRef> {
    const { entry, problems } = await this.index.find(id, { skip: isShadow });
    if (entry) return entry;
    const why = problems.map(problemText).join('; ');
    throw new KagomeError(
      'NoSuchApp',
      why
        ? `${id} cannot be used: ${why}`
        : `no application ${id} is installed (looked in the applications folders of ${this.index.dataDirs.slice(1).join(', ')})`,
    );
  }

  /** Every shadow, in the menus or dormant, sorted by original ID then cage. */
  async list(): Promise<AppRecord[]> {
    const out: AppRecord[] = [];
    for (const [dir, dormant] of [
      [this.userApps, false],
      [this.dormantDir, true],
    ] as const) {
      let names: string[];
      try {
        names = (await fsp.readdir(dir)).filter((n) => n.endsWith(SUFFIX));
      } catch {
        continue;
      }
      const read = await mapLimit(names, IO_CONCURRENCY, async (name) => ({
        name,
        file: path.join(dir, name),
        entry: await this.readEntry(path.join(dir, name)),
      }));
      for (const { name, file, entry } of read) {
        const info = entry?.info;
        if (!info) continue;
        out.push({
          cage: info.cage,
          entryId: info.entryId,
          shadowId: name,
          path: file,
          primary: name === info.entryId,
          state: dormant ? 'dormant' : info.intact ? 'active' : 'edited',
          sourcePath: info.sourcePath,
        });
      }
    }
    return out.sort((a, b) =>
      a.entryId === b.entryId ? cmp(a.cage, b.cage) : cmp(a.entryId, b.entryId),
    );
  }

  /**
   * The original IDs whose shadows changed paths may concern, for a targeted sync; undefined
   * when only a full check will do (a path kagome cannot place).
   */
  idsForPaths(paths: Iterable<string>): Set<string> | undefined {
    const ids = new Set<string>();
    for (const p of paths) {
      if (
        !p.endsWith(SUFFIX) ||
        (path.dirname(p) !== this.userApps && path.dirname(p) !== this.dormantDir)
      )
        return undefined;
      // A primary shadow (or the user's own entry) is named by its ID; a secondary is known
      // by what it said when last read.
      ids.add(path.basename(p));
      const known = this.lastSeen.get(p)?.entryId ?? this.cache.get(p)?.info?.entryId;
      if (known) ids.add(known);
    }
    return ids;
  }

  /** The shadow text `add` would install, without installing anything. */
  async preview(cage: string, id: string): Promise<string> {
    const records = await this.list();
    const original = await this.requireOriginal(id);
    const primary = !records.some((r) => r.entryId === id && r.primary && r.cage !== cage);
    return this.render(cage, id, original, this.sourcePathAfterAdd(original, primary));
  }

  /**
   * Put a program in a cage. Adding it again to the same cage brings the shadow up to date;
   * a shadow edited by hand is only replaced with `force`.
   */
  async add(cage: string, id: string, opts: { force?: boolean } = {}): Promise<AppRecord> {
    const records = await this.list();
    const mine = records.find((r) => r.entryId === id && r.cage === cage);
    if (mine?.state === 'edited' && !opts.force) {
      throw new KagomeError(
        'NotPermitted',
        `${mine.path} was edited by hand; kagome leaves it alone. Add --force to replace your edits with a fresh shadow`,
      );
    }
    const original = await this.requireOriginal(id);
    const primary = mine ? mine.primary : !records.some((r) => r.entryId === id && r.primary);
    const sourcePath = this.sourcePathAfterAdd(original, primary);
    // Rendered before anything moves, so a program that cannot be caged changes nothing.
    const text = await this.render(cage, id, original, sourcePath);
    if (sourcePath !== original.path) {
      await fsp.mkdir(this.originalsApps, { recursive: true });
      await fsp.rename(original.path, sourcePath);
    }
    const shadowId = primary ? id : secondaryId(cage, id);
    const file = path.join(this.userApps, shadowId);
    await fsp.mkdir(this.userApps, { recursive: true });
    await writeAtomically(file, text);
    if (mine?.state === 'dormant') await fsp.rm(mine.path, { force: true });
    await this.refreshDatabase();
    const record: AppRecord = {
      cage,
      entryId: id,
      shadowId,
      path: file,
      primary,
      state: 'active',
      sourcePath,
    };
    this.lastSeen.set(file, record);
    return record;
  }

  /**
   * Take a program out of a cage. When it was the first cage and others remain, the next one
   * takes over the ID; when no cage remains, the desktop is as it was before: the user's own
   * entry is put back if a shadow had displaced it.
   */
  async remove(
    cage: string,
    id: string,
  ): Promise<{ removed: AppRecord; restored?: string; promoted?: AppRecord }> {
    const records = await this.list();
    const mine = records.find((r) => r.entryId === id && r.cage === cage);
    if (!mine) {
      const cages = records.filter((r) => r.entryId === id).map((r) => r.cage);
      throw new KagomeError(
        'NoSuchApp',
        `${id} is not in cage ${cage}${cages.length ? `; it is in: ${cages.join(', ')}` : ''} ('kagome app list' shows every program and its cage)`,
      );
    }
    const others = records.filter(
      (r) => r.entryId === id && r.cage !== cage && r.state !== 'dormant',
    );
    let promoted: AppRecord | undefined;
    let restored: string | undefined;
    if (mine.primary && mine.state !== 'dormant' && others.length > 0) {
      const next = others[0]!;
      const original = await this.resolveOriginal(id);
      if (original) {
        const file = path.join(this.userApps, id);
        await writeAtomically(file, await this.render(next.cage, id, original, original.path));
        await fsp.rm(next.path, { force: true });
        promoted = {
          ...next,
          shadowId: id,
          path: file,
          primary: true,
          state: 'active',
          sourcePath: original.path,
        };
        this.lastSeen.delete(next.path);
        this.lastSeen.set(file, promoted);
      }
    }
    if (!promoted) await fsp.rm(mine.path, { force: true });
    this.lastSeen.delete(mine.path);
    const backup = path.join(this.originalsApps, id);
    const target = path.join(this.userApps, id);
    if (!promoted && mine.primary && (await exists(backup)) && !(await exists(target))) {
      await fsp.rename(backup, target);
      restored = target;
    }
    await this.refreshDatabase();
    return { removed: mine, ...(restored ? { restored } : {}), ...(promoted ? { promoted } : {}) };
  }

  /** Take every program out of a cage (the cage is being removed). */
  async removeCage(cage: string): Promise<AppRecord[]> {
    const removed: AppRecord[] = [];
    for (const r of await this.list()) {
      if (r.cage === cage) removed.push((await this.remove(cage, r.entryId)).removed);
    }
    await removeCageEntry(this.opts.dataHome, cage);
    return removed;
  }

  /**
   * Bring shadows up to date with their originals and cages. With `ids`, only shadows of
   * those original IDs are checked (what the watcher saw change); without, all of them.
   */
  async sync(ids?: ReadonlySet<string>): Promise<SyncReport> {
    const report: SyncReport = {
      updated: [],
      dormant: [],
      revived: [],
      edited: [],
      replaced: [],
      problems: [],
    };
    const records = await this.list();
    const active = new Map(records.filter((r) => r.state !== 'dormant').map((r) => [r.path, r]));
    for (const [file, before] of this.lastSeen) {
      if (active.has(file) || (ids && !ids.has(before.entryId))) continue;
      const now = await readText(file);
      // A non-shadow at a shadow's path bypasses the cage, unless it is the user's own entry
      // that `kagome app remove` put back (its backup is then gone).
      if (
        now !== undefined &&
        !(
          before.sourcePath.startsWith(this.originalsApps + '/') &&
          !(await exists(before.sourcePath))
        )
      ) {
        report.replaced.push(file);
      }
    }
    const todo = records.filter((r) => !ids || ids.has(r.entryId));
    // Checking everything: one pass over the folders beats a lookup per shadow.
    const originals =
      !ids && todo.length > 0 ? (await this.index.scan({ skip: isShadow })).entries : undefined;
    const nameFormats = new Map<string, Promise<string>>();
    const formatOf = (cage: string): Promise<string> => {
      let f = nameFormats.get(cage);
      if (!f) nameFormats.set(cage, (f = this.opts.nameFormat(cage)));
      return f;
    };
    let changed = false;
    await mapLimit(todo, IO_CONCURRENCY, async (record) => {
      try {
        const found = originals?.get(record.entryId);
        const { entry: original, problems } = found
          ? { entry: found, problems: [] }
          : await this.index.find(record.entryId, { skip: isShadow });
        if (!original) {
          if (record.state !== 'dormant') {
            await fsp.mkdir(this.dormantDir, { recursive: true });
            const to = path.join(this.dormantDir, record.shadowId);
            await fsp.rename(record.path, to);
            const reason = problems.length
              ? problems.map(problemText).join('; ')
              : 'no file with this ID is left';
            report.dormant.push({ ...record, path: to, state: 'dormant', reason });
            changed = true;
          }
          return;
        }
        const text = makeShadow({
          cage: record.cage,
          entryId: record.entryId,
          source: { path: original.path, bytes: bytesOf(original) },
          launcher: this.opts.launcher,
          nameFormat: await formatOf(record.cage),
        });
        if (record.state === 'dormant') {
          const to = path.join(this.userApps, record.shadowId);
          const occupant = await readText(to);
          if (occupant !== undefined && !isShadowText(occupant)) {
            report.problems.push({
              record,
              reason: `${to} is now another entry; run 'kagome app add ${record.cage} ${record.entryId}' to put the program back in its cage`,
            });
            return;
          }
          await fsp.mkdir(this.userApps, { recursive: true });
          await writeAtomically(to, text);
          await fsp.rm(record.path, { force: true });
          report.revived.push({ ...record, path: to, state: 'active', sourcePath: original.path });
          changed = true;
        } else if (this.cache.get(record.path)?.text !== text) {
          // (list() above has just read every shadow into the cache)
          if (record.state === 'edited') {
            // Worth telling only when there is something it misses: its original changed.
            const said = this.cache.get(record.path)?.info;
            if (said?.sourcePath !== original.path || said.sourceHash !== sha256(bytesOf(original)))
              report.edited.push(record);
            return;
          }
          await writeAtomically(record.path, text);
          report.updated.push({ ...record, sourcePath: original.path });
          changed = true;
        }
      } catch (e) {
        report.problems.push({ record, reason: asKagomeError(e).message });
      }
    });
    if (changed) await this.refreshDatabase();
    // What is in the menus now: what was, less what went dormant, plus what came back.
    for (const r of report.dormant) active.delete(path.join(this.userApps, r.shadowId));
    for (const r of report.revived) active.set(r.path, r);
    this.lastSeen = active;
    return report;
  }

  private sourcePathAfterAdd(original: DesktopEntryRef, primary: boolean): string {
    // Only a primary shadow takes the original's own path, and only when the original is the
    // user's entry at exactly that path: then the original must move aside to survive.
    return primary && original.path === path.join(this.userApps, original.id)
      ? path.join(this.originalsApps, original.id)
      : original.path;
  }

  private async render(
    cage: string,
    id: string,
    original: DesktopEntryRef,
    sourcePath: string,
  ): Promise<string> {
    return makeShadow({
      cage,
      entryId: id,
      source: { path: sourcePath, bytes: bytesOf(original) },
      launcher: this.opts.launcher,
      nameFormat: await this.opts.nameFormat(cage),
    });
  }

  /**
   * A file's text and, for a shadow, what it says about itself. Re-read only when the file
   * changed (inode, size or mtime): a sync looks at every shadow several times.
   */
  private async readEntry(file: string): Promise<CachedEntry | undefined> {
    // Synchronous, like the index's reads (see nodeFs in desktop-index.ts): small cached files.
    let key: string;
    let text: string;
    try {
      const st = fs.statSync(file);
      key = `${st.ino}:${st.size}:${st.mtimeMs}`;
      const hit = this.cache.get(file);
      if (hit?.key === key) return hit;
      text = fs.readFileSync(file, 'utf8');
    } catch {
      this.cache.delete(file);
      return undefined;
    }
    let info: ShadowInfo | undefined;
    if (isShadowText(text)) {
      try {
        info = readShadow(Keyfile.parse(text, { file }));
      } catch {
        info = undefined;
      }
    }
    const entry = { key, text, info };
    this.cache.set(file, entry);
    return entry;
  }

  /**
   * Refresh the user folder's MIME cache. If kagome's shadows were the reason the cache
   * exists, it goes again with the last of them, so removing everything leaves the folder
   * as it was.
   */
  private async refreshDatabase(): Promise<void> {
    const cache = path.join(this.userApps, MIME_CACHE);
    const marker = path.join(this.stateDir, 'created-mimeinfo-cache');
    const hadCache = await exists(cache);
    try {
      await (this.opts.updateDatabase ?? runUpdateDesktopDatabase)(this.userApps);
    } catch (e) {
      // The shadows are in place and menus read them directly; only "Open With" may lag.
      this.opts.warn?.(
        `the MIME cache of ${this.userApps} was not refreshed: ${asKagomeError(e).message}`,
      );
      return;
    }
    if (!hadCache && (await exists(cache))) {
      await fsp.mkdir(this.stateDir, { recursive: true });
      await fsp.writeFile(marker, '');
    }
    if (
      (await exists(marker)) &&
      (await this.list()).length === 0 &&
      !(await this.anyMimeEntries())
    ) {
      await fsp.rm(cache, { force: true });
      await fsp.rm(marker, { force: true });
    }
  }

  private async anyMimeEntries(): Promise<boolean> {
    const text = await readText(path.join(this.userApps, MIME_CACHE));
    return text !== undefined && /^[^[#\s][^=]*=/m.test(text);
  }
}

/** A problem's reason names its file already when it came from the parser. */
function problemText(p: IndexProblem): string {
  return p.reason.startsWith(p.path) ? p.reason : `${p.path}: ${p.reason}`;
}

function bytesOf(entry: DesktopEntryRef): Uint8Array {
  return Buffer.from(entry.keyfile.toString());
}

/** A cheap test before parsing: every shadow has the key, most other entries lack the text. */
function isShadowText(text: string): boolean {
  return text.includes(SHADOW_KEYS.cage);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
