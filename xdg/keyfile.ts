// The freedesktop keyfile syntax ("Desktop Entry Specification", sections "Basic format
// of the file", "Possible value types" and "Localized values for keys"), used for
// .desktop files and for kagome's own .cage files.
//
// Files are edited by people and by other programs, so writing one back must not
// reformat it: every line keeps its original text and line ending, and only the lines
// kagome actually changes are re-rendered. A value is kept in its escaped form as it
// appears in the file; escaping happens only at the get/set boundary.

import { FileError, KagomeError, type ErrorName } from '../lib/errors.js';

export interface ParseOptions {
  /** Name used in error messages; '<memory>' if not given. */
  file?: string;
  /** Error name for syntax and value errors; 'InvalidDesktopEntry' if not given. */
  errorName?: ErrorName;
  /**
   * Accept any key without whitespace, '=', '[' or ']' instead of only A-Za-z0-9 and '-'.
   * The spec's key rule does not fit files of the same syntax that use MIME types as
   * keys (mimeapps.list, mimeinfo.cache).
   */
  lenientKeys?: boolean;
}

export interface KeyInfo {
  key: string;
  locale: string | undefined;
  /** 1-based line number. */
  line: number;
}

type LineKind = 'blank' | 'comment' | 'group' | 'entry';

interface Line {
  /** Text of the line without its line ending. */
  raw: string;
  /** '\n' or '\r\n'; used when another line follows (see Keyfile.trailingNewline). */
  eol: string;
  kind: LineKind;
  /** 1-based; valid only while Keyfile.numbered is true. */
  no: number;
  // entry lines only:
  group?: Group;
  key?: string;
  locale?: string | undefined;
  /** Everything before the value: indentation, key, locale, '=' and the spaces around it. */
  prefix?: string;
  value?: string;
}

interface Group {
  name: string;
  header: Line;
  entries: Map<string, Line>;
}

const STRICT_KEY = /^[A-Za-z0-9-]+$/;
// No whitespace, '=', brackets or control characters: anything else would not read back
// as the same key.
const LENIENT_KEY = /^[^\s=[\]\p{Cc}]+$/u;
// lang_COUNTRY.ENCODING@MODIFIER, loosely: real files carry things like 'x-test' and
// 'zh_Hant', and rejecting a whole file for an odd translation helps nobody.
const LOCALE = /^[A-Za-z0-9_.@-]+$/;
const BAD_GROUP_CHARS = /[[\]\p{Cc}]/u;
const KEY_AND_LOCALE = /^([^[\]]*)(?:\[([^[\]]*)\])?$/;

const UNESCAPES = new Map<string, string>([
  ['s', ' '],
  ['n', '\n'],
  ['t', '\t'],
  ['r', '\r'],
  ['\\', '\\'],
]);

/** Escape a string value for a keyfile: the result never contains a line break. */
export function escapeValue(s: string): string {
  let out = '';
  for (const c of s) {
    switch (c) {
      case '\\':
        out += '\\\\';
        break;
      case '\n':
        out += '\\n';
        break;
      case '\t':
        out += '\\t';
        break;
      case '\r':
        out += '\\r';
        break;
      default:
        out += c;
    }
  }
  // Readers skip whitespace after '=', and some trim the end of lines too.
  if (out.startsWith(' ')) out = '\\s' + out.slice(1);
  if (out.endsWith(' ')) out = out.slice(0, -1) + '\\s';
  return out;
}

/**
 * Undo keyfile string escapes. Unknown escapes (including '\;', which only means
 * something in lists) are kept as written rather than rejected, as Exec lines in the
 * wild depend on that.
 */
export function unescapeValue(raw: string): string {
  if (!raw.includes('\\')) return raw;
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === '\\' && i + 1 < raw.length) {
      const u = UNESCAPES.get(raw[i + 1]!);
      if (u !== undefined) {
        out += u;
        i++;
        continue;
      }
    }
    out += c;
  }
  return out;
}

/** Split a raw (still escaped) list value on unescaped ';' and unescape each element. */
export function splitList(raw: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === '\\' && i + 1 < raw.length) {
      const n = raw[i + 1]!;
      const u = n === ';' ? ';' : UNESCAPES.get(n);
      if (u !== undefined) {
        cur += u;
        i++;
        continue;
      }
      cur += c;
    } else if (c === ';') {
      out.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  // The trailing ';' is optional: only a non-empty remainder is another element.
  if (cur !== '') out.push(cur);
  return out;
}

