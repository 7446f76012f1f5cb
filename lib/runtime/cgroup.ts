import fs from 'node:fs';
import path from 'node:path';
import { findInPath } from '../requirements.js';

// A cage's memory and task limits are held by the kernel only through a cgroup, and an
// ordinary user may make cgroups only where one has been delegated to them. Two ways are used,
// the first that this machine offers:
//
// 1. A delegated cgroupfs folder: the service's own cgroup is writable by the user (cgroup v1
//    hierarchies made over to the user, as the test harness and some container hosts do; or a
//    v1 memory/pids pair). kagome makes `kagome-CAGE` beneath it for each cage, writes the
//    limits, and puts the cage's processes in.
// 2. A systemd user manager (a desktop with cgroup v2, Debian's default): bwrap is started
//    through `systemd-run --user --scope`, which makes a transient scope with MemoryMax= and
//    TasksMax= in the user's delegated tree, as flatpak does for each app.
//
// Everything that enters a cage later (kagome-enter) first writes itself into the cage's
// cgroup.procs files, so programs launched into a running cage count against its limits too,
// not against the service's.
//
// Elsewhere the limits cannot be enforced; the task limit still holds through RLIMIT_NPROC,
// and the start logs why the memory limit does not.

export interface CageLimits {
  /** bytes; 0 for no limit */
  memoryMax: number;
  /** tasks; 0 for no limit */
  tasksMax: number;
}

/** Where a running cage's processes are accounted. */
export interface CageCgroup {
  how: 'cgroup v1' | 'systemd scope';
  /** folders kagome made and removes when the cage stops (none for a systemd scope, which goes by itself) */
  made: string[];
  /** the cgroup.procs files every program carried into the cage writes itself into */
  procs: string[];
}

interface Hierarchy {
  /** cgroup v1 controllers of this hierarchy, or ['*'] for the unified (v2) one */
  controllers: string[];
  /** the service's own cgroup folder in it */
  dir: string;
}

