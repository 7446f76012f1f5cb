import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { spawnDaemon, stopChild, tail, track, unrefDaemon } from './daemons.js';

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
  const deadline = Date.now() + 10000;
  for (;;) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stopChild(child);
      throw new Error(`pulseaudio did not start:\n${log()}`);
    }
    if (fs.existsSync(socket) && (await execa('pactl', ['info'], { env: pactlEnv, reject: false })).exitCode === 0) break;
    await new Promise((r) => setTimeout(r, 50));
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

/**
 * Records the host sink's monitor for `seconds` and returns the peak level (0..1) and, when
 * sound arrived, how long after the start the first sample above `threshold` came.
 */
export async function listenToHost(server: PulseServer, seconds: number, threshold = 0.05): Promise<{ peak: number; firstLoudMs: number | undefined }> {
  const r = await execa(
    'sh',
    ['-c', `timeout ${seconds} parec --device=host.monitor --format=s16le --rate=48000 --channels=1 --latency-msec=10 --raw || true`],
    { env: server.env, encoding: 'buffer', reject: false, maxBuffer: 64 * 1024 * 1024 },
  );
  const pcm = r.stdout as unknown as Uint8Array;
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
