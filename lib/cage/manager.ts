import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import { logSince, withCause } from './start-failure.js';
import { openProgramLog } from './program-log.js';
import { closePrograms } from './close-programs.js';
import { StateWriter } from './state-writer.js';
import { BridgeSet } from './bridge-set.js';
import { DisplayKeeper } from './display-keeper.js';
import { IdleStop } from './idle-stop.js';
import { adoptCage, cagesWithState } from './adoption.js';
import { checkArgv, checkMounts, resolveInCage, terminalIn } from './launch-checks.js';
import {
  handleOf,
  stateOf,
  type CageInfo,
  type CageStateName,
  type LaunchOptions,
  type ProgramInfo,
  type RunningCage,
} from './running-cage.js';
import { KagomeError, asKagomeError } from '../errors.js';
import { checkCageName } from './name.js';
import type { CageConfig } from './config.js';
import type { CageStore } from './store.js';
import type { Backend, ExecHandle, SandboxRecord } from '../backends/backend.js';
import type { CageDisplay, DisplayContext, DisplayRecord } from '../display/display.js';
import { cageRuntimePaths, type CageRuntimePaths, type Paths } from '../runtime/paths.js';
import { removeState } from '../runtime/state.js';
import { processStartTime, procRef, type ProcRef } from '../runtime/proc.js';
import { addContributions, cageSpec, type HostFacts, type SandboxSpec } from '../sandbox.js';
import type { Logger } from '../log.js';
import type { ArgValue } from '../../xdg/exec.js';
import type { BridgeContext, BridgeRecord, CageBridge, CageHandle } from '../bridges/bridge.js';

// Who imports the manager gets the types of a cage's life from here too.
export { checkArgv } from './launch-checks.js';
export type { CageInfo, CageStateName, LaunchOptions, ProgramInfo } from './running-cage.js';

export interface ManagerDeps {
  paths: Paths;
  store: CageStore;
  host: HostFacts;
  /** environment for host-side display clients: DISPLAY, XAUTHORITY, ... */
  hostEnv: Record<string, string>;
  backends: Record<string, Backend>;
  displays: Record<string, CageDisplay>;
  log: Logger;
  /** granted files: their folder joins each cage at start, their grants end when it stops */
  grants?: CageGrantHooks;
  /** sound, clipboard and the session bus: started with each cage, as its policy says */
  bridges?: CageBridge[];
}

export interface CageGrantHooks {
  cageStarting(name: string, spec: SandboxSpec, backend: Backend): Promise<void>;
  cageAdopted(name: string, backend: Backend, spec: SandboxSpec): Promise<void>;
  cageStopped(name: string): Promise<void>;
}

export interface ManagerEvents {
  state: [name: string, state: CageStateName, message: string];
  program: [program: ProgramInfo, event: 'started' | 'exited'];
}

/**
 * The life of every cage: start once however many launches arrive together, run programs in
 * it, stop it when asked or when idle, and find running cages again after a restart.
 */
export class CageManager extends EventEmitter<ManagerEvents> {
  private readonly running = new Map<string, RunningCage>();
  private readonly starting = new Map<string, Promise<RunningCage>>();
  private readonly stopping = new Map<string, Promise<void>>();
  private nextProgramId = 1;
  private readonly self: ProcRef = procRef(process.pid);
  private readonly states = new StateWriter();

  private readonly bridges: BridgeSet;
  private readonly displays: DisplayKeeper;
  private readonly idle: IdleStop;

  constructor(private readonly deps: ManagerDeps) {
    super();
    this.bridges = new BridgeSet(deps.bridges ?? [], deps.log);
    this.displays = new DisplayKeeper(
      {
        holds: (name, cage) => this.running.get(name) === cage,
        stillRuns: (name, cage) =>
          this.running.get(name) === cage && !this.stopping.has(name) && this.isHealthy(cage),
        displayContext: (cage) => this.displayContext(cage.config, cage.spec, cage.rt, cage.logFd),
        persist: (name, cage) => this.persist(name, cage),
        log: deps.log,
      },
      deps.hostEnv.DISPLAY ?? '',
    );
    this.idle = new IdleStop({
      running: () => this.running.entries(),
      holds: (name, cage) => this.running.get(name) === cage,
      stop: (name) => this.stop(name),
      persist: (name, cage) => this.persist(name, cage),
      log: deps.log,
    });
  }

