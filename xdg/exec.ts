// The Exec key of desktop entries ("The Exec key" in the Desktop Entry Specification).
//
// There are two levels of escaping: the keyfile string escapes (\s \n \t \r \\) are
// undone first by Keyfile.get(), and what this module parses is the result: a command
// line with its own quoting and %-field codes. Expansion yields argv arrays that are
// executed directly, never through a shell, so characters a shell would interpret are
// only ever data here.
//
// How strictly the quoting rules are applied: the spec wants any argument holding a
// reserved character quoted as a whole with double quotes. Real desktops (GLib, KDE) run
// Exec through a shell-like parser instead, and many installed files rely on that, e.g.
// wine's `env WINEPREFIX="/home/u/.wine" wine ...`. This parser accepts what a shell
// word would, where the meaning is unambiguous:
//   - quoted segments may be part of a larger word (`--x="a b"` is `--x=a b`);
//   - single quotes quote literally, as in a shell;
//   - outside quotes a backslash takes the next character literally;
//   - inside double quotes \" \` \$ \\ are escapes and any other backslash is literal;
//   - other reserved characters (> < ~ | & ; $ * ? # ( ) `) are ordinary characters,
//     since no shell sees them.
// It rejects what has no sensible meaning: an unterminated quote (including a quote
// opened in the middle of a word and never closed), a trailing backslash, an unknown
// field code or a lone '%', a field code inside quotes (forbidden by the spec, and its
// expansion there would be ambiguous; only %% is allowed as the literal '%'), more than
// one of %f %F %u %U, %F %U or %i that are not an argument on their own, and a field
// code in the program name.

import { posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isUtf8 } from 'node:buffer';
import { KagomeError } from '../lib/errors.js';

/** Field codes that survive parsing; the deprecated ones are dropped. */
export type FieldCode = 'f' | 'F' | 'u' | 'U' | 'i' | 'c' | 'k';

export interface FieldCodeRef {
  fieldCode: FieldCode;
}

export type ExecPart = string | FieldCodeRef;

/**
 * One argument of an Exec line: a literal string, a field code on its own, or a word
 * mixing literal text with field codes (such as `--file=%f`).
 */
export type ExecArg = string | FieldCodeRef | readonly ExecPart[];

export interface ExecContext {
  /** Local paths; relative ones are resolved against `cwd` when a URI is needed. */
  files?: readonly string[];
  uris?: readonly string[];
  /** The Icon key, for %i. */
  icon?: string;
  /** The translated Name, for %c. */
  name?: string;
  /** Where the desktop file is, for %k. */
  desktopFile?: string;
  cwd?: string;
}