/** Escape and join list elements, each followed by ';' (so [''] stays distinguishable from []). */
export function joinList(values: readonly string[]): string {
  let out = '';
  for (const v of values) out += escapeValue(v).replaceAll(';', '\\;') + ';';
  return out;
}

/**
 * The spec's fallback order for one locale: lang_COUNTRY@MODIFIER, lang_COUNTRY,
 * lang@MODIFIER, lang. The encoding part is ignored.
 */
export function localeFallbacks(locale: string): string[] {
  const m = /^([^_.@]+)(?:_([^.@]+))?(?:\.[^@]*)?(?:@(.+))?$/.exec(locale);
  if (!m) return [];
  const lang = m[1]!;
  const country = m[2];
  const modifier = m[3];
  if (lang === 'C' || lang === 'POSIX') return [];
  const out: string[] = [];
  if (country !== undefined && modifier !== undefined) out.push(`${lang}_${country}@${modifier}`);
  if (country !== undefined) out.push(`${lang}_${country}`);
  if (modifier !== undefined) out.push(`${lang}@${modifier}`);
  out.push(lang);
  return out;
}

/**
 * The user's preferred message locales, best first, as gettext picks them: LANGUAGE
 * (a ':' list) counts only when the locale from LC_ALL / LC_MESSAGES / LANG is not C.
 */
export function localesFromEnv(env: Record<string, string | undefined>): string[] {
  const primary = env.LC_ALL || env.LC_MESSAGES || env.LANG || '';
  if (localeFallbacks(primary).length === 0) return [];
  const language = (env.LANGUAGE ?? '').split(':').filter((l) => localeFallbacks(l).length > 0);
  return language.length > 0 ? language : [primary];
}

function entryId(key: string, locale: string | undefined): string {
  return locale === undefined ? key : `${key}[${locale}]`;
}

function invalidArgument(message: string): KagomeError {
  return new KagomeError('InvalidArgument', message);
}

