// How long a launch takes, end to end, and what kagome costs compared with a plain xpra
// session (the way the old LXD tool ran programs). Prints figures, never fails on them: a
// shared, noisy machine makes any fixed threshold flaky, so targets are only compared.
//
// Everything runs in one invocation against one private world (session bus, Xvfb host
// display, the real service), and the cold kagome launches alternate with the baseline runs,
// so drift in the machine's load hits both sides of the ratio alike.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { childrenOf, pidsInNamespace } from '../lib/runtime/proc.js';
import { World, KAGOME, REPO } from '../test/helpers/kagome.js';
import { stopChild, track } from '../test/helpers/daemons.js';
import { parseXpropStrings, windowProperty } from '../test/helpers/x11.js';
import { waitFor } from '../test/helpers/wait.js';
import {
  type Figure,
  median,
  stats,
  verdict,
  positiveInt,
  figureTable,
  newFigure,
} from './figures.js';
import { cleanupGuard } from './cleanup.js';
import { pssMiB } from './host-probes.js';

const execFileP = promisify(execFile);

const RUNS = positiveInt(process.env.BENCH_RUNS, 5);
const JSON_FILE = process.env.BENCH_JSON;
// A run that hangs must not hold the machine: far above what BENCH_RUNS=5 needs (~2 min).
const WATCHDOG_MS = Number(process.env.BENCH_WATCHDOG_MS ?? 9 * 60_000);
const WAIT_MS = 30_000;
const POLL_MS = 5;
// Let the previous run's teardown (xpra exiting, namespaces being freed) stop competing for
// the two cores before the clock starts.
const SETTLE_MS = 500;

const CAGE = 'bench';
const CAGE2 = 'bench2';
const CAGE_FILE = '[Cage]\nBackend=bubblewrap\nDisplay=xpra\nNetwork=none\n';
// The old tool's behaviour is the baseline, so only what is needed to run it side by side
// with other xpra users on this machine differs from xpra's defaults.
const BASELINE_XPRA_OPTIONS = (sock: string) => [
  '--daemon=no',
  `--socket-dir=${sock}`,
  `--socket-dirs=${sock}`,
];
const BWRAP_FLOOR = [
  '--unshare-all',
  '--ro-bind',
  '/usr',
  '/usr',
  '--symlink',
  'usr/bin',
  '/bin',
  '--symlink',
  'usr/lib',
  '/lib',
  '--symlink',
  'usr/lib64',
  '/lib64',
  '--proc',
  '/proc',
  '--dev',
  '/dev',
  '/bin/true',
];

// ---------------------------------------------------------------- figures

const figures: Figure[] = [];
const coldTimelines: Record<string, number>[] = [];
const baseTimelines: Record<string, number>[] = [];

const figure = newFigure(figures);

// ---------------------------------------------------------------- small process helpers

/** Wall time from spawn to exit, as a launcher sees it; throws on a non-zero exit. */
function timeToExit(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      const dt = performance.now() - t0;
      if (code === 0) resolve(dt);
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.trim()}`));
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

function vmRssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) / 1024;
}

/**
 * Processes whose environment carries this run's tag. xpra daemonises helpers (its Xvfb,
 * dbus-daemon --fork, xmessage from Xsession) into other process groups and sessions, so the
 * groups we spawned do not cover them; the tag, inherited by every descendant and by nothing
 * else on the machine, does.
 */
function taggedPids(tag: string): number[] {
  const needle = Buffer.from(`KAGOME_BENCH_TAG=${tag}\0`);
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/environ`).includes(needle)) out.push(Number(entry));
    } catch {
      // gone, or a kernel thread
    }
  }
  return out;
}

// ---------------------------------------------------------------- watching the host display

interface MapEvent {
  id: string;
  t: number;
  instance?: string;
}

/**
 * Every window mapped on the host display, timed when the X server reports it. xev is a
 * long-lived client selecting SubstructureNotify on the root window, so a map is seen within
 * a pipe write of happening, where polling with xdotool would add its own start-up (a few ms)
 * plus half the poll interval to every figure. The host Xvfb has no window manager, so a
 * top-level window is viewable as soon as it is mapped: the same thing `xdotool search
 * --onlyvisible` looks for.
 */
class MapWatcher {
  private readonly maps: MapEvent[] = [];
  private readonly waiters = new Set<() => void>();
  private buf = '';
  private afterMapHeader = false;

  private constructor(
    private readonly display: string,
    private readonly child: ChildProcess,
  ) {}