  /** Start a cage, or return it if it runs. Concurrent calls share one start. */
  async start(name: string): Promise<void> {
    await this.ensureStarted(checkCageName(name));
  }

  private async ensureStarted(name: string): Promise<RunningCage> {
    this.displays.refuseWhileAway(name);
    const pendingStop = this.stopping.get(name);
    if (pendingStop) await pendingStop;
    const cage = this.running.get(name);
    if (cage) {
      if (this.isHealthy(cage)) {
        await this.displays.keep(name, cage);
        return cage;
      }
      // Many launches may find the same dead cage: it is cleaned up once, as a stop is.
      await this.teardownOnce(name, cage, `cage "${name}" stopped unexpectedly`);
    }
    let pending = this.starting.get(name);
    if (!pending) {
      pending = this.doStart(name).finally(() => this.starting.delete(name));
      this.starting.set(name, pending);
    }
    return pending;
  }

  private isHealthy(cage: RunningCage): boolean {
    return (
      cage.backend.isAlive(cage.sandbox) &&
      cage.display.isAlive(cage.displayRecord, cage.backend, cage.sandbox)
    );
  }

  private parts(config: CageConfig): { backend: Backend; display: CageDisplay } {
    const backend = this.deps.backends[config.backend];
    const display = this.deps.displays[config.display];
    if (!backend)
      throw new KagomeError(
        'NotSupported',
        `backend "${config.backend}" is not available in this kagome`,
      );
    if (!display)
      throw new KagomeError(
        'NotSupported',
        `display "${config.display}" is not available in this kagome`,
      );
    return { backend, display };
  }

  private async doStart(name: string): Promise<RunningCage> {
    const config = await this.deps.store.read(name);
    const { backend, display } = this.parts(config);
    const spec = cageSpec(config, this.deps.host);
    backend.checkHost(spec);
    display.checkHost();
    await checkMounts(config, (n) => this.deps.store.fileOf(n));
    const rt = cageRuntimePaths(this.deps.paths, name);
    await fsp.mkdir(rt.logDir, { recursive: true, mode: 0o700 });
    await fsp.mkdir(config.home, { recursive: true, mode: 0o700 });
    const logFile = path.join(rt.logDir, 'cage.log');
    const logFd = fs.openSync(logFile, 'a', 0o600);
    const logStart = fs.fstatSync(logFd).size;
    this.emit('state', name, 'starting', '');
    this.deps.log.info(
      `cage ${name}: starting (${config.backend}, ${config.display}, network ${config.network})`,
    );
    const t0 = performance.now();
    const ctx = this.displayContext(config, spec, rt, logFd);
    let sandbox: SandboxRecord | undefined;
    let prepared: DisplayRecord | undefined;
    let bridges: Record<string, BridgeRecord> = {};
    try {
      await this.deps.grants?.cageStarting(name, spec, backend);
      const bctx = this.bridgeContext(ctx);
      // Bridges prepare (a sound module is loaded) while the display prepares.
      const [displayPrepared, bridgesPrepared] = await Promise.all([
        display.prepare(ctx),
        this.bridges.prepare(bctx),
      ]);
      prepared = displayPrepared;
      bridges = bridgesPrepared;
      // What DISPLAY and every other variable the parts set are: added here, nowhere else.
      addContributions(spec, [
        { from: `the ${display.kind} display`, contribution: display.contribute(ctx, prepared) },
        ...this.bridges.contribute(bctx, bridges),
      ]);
      sandbox = await backend.start(spec, {
        logFd,
        etcDir: rt.etcDir,
        cacheDir: path.join(this.deps.paths.runtimeDir, 'cache'),
        ownFolders: [this.deps.paths.runtimeDir, config.home],
      });
      const early = this.bridges.startWithSandbox(
        bctx,
        { backend, sandbox, env: spec.env, cwd: spec.cwd, logFd },
        bridges,
      );
      let displayRecord: DisplayRecord;
      try {
        displayRecord = await display.start(ctx, backend, sandbox, prepared);
      } finally {
        // Also when the display failed: what did start is then stopped with the rest.
        bridges = await early;
      }
      const cage: RunningCage = {
        config,
        spec,
        rt,
        backend,
        display,
        sandbox,
        displayRecord,
        bridges,
        programs: new Map(),
        inherited: [],
        startedAt: new Date().toISOString(),
        logFd,
        hostSession: this.displays.session,
      };
      cage.bridges = await this.bridges.start(bctx, handleOf(cage), bridges, 'start');
      this.running.set(name, cage);
      this.displays.watch(name, cage);
      await this.persist(name, cage);
      this.deps.log.info(`cage ${name}: running after ${Math.round(performance.now() - t0)} ms`);
      this.emit('state', name, 'running', '');
      return cage;
    } catch (e) {
      let err = asKagomeError(e, 'BackendFailed');
      // "the xpra server did not start" alone leaves the person guessing; the log knows why.
      if (err.errorName === 'BackendFailed' || err.errorName === 'DisplayFailed')
        err = withCause(err, logSince(logFile, logStart));
      this.deps.log.error(`cage ${name}: start failed: ${err.message}`);
      if (prepared) await display.stop(prepared).catch(() => undefined);
      if (sandbox) await backend.stop(sandbox).catch(() => undefined);
      await this.bridges.stop(name, bridges);
      fs.closeSync(logFd);
      await removeState(rt.state);
      this.emit('state', name, 'stopped', err.message);
      throw err;
    }
  }

