import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { KagomeError } from '../errors.js';
import { requireProgram } from '../requirements.js';
import {
  isAlive,
  processStartTime,
  procRef,
  signal,
  waitUntil,
  type ProcRef,
} from '../runtime/proc.js';
import { checkRecord, F } from '../runtime/record-check.js';
import type { Backend, SandboxRecord } from '../backends/backend.js';
import type { CageDisplay, DisplayContext, DisplayOnHost, DisplayRecord } from './display.js';
import type { Contribution } from '../sandbox.js';
import { newCookie, xauthorityEntry, xauthorityLocalEntry } from './xauth.js';
import {
  DISPLAY_SETTINGS_SCRIPT,
  FALLBACK_DPI,
  scaleEnvFor,
  readHostScreen,
} from './host-screen.js';

// Xephyr: a nested X server in one host window, for cages that want a whole desktop-like
// screen rather than seamless windows, and the fastest start (~0.1 s). It runs on the host
// (it draws into the host display); the cage gets only its socket, bound to /tmp/.X11-unix/X0
// inside, and a cookie. The display number is chosen by the X server itself through
// -displayfd, which is race-free, instead of being guessed.
//
// The Xephyr server must exist before the sandbox, since its socket is mounted into it, so
// here the two start one after the other; Xephyr is ready in about a tenth of a second.
//
// Inside runs a window manager, so windows get frames to move and resize them by (without one
// they sat at 0,0, undecorated, on top of each other). openbox: small (about 1 MB with its two
// libraries), in Debian 12, a reparenting EWMH manager (frames, _NET_FRAME_EXTENTS, title bars,
// focus, maximise) with no session bus, no panel, no compositor and nothing to configure;
// run as `openbox`, not `openbox-session`, so it starts no autostart programs. twm and evilwm
// are smaller but place new windows by hand (twm asks for a click) or draw no title bar; jwm
// and icewm bring a panel and a start menu of the host's programs. It runs in the cage (so in
// bubblewrap cages it is the host's /usr/bin/openbox, in container cages the image's), as the
// cage's user, and is started again if it ends (its menu's Exit, a crash).

export interface XephyrRecord extends DisplayRecord {
  server: ProcRef;
  number: number;
  authFile: string;
  /** the window manager in the cage, when the cage has openbox */
  wm?: ProcRef;
  scaleEnv?: Record<string, string>;
}

const START_TIMEOUT_MS = 10000;
/** openbox owns the display in about 0.1 s; past this the cage goes on without waiting. */
const WM_TIMEOUT_S = 10;
const WM_POLL_MS = 2000;
export const WINDOW_MANAGER = ['openbox', '--sm-disable'];

/** The host-side settings helper (host-screen.ts) of a display being prepared, by Xephyr's pid. */
interface Settling {
  /** Xft.dpi is set (or could not be) */
  resources: Promise<void>;
  /** a window manager owns the display (0), or none did in time, or the helper failed */
  done: Promise<number>;
  kill(): void;
}

export class XephyrDisplay implements CageDisplay<XephyrRecord> {
  readonly kind = 'xephyr';
  private readonly settling = new Map<number, Settling>();
  /** window managers this service started, by pid: their end is an event, not a poll */
  private readonly wms = new Map<number, Promise<number>>();

  checkHost(): void {
    requireProgram('Xephyr', 'for cages with Display=xephyr');
  }