  static async start(display: string): Promise<MapWatcher> {
    // xev block-buffers stdout into a pipe; line buffering makes each event arrive as it happens.
    const child = spawn('stdbuf', ['-oL', 'xev', '-root', '-event', 'substructure'], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', DISPLAY: display },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    track(child);
    const w = new MapWatcher(display, child);
    child.stdout!.on('data', (chunk: Buffer) => w.onData(chunk, performance.now()));
    // Proves the watcher sees maps and reads classes before any figure depends on it.
    const probe = spawn('xlogo', ['-name', 'kgprobe'], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', DISPLAY: display },
      stdio: 'ignore',
    });
    try {
      await w.waitMapped('kgprobe', 0, 10_000);
    } finally {
      probe.kill();
    }
    return w;
  }

  private onData(chunk: Buffer, t: number): void {
    this.buf += chunk.toString('utf8');
    const lines = this.buf.split('\n');
    this.buf = lines.pop() ?? '';
    for (const line of lines) {
      if (line.startsWith('MapNotify event')) {
        this.afterMapHeader = true;
        continue;
      }
      if (this.afterMapHeader) {
        this.afterMapHeader = false;
        const m = /\bwindow (0x[0-9a-f]+),/.exec(line);
        if (m) this.record({ id: m[1]!, t });
      }
    }
  }

  private record(ev: MapEvent): void {
    this.maps.push(ev);
    void this.instanceOf(ev.id).then((inst) => {
      if (inst !== undefined) ev.instance = inst;
      for (const w of this.waiters) w();
    });
  }

  // A client may set WM_CLASS just after mapping; a short retry covers that without
  // moving the time already taken from the event.
  private async instanceOf(id: string): Promise<string | undefined> {
    for (let i = 0; i < 20; i++) {
      try {
        const [inst] = parseXpropStrings(await windowProperty(this.display, id, 'WM_CLASS'));
        if (inst !== undefined) return inst;
      } catch {
        // not set yet, or the window is already gone
      }
      await sleep(5);
    }
    return undefined;
  }