  private displayContext(
    config: CageConfig,
    spec: SandboxSpec,
    rt: CageRuntimePaths,
    logFd: number,
  ): DisplayContext {
    return {
      config,
      spec,
      rt,
      hostDisplay: this.deps.hostEnv.DISPLAY ?? '',
      hostEnv: this.deps.hostEnv,
      logFd,
    };
  }

  private bridgeContext(ctx: DisplayContext): BridgeContext {
    return { ...ctx, log: this.deps.log };
  }

  /** A running cage, for the bridges' explicit requests (clipboard copies). */
  handle(
    name: string,
  ): { config: CageConfig; handle: CageHandle; bridges: Record<string, BridgeRecord> } | undefined {
    const cage = this.running.get(name);
    if (!cage || !this.isHealthy(cage)) return undefined;
    return {
      config: cage.config,
      handle: handleOf(cage),
      bridges: cage.bridges,
    };
  }

  private persist(name: string, cage: RunningCage): Promise<void> {
    return this.states.write(cage.rt.state, () => stateOf(name, cage, this.self));
  }

  /** Resolves once every state write queued so far has landed. */
  flush(): Promise<void> {
    return this.states.flush();
  }

  /** Run a program in a cage, starting the cage if needed. Resolves once the program is exec'd. */
  async launchCommand(
    name: string,
    argv: ArgValue[],
    opts: LaunchOptions = {},
  ): Promise<ProgramInfo> {
    checkCageName(name);
    if (!(opts.terminal && Array.isArray(argv) && argv.length === 0)) checkArgv(argv);
    const cage = await this.ensureStarted(name);
    const searchPath = cage.spec.env.PATH ?? '/usr/bin:/bin';
    if (argv.length) await resolveInCage(name, cage, String(argv[0]), searchPath);
    if (opts.terminal)
      argv = [await terminalIn(name, cage, searchPath), ...(argv.length ? ['-e', ...argv] : [])];
    const env = { ...cage.spec.env };
    if (opts.startupId) {
      env.DESKTOP_STARTUP_ID = opts.startupId;
      env.XDG_ACTIVATION_TOKEN = opts.startupId;
    }
    // The backend chooses the directory inside the cage: a relative or missing one is the home.
    const cwd = opts.cwd?.startsWith('/') ? opts.cwd : cage.spec.cwd;
    const output = openProgramLog(cage.rt.logDir, argv.map(String));
    let handle: ExecHandle;
    try {
      handle = await cage.backend.exec(cage.sandbox, {
        argv,
        env,
        cwd,
        fallbackCwd: cage.spec.cwd,
        logFd: output.fd,
        logFile: output.log.file,
      });
    } finally {
      fs.closeSync(output.fd);
    }
    const info: ProgramInfo = {
      id: this.nextProgramId++,
      cage: name,
      argv: argv.map(String),
      pid: handle.pid,
      pidStart: processStartTime(handle.pid) ?? '',
      startedAt: new Date(),
      log: output.log,
    };
    cage.programs.set(info.id, info);
    this.idle.clear(cage);
    this.emit('program', info, 'started');
    this.deps.log.info(`cage ${name}: started ${JSON.stringify(info.argv)} as pid ${handle.pid}`);
    void this.persist(name, cage).catch((e) =>
      this.deps.log.warn(`cage ${name}: could not save state: ${asKagomeError(e).message}`),
    );
    void handle.exited.then((code) => {
      info.exitCode = code;
      cage.programs.delete(info.id);
      this.emit('program', info, 'exited');
      if (this.running.get(name) === cage) {
        void this.persist(name, cage).catch(() => undefined);
        this.idle.arm(name, cage);
      }
    });
    return info;
  }

