// Sound through a cage: how long from starting a player to its sound on the host, through the
// real service and its sound bridge, compared with the same player on the host. Prints
// figures; never fails on them.
//
// One private world (session bus, Xvfb, a real PulseAudio with a null sink "host", the real
// service) and one cage with Sound=output. The sink's monitor is recorded the whole time by
// one parec at 5 ms latency; each chunk it delivers is timed on arrival, and a click is on the
// host when the first chunk holding a loud sample arrives. Every variant plays the same click with
// paplay; they differ only in where paplay runs and which socket it reaches:
//
//   cage (warm)     LaunchCommand(cage, paplay) → relay → the cage's module socket → server
//   cage (cold)     the same with the cage stopped first: includes starting the cage
//   host → relay    paplay on the host, at the relay's socket: the relay without the cage wall
//   host → module   paplay on the host, at the cage's own module socket: no relay
//   host → server   paplay on the host, at the server's main socket (the baseline), once with
//                   the cage's client settings (no shared memory) and once with libpulse's
//                   defaults (memfd), as an unsandboxed program would run
//
// The variants take turns within each round (the order rotates), so drift in the machine's
// load hits all of them alike.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { World, REPO } from '../test/helpers/kagome.js';
import { stopChild, track } from '../test/helpers/daemons.js';
import { waitFor } from '../test/helpers/wait.js';
import { type Figure, figureTable, median, positiveInt, stats, newFigure } from './figures.js';
import { cleanupGuard } from './cleanup.js';

const RUNS = positiveInt(process.env.BENCH_RUNS, 7);
const CPU_RUNS = 3;
const WATCHDOG_MS = Number(process.env.BENCH_WATCHDOG_MS ?? 6 * 60_000);
const CAGE = 'bench';
const RATE = 48_000;
// A click well above anything a null sink produces on its own (silence is exact zeros).
const THRESHOLD = 0.1;
const CLICK_S = 0.3;
const CPU_TONE_S = 5;
// Between plays the monitor must have been silent this long: the last sound has drained.
const QUIET_MS = 250;
const WAIT_MS = 15_000;

const figures: Figure[] = [];
const figure = newFigure(figures);
const log = (msg: string): void => void process.stderr.write(`[bench] ${msg}\n`);

// ---------------------------------------------------------------- the listener

/**
 * A parec on the host sink's monitor for the whole benchmark. Each chunk is stamped with
 * performance.now() on arrival, and sound "is on the host" when the first chunk with a loud
 * sample arrives. A null sink renders a block at a time, so a sample's position within its
 * chunk says nothing more precise about when it was played.
 */
class MonitorListener {
  private carry = Buffer.alloc(0);
  private lastLoud = -Infinity;
  private started = 0;
  private armed: ((t: number) => void) | undefined;
  bytes = 0;
  private readonly chunkMs: number[] = [];

  private constructor(private readonly child: ChildProcess) {}

