import type { CageConfig } from '../cage/config.js';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { findInPath } from '../requirements.js';
import { SOUND_POLICIES, type SoundPolicy } from '../cage/config.js';
import { checkHeldRecord, F } from '../runtime/record-check.js';
import { PulseProxy } from './pulse-proxy.js';
import type { Contribution } from '../sandbox.js';
import {
  downRecord,
  problemOf,
  type BridgeContext,
  type BridgeStatus,
  type CageBridge,
  type CageHandle,
  type HeldRecord,
} from './bridge.js';

// Sound: each cage with Sound=output or duplex gets its own socket on the host's sound server
// (PulseAudio, or PipeWire through pipewire-pulse: both speak the native protocol).
//
//   cage program ──> /run/user/UID/pulse/native (in the cage: kagome's relay, policy-checked)
//                ──> $XDG_RUNTIME_DIR/kagome/cages/NAME/pulse-host/native
//                    (module-native-protocol-unix loaded for this cage alone, in a folder only
//                     the user's own processes outside cages can reach, so auth-anonymous=1
//                     needs no cookie)
//
// Why a relay and not the module's socket itself: the PulseAudio protocol has no per-client
// permissions, so a raw socket lets a cage record the microphone, and load modules (module-pipe-
// sink creates a file wherever the user can write). The relay refuses those commands.
// Why a module per cage and not the server's main socket: the server then knows the cage's
// connections as one group, unloading the module cuts them all at once when the cage stops,
// and no cookie has to be handled. When a server refuses the module (pipewire-pulse does not
// implement module-native-protocol-unix), the relay connects to the main socket instead and
// puts the host's cookie into the cage's AUTH itself; the cage never sees it.
//
// xpra's own sound forwarding was measured against this (README, "Sound"): it encodes in the
// cage and decodes on the host, needs a PulseAudio server running inside every cage, and only
// exists for the xpra display.

const MODULE = 'module-native-protocol-unix';

export type SoundRecord = {
  policy: SoundPolicy;
  /** the cage's end, in a folder bind-mounted read-only at /run/user/UID/pulse */
  listen?: string;
  /** where the relay connects: this cage's module socket, or the server's main socket */
  upstream?: string;
  /** index and socket of the module loaded for this cage */
  module?: { index: number; socket: string };
};

type Held = HeldRecord<SoundRecord>;

/** The host's sound server socket: PULSE_SERVER when it is a local socket, else the standard place. */
export function hostSoundSocket(env: Record<string, string | undefined>): string | undefined {
  const server = env.PULSE_SERVER;
  if (server) {
    // PULSE_SERVER is a list of addresses tried in order; the first unix one is used.
    for (const addr of server.split(/\s+/)) {
      const p = addr.startsWith('unix:') ? addr.slice(5) : addr.startsWith('/') ? addr : undefined;
      if (p) return p;
    }
    return undefined;
  }
  return env.XDG_RUNTIME_DIR ? path.join(env.XDG_RUNTIME_DIR, 'pulse', 'native') : undefined;
}

/** The cookie libpulse would send: PULSE_COOKIE, ~/.config/pulse/cookie, ~/.pulse-cookie. */
function hostCookie(env: Record<string, string | undefined>): Buffer | undefined {
  const home = env.HOME ?? '';
  const configHome = env.XDG_CONFIG_HOME || path.join(home, '.config');
  for (const file of [
    env.PULSE_COOKIE,
    path.join(configHome, 'pulse', 'cookie'),
    path.join(home, '.pulse-cookie'),
  ]) {
    if (!file) continue;
    try {
      const c = fs.readFileSync(file);
      if (c.length === 256) return c;
    } catch {
      /* next */
    }
  }
  return undefined;
}

function isSocket(p: string): boolean {
  try {
    return fs.statSync(p).isSocket();
  } catch {
    return false;
  }
}

export class SoundBridge implements CageBridge<SoundRecord> {
  readonly kind = 'sound';

  policyOf(config: CageConfig): string {
    return config.sound;
  }
  private readonly proxies = new Map<string, PulseProxy>();

  /** `env`: the service's environment, where the host's sound server is found (as libpulse finds it) */
  constructor(private readonly env: Record<string, string | undefined>) {}

  private dirs(ctx: BridgeContext) {
    return { cage: path.join(ctx.rt.dir, 'pulse'), host: path.join(ctx.rt.dir, 'pulse-host') };
  }

  async prepare(ctx: BridgeContext): Promise<Held> {
    const policy = ctx.config.sound;
    const { cage } = this.dirs(ctx);
    fs.mkdirSync(cage, { recursive: true, mode: 0o700 });
    // Programs in a cage must never start a sound server of their own (libpulse autospawns one
    // when it finds none): it would have no device, and would hide that sound is off.
    fs.writeFileSync(
      path.join(cage, 'client.conf'),
      'autospawn = no\nenable-shm = no\nenable-memfd = no\n',
    );
    if (policy === 'none') return { policy };
    try {
      return await this.connect(ctx, policy);
    } catch (e) {
      const problem = (e as Error).message;
      ctx.log.warn(`cage ${ctx.config.name}: no sound: ${problem}`);
      return { policy, ...downRecord(problem) };
    }
  }

