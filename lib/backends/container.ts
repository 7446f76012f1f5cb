import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { KagomeError } from '../errors.js';
import { F, type Fields } from '../runtime/record-check.js';
import { isAlive, namespaceId, pidsInNamespace, waitUntil, type ProcRef } from '../runtime/proc.js';
import { identityFiles, type HostFacts, type SandboxSpec } from '../sandbox.js';
import type { ExecHandle, ExecRequest, SandboxRecord } from './backend.js';
import { execArgv } from './argv-bytes.js';
import { spawnDetached } from './spawn-detached.js';

// What the container backends (podman, docker, LXD) share. Each runs a long-lived container
// whose pid 1 keeps it up; programs are carried in by the engine's own `exec`, whose client
// process on the host lives as long as the program and exits with its status, so the service
// treats it as the program (as it treats nsenter for bubblewrap). The container's pid 1 is
// looked up once at start: while it is alive the container is, which the service can check
// without asking the engine (isAlive is on every launch's path and must not cost a process).

export interface ContainerRecord extends SandboxRecord {
  /** the engine's name for the container */
  container: string;
  /** the container's pid 1 as the host sees it */
  init: ProcRef;
  /** its pid namespace, to find the programs still running when the cage stops */
  pidNamespace: string;
  /** whether /proc/PID/root of the container is readable by the service (same owner) */
  rootVisible: boolean;
}

/** The user list, group list and hostname a container gets instead of the image's. */
export async function writeIdentity(
  host: HostFacts,
  spec: SandboxSpec,
  etcDir: string,
): Promise<{ passwd: string; group: string }> {
  const ids = identityFiles(host);
  await fsp.mkdir(etcDir, { recursive: true, mode: 0o700 });
  const files = { passwd: path.join(etcDir, 'passwd'), group: path.join(etcDir, 'group') };
  await Promise.all([
    fsp.writeFile(files.passwd, ids.passwd),
    fsp.writeFile(files.group, ids.group),
    fsp.writeFile(path.join(etcDir, 'hostname'), spec.hostname + '\n'),
  ]);
  return files;
}

export function rootVisible(pid: number): boolean {
  try {
    fs.accessSync(`/proc/${pid}/root/`, fs.constants.R_OK | fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function containerFacts(
  init: ProcRef,
): Pick<ContainerRecord, 'pidNamespace' | 'rootVisible'> {
  return { pidNamespace: namespaceId(init.pid, 'pid') ?? '', rootVisible: rootVisible(init.pid) };
}

/** Run an engine command to completion; its stderr becomes the error's text. */
export async function engineRun(
  program: string,
  args: string[],
  env: Record<string, string | undefined>,
  input?: string,
): Promise<string> {
  const r = await execa(program, args, {
    env,
    extendEnv: false,
    reject: false,
    ...(input !== undefined ? { input } : { stdin: 'ignore' }),
    timeout: 120_000,
  });
  if (r.exitCode !== 0 || r.failed) {
    const text = String(r.stderr || r.stdout || r.shortMessage)
      .trim()
      .split('\n')
      .slice(-4)
      .join('\n');
    throw new KagomeError('BackendFailed', `${path.basename(program)} ${args[0]} failed: ${text}`);
  }
  return String(r.stdout);
}

/**
 * The engine starts the program in `/`, and the program's own directory is chosen by sh inside
 * the container: an engine's --workdir fails the launch when the folder is missing there,
 * where a bubblewrap cage falls back to the home.
 */
export const CHDIR_INSIDE =
  'cd -- "$1" 2>/dev/null || cd -- "$2" 2>/dev/null || cd /; shift 2; exec "$@"';

/** Start a program through the engine's exec; detached so that it outlives the service. */
export function engineExec(
  program: string,
  args: string[],
  env: Record<string, string | undefined>,
  req: ExecRequest,
): Promise<ExecHandle> {
  const inside = [
    '/bin/sh',
    '-c',
    CHDIR_INSIDE,
    'kagome-cd',
    req.cwd,
    req.fallbackCwd ?? '/',
    ...execArgv(req.argv),
  ];
  return spawnDetached(program, [...args, ...inside], env, req, 'the container');
}

/** The fields every container backend's record has. */
export const CONTAINER_FIELDS: Fields<ContainerRecord> = {
  container: F.string,
  init: F.process,
  pidNamespace: F.string,
  rootVisible: F.boolean,
};

/** What every container backend answers the same way, from its record alone. */
export abstract class ContainerBackend {
  /** where the service reads a path of the container, when its root is readable from here */
  hostPathOf(r: ContainerRecord, pathInCage: string): string | undefined {
    return r.rootVisible ? `/proc/${r.init.pid}/root${pathInCage}` : undefined;
  }

  isAlive(record: ContainerRecord): boolean {
    return isAlive(record.init);
  }
}

/** The same lookup by running `sh` in the container, for engines whose root the service cannot read. */
export async function resolveByShell(
  program: string,
  args: string[],
  env: Record<string, string | undefined>,
  name: string,
  searchPath: string,
): Promise<string | undefined> {
  const r = await execa(
    program,
    [...args, '/bin/sh', '-c', 'PATH="$1"; command -v -- "$2"', 'sh', searchPath, name],
    { env, extendEnv: false, reject: false, stdin: 'ignore' },
  );
  const found = String(r.stdout).trim();
  return r.exitCode === 0 && found.startsWith('/') ? found : undefined;
}

/**
 * Programs get a moment to save their work before the container goes: every process in the
 * container's pid namespace but its pid 1 gets SIGTERM, as bubblewrap cages do.
 */
export async function termPrograms(r: ContainerRecord): Promise<void> {
  if (!r.pidNamespace || !isAlive(r.init)) return;
  const others = () => pidsInNamespace(r.pidNamespace).filter((p) => p !== r.init.pid);
  for (const pid of others()) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone, or not ours to signal: the engine's stop ends it */
    }
  }
  await waitUntil(() => others().length === 0, 2000, 25);
}

/**
 * The id inside a container that a host id is, from /proc/PID/uid_map or gid_map read on the
 * host (the kernel gives the outside ids relative to the reader's own namespace), or undefined
 * when the container has no id for it. Each line: inside, outside, count.
 */
export function containerIdOf(map: string, hostId: number): number | undefined {
  for (const line of map.split('\n')) {
    const f = line.trim().split(/\s+/).map(Number);
    if (f.length !== 3 || f.some((n) => !Number.isInteger(n))) continue;
    const [inside, outside, count] = f as [number, number, number];
    if (hostId >= outside && hostId < outside + count) return inside + (hostId - outside);
  }
  return undefined;
}

/** Paths the engines' mount syntax cannot carry are refused by name, never mangled. */
export function checkMountPath(engine: string, p: string): string {
  if (/[,:\n]/.test(p)) {
    throw new KagomeError(
      'NotSupported',
      `${engine} cannot mount ${JSON.stringify(p)}: its mount syntax has no way to carry ',', ':' or a newline in a path; rename the folder or use Backend=bubblewrap`,
    );
  }
  return p;
}