/** Offset of the first byte that is not part of valid UTF-8, or -1. */
function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let min: number;
    let cp: number;
    if (c >= 0xc2 && c <= 0xdf) {
      need = 1;
      min = 0x80;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      min = 0x800;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      min = 0x10000;
      cp = c & 0x07;
    } else {
      return i;
    }
    for (let k = 1; k <= need; k++) {
      const d = b[i + k];
      if (d === undefined || (d & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return i;
    i += need + 1;
  }
  return -1;
}

export class Keyfile {
  readonly file: string;
  readonly errorName: ErrorName;
  private readonly lenientKeys: boolean;
  private lines: Line[] = [];
  private readonly groupMap = new Map<string, Group>();
  private bom = '';
  /** Whether the last line is followed by a line ending; kept as found. */
  private trailingNewline = true;
  private defaultEol = '\n';
  private numbered = true;

  private constructor(options: ParseOptions) {
    this.file = options.file ?? '<memory>';
    this.errorName = options.errorName ?? 'InvalidDesktopEntry';
    this.lenientKeys = options.lenientKeys ?? false;
  }

  static create(options: ParseOptions = {}): Keyfile {
    return new Keyfile(options);
  }

  static parse(input: string | Uint8Array, options: ParseOptions = {}): Keyfile {
    const kf = new Keyfile(options);
    kf.load(typeof input === 'string' ? input : kf.decode(input));
    return kf;
  }

  private fail(line: number | undefined, reason: string, key?: string): FileError {
    return new FileError(this.errorName, { file: this.file, line, key }, reason);
  }

  private decode(bytes: Uint8Array): string {
    try {
      // ignoreBOM keeps a byte order mark in the text so that it is written back.
      return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
    } catch {
      const at = firstInvalidUtf8(bytes);
      let line = 1;
      for (let i = 0; i < at; i++) if (bytes[i] === 0x0a) line++;
      throw this.fail(line, `invalid UTF-8 (byte offset ${at}); the file must be encoded in UTF-8`);
    }
  }

  private load(text: string): void {
    if (text.startsWith('\uFEFF')) {
      this.bom = '\uFEFF';
      text = text.slice(1);
    }
    if (text === '') return;
    const pieces = text.split('\n');
    this.trailingNewline = text.endsWith('\n');
    if (this.trailingNewline) pieces.pop();
    const firstCr = pieces.length > 1 || this.trailingNewline ? pieces[0]!.endsWith('\r') : false;
    this.defaultEol = firstCr ? '\r\n' : '\n';

    let current: Group | undefined;
    const last = pieces.length - 1;
    for (let i = 0; i <= last; i++) {
      let raw = pieces[i]!;
      let eol: string;
      if (i === last && !this.trailingNewline) {
        eol = this.defaultEol;
      } else if (raw.endsWith('\r')) {
        raw = raw.slice(0, -1);
        eol = '\r\n';
      } else {
        eol = '\n';
      }
      const line = this.parseLine(raw, eol, i + 1, current);
      this.lines.push(line);
      if (line.kind === 'group') current = this.groupMap.get(line.key!);
    }
  }

  private parseLine(raw: string, eol: string, no: number, current: Group | undefined): Line {
    let i = 0;
    while (i < raw.length && (raw[i] === ' ' || raw[i] === '\t')) i++;
    if (i === raw.length) return { raw, eol, kind: 'blank', no };
    const c = raw[i];
    if (c === '#') return { raw, eol, kind: 'comment', no };
    if (c === '[') {
      const header = raw.trimEnd();
      if (!header.endsWith(']') || header.length - i < 2) {
        const what = header.includes(']', i)
          ? 'text after the closing "]" of group header'
          : 'unterminated group header';
        throw this.fail(
          no,
          `${what} ${JSON.stringify(raw.trim())}: a group header is a line [Group Name]`,
        );
      }
      const name = header.slice(i + 1, -1);
      if (name === '' || BAD_GROUP_CHARS.test(name)) {
        throw this.fail(
          no,
          `invalid group name ${JSON.stringify(name)}: it must be non-empty and contain no brackets or control characters`,
        );
      }
      const prev = this.groupMap.get(name);
      if (prev) throw this.fail(no, `duplicate group [${name}] (first at line ${prev.header.no})`);
      // `key` on a group line holds the group name so load() can find the group.
      const line: Line = { raw, eol, kind: 'group', no, key: name };
      this.groupMap.set(name, { name, header: line, entries: new Map() });
      return line;
    }
    const eq = raw.indexOf('=', i);
    if (eq < 0) {
      throw this.fail(
        no,
        `${JSON.stringify(raw.trim())} is not a group header, comment or Key=value line`,
      );
    }
    const keyText = raw.slice(i, eq).trimEnd();
    const m = KEY_AND_LOCALE.exec(keyText);
    const key = m?.[1];
    const locale = m?.[2];
    if (key === undefined || !this.validKey(key)) {
      throw this.fail(no, `invalid key name ${JSON.stringify(keyText)}: ${this.keyRule()}`);
    }
    if (locale !== undefined && !LOCALE.test(locale)) {
      throw this.fail(
        no,
        `invalid locale ${JSON.stringify(locale)} in key ${JSON.stringify(keyText)}`,
        key,
      );
    }
    if (!current) {
      throw this.fail(
        no,
        `${entryId(key, locale)} comes before any group header; the file must start with a group such as [Desktop Entry]`,
        key,
      );
    }
    const id = entryId(key, locale);
    const prev = current.entries.get(id);
    if (prev)
      throw this.fail(
        no,
        `duplicate key ${id} in group [${current.name}] (first at line ${prev.no})`,
        key,
      );
    let j = eq + 1;
    while (j < raw.length && (raw[j] === ' ' || raw[j] === '\t')) j++;
    const line: Line = {
      raw,
      eol,
      kind: 'entry',
      no,
      group: current,
      key,
      locale,
      prefix: raw.slice(0, j),
      value: raw.slice(j),
    };
    current.entries.set(id, line);
    return line;
  }

  private validKey(key: string): boolean {
    return (this.lenientKeys ? LENIENT_KEY : STRICT_KEY).test(key);
  }

  private keyRule(): string {
    return this.lenientKeys
      ? 'keys must not contain whitespace, "=", brackets or control characters'
      : 'keys may contain only A-Z, a-z, 0-9 and "-"';
  }

  toString(): string {
    const parts: string[] = [this.bom];
    const n = this.lines.length;
    for (let i = 0; i < n; i++) {
      const l = this.lines[i]!;
      parts.push(l.raw);
      if (i < n - 1 || this.trailingNewline) parts.push(l.eol);
    }
    return parts.join('');
  }

  // ---- groups ----

  groups(): string[] {
    return [...this.groupMap.keys()];
  }

  hasGroup(group: string): boolean {
    return this.groupMap.has(group);
  }

  /** Append a group at the end of the file; does nothing if it exists already. */
  addGroup(group: string): void {
    if (this.groupMap.has(group)) return;
    if (group === '' || BAD_GROUP_CHARS.test(group)) {
      throw invalidArgument(
        `invalid group name ${JSON.stringify(group)}: it must be non-empty and contain no brackets or control characters`,
      );
    }
    const last = this.lines[this.lines.length - 1];
    if (last && last.kind !== 'blank') this.lines.push(this.newLine('blank', ''));
    const header = this.newLine('group', `[${group}]`);
    header.key = group;
    this.lines.push(header);
    this.groupMap.set(group, { name: group, header, entries: new Map() });
    this.numbered = false;
  }

  /**
   * Remove a group with its entries and the comments inside it. Comments directly above
   * a header are taken to describe that group: they go with it, and those above the next
   * group stay.
   */
  removeGroup(group: string): boolean {
    const g = this.groupMap.get(group);
    if (!g) return false;
    const lines = this.lines;
    const headerAt = lines.indexOf(g.header);
    let start = headerAt;
    while (start > 0 && lines[start - 1]!.kind === 'comment') start--;
    let end = this.groupEnd(headerAt + 1);
    if (end < lines.length) {
      while (end - 1 > start && lines[end - 1]!.kind === 'comment') end--;
    } else {
      // Last group: do not leave the blank line that separated it dangling at the end.
      while (start > 0 && lines[start - 1]!.kind === 'blank') start--;
    }
    lines.splice(start, end - start);
    this.groupMap.delete(group);
    this.numbered = false;
    return true;
  }

  // ---- keys ----

  keys(group: string): KeyInfo[] {
    const g = this.groupMap.get(group);
    if (!g) return [];
    this.number();
    return [...g.entries.values()].map((l) => ({ key: l.key!, locale: l.locale, line: l.no }));
  }

  lineOf(group: string, key: string, locale?: string): number | undefined {
    const l = this.entry(group, key, locale);
    if (!l) return undefined;
    this.number();
    return l.no;
  }

  /** 1-based line of a group's header. */
  groupLine(group: string): number | undefined {
    const g = this.groupMap.get(group);
    if (!g) return undefined;
    this.number();
    return g.header.no;
  }

  has(group: string, key: string, locale?: string): boolean {
    return this.entry(group, key, locale) !== undefined;
  }

  getRaw(group: string, key: string, locale?: string): string | undefined {
    return this.entry(group, key, locale)?.value;
  }

  get(group: string, key: string, locale?: string): string | undefined {
    const raw = this.getRaw(group, key, locale);
    return raw === undefined ? undefined : unescapeValue(raw);
  }

  /**
   * A localestring: the best translation for `locales` (most preferred first, e.g. from
   * localesFromEnv), else the untranslated value. Translations whose locale carries an
   * encoding (Name[de_DE.UTF-8]) match as if it were absent.
   */
  getLocaleString(group: string, key: string, locales: readonly string[]): string | undefined {
    const raw = this.localizedRaw(group, key, locales);
    return raw === undefined ? undefined : unescapeValue(raw);
  }

  /** A localestring list (e.g. Keywords), matched like getLocaleString. */
  getLocaleList(group: string, key: string, locales: readonly string[]): string[] | undefined {
    const raw = this.localizedRaw(group, key, locales);
    return raw === undefined ? undefined : splitList(raw);
  }

  getList(group: string, key: string, locale?: string): string[] | undefined {
    const raw = this.getRaw(group, key, locale);
    return raw === undefined ? undefined : splitList(raw);
  }

  /** Only 'true' and 'false' are booleans (the spec dropped 0 and 1). */
  getBoolean(group: string, key: string): boolean | undefined {
    const l = this.entry(group, key, undefined);
    if (!l) return undefined;
    if (l.value === 'true') return true;
    if (l.value === 'false') return false;
    this.number();
    throw this.fail(
      l.no,
      `[${group}] ${key} must be true or false, not ${JSON.stringify(l.value)}`,
      key,
    );
  }

  set(group: string, key: string, value: string, locale?: string): void {
    // An equal value stays as written, even if it is escaped differently from ours.
    if (this.get(group, key, locale) === value) return;
    this.setRaw(group, key, escapeValue(value), locale);
  }

  setList(group: string, key: string, values: readonly string[], locale?: string): void {
    const old = this.getList(group, key, locale);
    if (old && old.length === values.length && old.every((v, i) => v === values[i])) return;
    this.setRaw(group, key, joinList(values), locale);
  }

  setBoolean(group: string, key: string, value: boolean): void {
    this.setRaw(group, key, value ? 'true' : 'false');
  }

  /**
   * Set the value text exactly as it should appear in the file. An existing key keeps
   * its position and the spacing around its '='; a new one goes after the group's last
   * key, above any blank lines and comments that lead into the next group.
   */
  setRaw(group: string, key: string, raw: string, locale?: string): void {
    if (!this.validKey(key))
      throw invalidArgument(`invalid key name ${JSON.stringify(key)}: ${this.keyRule()}`);
    if (locale !== undefined && !LOCALE.test(locale))
      throw invalidArgument(`invalid locale ${JSON.stringify(locale)}`);
    if (/[\r\n]/.test(raw))
      throw invalidArgument(
        `the raw value for ${key} contains a line break; use set() to escape it`,
      );
    if (/^[ \t]/.test(raw))
      throw invalidArgument(
        `the raw value for ${key} starts with whitespace, which readers drop; escape it as \\s`,
      );
    const existing = this.entry(group, key, locale);
    if (existing) {
      if (existing.value === raw) return;
      existing.value = raw;
      existing.raw = existing.prefix! + raw;
      return;
    }
    this.addGroup(group);
    const g = this.groupMap.get(group)!;
    const id = entryId(key, locale);
    const line = this.newLine('entry', `${id}=${raw}`);
    Object.assign(line, { group: g, key, locale, prefix: `${id}=`, value: raw });
    const headerAt = this.lines.indexOf(g.header);
    let at = this.groupEnd(headerAt + 1);
    while (
      at - 1 > headerAt &&
      (this.lines[at - 1]!.kind === 'blank' || this.lines[at - 1]!.kind === 'comment')
    )
      at--;
    this.lines.splice(at, 0, line);
    g.entries.set(id, line);
    this.numbered = false;
  }

  delete(group: string, key: string, locale?: string): boolean {
    const l = this.entry(group, key, locale);
    if (!l) return false;
    this.lines.splice(this.lines.indexOf(l), 1);
    l.group!.entries.delete(entryId(key, locale));
    this.numbered = false;
    return true;
  }

  // ---- internals ----

  private entry(group: string, key: string, locale: string | undefined): Line | undefined {
    return this.groupMap.get(group)?.entries.get(entryId(key, locale));
  }

  private localizedRaw(group: string, key: string, locales: readonly string[]): string | undefined {
    const g = this.groupMap.get(group);
    if (!g) return undefined;
    const translations = new Map<string, string>();
    for (const l of g.entries.values()) {
      if (l.key !== key || l.locale === undefined) continue;
      const norm = l.locale.replace(/\.[^@]*/, '');
      // An exact match beats one that only matched after dropping the encoding.
      if (!translations.has(norm) || norm === l.locale) translations.set(norm, l.value!);
    }
    if (translations.size > 0) {
      for (const locale of locales) {
        for (const candidate of localeFallbacks(locale)) {
          const v = translations.get(candidate);
          if (v !== undefined) return v;
        }
      }
    }
    return g.entries.get(key)?.value;
  }

  /** Index of the next group header at or after `from`, or the number of lines. */
  private groupEnd(from: number): number {
    let i = from;
    while (i < this.lines.length && this.lines[i]!.kind !== 'group') i++;
    return i;
  }

  private newLine(kind: LineKind, raw: string): Line {
    return { raw, eol: this.defaultEol, kind, no: 0 };
  }

  private number(): void {
    if (this.numbered) return;
    this.lines.forEach((l, i) => (l.no = i + 1));
    this.numbered = true;
  }
}