  static async start(env: Record<string, string>): Promise<MonitorListener> {
    const child = spawn(
      'parec',
      [
        '--device=host.monitor',
        '--format=s16le',
        `--rate=${RATE}`,
        '--channels=1',
        '--latency-msec=5',
        '--raw',
      ],
      {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    track(child);
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const l = new MonitorListener(child);
    child.stdout!.on('data', (chunk: Buffer) => l.onData(chunk, performance.now()));
    const delivering = () => {
      if (child.exitCode !== null)
        throw new Error(`parec on host.monitor exited (${child.exitCode}): ${err.trim()}`);
      return l.bytes >= RATE * 2 * 0.2;
    };
    await waitFor('parec on host.monitor to deliver 0.2 s of sound', delivering, {
      timeoutMs: 10_000,
      pollMs: 20,
      detail: () => err.trim(),
    });
    l.started = performance.now();
    return l;
  }

  private onData(chunk: Buffer, t: number): void {
    this.bytes += chunk.length;
    this.chunkMs.push((chunk.length / 2 / RATE) * 1000);
    const buf = this.carry.length ? Buffer.concat([this.carry, chunk]) : chunk;
    const n = buf.length >> 1;
    this.carry = Buffer.from(buf.subarray(n * 2));
    const limit = THRESHOLD * 32768;
    for (let i = 0; i < n; i++) {
      if (Math.abs(buf.readInt16LE(i * 2)) > limit) {
        this.lastLoud = t;
        if (this.armed) {
          const done = this.armed;
          this.armed = undefined;
          done(t);
        }
        return;
      }
    }
  }

  /** Median length of the chunks parec delivered: the resolution of every time taken here. */
  chunkMedianMs(): number | undefined {
    return this.chunkMs.length ? median(this.chunkMs) : undefined;
  }

  /** Resolves once the monitor has had nothing loud for QUIET_MS. */
  async quiet(timeoutMs = WAIT_MS): Promise<void> {
    const silentFor = () => performance.now() - Math.max(this.lastLoud, this.started);
    await waitFor(`the host sink to be silent for ${QUIET_MS} ms`, silentFor, {
      timeoutMs,
      pollMs: 10,
      until: (ms) => ms >= QUIET_MS,
    });
  }

  /** The time of the first loud sample from now on. */
  nextLoud(timeoutMs = WAIT_MS): Promise<number> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.armed = undefined;
        reject(new Error(`nothing reached the host sink within ${timeoutMs} ms`));
      }, timeoutMs);
      this.armed = (t) => {
        clearTimeout(timer);
        resolve(t);
      };
    });
  }

  stop(): Promise<void> {
    return stopChild(this.child, 1000);
  }
}

// ---------------------------------------------------------------- players

/** paplay on the host, at env.PULSE_SERVER: when it was spawned, and its exit (rejects on failure). */
function hostPaplay(
  env: Record<string, string>,
  file: string,
): { spawned: number; exited: Promise<void> } {
  const spawned = performance.now();
  const child = spawn('paplay', [file], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  track(child);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0
        ? resolve()
        : reject(new Error(`paplay (${env.PULSE_SERVER}) exited ${code}: ${err.trim()}`)),
    );
  });
  return { spawned, exited };
}

let playNo = 0;

/** paplay in the cage through LaunchCommand; `exited` resolves when it wrote its exit status. */
async function cagePaplay(
  w: World,
  file: string,
): Promise<{ called: number; replied: number; exited: Promise<void> }> {
  const marker = `done-${++playNo}`;
  const called = performance.now();
  await w.launchCommand(CAGE, [
    'sh',
    '-c',
    `paplay "$HOME/${file}" 2> "$HOME/${marker}.err"; echo $? > "$HOME/${marker}.tmp"; mv "$HOME/${marker}.tmp" "$HOME/${marker}"`,
  ]);
  const replied = performance.now();
  const exited = w.readFileWhenWritten(w.homeFile(CAGE, marker), WAIT_MS).then((code) => {
    if (code.trim() !== '0')
      throw new Error(
        `paplay in the cage exited ${code.trim()}: ${fs.readFileSync(w.homeFile(CAGE, `${marker}.err`), 'utf8').trim()}`,
      );
  });
  return { called, replied, exited };
}

/** User plus system time of a process so far (/proc/PID/stat fields 14 and 15), in ms. */
function cpuMs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
}