  async prepare(ctx: DisplayContext): Promise<XephyrRecord> {
    const xephyr = requireProgram('Xephyr', 'for cages with Display=xephyr');
    const dir = path.join(ctx.rt.dir, 'xephyr');
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const authFile = path.join(dir, 'Xauthority');
    const cookie = newCookie();
    // The cage's programs read this file: python3-xlib (kagome's window closer, programs of the
    // person's) ignores FamilyWild, so an entry for the cage's own hostname and display :0 too.
    fs.writeFileSync(
      authFile,
      Buffer.concat([xauthorityEntry(cookie), xauthorityLocalEntry(cookie, ctx.spec.hostname, 0)]),
      { mode: 0o600 },
    );
    const host = await readHostScreen(ctx.hostEnv);
    // Xephyr's own default is 75 dpi whatever the host's: a document was a quarter smaller.
    const dpi = host.dpi ?? FALLBACK_DPI;
    const child = spawn(
      xephyr,
      [
        '-displayfd',
        '3',
        '-nolisten',
        'tcp',
        '-auth',
        authFile,
        '-title',
        `${ctx.config.name} (kagome)`,
        '-screen',
        '1280x800',
        '-dpi',
        String(dpi),
        '-resizeable',
        '-br',
        '-no-host-grab',
      ],
      { detached: true, env: ctx.hostEnv, stdio: ['ignore', ctx.logFd, ctx.logFd, 'pipe'] },
    );
    const number = await new Promise<number>((resolve, reject) => {
      let text = '';
      const timer = setTimeout(
        () =>
          reject(
            new KagomeError(
              'DisplayFailed',
              `Xephyr did not start within ${START_TIMEOUT_MS / 1000} s for cage "${ctx.config.name}"`,
            ),
          ),
        START_TIMEOUT_MS,
      );
      (child.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => {
        text += d.toString();
        if (text.includes('\n')) {
          clearTimeout(timer);
          resolve(Number(text.trim()));
        }
      });
      child.once('error', (e) =>
        reject(new KagomeError('DisplayFailed', `could not start Xephyr: ${e.message}`)),
      );
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(
          new KagomeError(
            'DisplayFailed',
            `Xephyr exited (${code}) for cage "${ctx.config.name}": is the host DISPLAY (${ctx.hostDisplay || 'unset'}) reachable? See ${path.join(ctx.rt.logDir, 'cage.log')}`,
          ),
        );
      });
    });
    (child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy();
    child.removeAllListeners('exit');
    child.unref();
    const server = procRef(child.pid!);
    // python3-xlib ignores the FamilyWild entry, so the helper gets one for this display alone.
    const localAuth = path.join(dir, 'Xauthority.local');
    fs.writeFileSync(localAuth, xauthorityLocalEntry(cookie, os.hostname(), number), {
      mode: 0o600,
    });
    // On the host while the sandbox starts: the display is there, and nothing of the cage is needed.
    this.settling.set(server.pid, this.settle(ctx, number, localAuth, host.xftDpi));
    return { server, number, authFile, scaleEnv: host.scaleEnv };
  }

  private settle(
    ctx: DisplayContext,
    number: number,
    xauthority: string,
    xftDpi: string | undefined,
  ): Settling {
    const helper = spawn(
      '/usr/bin/python3',
      ['-I', '-c', DISPLAY_SETTINGS_SCRIPT, xftDpi ?? '', String(WM_TIMEOUT_S)],
      {
        env: {
          PATH: ctx.hostEnv.PATH ?? '/usr/bin:/bin',
          DISPLAY: `:${number}`,
          XAUTHORITY: xauthority,
        },
        stdio: ['ignore', 'pipe', ctx.logFd],
      },
    );
    helper.on('error', () => undefined);
    const done = new Promise<number>((resolve) =>
      helper.once('close', (code) => resolve(code ?? 1)),
    );
    const resources = new Promise<void>((resolve) => {
      helper.stdout!.on('data', (d: Buffer) => d.toString().includes('resources') && resolve());
      void done.then(() => resolve());
    });
    return { resources, done, kill: () => helper.kill('SIGKILL') };
  }

  contribute(ctx: DisplayContext, r: XephyrRecord): Contribution {
    const auth = path.posix.join(ctx.spec.runtimeDir, 'Xauthority');
    return {
      ops: [
        { op: 'bind', source: `/tmp/.X11-unix/X${r.number}`, dest: '/tmp/.X11-unix/X0' },
        { op: 'ro-bind', source: r.authFile, dest: auth },
      ],
      env: { DISPLAY: ':0', XAUTHORITY: auth, ...scaleEnvFor(ctx, r.scaleEnv) },
    };
  }

  async start(
    ctx: DisplayContext,
    backend: Backend,
    sandbox: SandboxRecord,
    r: XephyrRecord,
  ): Promise<XephyrRecord> {
    const settling = this.settling.get(r.server.pid);
    this.settling.delete(r.server.pid);
    try {
      const wm = await this.startWm(ctx, backend, sandbox);
      await settling?.resources;
      // Programs started before the manager has the display would appear unframed at 0,0 for
      // a moment; openbox takes them over, but the first frame of the first window is better
      // drawn where it stays.
      const how =
        wm && settling ? await Promise.race([settling.done, wm.exited.then(() => -1)]) : 0;
      if (how !== 0) {
        const why =
          how === 4
            ? `did not take the display within ${WM_TIMEOUT_S} s`
            : how === -1
              ? 'ended at once'
              : 'could not be waited for (see above)';
        fs.writeSync(ctx.logFd, `kagome: the window manager of cage ${ctx.config.name} ${why}\n`);
      }
      return { ...r, ...(wm ? { wm: wm.ref } : {}) };
    } finally {
      settling?.kill();
    }
  }

  /** openbox in the cage on its display, or nothing (and a line in the log) where it is missing. */
  private async startWm(
    ctx: DisplayContext,
    backend: Backend,
    sandbox: SandboxRecord,
  ): Promise<{ ref: ProcRef; exited: Promise<number> } | undefined> {
    if (
      !(await backend.resolveProgram(
        sandbox,
        WINDOW_MANAGER[0]!,
        ctx.spec.env.PATH ?? '/usr/bin:/bin',
      ))
    ) {
      fs.writeSync(
        ctx.logFd,
        `kagome: cage ${ctx.config.name} has no openbox, so its windows have no frames; install openbox (Debian package openbox) on the host, or in the image for container cages\n`,
      );
      return undefined;
    }
    const h = await backend.exec(sandbox, {
      argv: WINDOW_MANAGER,
      env: ctx.spec.env,
      cwd: ctx.spec.cwd,
      logFd: ctx.logFd,
    });
    const start = processStartTime(h.pid);
    if (start === undefined) return undefined;
    const ref = { pid: h.pid, start };
    this.wms.set(ref.pid, h.exited);
    void h.exited.then(() => this.wms.delete(ref.pid));
    return { ref, exited: h.exited };
  }

  checkRecord(v: unknown): XephyrRecord | string {
    return checkRecord<XephyrRecord>("the xephyr display's", v, {
      server: F.process,
      number: F.number,
      authFile: F.string,
      wm: F.optional(F.process),
      scaleEnv: F.optional(F.stringMap),
    });
  }

  onHost(record: XephyrRecord): DisplayOnHost {
    return { number: record.number, authFile: record.authFile };
  }

  isAlive(record: XephyrRecord): boolean {
    return isAlive(record.server);
  }

  async readopt(
    ctx: DisplayContext,
    r: XephyrRecord,
    backend: Backend,
    sandbox: SandboxRecord,
  ): Promise<XephyrRecord> {
    // A cage without openbox had none to lose.
    if (!r.wm || isAlive(r.wm)) return r;
    const wm = await this.startWm(ctx, backend, sandbox);
    return { ...r, ...(wm ? { wm: wm.ref } : {}) };
  }

  watch(record: XephyrRecord, lost: () => void): () => void {
    const wm = record.wm;
    if (!wm) return () => undefined;
    let watching = true;
    const end = () => {
      if (!watching) return;
      watching = false;
      clearInterval(timer);
      lost();
    };
    const exited = this.wms.get(wm.pid);
    let timer: NodeJS.Timeout | undefined;
    if (exited) void exited.then(end);
    else {
      timer = setInterval(() => isAlive(wm) || end(), WM_POLL_MS);
      timer.unref();
    }
    return () => {
      watching = false;
      clearInterval(timer);
    };
  }

  async stop(r: XephyrRecord): Promise<void> {
    // A start that failed before start() leaves its helper; it would end with the display anyway.
    this.settling.get(r.server.pid)?.kill();
    this.settling.delete(r.server.pid);
    // The window manager ends with its display, or with the cage.
    signal(r.server, 'SIGTERM');
    await waitUntil(() => !isAlive(r.server), 2000, 20);
    signal(r.server, 'SIGKILL');
  }
}
