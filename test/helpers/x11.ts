// Looking at windows on a (test) X display the way a person would: is it there, what
// is it called, what does it look like. Shells out to xdotool/xprop/xwininfo/import so
// the checks see exactly what any other X client sees.

import { execa } from 'execa';
import { waitFor } from './wait.js';

export interface WindowMatch {
  /** Equal to either WM_CLASS element (instance or class), case-sensitive. */
  wmClass?: string;
  /** Equal to the window title (_NET_WM_NAME, else WM_NAME). */
  name?: string;
}

export interface FoundWindow {
  /** Hex id as xprop/xwininfo print it, e.g. "0x20000a". */
  id: string;
  /** WM_CLASS as [instance, class] (or whatever the client set). */
  wmClass: string[];
  name: string;
}

export interface WindowWaitOptions {
  timeoutMs?: number;
  pollMs?: number;
}

const PACKAGES: Record<string, string> = {
  xdotool: 'xdotool',
  xprop: 'x11-utils',
  xwininfo: 'x11-utils',
  import: 'imagemagick',
};

async function run(
  display: string,
  cmd: string,
  args: string[],
): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const r = await execa(cmd, args, {
    env: { DISPLAY: display },
    reject: false,
    stripFinalNewline: true,
  });
  if (r.exitCode === undefined) {
    if (r.code === 'ENOENT') {
      throw new Error(`${cmd} is not installed (Debian package: ${PACKAGES[cmd] ?? cmd})`);
    }
    throw new Error(`${cmd} could not be started: ${r.message}`);
  }
  return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
}

export async function waitForWindow(
  display: string,
  match: WindowMatch,
  opts: WindowWaitOptions = {},
): Promise<FoundWindow> {
  if (match.wmClass === undefined && match.name === undefined) {
    throw new TypeError('waitForWindow needs wmClass or name to match');
  }
  return waitFor(
    `a visible window with ${describe(match)} on ${display}`,
    async () => (await findWindows(display, match))[0],
    {
      timeoutMs: opts.timeoutMs ?? 30_000,
      pollMs: opts.pollMs ?? 100,
      detail: async () => `windows that exist:\n${await listWindows(display)}`,
    },
  );
}

/** Ids of every visible window with a name or a class: what a person would see. */
export async function visibleWindows(display: string): Promise<string[]> {
  const ids = new Set<string>();
  for (const flag of ['--name', '--class']) {
    const r = await run(display, 'xdotool', ['search', '--onlyvisible', flag, '.']);
    for (const line of r.stdout.split('\n')) if (line.trim()) ids.add(line.trim());
  }
  return [...ids];
}

export async function countWindows(display: string, wmClass: string): Promise<number> {
  return (await findWindows(display, { wmClass })).length;
}

/**
 * The value xprop prints for `prop`: the text after "= " for one-line properties
 * (strings keep xprop's quoting, e.g. `"xeyes", "XEyes"`), or the indented lines of
 * multi-line ones (WM_HINTS, WM_NORMAL_HINTS) with indentation removed. Throws when the
 * property is not set, so a missing property never passes for an empty one.
 */
export async function windowProperty(display: string, id: string, prop: string): Promise<string> {
  const r = await run(display, 'xprop', ['-id', id, prop]);
  if (r.exitCode !== 0)
    throw new Error(`xprop -id ${id} ${prop} failed on ${display}: ${r.stderr.trim()}`);
  const out = r.stdout;
  // "NAME(TYPE) = value" or "NAME(TYPE):" followed by indented lines; an unset property
  // prints "NAME:  not found." and an atom nobody ever interned "NAME:  no such atom...".
  const head = /^[^\s(:=]+(?:\([^)]*\))?(\s*=|:)\s?/.exec(out);
  if (!head) throw new Error(`unexpected xprop output for ${prop} on window ${id}: ${out}`);
  const rest = out.slice(head[0].length);
  if (head[1] !== ':') return rest;
  if (/^\s*(not found\.|no such atom)/.test(rest)) {
    throw new Error(`window ${id} on ${display} has no ${prop} property`);
  }
  return rest
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .join('\n');
}

