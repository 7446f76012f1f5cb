import { spawn } from 'node:child_process';
import { KagomeError } from '../errors.js';
import { findInPath, missingProgramError } from '../requirements.js';
import type { CageHandle } from './bridge.js';

// X selections (CLIPBOARD, PRIMARY) on one display, read and owned through xclip, and watched
// through XFixes by a few lines of python3-xlib that print one line per change of owner, so
// nothing polls. xclip is the well-kept tool for the selection protocol (targets, INCR for large
// contents, serving requests until another program takes the selection); Node has no maintained
// X11 library. A display is "the host" (the user's own) or a cage's: Xephyr's runs on the host,
// so its selections are reached with host-side tools; xpra's X server lives inside the cage,
// so the same tools run inside it.

export type Selection = 'CLIPBOARD' | 'PRIMARY';

export interface Proc {
  stdin?: NodeJS.WritableStream & { destroy(): void };
  stdout: NodeJS.ReadableStream & { destroy(): void };
  exited: Promise<number>;
  /** ends the program (for one in a cage: its pipes, which ends it at its next write) */
  kill(): void;
}

export interface SelectionDisplay {
  /** "the host" or 'cage "web"', for messages */
  readonly label: string;
  run(argv: string[], stdin: boolean): Promise<Proc>;
}

// System python: the one python3-xlib is installed for (a user's pyenv shim may come first).
const SYSTEM_PATH = '/usr/bin:/bin';

const WATCHER = [
  'import sys',
  'from Xlib import display',
  'from Xlib.ext import xfixes',
  'd = display.Display()',
  'd.xfixes_query_version()',
  'root = d.screen().root',
  'for name in sys.argv[1:]:',
  '    d.xfixes_select_selection_input(root, d.intern_atom(name), xfixes.XFixesSetSelectionOwnerNotifyMask)',
  'print("ready", flush=True)',
  'while True:',
  '    e = d.next_event()',
  "    if type(e).__name__ == 'SetSelectionOwnerNotify':",
  '        print(d.get_atom_name(e.selection), e.owner.id if e.owner else 0, flush=True)',
].join('\n');

/** A display reached with host programs: the host's own, or a cage's Xephyr. */
export function hostDisplay(
  label: string,
  env: Record<string, string>,
  logFd: number,
): SelectionDisplay {
  return {
    label,
    async run(argv, stdin) {
      const program =
        argv[0] === 'python3' ? findInPath('python3', SYSTEM_PATH) : findInPath(argv[0]!, env.PATH);
      if (!program) throw missingProgramError(argv[0]!, 'by the clipboard bridge');
      const child = spawn(program, argv.slice(1), {
        env,
        stdio: [stdin ? 'pipe' : 'ignore', 'pipe', logFd],
      });
      const exited = new Promise<number>((resolve) => {
        child.once('error', () => resolve(127));
        child.once('exit', (code, sig) => resolve(code ?? (sig ? 128 : 1)));
      });
      return {
        ...(child.stdin ? { stdin: child.stdin } : {}),
        stdout: child.stdout!,
        exited,
        kill: () => child.kill(),
      };
    },
  };
}

/** The X server inside a cage (xpra's): the tools run in the cage, with the cage's DISPLAY. */
export function cageDisplay(label: string, cage: CageHandle): SelectionDisplay {
  return {
    label,
    async run(argv, stdin) {
      const h = await cage.backend.exec(cage.sandbox, {
        argv,
        env: cage.env,
        cwd: cage.cwd,
        logFd: cage.logFd,
        pipes: true,
      });
      if (!stdin) h.stdin?.end();
      const kill = () => {
        h.stdin?.destroy();
        h.stdout?.destroy();
      };
      return {
        ...(stdin && h.stdin ? { stdin: h.stdin } : {}),
        stdout: h.stdout!,
        exited: h.exited,
        kill,
      };
    },
  };
}

async function collect(
  p: Proc,
  maxBytes: number,
): Promise<{ data: Buffer; tooBig: boolean; code: number }> {
  const chunks: Buffer[] = [];
  let size = 0;
  let tooBig = false;
  p.stdout.on('data', (c: Buffer) => {
    if (tooBig) return;
    size += c.length;
    if (size > maxBytes) {
      // Stop reading: xclip gets EPIPE and ends; nothing past the limit is ever held.
      tooBig = true;
      p.stdout.destroy();
      return;
    }
    chunks.push(c);
  });
  const code = await p.exited;
  return { data: Buffer.concat(chunks), tooBig, code };
}

export async function targetsOf(d: SelectionDisplay, selection: Selection): Promise<string[]> {
  const r = await collect(
    await d.run(['xclip', '-selection', selection.toLowerCase(), '-o', '-t', 'TARGETS'], false),
    64 * 1024,
  );
  if (r.code !== 0) return [];
  return r.data
    .toString('latin1')
    .split('\n')
    .map((t) => t.trim())
    .filter(Boolean);
}

