import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { spawnDaemon, stopChild, tail, track, unrefDaemon } from './daemons.js';
import { waitFor } from './wait.js';

// A real PulseAudio server for a test world, as the user's session would have one: socket at
// $XDG_RUNTIME_DIR/pulse/native, cookie in ~/.config/pulse, and a null sink named "host"
// standing for the speakers (its monitor is where tests listen to what cages play). No
// device, no D-Bus, no autospawn; it never exits on idle.

export interface PulseServer {
  socket: string;
  /** environment for pactl/parec on the host side */
  env: Record<string, string>;
  pactl(args: string[]): Promise<string>;
  /** modules of this server as [index, name, argument] */
  modules(): Promise<[number, string, string][]>;
  log(): string;
  stop(): Promise<void>;
}

export async function startPulseAudio(env: Record<string, string>): Promise<PulseServer> {
  const socket = path.join(env.XDG_RUNTIME_DIR!, 'pulse', 'native');
  const serverEnv = { ...env };
  delete serverEnv.PULSE_SERVER;
  delete serverEnv.DBUS_SESSION_BUS_ADDRESS;
  const child = await spawnDaemon(
    'pulseaudio',
    [
      '-n',
      '--daemonize=no',
      '--exit-idle-time=-1',
      '--disallow-exit',
      '--log-target=stderr',
      '--use-pid-file=no',
      '-L',
      'module-null-sink sink_name=host rate=48000',
      '-L',
      'module-native-protocol-unix',
      // A private null source stands for the microphone: a cage that may record finds one.
      '-L',
      'module-null-source source_name=microphone',
    ],
    { env: serverEnv, stdio: ['ignore', 'pipe', 'pipe'] },
    'pulseaudio',
  );
  track(child);
  const log = tail(child.stderr);
  const pactlEnv = { ...serverEnv, PULSE_SERVER: `unix:${socket}` };
  const pactl = async (args: string[]) => {
    const r = await execa('pactl', args, { env: pactlEnv, reject: false, timeout: 10000 });
    if (r.exitCode !== 0) throw new Error(`pactl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const answers = async () => {
    if (child.exitCode !== null) throw new Error(`pulseaudio exited (${child.exitCode})`);
    return (
      fs.existsSync(socket) &&
      (await execa('pactl', ['info'], { env: pactlEnv, reject: false })).exitCode === 0
    );
  };
  try {
    await waitFor('pulseaudio to answer pactl info', answers, { timeoutMs: 10000, pollMs: 50 });
  } catch (e) {
    await stopChild(child);
    throw new Error(`pulseaudio did not start: ${(e as Error).message}:\n${log()}`);
  }
  unrefDaemon(child);
  return {
    socket,
    env: pactlEnv,
    pactl,
    async modules() {
      const out = await pactl(['list', 'modules', 'short']);
      return out
        .split('\n')
        .filter(Boolean)
        .map((l) => {
          const [i, name, arg] = l.split('\t');
          return [Number(i), name ?? '', arg ?? ''] as [number, string, string];
        });
    },
    log,
    stop: () => stopChild(child),
  };
}

type Heard = { peak: number; firstLoudMs: number | undefined };

function recordHost(server: PulseServer, seconds: number) {
  return execa(
    'sh',
    [
      '-c',
      `timeout ${seconds} parec --device=host.monitor --format=s16le --rate=48000 --channels=1 --latency-msec=10 --raw || true`,
    ],
    { env: server.env, encoding: 'buffer', reject: false, maxBuffer: 64 * 1024 * 1024 },
  );
}

function levels(pcm: Uint8Array, threshold: number): Heard {
  const buf = Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
  let peak = 0;
  let first: number | undefined;
  for (let i = 0; i + 1 < buf.length; i += 2) {
    const v = Math.abs(buf.readInt16LE(i)) / 32768;
    if (v > peak) peak = v;
    if (first === undefined && v > threshold) first = (i / 2 / 48000) * 1000;
  }
  return { peak, firstLoudMs: first };
}

/**
 * Records the host sink's monitor for `seconds` and returns the peak level (0..1) and, when
 * sound arrived, how long after the start the first sample above `threshold` came.
 */
export async function listenToHost(
  server: PulseServer,
  seconds: number,
  threshold = 0.05,
): Promise<Heard> {
  const r = await recordHost(server, seconds);
  return levels(r.stdout as unknown as Uint8Array, threshold);
}

/**
 * As listenToHost, but resolves once the recording has begun: when parec delivers its first
 * bytes (a monitor sends silence too), or has ended. Sound played after that is in `heard`.
 */
export async function startListeningToHost(
  server: PulseServer,
  seconds: number,
  threshold = 0.05,
): Promise<{ heard: Promise<Heard> }> {
  const child = recordHost(server, seconds);
  const heard = child.then((r) => levels(r.stdout as unknown as Uint8Array, threshold));
  await new Promise<void>((resolve) => {
    child.stdout.once('data', () => resolve());
    // An ended recording (parec missing or refused) resolves too; `heard` then says nothing was heard.
    void heard.then(
      () => resolve(),
      () => resolve(),
    );
  });
  return { heard };
}
