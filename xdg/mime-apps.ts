// Which program opens a MIME type: the "Association between MIME types and applications"
// specification (mime-apps-spec 1.0.1), with GLib's reading of it where the spec leaves room,
// over the folders a cage sees. Every path is the cage's; reads go through view.hostPath, so
// the same code reads the host's folders or a running cage's through /proc/PID/root.
//
// For the type, then each parent type in turn (aliases resolved first; sub-classes; every
// text/* type also under text/plain):
//   1. the [Default Applications] of every mimeapps.list in precedence order, each folder's
//      $desktop-mimeapps.list files before its mimeapps.list;
//   2. then, folder by folder in the same order, [Added Associations], then that folder's
//      mimeinfo.cache, minus what the [Removed Associations] of this or an earlier folder
//      removed;
// and the first of these that is installed (an entry of Type=Application with an Exec line,
// not Hidden) is the answer.
//
// Where GLib and the spec differ, GLib wins, since it is what runs inside the cage: a default
// need not be associated with the type (spec 1.0.1 asks that it is; GLib, xdg-utils and 1.0 do
// not check); removals persist from a type to its parents; the association lists of a data
// folder say nothing about an ID that a more important data folder also has ("masked": that
// folder's own file decides what it opens), while defaults may name any installed ID.

import { posix } from 'node:path';
import {
  DesktopIndex,
  nodeFs,
  type DesktopEntryRef,
  type DesktopIndexFs,
} from './desktop-index.js';
import { Keyfile } from './keyfile.js';

/** The reads mime-apps needs; paths given are host paths. */
export type MimeFs = Pick<DesktopIndexFs, 'readFile' | 'stat'>;

export interface MimeView {
  /** XDG_CONFIG_HOME, then XDG_CONFIG_DIRS, as the cage sees them. */
  configDirs: readonly string[];
  /** XDG_DATA_HOME, then XDG_DATA_DIRS, as the cage sees them. */
  dataDirs: readonly string[];
  /** XDG_CURRENT_DESKTOP split on ':' (may be empty). */
  desktops: readonly string[];
  /** Where a path as the cage sees it can be read; identity if not given. */
  hostPath?(p: string): string;
  /** Node's fs if not given. */
  fs?: MimeFs;
  /** Told about files that were skipped because they are broken or unreadable. */
  warn?(message: string): void;
}

const DEFAULTS = 'Default Applications';
const ADDED = 'Added Associations';
const REMOVED = 'Removed Associations';
const CACHE = 'MIME Cache';

/** One folder's say: config folders (dataDir undefined) or a data folder's applications/. */
interface Level {
  /** Index among the view's absolute data folders, for masking. */
  dataDir: number | undefined;
  defaults: Map<string, string[]>;
  /** [Added Associations], then mimeinfo.cache minus this level's removals. */
  added: Map<string, string[]>;
  removed: Map<string, string[]>;
}

/** The MIME database's type hierarchy, from mime/aliases and mime/subclasses. */
interface TypeTree {
  canonical(type: string): string;
  parents(type: string): string[];
}

class Reader {
  readonly fs: MimeFs;
  private readonly hostPath: (p: string) => string;
  private readonly warnFn: (message: string) => void;

  constructor(readonly view: MimeView) {
    this.fs = view.fs ?? nodeFs;
    this.hostPath = view.hostPath?.bind(view) ?? ((p) => p);
    this.warnFn = view.warn?.bind(view) ?? (() => {});
  }

  host(p: string): string {
    return this.hostPath(p);
  }

  warn(message: string): void {
    this.warnFn(message);
  }

  /** A file's bytes; undefined if it is missing (silently) or unreadable (with a warning). */
  async read(p: string): Promise<Uint8Array | undefined> {
    try {
      return await this.fs.readFile(this.hostPath(p));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR')
        this.warn(`${p}: skipped, cannot be read: ${(e as Error).message}`);
      return undefined;
    }
  }

  async keyfile(p: string): Promise<Keyfile | undefined> {
    const bytes = await this.read(p);
    if (!bytes) return undefined;
    try {
      return Keyfile.parse(bytes, { file: p, lenientKeys: true });
    } catch (e) {
      // GLib ignores a file it cannot parse as a whole, and so do we.
      this.warn(`skipped: ${(e as Error).message}`);
      return undefined;
    }
  }
}

function absolute(dirs: readonly string[]): string[] {
  // The base directory spec says relative entries are to be ignored.
  return dirs.filter((d) => d.startsWith('/'));
}

/** Lower-case desktop names that make a file name in the folder (nothing with a '/'). */
function desktopNames(view: MimeView): string[] {
  return view.desktops
    .map((d) => d.replace(/[A-Z]/g, (c) => c.toLowerCase()))
    .filter((d) => d !== '' && !d.includes('/'));
}