export async function screenshot(display: string, file: string): Promise<void> {
  const r = await run(display, 'import', ['-display', display, '-window', 'root', file]);
  if (r.exitCode !== 0)
    throw new Error(`import -window root ${file} failed on ${display}: ${r.stderr.trim()}`);
}

export async function findWindows(display: string, match: WindowMatch): Promise<FoundWindow[]> {
  // xdotool matches case-insensitive regexes, so it only narrows the candidates; the
  // exact comparison happens against what xprop reports.
  const ids = new Set<string>();
  const search = async (flag: string, text: string): Promise<void> => {
    const r = await run(display, 'xdotool', [
      'search',
      '--onlyvisible',
      flag,
      `^${ereEscape(text)}$`,
    ]);
    // exit 1 with no output just means "nothing matched"
    if (r.exitCode !== 0 && r.stdout.trim() !== '') {
      throw new Error(`xdotool search failed on ${display}: ${r.stderr.trim()}`);
    }
    for (const line of r.stdout.split('\n')) if (/^\d+$/.test(line.trim())) ids.add(line.trim());
  };
  if (match.wmClass !== undefined) {
    await search('--class', match.wmClass);
    await search('--classname', match.wmClass);
  } else if (match.name !== undefined) {
    await search('--name', match.name);
  }

  const found: FoundWindow[] = [];
  for (const dec of ids) {
    const id = '0x' + Number(dec).toString(16);
    let wmClass: string[];
    let name: string;
    try {
      wmClass = parseXpropStrings(await windowProperty(display, id, 'WM_CLASS'));
      name = await windowName(display, id);
    } catch {
      continue; // unmapped or destroyed between search and inspection
    }
    if (match.wmClass !== undefined && !wmClass.includes(match.wmClass)) continue;
    if (match.name !== undefined && name !== match.name) continue;
    found.push({ id, wmClass, name });
  }
  return found;
}

async function windowName(display: string, id: string): Promise<string> {
  for (const prop of ['_NET_WM_NAME', 'WM_NAME']) {
    try {
      const [name] = parseXpropStrings(await windowProperty(display, id, prop));
      if (name !== undefined) return name;
    } catch {
      // try the next one
    }
  }
  return '';
}

async function listWindows(display: string): Promise<string> {
  const r = await run(display, 'xwininfo', ['-root', '-tree']);
  if (r.exitCode !== 0) return `(xwininfo failed: ${r.stderr.trim()})`;
  const lines = r.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^0x[0-9a-f]+ /.test(l) && !/\(has no name\): \(\)/.test(l));
  return lines.length ? lines.map((l) => '  ' + l).join('\n') : '  (none with a name or WM_CLASS)';
}

function describe(match: WindowMatch): string {
  const parts: string[] = [];
  if (match.wmClass !== undefined) parts.push(`WM_CLASS ${JSON.stringify(match.wmClass)}`);
  if (match.name !== undefined) parts.push(`name ${JSON.stringify(match.name)}`);
  return parts.join(' and ');
}

function ereEscape(s: string): string {
  return s.replace(/[\\^$.|?*+()[\]{}]/g, '\\$&');
}

/**
 * Parses xprop's `"a", "b"` string lists. xprop escapes `"` and `\` with a
 * backslash, newline as \n and other unprintable bytes as \ooo; octal escapes are
 * bytes, so they are collected and decoded as UTF-8 together with the literal text.
 */
export function parseXpropStrings(text: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"/gs;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const body = m[1] ?? '';
    const bytes: number[] = [];
    for (let i = 0; i < body.length;) {
      const esc = /^\\([0-7]{1,3}|.)/s.exec(body.slice(i));
      if (esc) {
        const e = esc[1] ?? '';
        if (/^[0-7]+$/.test(e)) bytes.push(parseInt(e, 8) & 0xff);
        else bytes.push(...Buffer.from(e === 'n' ? '\n' : e === 't' ? '\t' : e));
        i += esc[0].length;
      } else {
        const ch = String.fromCodePoint(body.codePointAt(i) ?? 0);
        bytes.push(...Buffer.from(ch));
        i += ch.length;
      }
    }
    out.push(Buffer.from(bytes).toString('utf8'));
  }
  return out;
}