  /** Time of the first map, at or after `since`, of a window whose WM_CLASS instance is `instance`. */
  waitMapped(instance: string, since: number, timeoutMs = WAIT_MS): Promise<number> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const hit = this.maps.find((m) => m.t >= since && m.instance === instance);
        if (!hit) return false;
        cleanup();
        resolve(hit.t);
        return true;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new Error(
            `no window with WM_CLASS instance ${instance} was mapped on ${this.display} within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      const waiter = (): void => void check();
      this.waiters.add(waiter);
      check();
    });
  }

  stop(): Promise<void> {
    return stopChild(this.child, 1000);
  }
}

async function xdotoolFinds(display: string, instance: string): Promise<boolean> {
  try {
    const r = await execFileP(
      'xdotool',
      ['search', '--onlyvisible', '--classname', `^${instance}$`],
      { env: { DISPLAY: display } },
    );
    return r.stdout.trim() !== '';
  } catch {
    return false; // exit 1: nothing matched
  }
}

// ---------------------------------------------------------------- the kagome side

interface ProgramEntry {
  path: string;
  pid: number;
}

async function programs(world: World, cage: string): Promise<ProgramEntry[]> {
  const list = await world.dbus.Cages1.ListPrograms(cage);
  return list.map(([p, , pid]) => ({ path: p, pid }));
}

/**
 * Ends a launched program and waits until the service has seen it exit. The listed pid is
 * the host-side kagome-enter, which forks the program into the cage's pid namespace; its
 * child is the program itself, stopped directly. Closing the window from the host instead
 * (xdotool windowkill) would kill the xpra client that owns every window of the cage.
 */
async function endProgram(world: World, cage: string, objectPath: string): Promise<void> {
  const entry = (await programs(world, cage)).find((p) => p.path === objectPath);
  if (!entry) return;
  for (const pid of childrenOf(entry.pid)) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  await waitFor(
    `${objectPath} to exit`,
    async () => !(await programs(world, cage)).some((p) => p.path === objectPath),
    { timeoutMs: 10_000, pollMs: 20 },
  );
}

async function launch(world: World, cage: string, instance: string): Promise<string> {
  return world.launchCommand(cage, ['xlogo', '-name', instance]);
}

function stopCage(world: World, cage: string): Promise<unknown> {
  return world.dbus.Cages1.Stop(cage);
}

function startCage(world: World, cage: string): Promise<unknown> {
  return world.dbus.Cages1.Start(cage);
}

/** The last "running after N ms" the service logged for a cage: its own view of a cold start. */
function loggedStartMs(world: World, cage: string, fromOffset: number): number | undefined {
  const log = world.service?.log().slice(fromOffset) ?? '';
  const all = [...log.matchAll(new RegExp(`cage ${cage}: running after (\\d+) ms`, 'g'))];
  const last = all[all.length - 1];
  return last ? Number(last[1]) : undefined;
}

// Where a cold start spends its time, read from the log lines xpra writes anyway (server and
// client share one log on both sides). Only for explaining the figures: a different xpra
// version may word them differently, and then the timeline just has gaps.
const MARKERS: [key: string, label: string, text: string][] = [
  ['client_up', 'xpra client running', 'Xpra GTK3 X11 client version'],
  ['server_ready', 'xpra server ready', 'xpra is ready.'],
  ['accepted', 'server accepted the client', 'New unix-domain connection received'],
  ['handshake', 'handshake complete', 'Handshake complete'],
  ['screen_asked', 'server got client screen size', 'client root window size is'],
  ['screen_set', 'server resized its display', 'server virtual display now set to'],
  ['attached', 'client attached', 'Attached to '],
];

type Timeline = Record<string, number>;

/** Offsets (ms after `wall0`, the call) of the first line of each marker in `text`. */
function xpraTimeline(text: string, wall0: number): Timeline {
  const out: Timeline = {};
  for (const line of text.split('\n')) {
    const m = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d),(\d{3}) (.*)$/.exec(line);
    if (!m) continue;
    const at = new Date(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!, +m[7]!).getTime();
    for (const [key, , marker] of MARKERS) {
      if (out[key] === undefined && m[8]!.includes(marker)) out[key] = at - wall0;
    }
  }
  return out;
}

function readFrom(file: string, offset: number): string {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const buf = Buffer.alloc(Math.max(0, size - offset));
      fs.readSync(fd, buf, 0, buf.length, offset);
      return buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '';
  }
}

function sizeOf(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

// ---------------------------------------------------------------- the baseline

interface BaselineCtx {
  root: string;
  home: string;
  runtime: string;
  tag: string;
  display: string;
}

function baselineEnv(ctx: BaselineCtx): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    LANG: 'C.UTF-8',
    HOME: ctx.home,
    XAUTHORITY: path.join(ctx.home, '.Xauthority'),
    XDG_RUNTIME_DIR: ctx.runtime,
    KAGOME_BENCH_TAG: ctx.tag,
  };
}

function baselineCommand(sock: string, instance: string): string[] {
  return ['start', ...BASELINE_XPRA_OPTIONS(sock), `--start-child=xlogo -name ${instance}`];
}

/**
 * One plain xpra session on the host, timed from `xpra start` to the child's window on the
 * host display, then taken down completely: every process carrying the tag is gone before
 * the next run starts, so runs never overlap.
 */
async function baselineRun(
  ctx: BaselineCtx,
  watcher: MapWatcher,
  instance: string,
): Promise<{ total: number; socket: number; timeline: Timeline }> {
  const dir = fs.mkdtempSync(path.join(ctx.root, 'run-'));
  const sock = path.join(dir, 'sock');
  fs.mkdirSync(sock, { mode: 0o700 });
  const logFd = fs.openSync(path.join(dir, 'xpra.log'), 'a');
  const env = baselineEnv(ctx);
  const spawned: ChildProcess[] = [];
  try {
    const wall0 = Date.now();
    const t0 = performance.now();
    // No display number: xpra then lets its Xvfb pick a free one with -displayfd.
    const server = spawn('xpra', baselineCommand(sock, instance), {
      env,
      detached: true,
      stdio: ['ignore', logFd, logFd],
    });
    spawned.push(server);
    let socketPath = '';
    await waitFor(
      'the baseline xpra socket',
      () => {
        if (server.exitCode !== null)
          throw new Error(`xpra start exited ${server.exitCode}; see ${dir}/xpra.log`);
        for (const name of fs.readdirSync(sock)) {
          const p = path.join(sock, name);
          if (fs.lstatSync(p).isSocket()) {
            socketPath = p;
            return true;
          }
        }
        return false;
      },
      { timeoutMs: WAIT_MS, pollMs: POLL_MS },
    );
    const tSocket = performance.now();
    const client = spawn('xpra', ['attach', `socket:${socketPath}`], {
      env: { ...env, DISPLAY: ctx.display },
      detached: true,
      stdio: ['ignore', logFd, logFd],
    });
    spawned.push(client);
    const tMap = await watcher.waitMapped(instance, t0);
    const timeline = xpraTimeline(fs.readFileSync(path.join(dir, 'xpra.log'), 'utf8'), wall0);
    return { total: tMap - t0, socket: tSocket - t0, timeline: { ...timeline, window: tMap - t0 } };
  } finally {
    await teardownBaseline(ctx, spawned);
    fs.closeSync(logFd);
    const keep = process.env.BENCH_LOGS;
    if (keep) {
      fs.mkdirSync(keep, { recursive: true });
      fs.copyFileSync(path.join(dir, 'xpra.log'), path.join(keep, `baseline-${instance}.log`));
    }
  }
}

async function teardownBaseline(ctx: BaselineCtx, spawned: ChildProcess[]): Promise<void> {
  const groups = spawned.map((c) => c.pid).filter((p): p is number => p !== undefined);
  const killAll = (sig: NodeJS.Signals): void => {
    for (const g of groups) {
      try {
        process.kill(-g, sig);
      } catch {
        // group already empty
      }
    }
    for (const pid of taggedPids(ctx.tag)) {
      try {
        process.kill(pid, sig);
      } catch {
        // gone
      }
    }
  };
  const tagged = new Set(taggedPids(ctx.tag));
  killAll('SIGTERM');
  const gone = (): boolean =>
    groups.every((g) => !groupAlive(g)) && taggedPids(ctx.tag).length === 0;
  try {
    await waitFor('the baseline xpra processes to exit', gone, { timeoutMs: 8000, pollMs: 20 });
  } catch {
    killAll('SIGKILL');
    await waitFor('the baseline xpra processes to die', gone, { timeoutMs: 5000, pollMs: 20 });
  }
  // An X server that had to be SIGKILLed leaves its lock and socket behind; remove them only
  // when the lock names one of our own, now dead, processes.
  for (const name of fs.readdirSync('/tmp').filter((n) => /^\.X\d+-lock$/.test(n))) {
    try {
      const pid = Number(fs.readFileSync(path.join('/tmp', name), 'utf8').trim());
      if (tagged.has(pid) && !alive(pid)) {
        const n = /^\.X(\d+)-lock$/.exec(name)![1];
        fs.rmSync(path.join('/tmp', name), { force: true });
        fs.rmSync(path.join('/tmp/.X11-unix', `X${n}`), { force: true });
      }
    } catch {
      // not ours or already gone
    }
  }
}

// ---------------------------------------------------------------- phases

const log = (msg: string): void => void process.stderr.write(`[bench] ${msg}\n`);

async function phase(name: string, affected: Figure[], fn: () => Promise<void>): Promise<void> {
  log(name);
  try {
    await fn();
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    log(`${name} failed: ${msg}`);
    for (const f of affected) f.error ??= msg;
  }
}

async function main(): Promise<void> {
  const tStart = performance.now();
  const commandLine = `BENCH_RUNS=${RUNS} node ${path.relative(REPO, process.argv[1] ?? 'dist/bench/launch.js')}`;
  const loadBefore = os.loadavg();
  const xpraVersion = (
    await execFileP('xpra', ['--version']).catch(() => ({ stdout: '?' }))
  ).stdout.trim();

  const fSpawn = figure(
    'spawn_floor',
    'floor: node spawn /bin/true → exit',
    'ms',
    'spawn("/bin/true")',
  );
  const fBwrap = figure(
    'bwrap_floor',
    'floor: bwrap /bin/true → exit',
    'ms',
    `bwrap ${BWRAP_FLOOR.join(' ')}`,
  );
  const fXdo = figure(
    'xdotool_cost',
    'xdotool search --onlyvisible (one poll)',
    'ms',
    'xdotool search --onlyvisible --classname ^kg-none$',
  );
  const fSvc = figure(
    'service_start',
    'service start → bus name owned',
    'ms',
    `node bin/kagome daemon; poll org.freedesktop.DBus.NameHasOwner("io.kagome.Kagome") every 2 ms`,
  );
  const fWarmExec = figure(
    'warm_exec',
    "warm launch: call → exec'd in cage",
    'ms',
    `io.kagome.Launcher1.LaunchCommand("${CAGE}", ["xlogo","-name","kgwN"], {}) until the reply`,
    10,
  );
  const fWarmWin = figure(
    'warm_window',
    'warm launch: call → window mapped',
    'ms',
    'same call, until MapNotify on the host root (xev) for WM_CLASS instance kgwN',
    50,
  );
  const fWarmPoll = figure(
    'warm_window_xdotool',
    'warm launch: call → window (xdotool 5 ms poll)',
    'ms',
    'same call, until `xdotool search --onlyvisible --classname ^kgpN$` finds it (polled every 5 ms)',
    150,
  );
  const fColdReply = figure(
    'cold_reply',
    'cold launch: call → reply (cage started)',
    'ms',
    `io.kagome.Cages1.Stop("${CAGE}"), then LaunchCommand("${CAGE}", ["xlogo","-name","kgcN"], {}) until the reply`,
  );
  const fColdStart = figure(
    'cold_cage_start',
    'cold launch: cage start (service log)',
    'ms',
    `"cage ${CAGE}: running after N ms" in the service log`,
  );
  const fCold = figure(
    'cold_window',
    'cold launch: call → window mapped',
    'ms',
    'same call, until MapNotify on the host root for kgcN',
    1200,
  );
  const fBaseSock = figure(
    'baseline_socket',
    'baseline: xpra start → socket exists',
    'ms',
    'xpra start … until a socket appears in the socket dir',
  );
  const fBase = figure(
    'baseline_window',
    'baseline: xpra start + attach → window',
    'ms',
    `xpra ${baselineCommand('$TMP/sock', 'kgbN').join(' ')}; once the socket exists: xpra attach socket:$TMP/sock/<host>-<display> (DISPLAY=host); until MapNotify for kgbN`,
  );
  const fRatio = figure(
    'cold_over_baseline',
    'kagome cold / baseline (paired runs)',
    'x',
    'cold_window / baseline_window for each pair of adjacent runs',
    0.35,
  );
  const fRssIdle = figure(
    'service_rss_no_cages',
    'service VmRSS, idle, no cages',
    'MiB',
    'VmRSS in /proc/<daemon>/status 2 s after start, sampled every 200 ms',
  );
  const fPss = figure(
    'idle_cage_pss',
    'one idle cage with xlogo: PSS of all its processes',
    'MiB',
    `Cages1.Start("${CAGE}"), xlogo, settle 2 s: Pss of every process in the cage's pid namespace, the host xpra client and the kagome-enter carrying xlogo`,
  );
  const fPssServer = figure(
    'idle_cage_pss_xpra_server',
    '  of which the xpra server in the cage',
    'MiB',
    'Pss of the processes named xpra in the cage',
  );
  const fPssXvfb = figure(
    'idle_cage_pss_xvfb',
    '  of which its Xvfb',
    'MiB',
    'Pss of Xvfb in the cage',
  );
  const fPssClient = figure(
    'idle_cage_pss_client',
    '  of which the host xpra client',
    'MiB',
    'Pss of the host-side xpra attach',
  );
  const fRss = figure(
    'service_rss_two_cages',
    'service VmRSS, idle, two cages running',
    'MiB',
    `Cages1.Start("${CAGE}"), Start("${CAGE2}"), settle 2 s, VmRSS sampled every 200 ms`,
  );

