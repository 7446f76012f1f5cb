// What the benchmarks read off the host while they run: a process's memory and its
// descendants, and whether a program's window is on a display.

import fs from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { childrenOf } from '../lib/runtime/proc.js';

const execFileP = promisify(execFile);

/** Proportional set size in KiB: a process's own pages plus its share of those it shares; 0 once it has ended. */
export function pssKiB(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** The summed PSS of these processes, in MiB. */
export function pssMiB(pids: Iterable<number>): number {
  let kib = 0;
  for (const pid of pids) kib += pssKiB(pid);
  return kib / 1024;
}

/** pid and every process under it. */
export function processTree(pid: number): number[] {
  return [pid, ...childrenOf(pid).flatMap(processTree)];
}

/**
 * Is a window of this WM_CLASS class (or, `by: 'classname'`, instance) mapped and visible on the
 * display? `pattern` is an anchored xdotool regex.
 */
export async function windowShown(
  display: string,
  pattern: string,
  by: 'class' | 'classname' = 'class',
): Promise<boolean> {
  try {
    const r = await execFileP('xdotool', ['search', '--onlyvisible', `--${by}`, `^${pattern}$`], {
      env: { DISPLAY: display },
    });
    return r.stdout.trim() !== '';
  } catch {
    return false;
  }
}
