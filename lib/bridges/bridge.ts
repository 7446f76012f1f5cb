import type { Backend, SandboxRecord } from '../backends/backend.js';
import type { DisplayContext, DisplayRecord } from '../display/display.js';
import type { Logger } from '../log.js';
import type { CageConfig } from '../cage/config.js';

// A bridge carries one kind of data across the cage wall (sound, clipboard) as far as the
// cage's policy allows. Bridges are best effort: a cage whose bridge cannot come up (no sound
// server on the host, say) still starts; the bridge reports itself "down" with the reason, in
// the log and in the cage's properties, so a missing sound never costs the user their program.
// The cage's session bus (session-bus.ts) carries nothing across, but lives the same life (a
// policy, started with the cage, re-adopted, stopped with it, best effort), so it is one too.

export type BridgeRecord = Record<string, unknown>;

export type BridgeKind = 'sound' | 'clipboard' | 'session-bus';

export type BridgeState = 'up' | 'down' | 'off';

export interface BridgeStatus {
  /** the cage's policy for this bridge, as written in the cage file */
  policy: string;
  /** off: the policy allows nothing or the cage is stopped; down: allowed but not working */
  state: BridgeState;
  /** why it is down */
  problem: string;
}

export interface BridgeContext extends DisplayContext {
  log: Logger;
}

/** The running sandbox, before its display is up. */
export interface SandboxHandle {
  backend: Backend;
  sandbox: SandboxRecord;
  /** what programs in the cage run with: their environment (DISPLAY...), folder and log */
  env: Record<string, string>;
  cwd: string;
  logFd: number;
}

/** The running cage a bridge attaches to. */
export interface CageHandle extends SandboxHandle {
  displayKind: string;
  displayRecord: DisplayRecord;
}

export interface CageBridge {
  readonly kind: BridgeKind;
  /** the cage file's policy for this bridge, as written there (shown by `kagome list`) */
  policyOf(config: CageConfig): string;
  /** before the sandbox exists: host-side parts; never throws (a failure is a record saying down) */
  prepare(ctx: BridgeContext): Promise<BridgeRecord>;
  /** the bridge's mounts and environment (also on re-adoption, so without side effects) */
  contribute(ctx: BridgeContext, record: BridgeRecord): void;
  /**
   * for a part that needs no display: once the sandbox runs, while its display starts (so it
   * adds nothing to a cold start), before `start`
   */
  startWithSandbox?(
    ctx: BridgeContext,
    cage: SandboxHandle,
    record: BridgeRecord,
  ): Promise<BridgeRecord>;
  /** once the cage and its display run */
  start(ctx: BridgeContext, cage: CageHandle, record: BridgeRecord): Promise<BridgeRecord>;
  /** after a service restart, with the cage still running: bring back what lived in the old service */
  readopt(ctx: BridgeContext, cage: CageHandle, record: BridgeRecord): Promise<BridgeRecord>;
  /** the cage stopped (or was found stopped after a restart): remove every host-side trace */
  stop(record: BridgeRecord): Promise<void>;
  status(record: BridgeRecord): BridgeStatus;
}

export function downRecord(problem: string): BridgeRecord {
  return { down: problem };
}

export function problemOf(record: BridgeRecord): string {
  return typeof record.down === 'string' ? record.down : '';
}
