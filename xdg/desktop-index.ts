// Finding desktop entries by desktop file ID ("Desktop File ID" in the Desktop Entry
// Specification and the "Menu Specification"): $dir/applications/foo/bar.desktop has
// the ID foo-bar.desktop, and the first data directory in precedence order that has an
// ID decides what it is.
//
// Which file decides an ID: a file that cannot be read or parsed, or that the caller's
// skip predicate rejects (kagome's own shadow entries), does not count, and the search
// goes on to the next candidate. A valid file does count even when it is not launchable
// (Hidden=true, a Type other than Application, a TryExec program that is missing): it
// hides the same ID further down, as it does on real desktops.

import fs, { promises as fsp, constants as fsConstants } from 'node:fs';
import { posix } from 'node:path';
import process from 'node:process';
import { KagomeError } from '../lib/errors.js';
import { Keyfile } from './keyfile.js';

export interface DesktopIndexFs {
  readdir(path: string): Promise<string[]>;
  readFile(path: string): Promise<Uint8Array>;
  /** Follows symbolic links. `size` lets oversized files be refused without reading them. */
  stat(path: string): Promise<StatLike>;
  realpath(path: string): Promise<string>;
}

/** Real desktop entries are a few kB, with dozens of translations some tens of kB. */
export const MAX_ENTRY_BYTES = 256 * 1024;

export interface StatLike {
  isFile(): boolean;
  isDirectory(): boolean;
  size?: number;
}

// Synchronous calls behind the async interface, on purpose: desktop entries are small files
// in the page cache, where a synchronous read takes microseconds, while each promise-based
// call makes several round trips through libuv's thread pool. Measured on 2,000 entries
// (bench/shadows.ts): a scan went from about 240 ms to about 70 ms. Every call still ends in
// an await, so the service stays responsive during a scan.
export const nodeFs: DesktopIndexFs = {
  readdir: async (p) => fs.readdirSync(p),
  readFile: async (p) => fs.readFileSync(p),
  stat: async (p) => fs.statSync(p),
  realpath: async (p) => fs.realpathSync(p),
};

/** Whether TryExec's program exists: an absolute path, or a name looked up in PATH. */
export type ProgramExists = (program: string) => Promise<boolean>;

/** A ProgramExists for this machine, searching the given PATH value. */
export function pathProgramExists(pathEnv: string | undefined = process.env.PATH): ProgramExists {
  const executable = async (p: string): Promise<boolean> => {
    try {
      await fsp.access(p, fsConstants.X_OK);
      return (await fsp.stat(p)).isFile();
    } catch {
      return false;
    }
  };
  return async (program) => {
    if (program.includes('/')) return program.startsWith('/') && executable(program);
    for (const dir of (pathEnv ?? '').split(':')) {
      // Empty or relative PATH entries would depend on kagome's working directory.
      if (dir.startsWith('/') && (await executable(posix.join(dir, program)))) return true;
    }
    return false;
  };
}

export interface DesktopEntryRef {
  id: string;
  path: string;
  keyfile: Keyfile;
}

export interface IndexProblem {
  path: string;
  /** The ID the file would have had, when it is a desktop file. */
  id?: string;
  reason: string;
}

export interface ScanResult {
  /** Launchable entries by ID, sorted by ID. */
  entries: Map<string, DesktopEntryRef>;
  /** Files that were not indexed, and why, sorted by path. */
  problems: IndexProblem[];
}

export interface LookupOptions {
  /** Entries for which this returns true are treated as if they were not there. */
  skip?: (kf: Keyfile) => boolean;
}

export interface DesktopIndexOptions {
  /** Data directories in precedence order: XDG_DATA_HOME first, then XDG_DATA_DIRS. */
  dataDirs: readonly string[];
  fs?: DesktopIndexFs;
  programExists?: ProgramExists;
}

const DESKTOP_ENTRY = 'Desktop Entry';
const SUFFIX = '.desktop';
// Deeper trees than this are not menus, they are mistakes (or loops the realpath check missed).
const MAX_DEPTH = 16;
const READ_CONCURRENCY = 16;

/**
 * The desktop file ID of a file below an applications directory, or undefined if the
 * file is not below it or is not a .desktop file.
 */
export function desktopFileId(applicationsDir: string, filePath: string): string | undefined {
  const dir = posix.normalize(applicationsDir).replace(/\/+$/, '');
  const file = posix.normalize(filePath);
  if (!file.startsWith(dir + '/')) return undefined;
  const rel = file.slice(dir.length + 1);
  if (!rel.endsWith(SUFFIX) || rel.length === SUFFIX.length) return undefined;
  return rel.split('/').join('-');
}

