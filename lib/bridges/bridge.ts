import type { Backend, SandboxRecord } from '../backends/backend.js';
import type { DisplayContext, DisplayOnHost } from '../display/display.js';
import type { Logger } from '../log.js';
import type { CageConfig } from '../cage/config.js';
import type { Contribution } from '../sandbox.js';

// A bridge carries one kind of data across the cage wall (sound, clipboard) as far as the
// cage's policy allows. Bridges are best effort: a cage whose bridge cannot come up (no sound
// server on the host, say) still starts; the bridge reports itself "down" with the reason, in
// the log and in the cage's properties, so a missing sound never costs the user their program.
// The cage's session bus (session-bus.ts) carries nothing across, but lives the same life (a
// policy, started with the cage, re-adopted, stopped with it, best effort), so it is one too.

/** A bridge's record as the state file keeps it: plain JSON. */
export type BridgeRecord = Record<string, unknown>;

/**
 * A bridge that is down: why, and whatever it still had of its own record, which may be
 * nothing (a step that threw is marked down by the engine on the record it had, or on `{}`).
 * None of R's fields can be relied on.
 */
export type DownRecord<R extends BridgeRecord = BridgeRecord> = Partial<R> & { down: string };

/**
 * What a bridge is handed back: its own record, or a down one. A bridge's R is a type alias
 * with no index signature and no `down`, so a mistyped field does not compile and the fields
 * R requires are only there once `isDown` has said the record is not down.
 */
export type HeldRecord<R extends BridgeRecord> = R | DownRecord<R>;

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
  /** the cage's X server where the host reaches it directly (Xephyr), else undefined */
  displayOnHost: DisplayOnHost | undefined;
}

/** R is the bridge's own record; the engine holds every bridge with plain JSON records. */
export interface CageBridge<R extends BridgeRecord = BridgeRecord> {
  readonly kind: BridgeKind;
  /** the cage file's policy for this bridge, as written there (shown by `kagome list`) */
  policyOf(config: CageConfig): string;
  /** before the sandbox exists: host-side parts; never throws (a failure is a record saying down) */
  prepare(ctx: BridgeContext): Promise<HeldRecord<R>>;
  /**
   * the bridge's mounts and environment, from the cage's own spec, which it does not change:
   * the engine adds them after the display's (`addContributions`, sandbox.ts). Also on
   * re-adoption, so without side effects
   */
  contribute(ctx: BridgeContext, record: HeldRecord<R>): Contribution;
  /**
   * for a part that needs no display: once the sandbox runs, while its display starts (so it
   * adds nothing to a cold start), before `start`
   */
  startWithSandbox?(
    ctx: BridgeContext,
    cage: SandboxHandle,
    record: HeldRecord<R>,
  ): Promise<HeldRecord<R>>;
  /** once the cage and its display run */
  start(ctx: BridgeContext, cage: CageHandle, record: HeldRecord<R>): Promise<HeldRecord<R>>;
  /** after a service restart, with the cage still running: bring back what lived in the old service */
  readopt(ctx: BridgeContext, cage: CageHandle, record: HeldRecord<R>): Promise<HeldRecord<R>>;
  /** the cage stopped (or was found stopped after a restart): remove every host-side trace */
  stop(record: HeldRecord<R>): Promise<void>;
  status(record: HeldRecord<R>): BridgeStatus;
  /**
   * The record as read back from a state file, checked field by field (a down one may lack
   * any of its fields), or what is wrong with it: runtime/record-check.ts `checkHeldRecord`.
   */
  checkRecord(v: unknown): HeldRecord<R> | string;
}

export function downRecord(problem: string): { down: string } {
  return { down: problem };
}

/**
 * What a bridge is handed for a cage that was started without it (by a kagome that had no
 * such bridge, re-adopted by this one): down, with none of its fields.
 */
export function notStarted(): { down: string } {
  return downRecord('the cage was started without this bridge');
}

/** The record's own fields, without the mark that says it is down. */
export function withoutDown<R extends BridgeRecord>(record: HeldRecord<R>): Partial<R> {
  if (!isDown(record)) return record;
  const rest: Partial<R> = { ...record };
  delete rest.down;
  return rest;
}

export function isDown<R extends BridgeRecord>(record: HeldRecord<R>): record is DownRecord<R> {
  return typeof record.down === 'string';
}

/** Why the bridge is down, or '' when it is not. */
export function problemOf<R extends BridgeRecord>(record: HeldRecord<R>): string {
  return isDown(record) ? record.down : '';
}
