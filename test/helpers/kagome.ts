import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import dbus from 'dbus-next';
import { execa } from 'execa';
import { makeTempEnv, type TempEnv } from './tmpenv.js';
import { startSessionBus, type SessionBus } from './dbus-session.js';
import { startXvfb, type Xvfb, type XvfbOptions } from './xvfb.js';
import { stopChild, track } from './daemons.js';
import { waitFor } from './wait.js';
import { startDocumentPortal, type DocumentPortal } from './document-portal.js';
import { startPulseAudio, type PulseServer } from './pulseaudio.js';
import { kagomeClient, type KagomeClient } from '../../dbus/client.js';
import { BUS_NAME, OBJECT_PATH } from '../../dbus/contract.js';

// A whole kagome world for an integration test: temporary XDG directories, a private session
// bus, an Xvfb host display, and the real service started from bin/kagome. Everything it
// starts is stopped by cleanup(), including cages left running by a failed test.

export const REPO = path.resolve(fileURLToPath(new URL('../../..', import.meta.url)));
export const KAGOME = path.join(REPO, 'bin', 'kagome');
export const KAGOME_OPEN = path.join(REPO, 'bin', 'kagome-open');

export interface ServiceProcess {
  child: ChildProcess;
  log(): string;
}

type Bus = ReturnType<typeof dbus.sessionBus>;

export class World {
  service: ServiceProcess | undefined;
  /** the real xdg-document-portal, for worlds made with `documentPortal` */
  portal: DocumentPortal | undefined;
  /** the host's sound server, for worlds made with `pulseaudio` */
  pulse: PulseServer | undefined;
  private client: Bus | undefined;
  private typedClient: KagomeClient | undefined;
  private serviceLog = '';

  private constructor(
    readonly tmp: TempEnv,
    readonly bus: SessionBus,
    private host: Xvfb,
    readonly env: Record<string, string>,
  ) {}