export interface Contents {
  target: string;
  kind: 'text' | 'image';
  data: Buffer;
}

const TEXT_TARGETS = ['UTF8_STRING', 'text/plain;charset=utf-8', 'STRING', 'TEXT', 'text/plain'];
const IMAGE_TARGETS = ['image/png'];

export type ReadResult =
  | { ok: true; contents: Contents }
  | { ok: false; why: 'empty' | 'too-big' | 'image' | 'other'; detail: string };

/**
 * What a selection holds, as text (preferred) or, when allowed, a PNG image; never more than
 * maxBytes of it is read.
 */
export async function readSelection(
  d: SelectionDisplay,
  selection: Selection,
  policy: { maxBytes: number; images: boolean },
): Promise<ReadResult> {
  const targets = await targetsOf(d, selection);
  if (targets.length === 0)
    return { ok: false, why: 'empty', detail: `nothing is copied on ${d.label}` };
  const text = TEXT_TARGETS.find((t) => targets.includes(t));
  const image = IMAGE_TARGETS.find((t) => targets.includes(t));
  let target: string;
  let kind: 'text' | 'image';
  if (text) {
    target = text;
    kind = 'text';
  } else if (image && policy.images) {
    target = image;
    kind = 'image';
  } else if (image) {
    return {
      ok: false,
      why: 'image',
      detail: `${d.label} holds an image; this cage allows text only (ClipboardImages=true allows images)`,
    };
  } else {
    return {
      ok: false,
      why: 'other',
      detail: `${d.label} holds neither text nor an image (${targets.slice(0, 6).join(', ')})`,
    };
  }
  const r = await collect(
    await d.run(['xclip', '-selection', selection.toLowerCase(), '-o', '-t', target], false),
    policy.maxBytes,
  );
  if (r.tooBig)
    return {
      ok: false,
      why: 'too-big',
      detail: `what is copied on ${d.label} is larger than ClipboardMaxSize (${policy.maxBytes} bytes)`,
    };
  if (r.code !== 0 || r.data.length === 0)
    return { ok: false, why: 'empty', detail: `nothing is copied on ${d.label}` };
  return { ok: true, contents: { target, kind, data: r.data } };
}

/**
 * Makes a selection hold `contents`: an xclip takes the selection and serves it until another
 * program takes it. Resolves once it owns the selection.
 */
export async function ownSelection(
  d: SelectionDisplay,
  selection: Selection,
  contents: Contents,
): Promise<void> {
  // xclip says it owns the selection on stderr; sh joins that to the pipe that is read here.
  const p = await d.run(
    [
      'sh',
      '-c',
      'exec "$0" "$@" 2>&1',
      'xclip',
      '-selection',
      selection.toLowerCase(),
      '-t',
      contents.target,
      '-i',
      '-quiet',
    ],
    true,
  );
  p.stdin!.end(contents.data);
  // With -quiet, xclip stays in the foreground and says so once it owns the selection.
  await new Promise<void>((resolve, reject) => {
    let text = '';
    const timer = setTimeout(
      () =>
        reject(
          new KagomeError('Failed', `xclip did not take the clipboard on ${d.label} within 5 s`),
        ),
      5000,
    );
    p.stdout.on('data', (c: Buffer) => {
      text += c.toString();
      if (text.includes('Waiting for selection')) {
        clearTimeout(timer);
        resolve();
      }
    });
    void p.exited.then((code) => {
      clearTimeout(timer);
      if (!text.includes('Waiting for selection'))
        reject(
          new KagomeError(
            'Failed',
            `xclip could not take the clipboard on ${d.label} (exit ${code})`,
          ),
        );
    });
  });
  // Keep draining its messages, so a full pipe never blocks it.
  p.stdout.resume();
}

export interface Watcher {
  stop(): void;
}

/** Calls `changed` each time a program takes one of the selections on the display. */
export async function watchSelections(
  d: SelectionDisplay,
  selections: Selection[],
  changed: (s: Selection) => void,
  ended: (code: number) => void,
): Promise<Watcher> {
  const p = await d.run(['python3', '-I', '-c', WATCHER, ...selections], false);
  let buf = '';
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  p.stdout.on('data', (c: Buffer) => {
    buf += c.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line === 'ready') ready();
      const [sel, owner] = line.split(' ');
      if ((sel === 'CLIPBOARD' || sel === 'PRIMARY') && owner !== '0') changed(sel);
    }
  });
  let stopped = false;
  void p.exited.then((code) => {
    ready();
    if (!stopped) ended(code);
  });
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([isReady, new Promise((r) => (timer = setTimeout(r, 10000)))]);
  clearTimeout(timer);
  return {
    stop() {
      stopped = true;
      p.kill();
    },
  };
}
