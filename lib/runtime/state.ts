import fs from 'node:fs/promises';
import path from 'node:path';
import type { ProcRef } from './proc.js';

// What the service must remember about a running cage so that a restarted service (after a
// crash, an upgrade or `kill -9`) finds it again and launches into it. Written atomically
// (temp file + rename) so a crash mid-write never leaves a half state behind.

export interface CageState {
  version: 1;
  name: string;
  backend: string;
  display: string;
  startedAt: string;
  /** the backend's own record (pids with start times, container ids, ...) */
  sandbox: Record<string, unknown>;
  /** the display's own record (display name, client pid, ...) */
  displayState: Record<string, unknown>;
  /** pid and start time of the service that owns the cage now */
  owner: ProcRef;
}

let tmpCounter = 0;

/** Callers must not write the same file concurrently (see CageManager.persist, which queues). */
export async function writeState(file: string, state: CageState): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.${++tmpCounter}.tmp`;
  await fs.writeFile(tmp, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
  await fs.rename(tmp, file);
}

export async function readState(file: string): Promise<CageState | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const s = JSON.parse(text) as CageState;
    return s.version === 1 ? s : undefined;
  } catch {
    return undefined;
  }
}

export async function removeState(file: string): Promise<void> {
  await fs.rm(file, { force: true });
}