  private async connect(
    ctx: BridgeContext,
    policy: SoundPolicy,
    previous?: Pick<SoundRecord, 'module'>,
  ): Promise<SoundRecord> {
    const server = hostSoundSocket(this.env);
    if (!server || !isSocket(server)) {
      throw new Error(
        `no sound server on the host (looked for ${server ?? 'PULSE_SERVER or $XDG_RUNTIME_DIR/pulse/native'}); start PulseAudio or PipeWire with pipewire-pulse (Debian packages pulseaudio or pipewire-pulse)`,
      );
    }
    const dirs = this.dirs(ctx);
    let module =
      previous?.module && (await this.moduleLoaded(previous.module)) ? previous.module : undefined;
    let upstream = module?.socket ?? server;
    if (!module) {
      try {
        module = await this.loadModule(dirs.host);
        upstream = module.socket;
      } catch (e) {
        ctx.log.info(
          `cage ${ctx.config.name}: the sound server has no per-cage socket (${(e as Error).message}); relaying to its main socket`,
        );
      }
    }
    const listen = path.join(dirs.cage, 'native');
    const proxy = new PulseProxy({
      listenPath: listen,
      upstreamPath: upstream,
      rules: { record: policy === 'duplex', ...(module ? {} : { cookie: hostCookie(this.env) }) },
      onRefused: (what) => ctx.log.info(`cage ${ctx.config.name}: sound: ${what}`),
    });
    await proxy.listen();
    this.proxies.set(listen, proxy);
    return { policy, listen, upstream, ...(module ? { module } : {}) };
  }

  private pactl(): string {
    const pactl = findInPath('pactl', this.env.PATH);
    if (!pactl)
      throw new Error("pactl was not found: install the Debian package 'pulseaudio-utils'");
    return pactl;
  }

  private async loadModule(dir: string): Promise<{ index: number; socket: string }> {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const socket = path.join(dir, 'native');
    fs.rmSync(socket, { force: true });
    // The path is kagome's own (a cage name is [A-Za-z0-9_-]), so it needs no quoting.
    const r = await execa(
      this.pactl(),
      ['load-module', MODULE, `socket=${socket}`, 'auth-anonymous=1'],
      { env: this.pactlEnv(), reject: false, timeout: 10000 },
    );
    const index = Number(r.stdout.trim());
    if (r.exitCode !== 0 || !Number.isInteger(index))
      throw new Error(`pactl load-module ${MODULE} failed: ${(r.stderr || r.stdout).trim()}`);
    return { index, socket };
  }

  private pactlEnv(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const k of [
      'PATH',
      'HOME',
      'XDG_RUNTIME_DIR',
      'XDG_CONFIG_HOME',
      'PULSE_SERVER',
      'PULSE_COOKIE',
      'LANG',
    ]) {
      const v = this.env[k];
      if (v !== undefined) out[k] = v;
    }
    return out;
  }

  /** Whether the module is still the one loaded for this cage: an index alone may have been reused. */
  private async moduleLoaded(m: { index: number; socket: string }): Promise<boolean> {
    const r = await execa(this.pactl(), ['list', 'modules', 'short'], {
      env: this.pactlEnv(),
      reject: false,
      timeout: 10000,
    });
    if (r.exitCode !== 0) return false;
    return r.stdout.split('\n').some((line) => {
      const [index, name, args] = line.split('\t');
      return (
        Number(index) === m.index &&
        name === MODULE &&
        (args ?? '').split(/\s+/).includes(`socket=${m.socket}`)
      );
    });
  }

  contribute(ctx: BridgeContext, r: Held): Contribution {
    const inCage = path.posix.join(ctx.spec.runtimeDir, 'pulse');
    return {
      // Read-only: the cage can connect to the socket but not replace it or the client settings.
      ops: [{ op: 'ro-bind', source: this.dirs(ctx).cage, dest: inCage }],
      env: {
        PULSE_CLIENTCONFIG: path.posix.join(inCage, 'client.conf'),
        ...(r.listen ? { PULSE_SERVER: `unix:${path.posix.join(inCage, 'native')}` } : {}),
      },
    };
  }

  async start(_ctx: BridgeContext, _cage: CageHandle, record: Held): Promise<Held> {
    return record;
  }

  async readopt(ctx: BridgeContext, _cage: CageHandle, r: Held): Promise<Held> {
    // A down record may lack its policy: it has no relay (no `listen`) to bring back either.
    if (r.policy === undefined || r.policy === 'none' || !r.listen) return r;
    try {
      return await this.connect(ctx, r.policy, r);
    } catch (e) {
      const problem = (e as Error).message;
      ctx.log.warn(`cage ${ctx.config.name}: no sound after the restart: ${problem}`);
      return { policy: r.policy, ...downRecord(problem) };
    }
  }

  async stop(r: Held): Promise<void> {
    if (r.listen) {
      const proxy = this.proxies.get(r.listen);
      this.proxies.delete(r.listen);
      if (proxy) await proxy.close();
      else fs.rmSync(r.listen, { force: true }); // left by a service that died
    }
    if (r.module && (await this.moduleLoaded(r.module).catch(() => false))) {
      // Unloading the module closes every connection the cage still had.
      await execa(this.pactl(), ['unload-module', String(r.module.index)], {
        env: this.pactlEnv(),
        reject: false,
        timeout: 10000,
      });
    }
    if (r.module) fs.rmSync(path.dirname(r.module.socket), { recursive: true, force: true });
  }

  checkRecord(v: unknown): Held | string {
    return checkHeldRecord<SoundRecord>("the sound bridge's", v, {
      policy: F.oneOf(...SOUND_POLICIES),
      listen: F.optional(F.string),
      upstream: F.optional(F.string),
      module: F.optional(
        F.shape('a module (index, socket)', { index: F.number, socket: F.string }),
      ),
    });
  }

  status(r: Held): BridgeStatus {
    const policy = r.policy ?? 'none';
    if (policy === 'none') return { policy, state: 'off', problem: '' };
    const problem = problemOf(r);
    if (problem) return { policy, state: 'down', problem };
    return this.proxies.get(r.listen ?? '')?.listening
      ? { policy, state: 'up', problem: '' }
      : { policy, state: 'down', problem: 'the relay is not listening' };
  }
}
