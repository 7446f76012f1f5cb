import type { CageConfig } from './config.js';
import type { ProgramLog } from './program-log.js';
import type { Backend, SandboxRecord } from '../backends/backend.js';
import type { CageDisplay, DisplayRecord } from '../display/display.js';
import type { BridgeRecord, BridgeStatus, CageHandle } from '../bridges/bridge.js';
import type { CageRuntimePaths } from '../runtime/paths.js';
import { STATE_VERSION, type CageState } from '../runtime/state.js';
import type { ProcRef } from '../runtime/proc.js';
import type { SandboxSpec } from '../sandbox.js';

// The types of a cage's life shared by the manager and the service's D-Bus objects: what a
// running cage holds, what callers are told of cages and programs, and the two views of a
// running cage given to others (its state file, the handle bridges work on).

export type CageStateName = 'stopped' | 'starting' | 'running' | 'stopping' | 'invalid';

export interface CageInfo {
  name: string;
  state: CageStateName;
  description: string;
  backend: string;
  display: string;
  network: string;
  programs: number;
  /** why the cage file cannot be used, for state 'invalid' */
  error: string;
  sound: BridgeStatus;
  clipboard: BridgeStatus;
  sessionBus: BridgeStatus;
}

export interface ProgramInfo {
  id: number;
  cage: string;
  argv: string[];
  pid: number;
  /** start time of pid (see runtime/proc.ts), so a restarted service can tell it from a reused pid */
  pidStart: string;
  startedAt: Date;
  exitCode?: number;
  /** the program's own output (see program-log.ts) */
  log?: ProgramLog;
}

export interface LaunchOptions {
  /** the caller's working directory; used when the cage can see it, else the cage's home */
  cwd?: string;
  /**
   * run the program in a terminal emulator inside the cage (x-terminal-emulator, else xterm),
   * never attached to a host tty: TIOCSTI and job control stay in the cage. With no program,
   * the terminal runs the cage user's shell
   */
  terminal?: boolean;
  /** startup notification id / XDG activation token, passed on to the program */
  startupId?: string;
}

/** A cage this service runs: its parts, records and programs. */
export interface RunningCage {
  config: CageConfig;
  spec: SandboxSpec;
  rt: CageRuntimePaths;
  backend: Backend;
  display: CageDisplay;
  sandbox: SandboxRecord;
  displayRecord: DisplayRecord;
  /** each bridge's record, by bridge kind */
  bridges: Record<string, BridgeRecord>;
  programs: Map<number, ProgramInfo>;
  /** programs started by an earlier instance of the service, known by pid and start time */
  inherited: ProcRef[];
  startedAt: string;
  logFd: number;
  idleTimer?: NodeJS.Timeout;
  /** stops watching the display's parts that can end alone (see keepDisplay) */
  unwatchDisplay?: () => void;
  /** a display part being brought back, which launches wait for */
  reviving?: Promise<void>;
  /** when the watch last brought one back */
  revivedAt?: number;
  /** the host session (host-session.ts) its windows were last shown in */
  hostSession?: string;
}

/** What the state file keeps of a running cage (runtime/state.ts), `owner` being this service. */
export function stateOf(name: string, cage: RunningCage, owner: ProcRef): CageState {
  return {
    version: STATE_VERSION,
    name,
    backend: cage.config.backend,
    display: cage.config.display,
    startedAt: cage.startedAt,
    sandbox: cage.sandbox,
    displayState: cage.displayRecord,
    bridges: cage.bridges,
    owner,
    ...(cage.hostSession === undefined ? {} : { hostSession: cage.hostSession }),
    config: cage.config,
    programs: [
      ...cage.inherited,
      ...[...cage.programs.values()]
        .filter((p) => p.pidStart !== '')
        .map((p) => ({ pid: p.pid, start: p.pidStart })),
    ],
  };
}

/** What a bridge needs of a running cage. */
export function handleOf(cage: RunningCage): CageHandle {
  return {
    backend: cage.backend,
    sandbox: cage.sandbox,
    displayOnHost: cage.display.onHost?.(cage.displayRecord),
    env: cage.spec.env,
    cwd: cage.spec.cwd,
    logFd: cage.logFd,
  };
}