  // Floors need no world: they say what any launch on this machine costs at the least.
  await phase('floors', [fSpawn, fBwrap], async () => {
    for (let i = 0; i < RUNS + 1; i++) {
      const s = await timeToExit('/bin/true', []);
      const b = await timeToExit('bwrap', BWRAP_FLOOR);
      if (i > 0) {
        fSpawn.samples.push(s);
        fBwrap.samples.push(b);
      }
    }
  });

  const world = await World.create();
  let watcher: MapWatcher | undefined;
  const tag = randomUUID();
  const baseRoot = path.join(world.tmp.root, 'baseline');
  const ctx: BaselineCtx = {
    root: baseRoot,
    home: path.join(baseRoot, 'home'),
    runtime: path.join(baseRoot, 'runtime'),
    tag,
    display: world.display,
  };
  for (const d of [ctx.home, ctx.runtime]) fs.mkdirSync(d, { recursive: true, mode: 0o700 });
  // xpra 3.1 honours XAUTHORITY only when the file exists; otherwise it writes the cookie to
  // the passwd home (the real ~/.Xauthority), whatever HOME says.
  fs.writeFileSync(path.join(ctx.home, '.Xauthority'), '', { mode: 0o600 });

  const cleanupAll = async (): Promise<void> => {
    await teardownBaseline(ctx, []).catch((e) => log(`baseline cleanup: ${String(e)}`));
    await watcher?.stop().catch(() => undefined);
    await world.cleanup().catch((e) => log(`world cleanup: ${String(e)}`));
  };
  const { cleanupOnce, disarm } = cleanupGuard(cleanupAll, WATCHDOG_MS, log);

