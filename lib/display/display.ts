import type { Backend, SandboxRecord } from '../backends/backend.js';
import type { CageConfig } from '../cage/config.js';
import type { CageRuntimePaths } from '../runtime/paths.js';
import type { Contribution, SandboxSpec } from '../sandbox.js';

// A cage's display: where its programs draw, and how their windows reach the host. xpra runs
// its server inside the cage and a client on the host (seamless windows); Xephyr runs a nested
// X server on the host whose socket alone is given to the cage.

export type DisplayRecord = Record<string, unknown>;

export interface DisplayContext {
  config: CageConfig;
  spec: SandboxSpec;
  rt: CageRuntimePaths;
  /** the host's DISPLAY, where windows must appear */
  hostDisplay: string;
  /** environment for host-side clients (DISPLAY, XAUTHORITY, HOME, ...) */
  hostEnv: Record<string, string>;
  logFd: number;
}

/**
 * R is the display's own record, P what its prepare returns (R when it has no separate one):
 * its methods take those types, while the engine holds every display with plain JSON records.
 */
export interface CageDisplay<R extends DisplayRecord = DisplayRecord, P extends DisplayRecord = R> {
  readonly kind: string;
  checkHost(): void;
  /** before the sandbox exists: starts host-side parts, if any */
  prepare(ctx: DisplayContext): Promise<P>;
  /**
   * the display's mounts and environment (DISPLAY...), from the cage's own spec, which it
   * does not change: the engine adds them (`addContributions`, sandbox.ts). Also when
   * re-adopting, so without side effects
   */
  contribute(ctx: DisplayContext, record: P | R): Contribution;
  /** once the sandbox exists: starts what runs inside and returns when programs can connect */
  start(ctx: DisplayContext, backend: Backend, sandbox: SandboxRecord, prepared: P): Promise<R>;
  isAlive(record: R, backend: Backend, sandbox: SandboxRecord): boolean;
  /** the record as read back from a state file, checked field by field, or what is wrong with it */
  checkRecord(v: unknown): R | string;
  /**
   * After a service restart, and when watch reports a loss: brings back the parts that died
   * (xpra's host client, Xephyr's window manager) and keeps the rest; returns the same record
   * when nothing was missing.
   */
  readopt(ctx: DisplayContext, record: R, backend: Backend, sandbox: SandboxRecord): Promise<R>;
  /**
   * Calls `lost` once when a part readopt can bring back ends while the cage runs; returns what
   * stops watching. A host client killed by mistake left the cage "running" with no windows.
   */
  watch?(record: R, lost: () => void): () => void;
  /**
   * Where the cage's X server is reached from the host, for a display whose server runs on the
   * host (Xephyr): bridges that work on both displays from outside (the clipboard) connect there
   * instead of entering the cage. Absent, or undefined, when the server is inside the cage.
   */
  onHost?(record: R): DisplayOnHost | undefined;
  /** also given what prepare returned, when a start fails before the display started */
  stop(record: P | R): Promise<void>;
}

/** A cage's X server as the host reaches it: its display number and the cookie file for it. */
export interface DisplayOnHost {
  number: number;
  authFile: string;
}
