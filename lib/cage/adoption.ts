import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { asKagomeError } from '../errors.js';
import { checkCageName } from './name.js';
import { handleOf, type RunningCage } from './running-cage.js';
import type { BridgeSet } from './bridge-set.js';
import type { DisplayKeeper } from './display-keeper.js';
import type { CageConfig } from './config.js';
import type { Backend } from '../backends/backend.js';
import type { BridgeContext } from '../bridges/bridge.js';
import type { CageDisplay, DisplayContext } from '../display/display.js';
import { cageRuntimePaths, type CageRuntimePaths, type Paths } from '../runtime/paths.js';
import { readState, removeState } from '../runtime/state.js';
import { isAlive } from '../runtime/proc.js';
import { addContributions, cageSpec, type HostFacts, type SandboxSpec } from '../sandbox.js';
import type { Logger } from '../log.js';

// Adoption: a cage left running by an earlier instance of the service (a crash, `kill -9`, an
// upgrade) is found by its state file and taken over: its display's host parts and its
// bridges are brought back, its programs are watched as inherited. A cage that died meanwhile
// has its leftovers stopped and its state removed. A state file that cannot be used is kept
// and the cage is left alone, with the reason in the log: never a crash of the service.

/** What adoption needs of the manager. */
export interface AdoptionHost {
  paths: Paths;
  host: HostFacts;
  log: Logger;
  bridges: BridgeSet;
  displays: DisplayKeeper;
  grants?: { cageAdopted(name: string, backend: Backend, spec: SandboxSpec): Promise<void> };
  parts(config: CageConfig): { backend: Backend; display: CageDisplay };
  displayContext(
    config: CageConfig,
    spec: SandboxSpec,
    rt: CageRuntimePaths,
    logFd: number,
  ): DisplayContext;
}

export interface Adopted {
  cage: RunningCage;
  /** shown in a session that has ended since: watched once shown again, not revived now */
  fromEndedSession: boolean;
}

/** The names of cages that have a state file, running or not. */
export async function cagesWithState(paths: Paths): Promise<string[]> {
  try {
    return await fsp.readdir(path.join(paths.runtimeDir, 'cages'));
  } catch {
    return [];
  }
}

/**
 * Takes over the cage `name` if its state file says it runs: the running cage, not yet held
 * by the manager; undefined when there is nothing to adopt (no state, an unusable one, a cage
 * found stopped).
 */
export async function adoptCage(name: string, host: AdoptionHost): Promise<Adopted | undefined> {
  checkCageName(name);
  const rt = cageRuntimePaths(host.paths, name);
  // Kept: the kagome that wrote it may read it again; the cage, if it runs, is not touched.
  const unusable = (problem: string): undefined => {
    host.log.error(
      `cage ${name}: its state file ${rt.state} cannot be used: ${problem}; the cage is not re-adopted (if it still runs, end its processes or restart your session)`,
    );
    return undefined;
  };
  const read = await readState(rt.state);
  if (!read) return undefined;
  if ('problem' in read) return unusable(read.problem);
  const { backend, display } = host.parts(read.state.config);
  // The common fields are checked (runtime/state.ts); each part checks its own record.
  const sandbox = backend.checkRecord(read.state.sandbox);
  if (typeof sandbox === 'string') return unusable(sandbox);
  const displayState = display.checkRecord(read.state.displayState);
  if (typeof displayState === 'string') return unusable(displayState);
  const bridges = host.bridges.checkRecords(read.state.bridges);
  if (typeof bridges === 'string') return unusable(bridges);
  const state = { ...read.state, sandbox, displayState, bridges };
  const spec = cageSpec(state.config, host.host);
  if (!backend.isAlive(state.sandbox)) {
    host.log.info(`cage ${name}: found stopped since the last run; cleaning up`);
    await display.stop(state.displayState).catch(() => undefined);
    await backend.stop(state.sandbox).catch(() => undefined);
    await host.bridges.stop(name, state.bridges);
    await removeState(rt.state);
    return undefined;
  }
  const logFd = fs.openSync(path.join(rt.logDir, 'cage.log'), 'a', 0o600);
  await host.grants?.cageAdopted(name, backend, spec);
  const ctx = host.displayContext(state.config, spec, rt, logFd);
  const bctx: BridgeContext = { ...ctx, log: host.log };
  // As at the start (manager.ts), with the records the parts had.
  addContributions(spec, [
    {
      from: `the ${display.kind} display`,
      contribution: display.contribute(ctx, state.displayState),
    },
    ...host.bridges.contribute(bctx, state.bridges),
  ]);
  let displayRecord = state.displayState;
  // Shown in a session that has ended since: whether it is shown again or stopped is the
  // cage's policy (session-life.ts), so no client is started here.
  const fromEndedSession = host.displays.fromEndedSession(state.hostSession);
  if (!fromEndedSession) {
    try {
      displayRecord = await display.readopt(ctx, state.displayState, backend, state.sandbox);
    } catch (e) {
      // The cage is still adopted, not left running with no one to stop it; its next launch
      // tries again and says why it cannot.
      host.log.warn(`cage ${name}: ${asKagomeError(e).message}; its next launch tries again`);
    }
  }
  const cage: RunningCage = {
    config: state.config,
    spec,
    rt,
    backend,
    display,
    sandbox: state.sandbox,
    displayRecord,
    bridges: {},
    programs: new Map(),
    inherited: state.programs.filter((r) => isAlive(r)),
    startedAt: state.startedAt,
    logFd,
    hostSession: fromEndedSession ? state.hostSession : host.displays.session,
  };
  cage.bridges = await host.bridges.start(bctx, handleOf(cage), state.bridges, 'readopt');
  return { cage, fromEndedSession };
}
