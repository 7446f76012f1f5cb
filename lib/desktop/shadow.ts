// Shadow entries: the rewritten copy of a desktop entry that sends every launch of it
// through a cage. It has the same desktop file ID as the original (or its own ID when the
// program is in a second cage), so favourites, "Open With" lists and MIME defaults that name
// the ID keep working. Everything about the rewrite is here, as a pure function from the
// original's bytes to the shadow's text; where the files live is app-shadows.ts.
//
// What changes, and why:
//   Exec (main and every [Desktop Action]) becomes
//       kagome-open --cage CAGE --entry ID [--action ACTION] -- %CODE
//     keeping only the original's file field code (%f %F %u %U), which tells the desktop
//     whether to pass files or URIs, one or many. %i %c %k are expanded by the service from
//     the original, so they are not passed.
//   DBusActivatable is removed: with it, desktops activate the app on the host's session bus
//     and never run Exec, which would start the program outside the cage. For the same reason
//     an action without Exec (only startable over D-Bus) is left out.
//   TryExec names kagome-open: the original's program may only exist inside a container,
//     and if kagome is uninstalled the shadow hides itself instead of failing on every click.
//   StartupNotify becomes false: the startup ID would have to be completed on the host's
//     display, but the program talks to the cage's X server, so the desktop would show a busy
//     cursor until its timeout.
//   StartupWMClass is the original's, or else the original program's name (the WM_CLASS
//     instance X toolkits derive from argv[0]), so docks group the cage's windows, which
//     keep their WM_CLASS through xpra, under this entry.
//   Name and every translation of it get the cage's marker ("{name} [{cage}]" by default).
//   X-Kagome-Cage, -Entry, -Source and -Source-SHA256 say where the shadow came from;
//   X-Kagome-Digest is a hash of the shadow itself, so a shadow edited by hand is recognised
//     and never overwritten.
// Everything else, translations, comments and unknown keys included, is kept as written.

import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { FileError, KagomeError } from '../errors.js';
import { Keyfile } from '../../xdg/keyfile.js';
import { parseExec, formatExec, type ExecArg, type FieldCode } from '../../xdg/exec.js';

export const DESKTOP_ENTRY = 'Desktop Entry';
const ACTION_PREFIX = 'Desktop Action ';

export const SHADOW_KEYS = {
  cage: 'X-Kagome-Cage',
  entry: 'X-Kagome-Entry',
  source: 'X-Kagome-Source',
  sourceHash: 'X-Kagome-Source-SHA256',
  digest: 'X-Kagome-Digest',
} as const;

export const DEFAULT_NAME_FORMAT = '{name} [{cage}]';
const FILE_CODES: ReadonlySet<string> = new Set(['f', 'F', 'u', 'U']);
const DIGEST_LINE = new RegExp(`^${SHADOW_KEYS.digest}[ \\t]*=`);
// A placeholder the same length as a real digest, so replacing it moves nothing.
const DIGEST_PLACEHOLDER = '0'.repeat(64);

export interface ShadowSpec {
  cage: string;
  /** The original's desktop file ID, which the launch names. */
  entryId: string;
  source: { path: string; bytes: Uint8Array };
  /** The kagome-open command written into Exec and TryExec. */
  launcher: string;
  /** The visible name: {name} is the original name, {cage} the cage. */
  nameFormat?: string;
}

export interface ShadowInfo {
  cage: string;
  entryId: string;
  sourcePath: string;
  sourceHash: string;
  /** False when the file no longer matches its own digest: somebody edited it. */
  intact: boolean;
}

export function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Checks a name format from a cage file: it must show the original name. */
export function checkNameFormat(format: string): string | undefined {
  if (!format.includes('{name}'))
    return "it must contain {name}, which stands for the program's own name";
  const unknown = format.match(/\{(?!name\}|cage\})[^}]*\}/);
  if (unknown) return `unknown placeholder ${unknown[0]}; only {name} and {cage} exist`;
  return undefined;
}

