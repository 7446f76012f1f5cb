import fs from 'node:fs/promises';
import path from 'node:path';
import type { ProcRef } from './proc.js';
import type { CageConfig } from '../cage/config.js';

// What the service must remember about a running cage so that a restarted service (after a
// crash, an upgrade or `kill -9`) finds it again and launches into it. Written atomically
// (temp file + rename) so a crash mid-write never leaves a half state behind, and read back
// through validation: a file from another version of kagome, or one damaged by hand, is
// refused by name instead of being cast into a record whose fields are not there.

export const STATE_VERSION = 1;

export interface CageState {
  version: typeof STATE_VERSION;
  name: string;
  backend: string;
  display: string;
  startedAt: string;
  /** the backend's own record (pids with start times, container ids, ...) */
  sandbox: Record<string, unknown>;
  /** the display's own record (display name, client pid, ...) */
  displayState: Record<string, unknown>;
  /** each bridge's own record, by bridge kind */
  bridges: Record<string, Record<string, unknown>>;
  /** pid and start time of the service that owns the cage now */
  owner: ProcRef;
  /**
   * The configuration the cage was started with: a cage file edited or removed while the
   * cage runs must not stop a restarted service from finding and stopping it.
   */
  config: CageConfig;
  /** programs running in it, known by pid and start time */
  programs: ProcRef[];
  /** the host session its windows were last shown in (host-session.ts) */
  hostSession?: string;
}

export type StateRead = { state: CageState } | { problem: string };

let tmpCounter = 0;

/** Callers must not write the same file concurrently (see StateWriter, which queues). */
export async function writeState(file: string, state: CageState): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.${++tmpCounter}.tmp`;
  await fs.writeFile(tmp, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
  await fs.rename(tmp, file);
}

/** The state in `file`; undefined when there is none; a problem when it cannot be used. */
export async function readState(file: string): Promise<StateRead | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { problem: `it is not JSON (${(e as Error).message})` };
  }
  const checked = checkState(value);
  return typeof checked === 'string' ? { problem: checked } : { state: checked };
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isProcRef = (v: unknown): v is ProcRef =>
  isObject(v) &&
  Number.isSafeInteger(v.pid) &&
  (v.pid as number) > 0 &&
  typeof v.start === 'string';

/** The state, or what is wrong with it. */
export function checkState(v: unknown): CageState | string {
  if (!isObject(v)) return 'it is not an object';
  if (v.version !== STATE_VERSION) {
    return typeof v.version === 'number' && v.version > STATE_VERSION
      ? `it was written by a newer kagome (state version ${v.version}; this one reads ${STATE_VERSION})`
      : `it has no state version this kagome reads (${JSON.stringify(v.version)})`;
  }
  for (const k of ['name', 'backend', 'display', 'startedAt'] as const)
    if (typeof v[k] !== 'string') return `its ${k} is not a string`;
  for (const k of ['sandbox', 'displayState', 'bridges'] as const)
    if (!isObject(v[k])) return `its ${k} is not an object`;
  if (!Object.values(v.bridges as object).every(isObject))
    return 'a bridge record is not an object';
  if (!isProcRef(v.owner)) return 'its owner is not a process';
  if (!Array.isArray(v.programs) || !v.programs.every(isProcRef))
    return 'its programs are not a list of processes';
  if (v.hostSession !== undefined && typeof v.hostSession !== 'string')
    return 'its hostSession is not a string';
  const c = v.config;
  // An older kagome kept no configuration: such a cage cannot be stopped as it was started.
  if (!isObject(c)) return 'it has no configuration (written by an older kagome)';
  if (c.name !== v.name || c.backend !== v.backend || c.display !== v.display)
    return 'its configuration is not the cage it names';
  if (
    typeof c.home !== 'string' ||
    !Array.isArray(c.mounts) ||
    !isObject(c.environment) ||
    !isObject(c.clipboard)
  )
    return 'its configuration lacks home, mounts, environment or clipboard';
  return v as unknown as CageState;
}

export async function removeState(file: string): Promise<void> {
  await fs.rm(file, { force: true });
}