  /**
   * With `systemData`, XDG_DATA_DIRS starts with a temporary folder (systemApps is its
   * applications/), standing for /usr/share: "installed" programs go there.
   */
  static async create(
    opts: {
      servicesDirs?: string[];
      systemData?: boolean;
      documentPortal?: boolean;
      pulseaudio?: boolean;
      xvfb?: XvfbOptions;
    } = {},
  ): Promise<World> {
    const tmp = await makeTempEnv();
    const xvfb = await startXvfb(opts.xvfb);
    const baseEnv: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      LANG: 'C.UTF-8',
      ...tmp.env,
      DISPLAY: xvfb.display,
    };
    if (opts.systemData) {
      const system = path.join(tmp.root, 'system');
      fs.mkdirSync(path.join(system, 'applications'), { recursive: true });
      baseEnv.XDG_DATA_DIRS = `${system}:/usr/share`;
    }
    const bus = await startSessionBus({
      env: baseEnv,
      ...(opts.servicesDirs ? { servicesDirs: opts.servicesDirs } : {}),
    });
    const env = { ...baseEnv, DBUS_SESSION_BUS_ADDRESS: bus.address };
    const world = new World(tmp, bus, xvfb, env);
    if (opts.documentPortal) world.portal = await startDocumentPortal(env);
    if (opts.pulseaudio) world.pulse = await startPulseAudio(env);
    return world;
  }

  get display(): string {
    return this.host.display;
  }

  get xvfb(): Xvfb {
    return this.host;
  }

  /** A logout: the host's X server ends, cutting off every client. */
  async endDisplay(): Promise<void> {
    await this.host.stop();
  }

  /** The next login: a new X server on the same display (DISPLAY stays valid). */
  async newDisplay(opts: XvfbOptions = {}): Promise<void> {
    this.host = await startXvfb({ ...opts, display: this.host.display });
  }

  get runtimeDir(): string {
    return path.join(this.env.XDG_RUNTIME_DIR!, 'kagome');
  }

  /** The "installed" applications folder of a world made with `systemData`. */
  get systemApps(): string {
    return path.join(this.tmp.root, 'system', 'applications');
  }

  /** $XDG_DATA_HOME/applications, where shadow entries go. */
  get userApps(): string {
    return path.join(this.env.XDG_DATA_HOME!, 'applications');
  }

  cageFile(name: string): string {
    return path.join(this.env.XDG_CONFIG_HOME!, 'kagome', 'cages', `${name}.cage`);
  }

  writeCage(name: string, body: string): void {
    fs.mkdirSync(path.dirname(this.cageFile(name)), { recursive: true });
    fs.writeFileSync(this.cageFile(name), body);
  }

  /** `wrap` runs the service through another command (e.g. setpriv to drop capabilities). */
  async startService(
    opts: { wrap?: string[]; env?: Record<string, string> } = {},
  ): Promise<ServiceProcess> {
    const argv = [...(opts.wrap ?? []), process.execPath, KAGOME, 'daemon'];
    const child = spawn(argv[0]!, argv.slice(1), {
      env: { ...this.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    track(child);
    const append = (d: Buffer) => (this.serviceLog += d.toString());
    child.stdout!.on('data', append);
    child.stderr!.on('data', append);
    const service: ServiceProcess = { child, log: () => this.serviceLog };
    this.service = service;
    await waitFor(
      'the kagome daemon to take io.kagome.Kagome',
      async () => {
        if (child.exitCode !== null)
          throw new Error(`kagome daemon exited (${child.exitCode}):\n${this.serviceLog}`);
        return this.nameHasOwner();
      },
      { timeoutMs: 15000, pollMs: 20, detail: () => this.serviceLog },
    );
    return service;
  }

  /** kill -9: the service dies without any chance to clean up. */
  async killService(): Promise<void> {
    const s = this.service;
    if (!s) return;
    s.child.kill('SIGKILL');
    if (s.child.exitCode === null && s.child.signalCode === null)
      await new Promise((r) => s.child.once('exit', r));
    this.service = undefined;
    // The bus notices the lost connection; wait until the name is free again.
    await waitFor('the bus to free io.kagome.Kagome', async () => !(await this.nameHasOwner()), {
      timeoutMs: 5000,
      pollMs: 20,
    });
  }

  async nameHasOwner(): Promise<boolean> {
    const [owned] = await this.callRaw(
      'org.freedesktop.DBus',
      '/org/freedesktop/DBus',
      'org.freedesktop.DBus',
      'NameHasOwner',
      's',
      ['io.kagome.Kagome'],
    );
    return owned as boolean;
  }

  clientBus(): Bus {
    if (!this.client) {
      this.client = dbus.sessionBus({ busAddress: this.bus.address });
      this.client.on('error', () => undefined);
    }
    return this.client;
  }

  /** A call to any bus name, unchecked: for other services, and for what kagome's contract forbids. */
  async callRaw(
    destination: string,
    objectPath: string,
    iface: string,
    member: string,
    signature: string,
    body: unknown[],
  ): Promise<unknown[]> {
    const reply = await this.clientBus().call(
      new dbus.Message({
        destination,
        path: objectPath,
        interface: iface,
        member,
        signature,
        body,
      }),
    );
    return reply?.body ?? [];
  }

  /**
   * The service, through the typed client (dbus/client.ts): `await w.dbus.Cages1.Stop('web')`.
   * A D-Bus error rejects with {type, text}.
   */
  get dbus(): KagomeClient {
    this.typedClient ??= kagomeClient(this.clientBus());
    return this.typedClient;
  }

  /** A call with a signature the contract does not have, to see how the service refuses it. */
  sendUnchecked(
    iface: string,
    member: string,
    signature: string,
    body: unknown[],
  ): Promise<unknown[]> {
    return this.callRaw(BUS_NAME, OBJECT_PATH, iface, member, signature, body);
  }

  /** The D-Bus error a call ends with; a call that succeeds fails the test. */
  async rejection(call: Promise<unknown>): Promise<{ type: string; text: string }> {
    try {
      await call;
    } catch (e) {
      const err = e as { type?: string; text?: string };
      return { type: err.type ?? 'none', text: err.text ?? String(e) };
    }
    throw new Error('the call succeeded but an error was expected');
  }

  /** Runs argv in the cage; resolves to the program's object path. */
  launchCommand(cage: string, argv: string[]): Promise<string> {
    return this.dbus.Launcher1.LaunchCommand(cage, argv, {});
  }

  private shellRuns = 0;

  /** Runs a shell script in the cage; its output (stdout and stderr) once it has finished. */
  async runShell(cage: string, script: string, timeoutMs = 30_000): Promise<string> {
    const out = `shell-${++this.shellRuns}.out`;
    await this.launchCommand(cage, [
      'sh',
      '-c',
      `{ ${script}; } > "$HOME/${out}.tmp" 2>&1; mv "$HOME/${out}.tmp" "$HOME/${out}"`,
    ]);
    return this.readFileWhenWritten(this.homeFile(cage, out), timeoutMs);
  }

  kagome(args: string[], extraEnv: Record<string, string> = {}) {
    return execa(process.execPath, [KAGOME, ...args], {
      env: { ...this.env, ...extraEnv },
      reject: false,
      timeout: 60000,
    });
  }

  /** Path of a file in a cage's private home, as the host sees it. */
  homeFile(cage: string, name: string): string {
    return path.join(this.env.XDG_DATA_HOME!, 'kagome', 'homes', cage, name);
  }

  /**
   * The file's content once it is written: a program's `open(..., "w")` makes it empty just
   * before it writes, and reading at that moment gave '' (seen). So an empty file is read
   * again for a moment; one that stays empty is returned empty.
   */
  async readFileWhenWritten(file: string, timeoutMs = 10000): Promise<string> {
    await waitFor(`${file} to be written`, () => fs.existsSync(file), { timeoutMs, pollMs: 25 });
    // Never a timeout: once the moment is over, `until` holds and the empty text is returned.
    const settle = Date.now() + 1000;
    return waitFor(`${file} not to be empty`, () => fs.readFileSync(file, 'utf8'), {
      timeoutMs: 1000,
      pollMs: 25,
      until: (text) => text !== '' || Date.now() >= settle,
    });
  }

  cageState(cage: string): Record<string, unknown> | undefined {
    try {
      return JSON.parse(
        fs.readFileSync(path.join(this.runtimeDir, 'cages', cage, 'state.json'), 'utf8'),
      ) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  }

  /** The cage's own log (bwrap, xpra, kagome-enter): the cage's side of a failure. */
  cageLog(cage: string): string {
    return this.logFile(cage, 'cage.log');
  }

  /** What programs launched under this name printed, every launch (see lib/cage/program-log.ts). */
  programLog(cage: string, program: string): string {
    return this.logFile(cage, `${program}.log`);
  }

  private logFile(cage: string, name: string): string {
    try {
      return fs.readFileSync(path.join(this.runtimeDir, 'cages', cage, 'log', name), 'utf8');
    } catch {
      return '';
    }
  }

  /** Kill whatever cages the state files name: a failed test must not leave cages behind. */
  private killCages(): void {
    const dir = path.join(this.runtimeDir, 'cages');
    let names: string[] = [];
    try {
      names = fs.readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const state = this.cageState(name) as
        | {
            sandbox?: Record<string, { pid: number } | undefined>;
            displayState?: Record<string, { pid: number } | undefined>;
          }
        | undefined;
      const pids = [
        state?.sandbox?.init,
        state?.sandbox?.slirp,
        state?.sandbox?.bwrap,
        state?.displayState?.client,
        state?.displayState?.server,
      ];
      for (const p of pids) {
        if (p?.pid) {
          try {
            process.kill(p.pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
      }
    }
  }

  async cleanup(): Promise<void> {
    if (this.service) {
      try {
        const cages = await this.dbus.Cages1.List();
        for (const [name, p] of Object.entries(cages)) {
          if (p.State?.value === 'running')
            await this.dbus.Cages1.Stop(name).catch(() => undefined);
        }
      } catch {
        /* the service may be gone */
      }
      await stopChild(this.service.child);
    }
    this.killCages();
    this.client?.disconnect();
    await this.portal?.stop();
    await this.pulse?.stop();
    await this.bus.stop();
    await this.host.stop();
    await this.tmp.cleanup();
  }
}