  try {
    world.writeCage(CAGE, CAGE_FILE);
    world.writeCage(CAGE2, CAGE_FILE);
    watcher = await MapWatcher.start(world.display);
    const w = watcher;

    await phase('xdotool cost', [fXdo], async () => {
      for (let i = 0; i < RUNS * 4 + 1; i++) {
        const t0 = performance.now();
        await xdotoolFinds(world.display, 'kg-none');
        if (i > 0) fXdo.samples.push(performance.now() - t0);
      }
    });

    await phase('service start', [fSvc], async () => {
      for (let i = 0; i < RUNS + 1; i++) {
        const t0 = performance.now();
        const child = spawn(process.execPath, [KAGOME, 'daemon'], {
          env: world.env,
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        track(child);
        let err = '';
        child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
        try {
          await waitFor(
            'io.kagome.Kagome to be owned',
            async () => {
              if (child.exitCode !== null)
                throw new Error(`kagome daemon exited ${child.exitCode}: ${err}`);
              return world.nameHasOwner();
            },
            { timeoutMs: 15_000, pollMs: 2 },
          );
          // the first start also pays for reading the code from disk
          if (i > 0) fSvc.samples.push(performance.now() - t0);
        } finally {
          await stopChild(child);
          await waitFor(
            'io.kagome.Kagome to be released',
            async () => !(await world.nameHasOwner()),
            { timeoutMs: 5000, pollMs: 10 },
          );
        }
      }
    });

    await world.startService();
    const servicePid = world.service!.child.pid!;

    await phase('service memory, no cages', [fRssIdle], async () => {
      await sleep(2000);
      for (let i = 0; i < RUNS; i++) {
        fRssIdle.samples.push(vmRssMiB(servicePid));
        await sleep(200);
      }
    });

    await phase(
      'cold launches and baseline, alternating',
      [fColdReply, fColdStart, fCold, fBaseSock, fBase, fRatio],
      async () => {
        const cageLog = path.join(world.runtimeDir, 'cages', CAGE, 'log', 'cage.log');
        const coldRun = async (
          instance: string,
        ): Promise<{ reply: number; window: number; started?: number; timeline: Timeline }> => {
          await stopCage(world, CAGE);
          await sleep(SETTLE_MS);
          const logAt = world.service!.log().length;
          const cageLogAt = sizeOf(cageLog);
          const wall0 = Date.now();
          const t0 = performance.now();
          await launch(world, CAGE, instance);
          const tReply = performance.now();
          const tMap = await w.waitMapped(instance, t0);
          const started = loggedStartMs(world, CAGE, logAt);
          const timeline = {
            ...xpraTimeline(readFrom(cageLog, cageLogAt), wall0),
            reply: tReply - t0,
            window: tMap - t0,
          };
          // The baseline must not share the machine with an idle cage the other side lacks.
          await stopCage(world, CAGE);
          return {
            reply: tReply - t0,
            window: tMap - t0,
            ...(started !== undefined ? { started } : {}),
            timeline,
          };
        };
        const baseRun = async (instance: string) => {
          await sleep(SETTLE_MS);
          return baselineRun(ctx, w, instance);
        };
        // One untimed round of each: the page cache then holds xpra's Python for both sides.
        await coldRun('kgc0');
        await baseRun('kgb0');
        for (let i = 1; i <= RUNS; i++) {
          // Alternating the order keeps "ran right after the other one's teardown" even.
          let cold: Awaited<ReturnType<typeof coldRun>>;
          let base: Awaited<ReturnType<typeof baseRun>>;
          if (i % 2) {
            cold = await coldRun(`kgc${i}`);
            base = await baseRun(`kgb${i}`);
          } else {
            base = await baseRun(`kgb${i}`);
            cold = await coldRun(`kgc${i}`);
          }
          fColdReply.samples.push(cold.reply);
          fCold.samples.push(cold.window);
          if (cold.started !== undefined) fColdStart.samples.push(cold.started);
          fBaseSock.samples.push(base.socket);
          fBase.samples.push(base.total);
          fRatio.samples.push(cold.window / base.total);
          coldTimelines.push(cold.timeline);
          baseTimelines.push(base.timeline);
          log(
            `  pair ${i}: kagome cold ${cold.window.toFixed(0)} ms, baseline ${base.total.toFixed(0)} ms`,
          );
        }
      },
    );

    await phase('warm launches', [fWarmExec, fWarmWin, fWarmPoll], async () => {
      await startCage(world, CAGE);
      // An untimed launch first: the cage's Xvfb and xpra have then handled one window.
      const first = await launch(world, CAGE, 'kgw0');
      await w.waitMapped('kgw0', 0);
      await endProgram(world, CAGE, first);
      for (let i = 1; i <= RUNS; i++) {
        await sleep(SETTLE_MS);
        const inst = `kgw${i}`;
        const t0 = performance.now();
        const objectPath = await launch(world, CAGE, inst);
        const tReply = performance.now();
        const tMap = await w.waitMapped(inst, t0);
        fWarmExec.samples.push(tReply - t0);
        fWarmWin.samples.push(tMap - t0);
        await endProgram(world, CAGE, objectPath);
      }
      // Separate runs, so xdotool's own CPU use never slows the event-timed ones above.
      for (let i = 1; i <= RUNS; i++) {
        await sleep(SETTLE_MS);
        const inst = `kgp${i}`;
        const t0 = performance.now();
        const objectPath = await launch(world, CAGE, inst);
        await waitFor(`${inst} via xdotool`, () => xdotoolFinds(world.display, inst), {
          timeoutMs: WAIT_MS,
          pollMs: POLL_MS,
        });
        fWarmPoll.samples.push(performance.now() - t0);
        await endProgram(world, CAGE, objectPath);
      }
    });

    await phase('memory of one idle cage', [fPss, fPssServer, fPssXvfb, fPssClient], async () => {
      await startCage(world, CAGE);
      const objectPath = await launch(world, CAGE, 'kgm0');
      await w.waitMapped('kgm0', 0);
      await sleep(2000);
      const state = world.cageState(CAGE) as {
        sandbox: { pidNamespace: string };
        displayState: { client: { pid: number } };
      };
      const carrier = (await programs(world, CAGE)).find((p) => p.path === objectPath)?.pid;
      for (let i = 0; i < RUNS; i++) {
        let total = 0;
        let server = 0;
        let xvfb = 0;
        for (const pid of pidsInNamespace(state.sandbox.pidNamespace)) {
          const pss = pssMiB([pid]);
          total += pss;
          const comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
          if (comm === 'xpra') server += pss;
          if (comm === 'Xvfb') xvfb += pss;
        }
        const client = pssMiB([state.displayState.client.pid]);
        total += client + (carrier ? pssMiB([carrier]) : 0);
        fPss.samples.push(total);
        fPssServer.samples.push(server);
        fPssXvfb.samples.push(xvfb);
        fPssClient.samples.push(client);
        await sleep(200);
      }
      await endProgram(world, CAGE, objectPath);
    });

    await phase('service memory, two cages', [fRss], async () => {
      await startCage(world, CAGE);
      await startCage(world, CAGE2);
      await sleep(2000);
      for (let i = 0; i < RUNS; i++) {
        fRss.samples.push(vmRssMiB(servicePid));
        await sleep(200);
      }
    });
  } finally {
    const keep = process.env.BENCH_LOGS;
    if (keep) {
      fs.mkdirSync(keep, { recursive: true });
      fs.writeFileSync(path.join(keep, 'service.log'), world.service?.log() ?? '');
      fs.writeFileSync(path.join(keep, 'cage.log'), world.cageLog(CAGE));
    }
    disarm();
    await cleanupOnce();
  }

  const leftovers = taggedPids(tag);
  report({
    commandLine,
    elapsedS: (performance.now() - tStart) / 1000,
    loadBefore,
    loadAfter: os.loadavg(),
    xpraVersion,
    leftovers,
  });
}

const round2 = (v: number): number => Math.round(v * 100) / 100;

function roundAll<T extends Record<string, number>>(o: T | undefined): Partial<T> {
  if (!o) return {};
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, round2(v)])) as Partial<T>;
}

