import fs from 'node:fs';

// A pid alone is not an identity: after a restart of the service, a stored pid may belong to
// a new, unrelated process. The start time (field 22 of /proc/PID/stat, in clock ticks since
// boot) pins it, so re-adoption never signals or enters a stranger.

export interface ProcRef {
  pid: number;
  start: string;
}

export function processStartTime(pid: number): string | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and ')' so fields are counted after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return rest[19];
}

export function procRef(pid: number): ProcRef {
  const start = processStartTime(pid);
  if (start === undefined) throw new Error(`process ${pid} is gone`);
  return { pid, start };
}

export function isAlive(ref: ProcRef | undefined): boolean {
  if (!ref) return false;
  const start = processStartTime(ref.pid);
  if (start !== ref.start) return false;
  // A zombie has exited; only its parent has not reaped it yet.
  try {
    const status = fs.readFileSync(`/proc/${ref.pid}/status`, 'utf8');
    return !/^State:\s+Z/m.test(status);
  } catch {
    return false;
  }
}

export function signal(ref: ProcRef | undefined, sig: NodeJS.Signals): boolean {
  if (!ref || !isAlive(ref)) return false;
  try {
    process.kill(ref.pid, sig);
    return true;
  } catch {
    return false;
  }
}

export function namespaceId(pid: number, ns: 'pid' | 'mnt' | 'net' | 'user'): string | undefined {
  try {
    return fs.readlinkSync(`/proc/${pid}/ns/${ns}`);
  } catch {
    return undefined;
  }
}

/** Host pids of every process in the given pid namespace (the cage's programs). */
export function pidsInNamespace(pidNs: string): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (namespaceId(pid, 'pid') === pidNs) out.push(pid);
  }
  return out;
}

/** Children of a pid in the host's view (from /proc/PID/task/PID/children). */
export function childrenOf(pid: number): number[] {
  try {
    return fs
      .readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

export async function waitUntil(
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  pollMs = 10,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