  /**
   * The cage file changed on disk. A stopped cage needs nothing: every start reads the file.
   * A running cage keeps what was fixed when it started (backend, display, network, home,
   * mounts, environment, border), and those changes wait for its next start, which the log
   * says; IdleStop, Description and AppName take effect at once.
   */
  async configChanged(name: string): Promise<void> {
    const cage = this.running.get(name);
    if (!cage || this.stopping.has(name)) return;
    let config: CageConfig;
    try {
      config = await this.deps.store.read(name);
    } catch (e) {
      this.deps.log.warn(
        `cage ${name}: its file changed and cannot be used (${asKagomeError(e).message}); the running cage keeps its settings`,
      );
      return;
    }
    const fixed = (
      [
        'backend',
        'display',
        'network',
        'home',
        'mounts',
        'environment',
        'border',
        'sessionBus',
        'notifications',
      ] as const
    ).filter((k) => JSON.stringify(config[k]) !== JSON.stringify(cage.config[k]));
    const live = {
      idleStopSeconds: config.idleStopSeconds,
      description: config.description,
      appName: config.appName,
      onLogout: config.onLogout,
    };
    if (
      fixed.length === 0 &&
      Object.entries(live).every(([k, v]) => cage.config[k as keyof typeof live] === v)
    )
      return;
    cage.config = { ...cage.config, ...live };
    if (fixed.length) {
      this.deps.log.info(
        `cage ${name}: ${fixed.join(', ')} changed; that takes effect when the cage next starts ('kagome stop ${name}' stops it)`,
      );
    }
    this.deps.log.info(`cage ${name}: settings reloaded (IdleStop=${config.idleStopSeconds})`);
    this.idle.arm(name, cage);
    await this.persist(name, cage).catch((e) =>
      this.deps.log.warn(`cage ${name}: could not save state: ${asKagomeError(e).message}`),
    );
  }

  /** Is the cage being stopped, or gone? Its programs then end because kagome ended them. */
  isStopping(name: string): boolean {
    return this.stopping.has(name) || !this.running.has(name);
  }

  /** @param reason why, for the log and the state signal (none: asked by a person) */
  async stop(name: string, reason = ''): Promise<void> {
    checkCageName(name);
    const starting = this.starting.get(name);
    if (starting) await starting.catch(() => undefined);
    const pending = this.stopping.get(name);
    if (pending) return pending;
    const cage = this.running.get(name);
    if (!cage) {
      if (!(await this.deps.store.exists(name)))
        throw new KagomeError('NoSuchCage', `no cage named "${name}"`);
      return;
    }
    return this.teardownOnce(name, cage, reason);
  }