/** The service's own cgroup folder in each mounted hierarchy. */
export function ownHierarchies(procSelfCgroup: string, mountinfo: string): Hierarchy[] {
  const mounts: { root: string; point: string; v2: boolean; controllers: string[] }[] = [];
  for (const line of mountinfo.split('\n')) {
    // id parent major:minor root point options [optional...] - fstype source superoptions
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const [fstype, , superOptions = ''] = post.split(' ');
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    const fields = pre.split(' ');
    mounts.push({
      root: unescapeMount(fields[3]!),
      point: unescapeMount(fields[4]!),
      v2: fstype === 'cgroup2',
      controllers: superOptions.split(','),
    });
  }
  const out: Hierarchy[] = [];
  for (const line of procSelfCgroup.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const [, id, names, rel] = m;
    const v2 = id === '0' && names === '';
    const controllers = v2 ? ['*'] : names!.split(',');
    const mount = mounts.find((mt) =>
      v2 ? mt.v2 : !mt.v2 && controllers.every((c) => mt.controllers.includes(c)),
    );
    if (!mount) continue;
    // The mount may show a sub-tree (a cgroup namespace or a bind): strip its root.
    const inside =
      mount.root === '/'
        ? rel!
        : rel!.startsWith(mount.root)
          ? rel!.slice(mount.root.length)
          : undefined;
    if (inside === undefined) continue;
    out.push({ controllers, dir: path.join(mount.point, inside).replace(/(.)\/$/, '$1') });
  }
  return out;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

function writable(dir: string): boolean {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    fs.accessSync(path.join(dir, 'cgroup.procs'), fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export type LimitsSupport =
  | { how: 'cgroup v1'; memory: string; pids: string }
  | { how: 'systemd scope'; systemdRun: string }
  | { how: 'none'; why: string };

/** How this machine lets the service hold cages to their limits. */
export function limitsSupport(env: NodeJS.ProcessEnv = process.env): LimitsSupport {
  let hierarchies: Hierarchy[] = [];
  try {
    hierarchies = ownHierarchies(
      fs.readFileSync('/proc/self/cgroup', 'utf8'),
      fs.readFileSync('/proc/self/mountinfo', 'utf8'),
    );
  } catch {
    /* no /proc: nothing to find */
  }
  const v1 = (c: string) => hierarchies.find((h) => h.controllers.includes(c));
  const memory = v1('memory');
  const pids = v1('pids');
  if (memory && pids && writable(memory.dir) && writable(pids.dir))
    return { how: 'cgroup v1', memory: memory.dir, pids: pids.dir };
  const runtime = env.XDG_RUNTIME_DIR;
  const systemdRun = findInPath('systemd-run', env.PATH);
  if (runtime && systemdRun && fs.existsSync(path.join(runtime, 'systemd', 'private')))
    return { how: 'systemd scope', systemdRun };
  return {
    how: 'none',
    why: "the service's cgroup is not delegated to this user and no systemd user manager runs (start the service from the user's systemd, or delegate its cgroup)",
  };
}

/** The cgroupfs way: a folder per cage beneath the delegated ones, with the limits written. */
export function makeCgroupV1(
  support: Extract<LimitsSupport, { how: 'cgroup v1' }>,
  cage: string,
  limits: CageLimits,
): CageCgroup {
  const memory = path.join(support.memory, `kagome-${cage}`);
  const pids = path.join(support.pids, `kagome-${cage}`);
  for (const dir of [memory, pids]) {
    // Left by a service that died with the cage: empty, so it can go (rmdir refuses otherwise).
    try {
      fs.rmdirSync(dir);
    } catch {
      /* absent, or still has processes: reused below */
    }
    fs.mkdirSync(dir, { recursive: true });
  }
  fs.writeFileSync(
    path.join(memory, 'memory.limit_in_bytes'),
    limits.memoryMax ? String(limits.memoryMax) : '-1',
  );
  fs.writeFileSync(path.join(pids, 'pids.max'), limits.tasksMax ? String(limits.tasksMax) : 'max');
  return {
    how: 'cgroup v1',
    made: [memory, pids],
    procs: [path.join(memory, 'cgroup.procs'), path.join(pids, 'cgroup.procs')],
  };
}

/** The command that starts `argv` in a transient systemd scope with the cage's limits. */
export function systemdScopeArgv(
  systemdRun: string,
  cage: string,
  limits: CageLimits,
  argv: string[],
): string[] {
  return [
    systemdRun,
    '--user',
    '--scope',
    '--quiet',
    '--collect',
    // Unique per start: a scope of the same name may still be collecting its last processes.
    `--unit=kagome-${cage}-${Date.now().toString(36)}.scope`,
    '-p',
    `MemoryMax=${limits.memoryMax || 'infinity'}`,
    '-p',
    `TasksMax=${limits.tasksMax || 'infinity'}`,
    '--',
    ...argv,
  ];
}

/** The scope systemd put `pid` in, read once bwrap runs in it. */
export function scopeOf(pid: number): CageCgroup | undefined {
  const hierarchies = ownHierarchiesOf(pid);
  const unified = hierarchies.find((h) => h.controllers[0] === '*');
  if (!unified || !unified.dir.endsWith('.scope')) return undefined;
  return { how: 'systemd scope', made: [], procs: [path.join(unified.dir, 'cgroup.procs')] };
}

function ownHierarchiesOf(pid: number): Hierarchy[] {
  try {
    return ownHierarchies(
      fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8'),
      fs.readFileSync('/proc/self/mountinfo', 'utf8'),
    );
  } catch {
    return [];
  }
}

/** Removes the folders kagome made, once their processes are gone. */
export async function removeCgroup(cg: CageCgroup | undefined): Promise<void> {
  for (const dir of cg?.made ?? []) {
    for (let i = 0; i < 40; i++) {
      try {
        fs.rmdirSync(dir);
        break;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        // EBUSY while the last processes are exiting.
        await new Promise((r) => setTimeout(r, 25));
      }
    }
  }
}

/** Bytes in memory.max form for display: "1.5 GiB". */
export function formatBytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[i]}`;
}