function checkId(id: string): void {
  if (
    !id.endsWith(SUFFIX) ||
    id.length === SUFFIX.length ||
    id.includes('/') ||
    id.includes('\0')
  ) {
    throw new KagomeError(
      'InvalidArgument',
      `${JSON.stringify(id)} is not a desktop file ID: it must end in .desktop and contain no "/"`,
    );
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function errorCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e
    ? String((e as { code: unknown }).code)
    : undefined;
}

/**
 * Orders files of one applications directory that share an ID the way lookup() tries
 * them: at each level the remaining name as a file comes first, then subdirectories
 * with the shortest name first.
 */
function compareCandidates(a: readonly string[], b: readonly string[]): number {
  for (let i = 0; i < a.length && i < b.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x === y) continue;
    const xLast = i === a.length - 1;
    const yLast = i === b.length - 1;
    if (xLast !== yLast) return xLast ? -1 : 1;
    return x.length - y.length;
  }
  return a.length - b.length;
}

/** A desktop file met by a scan: where, its ID's path segments, and its size from stat. */
interface FoundFile {
  path: string;
  segments: string[];
  size: number | undefined;
}

type Verdict =
  | { kind: 'entry'; keyfile: Keyfile }
  | { kind: 'skipped' }
  | { kind: 'hidden' }
  | { kind: 'problem'; reason: string; claims: boolean };