  private teardownOnce(name: string, cage: RunningCage, message: string): Promise<void> {
    const pending = this.stopping.get(name);
    if (pending) return pending;
    const p = this.teardown(name, cage, message).finally(() => this.stopping.delete(name));
    this.stopping.set(name, p);
    return p;
  }

  private async teardown(name: string, cage: RunningCage, message: string): Promise<void> {
    this.emit('state', name, 'stopping', message);
    this.idle.clear(cage);
    // What ends now ends because the cage does.
    cage.unwatchDisplay?.();
    // Programs first, while their display is still there (close-programs.ts).
    const programs = [
      ...[...cage.programs.values()].map((p) => ({ pid: p.pid, start: p.pidStart })),
      ...cage.inherited,
    ];
    const how = await closePrograms({
      backend: cage.backend,
      sandbox: cage.sandbox,
      env: cage.spec.env,
      logFd: cage.logFd,
      programs,
    }).catch(() => 'left' as const);
    if (how !== 'closed')
      this.deps.log.info(
        `cage ${name}: ${how === 'terminated' ? 'programs that did not close their windows were sent SIGTERM' : 'programs still running after SIGTERM are killed with the cage'}`,
      );
    // Bridges first: their helpers (watchers on the cage's display) are then stopped, not found dead.
    await this.bridges.stop(name, cage.bridges);
    await cage.display
      .stop(cage.displayRecord)
      .catch((e) => this.deps.log.warn(`cage ${name}: display stop: ${asKagomeError(e).message}`));
    try {
      await cage.backend.stop(cage.sandbox);
    } catch (e) {
      const err = asKagomeError(e, 'BackendFailed');
      // Still running: it stays listed, owned and in its state file, so a stop can be tried
      // again (here or by a restarted service) rather than leave a cage no one knows of.
      if (cage.backend.isAlive(cage.sandbox)) {
        this.deps.log.error(`cage ${name}: could not be stopped: ${err.message}`);
        this.emit('state', name, 'running', err.message);
        throw err;
      }
      this.deps.log.warn(`cage ${name}: stopping it failed (${err.message}), but it has ended`);
    }
    this.running.delete(name);
    try {
      await this.states.remove(cage.rt.state);
      await this.deps.grants
        ?.cageStopped(name)
        .catch((e) =>
          this.deps.log.warn(`cage ${name}: ending its grants: ${asKagomeError(e).message}`),
        );
    } finally {
      try {
        fs.closeSync(cage.logFd);
      } catch {
        /* already closed */
      }
    }
    this.deps.log.info(`cage ${name}: stopped${message ? ` (${message})` : ''}`);
    this.emit('state', name, 'stopped', message);
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.running.keys()].map((n) => this.stop(n).catch(() => undefined)));
  }

  /** Every cage: configured ones (valid or not) and running ones whose file has gone. */
  async list(): Promise<CageInfo[]> {
    const { cages, problems } = await this.deps.store.readAll();
    const out = new Map<string, CageInfo>();
    for (const c of cages) {
      out.set(c.name, this.info(c.name, c));
    }
    for (const p of problems) {
      out.set(p.name, {
        ...this.info(p.name, undefined),
        state: this.running.has(p.name) ? 'running' : 'invalid',
        error: p.error.message,
      });
    }
    for (const [name, cage] of this.running) {
      if (!out.has(name)) out.set(name, this.info(name, cage.config));
    }
    return [...out.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  async get(name: string): Promise<CageInfo> {
    checkCageName(name);
    const running = this.running.get(name);
    if (running) return this.info(name, running.config);
    return this.info(name, await this.deps.store.read(name));
  }

  private info(name: string, config: CageConfig | undefined): CageInfo {
    const cage = this.running.get(name);
    const state: CageStateName = this.stopping.has(name)
      ? 'stopping'
      : this.starting.has(name)
        ? 'starting'
        : cage
          ? 'running'
          : 'stopped';
    const c = cage?.config ?? config;
    return {
      name,
      state,
      description: c?.description ?? '',
      backend: c?.backend ?? '',
      display: c?.display ?? '',
      network: c?.network ?? '',
      programs: cage ? this.idle.programCount(cage) : 0,
      error: '',
      sound: this.bridges.status('sound', c, cage?.bridges),
      clipboard: this.bridges.status('clipboard', c, cage?.bridges),
      sessionBus: this.bridges.status('session-bus', c, cage?.bridges),
    };
  }

  /** How a running cage's own files can be read from the host, and its programs' environment. */
  view(
    name: string,
  ):
    | { hostPathOf(pathInCage: string): string | undefined; env: Record<string, string> }
    | undefined {
    const cage = this.running.get(name);
    if (!cage) return undefined;
    return {
      hostPathOf: (p) => cage.backend.hostPathOf(cage.sandbox, p),
      env: { ...cage.spec.env },
    };
  }

  programs(name?: string): ProgramInfo[] {
    const out: ProgramInfo[] = [];
    for (const [n, cage] of this.running)
      if (!name || n === name) out.push(...cage.programs.values());
    return out;
  }

  /**
   * Find cages left running by an earlier instance of the service (a crash, `kill -9`, an
   * upgrade) and take them over; remove the state of cages that died meanwhile (adoption.ts).
   */
  async adoptAll(): Promise<string[]> {
    const adopted: string[] = [];
    for (const name of await cagesWithState(this.deps.paths)) {
      try {
        if (await this.adopt(name)) adopted.push(name);
      } catch (e) {
        this.deps.log.error(`cage ${name}: could not be re-adopted: ${asKagomeError(e).message}`);
      }
    }
    return adopted;
  }

  private async adopt(name: string): Promise<boolean> {
    const adopted = await adoptCage(name, {
      paths: this.deps.paths,
      host: this.deps.host,
      log: this.deps.log,
      bridges: this.bridges,
      displays: this.displays,
      grants: this.deps.grants,
      parts: (config) => this.parts(config),
      displayContext: (config, spec, rt, logFd) => this.displayContext(config, spec, rt, logFd),
    });
    if (!adopted) return false;
    const { cage, fromEndedSession } = adopted;
    this.running.set(name, cage);
    // One from an ended session is watched once it is shown again (reattach), not revived now.
    if (!fromEndedSession) this.displays.watch(name, cage);
    await this.persist(name, cage);
    this.idle.watchInherited();
    this.deps.log.info(`cage ${name}: re-adopted with ${cage.inherited.length} running program(s)`);
    this.emit('state', name, 'running', 'adopted');
    return true;
  }

  /** The host session windows are shown in (at the service's start, and when one is back after a logout). */
  hostSessionIs(stamp: string): void {
    this.displays.sessionIs(stamp);
  }

  /** The host display has gone: displays' parts that end now are not brought back, launches are refused. */
  hostSessionEnded(): void {
    this.displays.sessionEnded();
  }

  /** Running cages whose windows were shown in another session than the one now (or, while away, all). */
  cagesFromEndedSessions(): { name: string; config: CageConfig; displayKind: string }[] {
    const out: { name: string; config: CageConfig; displayKind: string }[] = [];
    for (const [name, cage] of this.running) {
      if (this.stopping.has(name)) continue;
      if (this.displays.fromEndedSession(cage.hostSession))
        out.push({ name, config: cage.config, displayKind: cage.display.kind });
    }
    return out;
  }

  /** Shows a kept cage's windows in the session now: its display's host part is started on the current DISPLAY. */
  async reattach(name: string): Promise<void> {
    const cage = this.running.get(name);
    if (cage) await this.displays.reattach(name, cage);
  }

  /** Detach from running cages without stopping them (service shutdown: cages outlive it). */
  release(): void {
    for (const cage of this.running.values()) {
      this.idle.clear(cage);
      cage.unwatchDisplay?.();
      try {
        fs.closeSync(cage.logFd);
      } catch {
        /* ignore */
      }
    }
    this.idle.stopWatching();
    this.running.clear();
  }
}