function timelineRows(): { key: string; label: string; kagome?: number; baseline?: number }[] {
  const steps: [string, string][] = [
    ['reply', 'LaunchCommand replied'],
    ...MARKERS.map(([k, l]) => [k, l] as [string, string]),
    ['window', 'window mapped on the host'],
  ];
  const med = (runs: Record<string, number>[], key: string): number | undefined => {
    const xs = runs.map((r) => r[key]).filter((v): v is number => v !== undefined);
    return xs.length ? median(xs) : undefined;
  };
  return steps
    .map(([key, label]) => ({
      key,
      label,
      kagome: med(coldTimelines, key),
      baseline: med(baseTimelines, key),
    }))
    .filter((r) => r.kagome !== undefined || r.baseline !== undefined)
    .map((r) => ({
      key: r.key,
      label: r.label,
      ...(r.kagome !== undefined ? { kagome: r.kagome } : {}),
      ...(r.baseline !== undefined ? { baseline: r.baseline } : {}),
    }));
}

interface RunInfo {
  commandLine: string;
  elapsedS: number;
  loadBefore: number[];
  loadAfter: number[];
  xpraVersion: string;
  leftovers: number[];
}

function report(info: RunInfo): void {
  const out: string[] = [];
  out.push(
    `kagome launch benchmark — ${RUNS} runs per figure (medians), ${new Date().toISOString()}`,
  );
  out.push(`command: ${info.commandLine}`);
  out.push(
    `host: ${os.cpus().length} CPUs, ${os.type()} ${os.release()}, node ${process.version}, ${info.xpraVersion}; load average ${info.loadBefore.map((l) => l.toFixed(2)).join(' ')} before, ${info.loadAfter.map((l) => l.toFixed(2)).join(' ')} after; took ${info.elapsedS.toFixed(0)} s`,
  );
  out.push('');
  out.push(...figureTable(figures));
  out.push('');
  out.push('how each figure was taken:');
  for (const f of figures) {
    out.push(`  ${f.key}: ${f.command}`);
    if (f.error) out.push(`    ERROR: ${f.error}`);
  }
  const ratioOfMedians = (() => {
    const c = figures.find((f) => f.key === 'cold_window');
    const b = figures.find((f) => f.key === 'baseline_window');
    return c?.samples.length && b?.samples.length
      ? median(c.samples) / median(b.samples)
      : undefined;
  })();
  if (ratioOfMedians !== undefined)
    out.push(
      `  (ratio of the medians instead of the median of pair ratios: ${ratioOfMedians.toFixed(2)} x)`,
    );
  out.push(
    `processes left by the baseline: ${info.leftovers.length ? info.leftovers.join(' ') : 'none'}`,
  );
  const timeline = timelineRows();
  if (timeline.length) {
    out.push('');
    out.push(
      "cold start timeline: median ms after the call (kagome) / after `xpra start` (baseline), from xpra's log lines:",
    );
    const th = ['step', 'kagome cold', 'baseline'];
    const cells = timeline.map((r) => [
      r.label,
      r.kagome === undefined ? '—' : r.kagome.toFixed(0),
      r.baseline === undefined ? '—' : r.baseline.toFixed(0),
    ]);
    const tw = th.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
    const tl = (c: string[]): string =>
      '  ' + c.map((x, i) => (i === 0 ? x.padEnd(tw[i]!) : x.padStart(tw[i]!))).join('  ');
    out.push(tl(th));
    for (const c of cells) out.push(tl(c));
  }
  process.stdout.write(out.join('\n') + '\n');

  const json = {
    command: info.commandLine,
    runs: RUNS,
    date: new Date().toISOString(),
    host: {
      cpus: os.cpus().length,
      kernel: os.release(),
      node: process.version,
      xpra: info.xpraVersion,
      loadBefore: info.loadBefore,
      loadAfter: info.loadAfter,
    },
    elapsedSeconds: Math.round(info.elapsedS),
    figures: figures.map((f) => ({
      key: f.key,
      name: f.name,
      unit: f.unit === 'x' ? 'ratio' : f.unit,
      ...roundAll(stats(f)),
      target: f.target ?? null,
      verdict: f.error ? 'error' : verdict(f),
      samples: f.samples.map(round2),
      command: f.command,
      ...(f.error ? { error: f.error } : {}),
    })),
    ratioOfMedians: ratioOfMedians === undefined ? null : round2(ratioOfMedians),
    coldTimeline: {
      steps: timeline.map((r) => ({
        ...r,
        ...(r.kagome !== undefined ? { kagome: round2(r.kagome) } : {}),
        ...(r.baseline !== undefined ? { baseline: round2(r.baseline) } : {}),
      })),
      kagomeRuns: coldTimelines.map(roundAll),
      baselineRuns: baseTimelines.map(roundAll),
    },
    leftoverProcesses: info.leftovers,
  };
  const text = JSON.stringify(json, null, 2) + '\n';
  if (JSON_FILE) {
    fs.writeFileSync(JSON_FILE, text);
    process.stdout.write(`JSON written to ${JSON_FILE}\n`);
  } else {
    process.stdout.write('\n' + text);
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(
      `bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
    );
    process.exit(1);
  },
);