function formatName(format: string, name: string, cage: string): string {
  // split/join rather than replace(): names may contain '$&' and friends.
  return format
    .split('{name}')
    .map((part) => part.split('{cage}').join(cage))
    .join(name);
}

/** The one file field code of an Exec line, if any (the parser allows at most one). */
function fileCode(args: readonly ExecArg[]): FieldCode | undefined {
  for (const arg of args) {
    const parts = typeof arg === 'string' ? [] : Array.isArray(arg) ? arg : [arg];
    for (const p of parts) {
      if (typeof p !== 'string' && FILE_CODES.has(p.fieldCode)) return p.fieldCode;
    }
  }
  return undefined;
}

function parsedExec(kf: Keyfile, group: string, file: string): ExecArg[] | undefined {
  const raw = kf.get(group, 'Exec');
  if (raw === undefined) return undefined;
  try {
    return parseExec(raw);
  } catch (e) {
    throw new FileError(
      'InvalidDesktopEntry',
      { file, line: kf.lineOf(group, 'Exec'), key: 'Exec' },
      (e as Error).message,
    );
  }
}

/** The text of the shadow entry for `spec`, or an error saying why this entry cannot be caged. */
export function makeShadow(spec: ShadowSpec): string {
  const file = spec.source.path;
  const kf = Keyfile.parse(spec.source.bytes, { file });
  const fail = (reason: string, key?: string, group = DESKTOP_ENTRY): never => {
    throw new FileError(
      'InvalidDesktopEntry',
      { file, line: key ? kf.lineOf(group, key) : kf.groupLine(group), key },
      reason,
    );
  };
  // The specification allows no control characters in values; copied into a shadow, a NUL or
  // an escape sequence in Name would reach menus, docks and terminals that list entries.
  const text = Buffer.from(spec.source.bytes).toString('utf8');
  const control = /[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f]/.exec(text);
  if (control) {
    const line = text.slice(0, control.index).split('\n').length;
    throw new FileError(
      'InvalidDesktopEntry',
      { file, line },
      `a control character (U+${control[0].charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()}) is in the entry, which desktop entries may not contain`,
    );
  }
  if (!kf.hasGroup(DESKTOP_ENTRY)) fail(`no [${DESKTOP_ENTRY}] group; this is not a desktop entry`);
  if (kf.get(DESKTOP_ENTRY, 'Type') !== 'Application')
    fail('only entries with Type=Application can be put in a cage', 'Type');
  if (kf.getBoolean(DESKTOP_ENTRY, 'Hidden'))
    fail('the entry is deleted (Hidden=true), so there is nothing to put in a cage', 'Hidden');
  // A terminal program gets its terminal inside the cage (the launcher reads Terminal= from the
  // original entry). The shadow itself must not say Terminal=true: the desktop would run the
  // launcher in a host terminal, and the caged program would then have the host's tty.
  if (kf.getBoolean(DESKTOP_ENTRY, 'Terminal')) kf.setBoolean(DESKTOP_ENTRY, 'Terminal', false);
  const mainExec = parsedExec(kf, DESKTOP_ENTRY, file);
  if (!mainExec) {
    fail(
      kf.getBoolean(DESKTOP_ENTRY, 'DBusActivatable')
        ? 'no Exec key: the program can only be started over D-Bus (DBusActivatable=true), which would bypass the cage'
        : 'no Exec key, so there is nothing to run',
    );
  }
  const nameFormat = spec.nameFormat ?? DEFAULT_NAME_FORMAT;
  const formatProblem = checkNameFormat(nameFormat);
  if (formatProblem)
    throw new KagomeError(
      'InvalidArgument',
      `name format ${JSON.stringify(nameFormat)}: ${formatProblem}`,
    );

  // Check every Exec before changing anything: a shadow is written whole or not at all.
  const execs = new Map<string, ExecArg[]>([[DESKTOP_ENTRY, mainExec!]]);
  const execless: string[] = [];
  for (const group of kf.groups()) {
    if (!group.startsWith(ACTION_PREFIX)) continue;
    const args = parsedExec(kf, group, file);
    if (args) execs.set(group, args);
    else execless.push(group);
  }
  // An action without Exec can only be started over D-Bus (ActivateAction), which would
  // bypass the cage: the shadow does not offer it.
  for (const group of execless) kf.removeGroup(group);
  const removed = new Set(execless.map((g) => g.slice(ACTION_PREFIX.length)));
  const actions = kf.getList(DESKTOP_ENTRY, 'Actions');
  if (actions && removed.size) {
    const kept = actions.filter((a) => !removed.has(a));
    if (kept.filter((a) => a !== '').length) kf.setList(DESKTOP_ENTRY, 'Actions', kept);
    else kf.delete(DESKTOP_ENTRY, 'Actions');
  }

  for (const key of Object.values(SHADOW_KEYS)) kf.delete(DESKTOP_ENTRY, key);
  for (const [group, args] of execs) {
    const action = group === DESKTOP_ENTRY ? [] : ['--action', group.slice(ACTION_PREFIX.length)];
    const code = fileCode(args);
    const line = [
      spec.launcher,
      '--cage',
      spec.cage,
      '--entry',
      spec.entryId,
      ...action,
      '--',
      ...(code ? [{ fieldCode: code }] : []),
    ];
    kf.set(group, 'Exec', formatExec(line));
  }
  kf.delete(DESKTOP_ENTRY, 'DBusActivatable');
  kf.set(DESKTOP_ENTRY, 'TryExec', spec.launcher);
  if (kf.has(DESKTOP_ENTRY, 'StartupNotify')) kf.setBoolean(DESKTOP_ENTRY, 'StartupNotify', false);
  const program = mainExec![0];
  if (!kf.has(DESKTOP_ENTRY, 'StartupWMClass') && typeof program === 'string') {
    kf.set(DESKTOP_ENTRY, 'StartupWMClass', posix.basename(program));
  }
  for (const { key, locale } of kf.keys(DESKTOP_ENTRY)) {
    if (key !== 'Name') continue;
    kf.set(
      DESKTOP_ENTRY,
      'Name',
      formatName(nameFormat, kf.get(DESKTOP_ENTRY, 'Name', locale) ?? '', spec.cage),
      locale,
    );
  }
  kf.set(DESKTOP_ENTRY, SHADOW_KEYS.cage, spec.cage);
  kf.set(DESKTOP_ENTRY, SHADOW_KEYS.entry, spec.entryId);
  kf.set(DESKTOP_ENTRY, SHADOW_KEYS.source, spec.source.path);
  kf.set(DESKTOP_ENTRY, SHADOW_KEYS.sourceHash, sha256(spec.source.bytes));
  kf.setRaw(DESKTOP_ENTRY, SHADOW_KEYS.digest, DIGEST_PLACEHOLDER);
  const draft = kf.toString();
  kf.setRaw(DESKTOP_ENTRY, SHADOW_KEYS.digest, digestOf(draft));
  return kf.toString();
}

/** The hash of a shadow's text without its own digest line. */
function digestOf(text: string): string {
  const kept = text.split(/(?<=\n)/).filter((line) => !DIGEST_LINE.test(line));
  return sha256(kept.join(''));
}

/** Whether a parsed entry is a kagome shadow (by its X-Kagome-Cage key). */
export function isShadow(kf: Keyfile): boolean {
  return kf.has(DESKTOP_ENTRY, SHADOW_KEYS.cage);
}

/** What a shadow says about itself, or undefined when the text is not a shadow. */
export function readShadow(kf: Keyfile): ShadowInfo | undefined {
  if (!isShadow(kf)) return undefined;
  const get = (key: string): string => kf.get(DESKTOP_ENTRY, key) ?? '';
  return {
    cage: get(SHADOW_KEYS.cage),
    entryId: get(SHADOW_KEYS.entry),
    sourcePath: get(SHADOW_KEYS.source),
    sourceHash: get(SHADOW_KEYS.sourceHash),
    intact: kf.getRaw(DESKTOP_ENTRY, SHADOW_KEYS.digest) === digestOf(kf.toString()),
  };
}
