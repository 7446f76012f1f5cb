import fs from 'node:fs/promises';
import path from 'node:path';
import { Keyfile } from './keyfile.js';

// Which program opens a MIME type, by the MIME applications associations specification, over
// the folders a cage sees: the first installed [Default Applications] entry among the
// mimeapps.list files in precedence order (desktop-specific ones first in each folder); else
// the first installed [Added Associations] or mimeinfo.cache entry that a more important
// list has not removed; else the same for the type's parents (aliases resolved first, then
// sub-classes, and text/plain for every text/* type), as GLib does. Folders are read through
// hostPath, so the same code reads a running cage's own files.

export interface MimeView {
  /** XDG_CONFIG_HOME then XDG_CONFIG_DIRS, as the cage sees them */
  configDirs: string[];
  /** XDG_DATA_HOME then XDG_DATA_DIRS, as the cage sees them */
  dataDirs: string[];
  /** XDG_CURRENT_DESKTOP, split */
  desktops: string[];
  /** where a path in the view can be read on the host */
  hostPath(p: string): string;
}

interface List {
  defaults: (type: string) => string[];
  added: (type: string) => string[];
  removed: (type: string) => string[];
}

async function readKeyfile(file: string): Promise<Keyfile | undefined> {
  try {
    return Keyfile.parse(await fs.readFile(file), { file, lenientKeys: true });
  } catch {
    return undefined; // missing, or broken: a broken list is no list (GLib ignores it too)
  }
}

function listOf(kf: Keyfile | undefined, group: string, type: string): string[] {
  try {
    return kf?.getList(group, type) ?? [];
  } catch {
    return [];
  }
}

async function readLists(view: MimeView): Promise<List[]> {
  const files: string[] = [];
  const names = [...view.desktops.map((d) => `${d.toLowerCase()}-mimeapps.list`), 'mimeapps.list'];
  for (const dir of view.configDirs) for (const n of names) files.push(path.join(dir, n));
  for (const dir of view.dataDirs) for (const n of names) files.push(path.join(dir, 'applications', n));
  const kfs = await Promise.all(files.map((f) => readKeyfile(view.hostPath(f))));
  return kfs
    .filter((k): k is Keyfile => k !== undefined)
    .map((kf) => ({
      defaults: (t) => listOf(kf, 'Default Applications', t),
      added: (t) => listOf(kf, 'Added Associations', t),
      removed: (t) => listOf(kf, 'Removed Associations', t),
    }));
}

/** The entry a desktop file ID names in the view, as the view's path and its parsed contents. */
export async function findEntryInView(id: string, view: MimeView): Promise<{ path: string; keyfile: Keyfile } | undefined> {
  // An ID's '-' may stand for a subfolder (kde-foo.desktop is kde/foo.desktop): try each split.
  const parts = id.split('-');
  const candidates: string[] = [];
  for (let i = 0; i < parts.length; i++) candidates.push([parts.slice(0, i).join('/'), parts.slice(i).join('-')].filter(Boolean).join('/'));
  for (const dir of view.dataDirs) {
    for (const rel of candidates) {
      const p = path.join(dir, 'applications', rel);
      const keyfile = await readKeyfile(view.hostPath(p));
      if (keyfile) return { path: p, keyfile };
    }
  }
  return undefined;
}

/** Whether a desktop file ID names an entry that can be launched (present, not Hidden, with Exec). */
async function installed(id: string, view: MimeView, cache: Map<string, boolean>): Promise<boolean> {
  const known = cache.get(id);
  if (known !== undefined) return known;
  const found = await findEntryInView(id, view);
  const ok = found !== undefined && found.keyfile.get('Desktop Entry', 'Hidden') !== 'true' && Boolean(found.keyfile.get('Desktop Entry', 'Exec'));
  cache.set(id, ok);
  return ok;
}

async function readPairs(view: MimeView, name: string): Promise<[string, string][]> {
  const out: [string, string][] = [];
  for (const dir of view.dataDirs) {
    try {
      for (const line of (await fs.readFile(view.hostPath(path.join(dir, 'mime', name)), 'utf8')).split('\n')) {
        const [a, b] = line.trim().split(/\s+/);
        if (a && b && !a.startsWith('#')) out.push([a, b]);
      }
    } catch {
      /* no MIME database in this folder */
    }
  }
  return out;
}

/** The type itself (canonical) and its ancestors, nearest first. */
export async function typeAndParents(type: string, view: MimeView): Promise<string[]> {
  const aliases = new Map(await readPairs(view, 'aliases'));
  const subclasses = await readPairs(view, 'subclasses');
  const canonical = (t: string) => aliases.get(t) ?? t;
  const order: string[] = [];
  const queue = [canonical(type)];
  while (queue.length) {
    const t = queue.shift()!;
    if (order.includes(t)) continue;
    order.push(t);
    queue.push(...subclasses.filter(([c]) => c === t).map(([, p]) => canonical(p)));
    if (t.startsWith('text/') && t !== 'text/plain') queue.push('text/plain');
  }
  return order;
}

export async function defaultAppFor(type: string, view: MimeView): Promise<string | undefined> {
  const lists = await readLists(view);
  const caches = await Promise.all(view.dataDirs.map((d) => readKeyfile(view.hostPath(path.join(d, 'applications', 'mimeinfo.cache')))));
  const seen = new Map<string, boolean>();
  for (const t of await typeAndParents(type, view)) {
    for (const list of lists) {
      for (const id of list.defaults(t)) if (await installed(id, view, seen)) return id;
    }
    const removed = new Set<string>();
    for (const list of lists) {
      for (const id of list.added(t)) if (!removed.has(id) && (await installed(id, view, seen))) return id;
      for (const id of list.removed(t)) removed.add(id);
    }
    for (const cache of caches) {
      for (const id of listOf(cache, 'MIME Cache', t)) if (!removed.has(id) && (await installed(id, view, seen))) return id;
    }
  }
  return undefined;
}