async function readTypeTree(r: Reader): Promise<TypeTree> {
  const aliases = new Map<string, string>();
  const parents = new Map<string, string[]>();
  for (const dir of absolute(r.view.dataDirs)) {
    const [a, s] = await Promise.all([
      r.read(posix.join(dir, 'mime', 'aliases')),
      r.read(posix.join(dir, 'mime', 'subclasses')),
    ]);
    // The more important folder's alias wins; sub-class relations add up.
    for (const [alias, type] of pairs(a)) if (!aliases.has(alias)) aliases.set(alias, type);
    for (const [type, parent] of pairs(s)) {
      const list = parents.get(type) ?? [];
      if (!list.includes(parent)) list.push(parent);
      parents.set(type, list);
    }
  }
  const canonical = (t: string) => aliases.get(t) ?? t;
  return { canonical, parents: (t) => parents.get(canonical(t)) ?? [] };
}

/** "a b" lines of the MIME database's plain files; anything else is skipped. */
function pairs(bytes: Uint8Array | undefined): [string, string][] {
  if (!bytes) return [];
  const out: [string, string][] = [];
  for (const line of Buffer.from(bytes).toString('utf8').split('\n')) {
    const m = /^\s*([^\s#]\S*)\s+(\S+)\s*$/.exec(line);
    if (m) out.push([m[1]!, m[2]!]);
  }
  return out;
}

/** The type (canonical) and its ancestors, nearest first. */
function lineage(type: string, tree: TypeTree): string[] {
  const order = [tree.canonical(type)];
  for (let i = 0; i < order.length; i++) {
    const t = order[i]!;
    const next = tree.parents(t).map((p) => tree.canonical(p));
    // shared-mime-info: every text/* type is also text/plain. There is no such rule here
    // for application/octet-stream: "any program that opens bytes" is no default.
    if (t.startsWith('text/') && t !== 'text/plain') next.push('text/plain');
    for (const p of next) if (!order.includes(p)) order.push(p);
  }
  return order;
}

/** A group's lists by canonical type (GLib files an alias's entries under its type). */
function groupLists(kf: Keyfile | undefined, group: string, tree: TypeTree): Map<string, string[]> {
  const out = new Map<string, string[]>();
  if (!kf) return out;
  for (const { key, locale } of kf.keys(group)) {
    if (locale !== undefined) continue;
    appendUnique(out, tree.canonical(key), kf.getList(group, key) ?? []);
  }
  return out;
}

function appendUnique(
  map: Map<string, string[]>,
  type: string,
  ids: readonly string[],
  except?: readonly string[],
): void {
  const list = map.get(type) ?? [];
  for (const id of ids) if (id !== '' && !list.includes(id) && !except?.includes(id)) list.push(id);
  map.set(type, list);
}

async function readLevel(
  r: Reader,
  dir: string,
  dataDir: number | undefined,
  tree: TypeTree,
): Promise<Level> {
  const names = desktopNames(r.view);
  const [specific, general, cache] = await Promise.all([
    Promise.all(names.map((d) => r.keyfile(posix.join(dir, `${d}-mimeapps.list`)))),
    r.keyfile(posix.join(dir, 'mimeapps.list')),
    dataDir === undefined ? undefined : r.keyfile(posix.join(dir, 'mimeinfo.cache')),
  ]);
  const level: Level = { dataDir, defaults: new Map(), added: new Map(), removed: new Map() };
  for (const [i, kf] of specific.entries()) {
    if (!kf) continue;
    for (const [t, ids] of groupLists(kf, DEFAULTS, tree)) appendUnique(level.defaults, t, ids);
    for (const group of [ADDED, REMOVED]) {
      if (kf.hasGroup(group))
        r.warn(
          `${posix.join(dir, `${names[i]}-mimeapps.list`)}: [${group}] ignored: only mimeapps.list itself may add or remove associations`,
        );
    }
  }
  for (const [t, ids] of groupLists(general, DEFAULTS, tree)) appendUnique(level.defaults, t, ids);
  level.added = groupLists(general, ADDED, tree);
  level.removed = groupLists(general, REMOVED, tree);
  for (const [t, ids] of groupLists(cache, CACHE, tree))
    appendUnique(level.added, t, ids, level.removed.get(t));
  return level;
}

async function readLevels(r: Reader, tree: TypeTree): Promise<Level[]> {
  const configDirs = absolute(r.view.configDirs);
  const dataDirs = absolute(r.view.dataDirs);
  return Promise.all([
    ...configDirs.map((d) => readLevel(r, d, undefined, tree)),
    ...dataDirs.map((d, i) => readLevel(r, posix.join(d, 'applications'), i, tree)),
  ]);
}

/** Desktop entries as the cage has them, and which data folders have a file for an ID. */
class Entries {
  private readonly all: DesktopIndex;
  private readonly perDir: DesktopIndex[];
  private readonly usable = new Map<string, Promise<DesktopEntryRef | undefined>>();
  private readonly present = new Map<string, Promise<boolean>>();

  constructor(r: Reader) {
    const fs = mappedFs(r);
    // TryExec is not checked: its program would have to be looked up in the cage's PATH.
    const programExists = async () => true;
    const dataDirs = absolute(r.view.dataDirs);
    this.all = new DesktopIndex({ dataDirs, fs, programExists });
    this.perDir = dataDirs.map((d) => new DesktopIndex({ dataDirs: [d], fs, programExists }));
  }

  /** The entry that opens files for an ID: found, Type=Application, not Hidden, with Exec. */
  entry(id: string): Promise<DesktopEntryRef | undefined> {
    let p = this.usable.get(id);
    if (!p) {
      p = this.all.lookup(id).then(
        (e) => (e && (e.keyfile.get('Desktop Entry', 'Exec') ?? '').trim() !== '' ? e : undefined),
        () => undefined, // not a desktop file ID (a '/' in it, no .desktop): nothing installed
      );
      this.usable.set(id, p);
    }
    return p;
  }

  /** Whether a data folder (by index) has a file for the ID, usable or not, as GLib lists IDs. */
  has(id: string, dataDir: number): Promise<boolean> {
    const key = `${dataDir}\0${id}`;
    let p = this.present.get(key);
    if (!p) {
      p = this.perDir[dataDir]!.find(id).then(
        (f) => f.entry !== undefined || f.problems.length > 0,
        () => false,
      );
      this.present.set(key, p);
    }
    return p;
  }

  async masked(id: string, level: Level): Promise<boolean> {
    for (let i = 0; i < (level.dataDir ?? 0); i++) if (await this.has(id, i)) return true;
    return false;
  }
}

/** Paths in the view read as host paths; DesktopIndex.find needs no directory listing. */
function mappedFs(r: Reader): DesktopIndexFs {
  const unused = async (): Promise<never> => {
    throw new Error('not used for lookups');
  };
  return {
    readFile: (p) => r.fs.readFile(r.host(p)),
    stat: (p) => r.fs.stat(r.host(p)),
    readdir: unused,
    realpath: unused,
  };
}

/** The desktop file ID of the program that opens files of a MIME type, or undefined. */
export async function defaultAppFor(mimeType: string, view: MimeView): Promise<string | undefined> {
  return (await appsForType(mimeType, view, 1))[0];
}

/**
 * Every installed program that opens files of a MIME type, the default first, then the others
 * in the order the same rules rank them (a type's own programs before its parents'), as a
 * file manager's "Open With" lists them. `limit` stops early.
 */
export async function appsForType(
  mimeType: string,
  view: MimeView,
  limit = Infinity,
): Promise<string[]> {
  const r = new Reader(view);
  const tree = await readTypeTree(r);
  const levels = await readLevels(r, tree);
  const entries = new Entries(r);
  const blocked = new Set<string>();
  const found: string[] = [];
  for (const type of lineage(mimeType, tree)) {
    const candidates: string[] = [];
    for (const level of levels)
      for (const id of level.defaults.get(type) ?? [])
        if (!candidates.includes(id)) candidates.push(id);
    for (const level of levels) {
      for (const id of level.added.get(type) ?? []) {
        if (!blocked.has(id) && !candidates.includes(id) && !(await entries.masked(id, level)))
          candidates.push(id);
      }
      // A removal cannot take back what this or a more important folder added (candidates
      // are already in the list, and a candidate not installed now is not installed later).
      for (const id of level.removed.get(type) ?? [])
        if (!(await entries.masked(id, level))) blocked.add(id);
    }
    for (const id of candidates) {
      if (found.includes(id) || !(await entries.entry(id))) continue;
      found.push(id);
      if (found.length >= limit) return found;
    }
  }
  return found;
}

/**
 * The entry a desktop file ID names in the view, if it can open files (see defaultAppFor): its
 * path as the cage sees it (for %k) and its contents.
 */
export async function findEntryInView(
  id: string,
  view: MimeView,
): Promise<{ path: string; keyfile: Keyfile } | undefined> {
  const e = await new Entries(new Reader(view)).entry(id);
  return e && { path: e.path, keyfile: e.keyfile };
}

/** The type itself (canonical) and its ancestors, nearest first, by the view's MIME database. */
export async function typeAndParents(mimeType: string, view: MimeView): Promise<string[]> {
  return lineage(mimeType, await readTypeTree(new Reader(view)));
}