const CODES = new Set<string>(['f', 'F', 'u', 'U', 'i', 'c', 'k']);
const FILE_CODES = new Set<string>(['f', 'F', 'u', 'U']);
const DEPRECATED_CODES = new Set<string>(['d', 'D', 'n', 'N', 'v', 'm']);
const ALONE_CODES = new Set<string>(['F', 'U', 'i']);
const WHITESPACE = new Set([' ', '\t', '\n']);
// The spec's reserved characters: an argument containing one is written quoted.
const RESERVED = /[\s"'\\><~|&;$*?#()`]/;

function invalid(raw: string, reason: string): KagomeError {
  return new KagomeError(
    'InvalidDesktopEntry',
    `invalid Exec line ${JSON.stringify(raw)}: ${reason}`,
  );
}

function isFieldCode(p: ExecPart): p is FieldCodeRef {
  return typeof p !== 'string';
}

function partsOf(arg: ExecArg): readonly ExecPart[] {
  return typeof arg === 'string' || !Array.isArray(arg)
    ? [arg as ExecPart]
    : (arg as readonly ExecPart[]);
}

/** Parse an (already keyfile-unescaped) Exec value into arguments. */
export function parseExec(raw: string): ExecArg[] {
  const args: ExecArg[] = [];
  const n = raw.length;
  let i = 0;
  let fileCodes = 0;

  for (;;) {
    while (i < n && WHITESPACE.has(raw[i]!)) i++;
    if (i >= n) break;

    const parts: ExecPart[] = [];
    let lit = '';
    let quoted = false;
    const flush = (): void => {
      if (lit !== '') parts.push(lit);
      lit = '';
    };
    // Inside quotes only %% may appear: field codes must not be quoted.
    const quotedPercent = (): void => {
      const d = raw[i + 1];
      if (d === '%') {
        lit += '%';
        i += 2;
      } else if (d !== undefined && (CODES.has(d) || DEPRECATED_CODES.has(d))) {
        throw invalid(
          raw,
          `field code %${d} inside a quoted argument; field codes must be arguments of their own or unquoted`,
        );
      } else {
        throw invalid(
          raw,
          d === undefined ? "'%' at the end" : `unknown field code %${d}; write a literal % as %%`,
        );
      }
    };

    while (i < n && !WHITESPACE.has(raw[i]!)) {
      const c = raw[i]!;
      if (c === '"') {
        quoted = true;
        i++;
        for (;;) {
          if (i >= n) throw invalid(raw, 'unterminated double quote');
          const q = raw[i]!;
          if (q === '"') {
            i++;
            break;
          }
          if (q === '\\' && i + 1 < n && '"`$\\'.includes(raw[i + 1]!)) {
            lit += raw[i + 1];
            i += 2;
          } else if (q === '%') {
            quotedPercent();
          } else {
            lit += q;
            i++;
          }
        }
      } else if (c === "'") {
        quoted = true;
        i++;
        for (;;) {
          if (i >= n) throw invalid(raw, 'unterminated single quote');
          const q = raw[i]!;
          if (q === "'") {
            i++;
            break;
          }
          if (q === '%') {
            quotedPercent();
          } else {
            lit += q;
            i++;
          }
        }
      } else if (c === '\\') {
        if (i + 1 >= n) throw invalid(raw, 'backslash at the end');
        lit += raw[i + 1];
        i += 2;
      } else if (c === '%') {
        const d = raw[i + 1];
        if (d === '%') {
          lit += '%';
        } else if (d !== undefined && CODES.has(d)) {
          flush();
          parts.push({ fieldCode: d as FieldCode });
          if (FILE_CODES.has(d) && ++fileCodes > 1) {
            throw invalid(raw, 'more than one of the field codes %f %F %u %U');
          }
        } else if (d !== undefined && DEPRECATED_CODES.has(d)) {
          // Deprecated codes expand to nothing.
        } else {
          throw invalid(
            raw,
            d === undefined
              ? "'%' at the end"
              : `unknown field code %${d}; write a literal % as %%`,
          );
        }
        i += 2;
      } else {
        lit += c;
        i++;
      }
    }
    flush();

    if (parts.length === 0) {
      // `""` is an empty argument; a word that was only deprecated codes is nothing.
      if (!quoted) continue;
      if (args.length === 0) throw invalid(raw, 'empty program name');
      args.push('');
      continue;
    }
    const codes = parts.filter(isFieldCode);
    if (args.length === 0 && codes.length > 0) {
      throw invalid(raw, `field code %${codes[0]!.fieldCode} in the program name`);
    }
    if (parts.length > 1) {
      const alone = codes.find((p) => ALONE_CODES.has(p.fieldCode));
      if (alone) throw invalid(raw, `%${alone.fieldCode} must be an argument on its own`);
    }
    if (parts.length === 1) args.push(parts[0]!);
    else if (codes.length === 0) args.push(parts.join(''));
    else args.push(parts);
  }

  if (args.length === 0) throw invalid(raw, 'no program');
  return args;
}

/** A file:// URI for an absolute path, percent-encoding everything outside the unreserved set. */
export function pathToFileUri(path: string): string {
  if (!path.startsWith('/')) {
    throw new KagomeError(
      'InvalidArgument',
      `cannot make a file URI from the relative path ${JSON.stringify(path)}`,
    );
  }
  return 'file://' + posix.normalize(path).split('/').map(encodeURIComponent).join('/');
}

/** The local path of a file:// URI on this host, or undefined for any other URI. */
export function fileUriToPath(uri: string): string | undefined {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'file:' || url.search !== '' || url.hash !== '') return undefined;
  if (url.hostname !== '' && url.hostname !== 'localhost') return undefined;
  try {
    return fileURLToPath(url);
  } catch {
    // e.g. an encoded '/' inside a segment, which names no file.
    return undefined;
  }
}