/** Processes that name the world's temporary root in their command line or environment. */
function worldPids(root: string): number[] {
  const needle = Buffer.from(root);
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (
        fs.readFileSync(`/proc/${entry}/cmdline`).includes(needle) ||
        fs.readFileSync(`/proc/${entry}/environ`).includes(needle)
      )
        out.push(Number(entry));
    } catch {
      // gone, or a kernel thread
    }
  }
  return out;
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const tStart = performance.now();
  const commandLine = `BENCH_RUNS=${RUNS} node ${path.relative(REPO, process.argv[1] ?? 'dist/bench/sound.js')}`;
  const loadBefore = os.loadavg();
  const paVersion = (await execa('pulseaudio', ['--version'], { reject: false })).stdout.trim();

  const click = `sox -n -r ${RATE} -c 1 -b 16 click.wav synth ${CLICK_S} sine 1000 vol 0.8`;
  const fWarm = figure(
    'cage_warm',
    'cage (running): LaunchCommand → sound on host',
    'ms',
    `LaunchCommand("${CAGE}", ["sh","-c","paplay $HOME/click.wav; …"]) until the first sample > ${THRESHOLD} on host.monitor`,
  );
  const fReply = figure(
    'cage_warm_reply',
    "cage (running): LaunchCommand → reply (exec'd)",
    'ms',
    'the same call, until its D-Bus reply',
  );
  const fCold = figure(
    'cage_cold',
    'cage (stopped): LaunchCommand → sound on host',
    'ms',
    `Cages1.Stop("${CAGE}"), then the same call: includes starting the cage`,
  );
  const fRelay = figure(
    'host_relay',
    'host paplay → relay socket → sound',
    'ms',
    `PULSE_SERVER=unix:$XDG_RUNTIME_DIR/kagome/cages/${CAGE}/pulse/native (the relay), cage's client.conf; spawn("paplay", [click.wav]) until the first loud sample`,
  );
  const fModule = figure(
    'host_module',
    'host paplay → cage module socket → sound',
    'ms',
    `PULSE_SERVER=unix:$XDG_RUNTIME_DIR/kagome/cages/${CAGE}/pulse-host/native (no relay), cage's client.conf`,
  );
  const fHost = figure(
    'host_server',
    'baseline: host paplay → server socket (no shm)',
    'ms',
    "PULSE_SERVER=unix:$XDG_RUNTIME_DIR/pulse/native, the cage's client.conf (enable-shm=no, enable-memfd=no)",
  );
  const fHostShm = figure(
    'host_server_shm',
    'baseline: host paplay → server socket (default)',
    'ms',
    'PULSE_SERVER=unix:$XDG_RUNTIME_DIR/pulse/native, libpulse defaults (memfd)',
  );
  const fRatio = figure(
    'cage_over_host',
    'cage (running) / baseline (no shm)',
    'x',
    'cage_warm / host_server for each round',
  );
  const fRelayCost = figure(
    'relay_cost',
    'relay − module (host paplay)',
    'ms',
    'host_relay − host_module for each round',
  );
  const fCageCost = figure(
    'cage_entry_cost',
    'cage (running) − host → relay',
    'ms',
    'cage_warm − host_relay for each round: D-Bus call, entering the cage, sh',
  );
  const fCpu = figure(
    'relay_cpu',
    'service CPU per second of audio relayed',
    'ms',
    `user+system time of the service (/proc/PID/stat) while the cage plays a ${CPU_TONE_S} s tone, ÷ ${CPU_TONE_S}`,
  );

  const w = await World.create({ pulseaudio: true });
  let listener: MonitorListener | undefined;
  const cleanupAll = async (): Promise<void> => {
    await listener?.stop().catch(() => undefined);
    await w.cleanup().catch((e) => log(`world cleanup: ${String(e)}`));
  };
  const { cleanupOnce, disarm } = cleanupGuard(cleanupAll, WATCHDOG_MS, log);

  let failure: unknown;
  let chunkMs: number | undefined;
  try {
    w.writeCage(CAGE, '[Cage]\nSound=output\nIdleStop=0\n');
    const home = path.dirname(w.homeFile(CAGE, 'x'));
    fs.mkdirSync(home, { recursive: true });
    await execa('sh', ['-c', click], { cwd: home });
    await execa(
      'sox',
      [
        '-n',
        '-r',
        String(RATE),
        '-c',
        '1',
        '-b',
        '16',
        'tone.wav',
        'synth',
        String(CPU_TONE_S),
        'sine',
        '440',
        'vol',
        '0.5',
      ],
      { cwd: home },
    );
    const clickFile = path.join(home, 'click.wav');
    const clientConf = path.join(w.tmp.root, 'cage-client.conf');
    fs.writeFileSync(clientConf, 'autospawn = no\nenable-shm = no\nenable-memfd = no\n');
    await w.startService();
    await w.dbus.Cages1.Start(CAGE);
    const relaySocket = path.join(w.runtimeDir, 'cages', CAGE, 'pulse', 'native');
    const moduleSocket = path.join(w.runtimeDir, 'cages', CAGE, 'pulse-host', 'native');
    for (const s of [relaySocket, moduleSocket])
      if (!fs.existsSync(s))
        throw new Error(`${s} does not exist: is the sound bridge up?\n${w.service!.log()}`);
    const pulseEnv = w.pulse!.env;
    const envFor = (socket: string, conf?: string): Record<string, string> => ({
      ...pulseEnv,
      PULSE_SERVER: `unix:${socket}`,
      ...(conf ? { PULSE_CLIENTCONFIG: conf } : {}),
    });

    listener = await MonitorListener.start(pulseEnv);
    const l = listener;

    type Sample = Record<string, number>;
    const variants: [key: string, run: () => Promise<Sample>][] = [
      [
        'cage_warm',
        async () => {
          const loud = l.nextLoud();
          const p = await cagePaplay(w, 'click.wav');
          const t = await loud;
          await p.exited;
          return { cage_warm: t - p.called, cage_warm_reply: p.replied - p.called };
        },
      ],
      [
        'host_relay',
        async () => {
          const loud = l.nextLoud();
          const p = hostPaplay(envFor(relaySocket, clientConf), clickFile);
          const t = await loud;
          await p.exited;
          return { host_relay: t - p.spawned };
        },
      ],
      [
        'host_module',
        async () => {
          const loud = l.nextLoud();
          const p = hostPaplay(envFor(moduleSocket, clientConf), clickFile);
          const t = await loud;
          await p.exited;
          return { host_module: t - p.spawned };
        },
      ],
      [
        'host_server',
        async () => {
          const loud = l.nextLoud();
          const p = hostPaplay(envFor(w.pulse!.socket, clientConf), clickFile);
          const t = await loud;
          await p.exited;
          return { host_server: t - p.spawned };
        },
      ],
      [
        'host_server_shm',
        async () => {
          const loud = l.nextLoud();
          const p = hostPaplay(envFor(w.pulse!.socket), clickFile);
          const t = await loud;
          await p.exited;
          return { host_server_shm: t - p.spawned };
        },
      ],
    ];

    log(`warm-up, then ${RUNS} rounds of ${variants.length} variants`);
    for (let round = 0; round <= RUNS; round++) {
      const got: Sample = {};
      for (let k = 0; k < variants.length; k++) {
        const [, run] = variants[(k + round) % variants.length]!;
        await l.quiet();
        Object.assign(got, await run());
      }
      if (round === 0) continue; // warm-up: code paths and the page cache
      fWarm.samples.push(got.cage_warm!);
      fReply.samples.push(got.cage_warm_reply!);
      fRelay.samples.push(got.host_relay!);
      fModule.samples.push(got.host_module!);
      fHost.samples.push(got.host_server!);
      fHostShm.samples.push(got.host_server_shm!);
      fRatio.samples.push(got.cage_warm! / got.host_server!);
      fRelayCost.samples.push(got.host_relay! - got.host_module!);
      fCageCost.samples.push(got.cage_warm! - got.host_relay!);
      log(
        `  round ${round}: ${Object.entries(got)
          .map(([k, v]) => `${k} ${v.toFixed(1)}`)
          .join(', ')}`,
      );
    }

    log(`service CPU while relaying a ${CPU_TONE_S} s tone, ${CPU_RUNS} times`);
    const servicePid = w.service!.child.pid!;
    for (let i = 0; i < CPU_RUNS; i++) {
      await l.quiet();
      const loud = l.nextLoud();
      const c0 = cpuMs(servicePid);
      const p = await cagePaplay(w, 'tone.wav');
      await loud;
      await p.exited;
      fCpu.samples.push((cpuMs(servicePid) - c0) / CPU_TONE_S);
    }

    log(`cold: cage stopped before each launch, ${RUNS} runs after a warm-up`);
    for (let i = 0; i <= RUNS; i++) {
      await w.dbus.Cages1.Stop(CAGE);
      await sleep(500);
      await l.quiet();
      const loud = l.nextLoud(30_000);
      const p = await cagePaplay(w, 'click.wav');
      const t = await loud;
      await p.exited;
      if (i > 0) fCold.samples.push(t - p.called);
    }
    chunkMs = listener.chunkMedianMs();
  } catch (e) {
    failure = e;
    log(`failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    if (w.service) log(`service log (last 3000 chars):\n${w.service.log().slice(-3000)}`);
  } finally {
    disarm();
    await cleanupOnce();
  }

  // Whatever the world started and cleanup did not stop: given 3 s to exit, then reported
  // and killed.
  await waitFor("the world's processes to exit", () => worldPids(w.tmp.root).length === 0, {
    timeoutMs: 3000,
    pollMs: 100,
  }).catch(() => undefined);
  const leftovers = worldPids(w.tmp.root).map((pid) => {
    let cmd = '?';
    try {
      cmd = fs
        .readFileSync(`/proc/${pid}/cmdline`, 'utf8')
        .replace(/\0/g, ' ')
        .trim()
        .slice(0, 120);
    } catch {
      // gone meanwhile
    }
    return `${pid} (${cmd})`;
  });
  for (const pid of worldPids(w.tmp.root)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }

  const out: string[] = [];
  out.push(
    `kagome sound benchmark — ${RUNS} runs per figure (medians, after one warm-up), ${new Date().toISOString()}`,
  );
  out.push(`command: ${commandLine}`);
  out.push(
    `host: ${os.cpus().length} CPUs, ${os.type()} ${os.release()}, node ${process.version}, ${paVersion}; load average ${loadBefore.map((x) => x.toFixed(2)).join(' ')} before, ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')} after; took ${((performance.now() - tStart) / 1000).toFixed(0)} s`,
  );
  out.push(
    `click: ${click}; monitor: parec --device=host.monitor --latency-msec=5, arrival of the first chunk with a sample above ${THRESHOLD} of full scale (median chunk ${chunkMs === undefined ? '?' : chunkMs.toFixed(1)} ms)`,
  );
  out.push('');
  out.push(...figureTable(figures));
  out.push('');
  const m = (f: Figure): number | undefined => stats(f)?.median;
  const ratio =
    m(fWarm) !== undefined && m(fHost) !== undefined ? m(fWarm)! / m(fHost)! : undefined;
  if (ratio !== undefined)
    out.push(
      `ratio of the medians, cage (running) / baseline (no shm): ${ratio.toFixed(2)} x; / baseline (default): ${(m(fWarm)! / m(fHostShm)!).toFixed(2)} x`,
    );
  out.push('how each figure was taken:');
  for (const f of figures) out.push(`  ${f.key}: ${f.command}`);
  out.push(
    `processes of this world left after cleanup: ${leftovers.length ? leftovers.join(', ') + ', killed' : 'none'}`,
  );
  process.stdout.write(out.join('\n') + '\n');
  if (process.env.BENCH_JSON) {
    fs.writeFileSync(
      process.env.BENCH_JSON,
      JSON.stringify(
        {
          command: commandLine,
          runs: RUNS,
          figures: figures.map((f) => ({
            key: f.key,
            name: f.name,
            unit: f.unit,
            ...stats(f),
            samples: f.samples,
            command: f.command,
          })),
        },
        null,
        2,
      ) + '\n',
    );
  }
  if (failure || leftovers.length) process.exitCode = 1;
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