/** fn over items, at most `limit` at a time, results in order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export class DesktopIndex {
  readonly dataDirs: readonly string[];
  private readonly fs: DesktopIndexFs;
  private readonly programExists: ProgramExists;

  constructor(options: DesktopIndexOptions) {
    this.dataDirs = [...options.dataDirs];
    this.fs = options.fs ?? nodeFs;
    this.programExists = options.programExists ?? pathProgramExists();
  }

  /** The launchable entry for an ID, or undefined if there is none (or it is hidden). */
  async lookup(id: string, opts: LookupOptions = {}): Promise<DesktopEntryRef | undefined> {
    return (await this.find(id, opts)).entry;
  }

  /** Like lookup(), and also why each file with that ID was passed over: for error messages. */
  async find(
    id: string,
    opts: LookupOptions = {},
  ): Promise<{ entry?: DesktopEntryRef; problems: IndexProblem[] }> {
    checkId(id);
    const problems: IndexProblem[] = [];
    for (const dataDir of this.dataDirs) {
      for await (const { path, size } of this.candidates(posix.join(dataDir, 'applications'), id)) {
        const v = await this.evaluate(path, size, opts.skip);
        if (v.kind === 'entry') return { entry: { id, path, keyfile: v.keyfile }, problems };
        if (v.kind === 'hidden')
          return { problems: [...problems, { path, id, reason: 'deleted by Hidden=true' }] };
        if (v.kind === 'problem') {
          problems.push({ path, id, reason: v.reason });
          if (v.claims) return { problems };
        }
      }
    }
    return { problems };
  }

  /** Every launchable entry in the data directories. Never fails because of one bad file. */
  async scan(opts: LookupOptions = {}): Promise<ScanResult> {
    const entries = new Map<string, DesktopEntryRef>();
    const problems: IndexProblem[] = [];
    const decided = new Set<string>();
    const roots = new Set<string>();

    for (const dataDir of this.dataDirs) {
      const apps = posix.join(dataDir, 'applications');
      let real: string;
      try {
        real = await this.fs.realpath(apps);
      } catch (e) {
        const code = errorCode(e);
        if (code !== 'ENOENT' && code !== 'ENOTDIR')
          problems.push({ path: apps, reason: `cannot open directory: ${errorText(e)}` });
        continue;
      }
      // A data directory listed twice (or via a symlink) has nothing new to say.
      if (roots.has(real)) continue;
      roots.add(real);

      const files: FoundFile[] = [];
      await this.walk(apps, [], new Set([real]), 0, files, problems);

      const byId = new Map<string, FoundFile[]>();
      for (const f of files) {
        const id = f.segments.join('-');
        if (decided.has(id)) continue;
        const list = byId.get(id);
        if (list) list.push(f);
        else byId.set(id, [f]);
      }

      const results = await mapLimit([...byId], READ_CONCURRENCY, async ([id, cands]) => {
        cands.sort((a, b) => compareCandidates(a.segments, b.segments));
        const found: IndexProblem[] = [];
        for (const c of cands) {
          const v = await this.evaluate(c.path, c.size, opts.skip);
          if (v.kind === 'skipped') continue;
          if (v.kind === 'problem') {
            found.push({ path: c.path, id, reason: v.reason });
            if (!v.claims) continue;
          }
          return {
            id,
            problems: found,
            decided: true,
            entry: v.kind === 'entry' ? { id, path: c.path, keyfile: v.keyfile } : undefined,
          };
        }
        return { id, problems: found, decided: false, entry: undefined };
      });
      for (const r of results) {
        problems.push(...r.problems);
        if (r.decided) decided.add(r.id);
        if (r.entry) entries.set(r.id, r.entry);
      }
    }

    const sorted = new Map([...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    problems.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    return { entries: sorted, problems };
  }

  /** Files in `dir` that could have the ID `rest`, in the order they are tried. */
  private async *candidates(
    dir: string,
    rest: string,
  ): AsyncGenerator<{ path: string; size: number | undefined }> {
    const direct = posix.join(dir, rest);
    const st = await this.statOrUndefined(direct);
    if (st?.isFile()) yield { path: direct, size: st.size };
    for (let i = rest.indexOf('-'); i >= 0; i = rest.indexOf('-', i + 1)) {
      const prefix = rest.slice(0, i);
      const remainder = rest.slice(i + 1);
      // '.' and '..' never come out of a directory listing, so they are no ID's directories.
      if (prefix === '' || prefix === '.' || prefix === '..' || remainder.length <= SUFFIX.length)
        continue;
      const sub = posix.join(dir, prefix);
      if ((await this.statOrUndefined(sub))?.isDirectory()) yield* this.candidates(sub, remainder);
    }
  }

  private async statOrUndefined(path: string): Promise<StatLike | undefined> {
    try {
      return await this.fs.stat(path);
    } catch {
      return undefined;
    }
  }

  private async walk(
    dir: string,
    segments: string[],
    ancestors: Set<string>,
    depth: number,
    out: FoundFile[],
    problems: IndexProblem[],
  ): Promise<void> {
    let names: string[];
    try {
      names = await this.fs.readdir(dir);
    } catch (e) {
      problems.push({ path: dir, reason: `cannot list directory: ${errorText(e)}` });
      return;
    }
    names.sort();
    for (const name of names) {
      const path = posix.join(dir, name);
      const isDesktop = name.endsWith(SUFFIX) && name.length > SUFFIX.length;
      let st: StatLike;
      try {
        st = await this.fs.stat(path);
      } catch (e) {
        // Only worth reporting for files that would have been entries (e.g. dangling links).
        if (isDesktop)
          problems.push({
            path,
            id: [...segments, name].join('-'),
            reason: `cannot read: ${errorText(e)}`,
          });
        continue;
      }
      if (st.isDirectory()) {
        if (depth + 1 > MAX_DEPTH) {
          problems.push({
            path,
            reason: `not searched: more than ${MAX_DEPTH} directory levels deep`,
          });
          continue;
        }
        let real: string;
        try {
          real = await this.fs.realpath(path);
        } catch (e) {
          problems.push({ path, reason: `cannot resolve directory: ${errorText(e)}` });
          continue;
        }
        if (ancestors.has(real)) {
          problems.push({ path, reason: 'not searched: symbolic link loop' });
          continue;
        }
        await this.walk(
          path,
          [...segments, name],
          new Set([...ancestors, real]),
          depth + 1,
          out,
          problems,
        );
      } else if (st.isFile() && isDesktop) {
        out.push({ path, segments: [...segments, name], size: st.size });
      }
    }
  }

  private async evaluate(
    path: string,
    size: number | undefined,
    skip: LookupOptions['skip'],
  ): Promise<Verdict> {
    if (size !== undefined && size > MAX_ENTRY_BYTES) {
      return {
        kind: 'problem',
        claims: false,
        reason: `the file is ${size} bytes; desktop entries larger than ${MAX_ENTRY_BYTES / 1024} KiB are not read`,
      };
    }
    let bytes: Uint8Array;
    try {
      bytes = await this.fs.readFile(path);
    } catch (e) {
      return { kind: 'problem', claims: false, reason: `cannot read: ${errorText(e)}` };
    }
    let kf: Keyfile;
    try {
      kf = Keyfile.parse(bytes, { file: path });
    } catch (e) {
      return { kind: 'problem', claims: false, reason: errorText(e) };
    }
    if (!kf.hasGroup(DESKTOP_ENTRY)) {
      return { kind: 'problem', claims: false, reason: `no [${DESKTOP_ENTRY}] group` };
    }
    if (skip?.(kf)) return { kind: 'skipped' };
    let hidden: boolean | undefined;
    try {
      hidden = kf.getBoolean(DESKTOP_ENTRY, 'Hidden');
    } catch (e) {
      return { kind: 'problem', claims: false, reason: errorText(e) };
    }
    if (hidden) return { kind: 'hidden' };
    const type = kf.get(DESKTOP_ENTRY, 'Type');
    if (type !== 'Application') {
      return {
        kind: 'problem',
        claims: true,
        reason:
          type === undefined ? 'no Type key' : `Type is ${JSON.stringify(type)}, not Application`,
      };
    }
    const tryExec = kf.get(DESKTOP_ENTRY, 'TryExec');
    if (tryExec !== undefined && tryExec !== '' && !(await this.programExists(tryExec))) {
      return {
        kind: 'problem',
        claims: true,
        reason: `TryExec program ${JSON.stringify(tryExec)} is not installed`,
      };
    }
    return { kind: 'entry', keyfile: kf };
  }
}