/**
 * An argument for a program. File names are bytes, not text: a name that is not valid UTF-8
 * stays a Buffer all the way to the program, since a JavaScript string cannot carry it.
 */
export type ArgValue = string | Buffer;

/** A string when the bytes are UTF-8 (the common case), else the bytes themselves. */
export function argValue(bytes: Buffer): ArgValue {
  return isUtf8(bytes) ? bytes.toString('utf8') : bytes;
}

function joinArg(a: ArgValue, b: ArgValue): ArgValue {
  return typeof a === 'string' && typeof b === 'string'
    ? a + b
    : Buffer.concat([Buffer.from(a), Buffer.from(b)]);
}

/**
 * The local path of a file:// URI as bytes: percent-escapes may encode any byte of a file
 * name, which fileURLToPath would turn into U+FFFD. Undefined for other URIs, a host other
 * than localhost, a query or fragment, or an encoded '/' or NUL.
 */
export function fileUriToPathBytes(uri: string): Buffer | undefined {
  const m = /^file:\/\/(localhost)?(\/[^?#]*)$/i.exec(uri);
  if (!m) return undefined;
  const raw = m[2]!;
  if (/%(2f|00)/i.test(raw) || /%(?![0-9a-f]{2})/i.test(raw)) return undefined;
  const out: number[] = [];
  const text = Buffer.from(raw, 'utf8');
  for (let i = 0; i < text.length; i++) {
    if (text[i] === 0x25) {
      out.push(parseInt(text.subarray(i + 1, i + 3).toString('latin1'), 16));
      i += 2;
    } else out.push(text[i]!);
  }
  return Buffer.from(out);
}

/** A file:// URI for an absolute path given as bytes (any name, UTF-8 or not), encoded as pathToFileUri encodes text. */
export function pathBytesToFileUri(p: Buffer): string {
  if (p[0] !== 0x2f)
    throw new KagomeError(
      'InvalidArgument',
      `cannot make a file URI from the relative path ${JSON.stringify(p.toString())}`,
    );
  let out = 'file://';
  for (const b of p) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9\-_.!~*'()\/]/.test(c)
      ? c
      : '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

function absolute(path: string, cwd: string | undefined): string {
  if (path.startsWith('/')) return path;
  if (cwd === undefined || !cwd.startsWith('/')) {
    throw new KagomeError(
      'InvalidArgument',
      `relative path ${JSON.stringify(path)} given without an absolute working directory`,
    );
  }
  return posix.resolve(cwd, path);
}

function fileCodeOf(args: readonly ExecArg[]): FieldCode | undefined {
  for (const arg of args) {
    for (const p of partsOf(arg)) {
      if (isFieldCode(p) && FILE_CODES.has(p.fieldCode)) return p.fieldCode;
    }
  }
  return undefined;
}

/**
 * Expand field codes into argv arrays, one per program run: several files for a
 * single-file code (%f or %u) mean one run per file. Files are turned into file:// URIs
 * for %u/%U; for %f/%F, file:// URIs become paths and other URIs are dropped. Files
 * given to an Exec without a file field code are dropped, as the program takes none.
 */
export function expandExec(args: readonly ExecArg[], ctx: ExecContext = {}): ArgValue[][] {
  const code = fileCodeOf(args);
  const files = ctx.files ?? [];
  const uris = ctx.uris ?? [];
  let items: ArgValue[] = [];
  if (code === 'f' || code === 'F') {
    items = [...files];
    for (const u of uris) {
      const p = fileUriToPathBytes(u);
      if (p !== undefined) items.push(argValue(p));
    }
  } else if (code === 'u' || code === 'U') {
    items = [...files.map((f) => pathToFileUri(absolute(f, ctx.cwd))), ...uris];
  }
  const runs: ArgValue[][] =
    code === 'f' || code === 'u' ? (items.length > 0 ? items.map((x) => [x]) : [[]]) : [items];

  return runs.map((run) => {
    const argv: ArgValue[] = [];
    for (const arg of args) {
      if (typeof arg === 'string') {
        argv.push(arg);
        continue;
      }
      if (!Array.isArray(arg)) {
        const p = arg as FieldCodeRef;
        switch (p.fieldCode) {
          case 'f':
          case 'u':
          case 'F':
          case 'U':
            argv.push(...run);
            break;
          case 'i':
            if (ctx.icon) argv.push('--icon', ctx.icon);
            break;
          case 'c':
            if (ctx.name !== undefined) argv.push(ctx.name);
            break;
          case 'k':
            if (ctx.desktopFile !== undefined) argv.push(ctx.desktopFile);
            break;
          default:
            throw new KagomeError('InvalidArgument', `unknown field code %${String(p.fieldCode)}`);
        }
        continue;
      }
      let word: ArgValue = '';
      let omit = false;
      for (const p of arg as readonly ExecPart[]) {
        if (!isFieldCode(p)) {
          word = joinArg(word, p);
          continue;
        }
        switch (p.fieldCode) {
          case 'f':
          case 'u':
            // `--file=%f` without a file would leave a dangling `--file=`: drop the argument.
            if (run.length === 0) omit = true;
            else word = joinArg(word, run[0]!);
            break;
          case 'c':
            word = joinArg(word, ctx.name ?? '');
            break;
          case 'k':
            word = joinArg(word, ctx.desktopFile ?? '');
            break;
          // Parsing rejects these inside a larger argument; an ExecArg made by hand may not.
          case 'i':
          case 'F':
          case 'U':
          default:
            throw new KagomeError(
              'InvalidArgument',
              `%${String(p.fieldCode)} must be an argument on its own`,
            );
        }
      }
      if (!omit) argv.push(word);
    }
    return argv;
  });
}

/** Quote one literal argument for an Exec line ('%' is doubled, never a field code). */
export function quoteExecArg(arg: string): string {
  const s = arg.replaceAll('%', '%%');
  if (s !== '' && !RESERVED.test(s)) return s;
  return '"' + s.replace(/["`$\\]/g, '\\$&') + '"';
}

function fieldCodeText(p: FieldCodeRef): string {
  const c = String(p.fieldCode).replace(/^%/, '');
  if (!CODES.has(c))
    throw new KagomeError('InvalidArgument', `unknown field code ${JSON.stringify(p.fieldCode)}`);
  return '%' + c;
}

/**
 * Write an Exec value from arguments: strings are literal arguments, `{ fieldCode }` is
 * a field code standing as its own argument, and an array is one word made of both
 * (literal parts of such a word cannot be quoted, as field codes must not be). The
 * result is the unescaped value: store it with Keyfile.set(), which adds the keyfile
 * escapes.
 */
export function formatExec(args: readonly (ExecArg | { fieldCode: string })[]): string {
  if (args.length === 0) throw new KagomeError('InvalidArgument', 'an Exec line needs a program');
  const words = args.map((arg) => {
    if (typeof arg === 'string') return quoteExecArg(arg);
    if (!Array.isArray(arg)) return fieldCodeText(arg as FieldCodeRef);
    const parts = arg as readonly ExecPart[];
    if (!parts.some(isFieldCode)) return quoteExecArg(parts.join(''));
    return parts
      .map((p) => {
        if (isFieldCode(p)) return fieldCodeText(p);
        if (RESERVED.test(p)) {
          throw new KagomeError(
            'InvalidArgument',
            `cannot quote ${JSON.stringify(p)} in an argument that also holds a field code`,
          );
        }
        return p.replaceAll('%', '%%');
      })
      .join('');
  });
  const line = words.join(' ');
  try {
    parseExec(line);
  } catch (e) {
    // Rules that span arguments (one file code, none in the program name) are checked by parsing.
    throw new KagomeError('InvalidArgument', e instanceof Error ? e.message : String(e), {
      cause: e,
    });
  }
  return line;
}
