import fs from 'node:fs/promises';
import fsSync from 'node:fs';
import os from 'node:os';
import { seccompProgram, seccompRules } from './seccomp.js';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { KagomeError } from '../errors.js';
import { requireProgram } from '../requirements.js';
import {
  isAlive,
  procRef,
  signal,
  waitUntil,
  pidsInNamespace,
  namespaceId,
  type ProcRef,
} from '../runtime/proc.js';
import { identityFiles, type HostFacts, type SandboxSpec, type SetupOp } from '../sandbox.js';
import type { Backend, ExecHandle, ExecRequest, SandboxRecord, StartIo } from './backend.js';
import { installRuleset, startSlirp } from './slirp.js';
import { hostAddresses, internetRuleset } from './net-policy.js';
import { execArgv } from './argv-bytes.js';
import { spawnDetached } from './spawn-detached.js';
import { resolveInRoot } from './proc-root.js';
import { checkRecord, F } from '../runtime/record-check.js';
import { enterHelper } from './enter-helper.js';
import { WaitingEntries } from './waiting-entry.js';
import { readBwrapInfo } from './bwrap-info.js';
import {
  formatBytes,
  limitsSupport,
  makeCgroupV1,
  removeCgroup,
  scopeOf,
  systemdScopeArgv,
  type CageCgroup,
} from '../runtime/cgroup.js';
import type { Env } from '../runtime/paths.js';
import { silentLogger, type Logger } from '../log.js';

// The default backend: bubblewrap over the host's own /usr. Each cage gets its own user,
// mount, pid, ipc, uts and network namespaces. The network namespace is never the host's,
// even for Network=full: abstract unix sockets such as @/tmp/.X11-unix/X0 live in the network
// namespace and would reach the host X server without any file being mounted. Full network is
// given by slirp4netns, a user-mode TCP/IP stack attached to the cage's own namespace;
// Network=internet is the same with nftables rules in that namespace (net-policy.ts).

export interface BubblewrapRecord extends SandboxRecord {
  /** bwrap's own process on the host */
  bwrap: ProcRef;
  /** pid 1 of the cage's pid namespace (bwrap's init), as the host sees it */
  init: ProcRef;
  slirp?: ProcRef;
  pidNamespace: string;
  /** the compiled seccomp filter, which kagome-enter applies to every program carried in */
  seccomp?: string;
  /** the cage's task limit, which kagome-enter sets on every program carried in */
  tasksMax?: number;
  /** the cgroup holding the cage to its limits, which every program carried in joins */
  cgroup?: CageCgroup;
}

/** The host's root filesystem as the cage sees it: /usr read-only, nothing of the host's state. */
export function hostRootOps(etcDir: string, network: SandboxSpec['network']): SetupOp[] {
  const ops: SetupOp[] = [
    { op: 'ro-bind', source: '/usr', dest: '/usr' },
    { op: 'symlink', target: 'usr/bin', dest: '/bin' },
    { op: 'symlink', target: 'usr/sbin', dest: '/sbin' },
    { op: 'symlink', target: 'usr/lib', dest: '/lib' },
    { op: 'symlink', target: 'usr/lib64', dest: '/lib64' },
    { op: 'symlink', target: 'usr/lib32', dest: '/lib32' },
    // /etc is configuration (fonts, ld.so.cache, alternatives, certificates) that programs from
    // the host's /usr expect; the user list is replaced so the cage sees only its user.
    { op: 'ro-bind', source: '/etc', dest: '/etc' },
    { op: 'ro-bind', source: path.join(etcDir, 'passwd'), dest: '/etc/passwd' },
    { op: 'ro-bind', source: path.join(etcDir, 'group'), dest: '/etc/group' },
    { op: 'ro-bind', source: path.join(etcDir, 'hostname'), dest: '/etc/hostname' },
    { op: 'proc', dest: '/proc' },
    // The kernel keyring is per user, not per namespace: its listing would show the host
    // user's keys (the seccomp filter refuses the calls that change them).
    { op: 'ro-bind', source: path.join(etcDir, 'empty'), dest: '/proc/keys' },
    { op: 'ro-bind', source: path.join(etcDir, 'empty'), dest: '/proc/key-users' },
    { op: 'dev', dest: '/dev' },
    { op: 'tmpfs', dest: '/tmp' },
    { op: 'tmpfs', dest: '/run' },
    { op: 'dir', dest: '/var/tmp' },
    {
      op: 'ro-bind',
      source: '/var/cache/fontconfig',
      dest: '/var/cache/fontconfig',
      optional: true,
    },
    {
      op: 'ro-bind',
      source: '/var/lib/dbus/machine-id',
      dest: '/var/lib/dbus/machine-id',
      optional: true,
    },
  ];
  if (network !== 'none') {
    // slirp4netns serves DNS at 10.0.2.3; the host's resolver (often 127.0.0.53) is not reachable.
    ops.push({ op: 'ro-bind', source: path.join(etcDir, 'resolv.conf'), dest: '/etc/resolv.conf' });
  }
  return ops;
}

function opArgs(op: SetupOp): string[] {
  const mode = (m: number | undefined) =>
    m === undefined ? [] : ['--perms', m.toString(8).padStart(4, '0')];
  switch (op.op) {
    case 'ro-bind':
      return [op.optional ? '--ro-bind-try' : '--ro-bind', op.source, op.dest];
    case 'bind':
      return ['--bind', op.source, op.dest];
    case 'tmpfs':
      return [...mode(op.mode), '--tmpfs', op.dest];
    case 'dir':
      return [...mode(op.mode), '--dir', op.dest];
    case 'symlink':
      return ['--symlink', op.target, op.dest];
    case 'proc':
      return ['--proc', op.dest];
    case 'dev':
      return ['--dev', op.dest];
  }
}

/** The whole bwrap command line for a cage. Pure: tested without spawning anything. */
export function bwrapArgs(
  spec: SandboxSpec,
  etcDir: string,
  keeper: string[],
  opts: { infoFd: number; blockFd?: number; seccompFd?: number },
): string[] {
  const args = [
    '--unshare-user',
    '--unshare-ipc',
    '--unshare-pid',
    '--unshare-uts',
    '--unshare-cgroup-try',
    // Always a network namespace of its own; Network=full and internet attach slirp4netns to it.
    '--unshare-net',
    // A new session: a cage cannot push input into the terminal that started it (TIOCSTI).
    '--new-session',
    '--hostname',
    spec.hostname,
    '--clearenv',
    '--info-fd',
    String(opts.infoFd),
  ];
  if (opts.blockFd !== undefined) args.push('--block-fd', String(opts.blockFd));
  if (opts.seccompFd !== undefined) args.push('--seccomp', String(opts.seccompFd));
  for (const op of [...hostRootOps(etcDir, spec.network), ...spec.ops]) args.push(...opArgs(op));
  for (const [k, v] of Object.entries(spec.env)) args.push('--setenv', k, v);
  args.push('--chdir', spec.cwd, '--', ...keeper);
  return args;
}

/**
 * The arguments of kagome-enter (lib/backends/kagome-enter.c), which carries a program into
 * the running cage: the outer user namespace, the others and the root, the inner user
 * namespace, then the working directory chosen inside, every capability dropped.
 */
export function enterArgs(
  init: ProcRef,
  cwd: string,
  fallbackCwd: string,
  argv: string[],
  seccomp?: string,
  tasksMax?: number,
): string[] {
  return [
    ...(seccomp ? ['--seccomp', seccomp] : []),
    ...(tasksMax ? ['--nproc', String(tasksMax)] : []),
    String(init.pid),
    init.start,
    cwd,
    fallbackCwd,
    '--',
    ...argv,
  ];
}

// The cage's first program keeps the namespaces alive; everything else is entered. bwrap
// reports the child pid before the child has built the sandbox's filesystem, so entering at
// that moment can find a half-made root: the keeper, which bwrap runs only once setup is done,
// writes one byte on fd 5 to say the cage is ready, then closes it and bwrap's info fd (3):
// nothing in a cage may hold a descriptor of the service.
const READY_FD = 5;
// The compiled seccomp filter, read by bwrap at start (--seccomp).
const SECCOMP_FD = 6;
const KEEPER = [
  '/bin/sh',
  '-c',
  `printf R >&${READY_FD} && exec sleep infinity 3>&- ${READY_FD}>&-`,
];

export class BubblewrapBackend implements Backend<BubblewrapRecord> {
  readonly kind = 'bubblewrap';
  private readonly entries = new WaitingEntries();

  constructor(
    private readonly host: HostFacts,
    private readonly env: Env = process.env,
    private readonly log: Logger = silentLogger,
  ) {}

  /**
   * How bwrap is started so that the kernel holds the cage to its limits: beneath a delegated
   * cgroup (kagome-enter joins it, then runs bwrap, before bwrap forks the cage), or in a
   * systemd scope. Where neither exists only the task limit holds (RLIMIT_NPROC), and the
   * cage's log and the service's say why the memory limit does not.
   */
  private placeInCgroup(
    spec: SandboxSpec,
    argv: string[],
  ): { argv: string[]; cgroup?: CageCgroup; scope?: boolean } {
    const limits = { memoryMax: spec.memoryMax ?? 0, tasksMax: spec.tasksMax ?? 0 };
    if (!limits.memoryMax && !limits.tasksMax) return { argv };
    const support = limitsSupport(this.env);
    if (support.how === 'cgroup v1') {
      let cgroup: CageCgroup;
      try {
        cgroup = makeCgroupV1(support, spec.name, limits);
      } catch (e) {
        throw new KagomeError(
          'BackendFailed',
          `could not make the cgroup that holds cage "${spec.name}" to its limits beneath ${support.memory}: ${(e as Error).message}`,
        );
      }
      return {
        argv: [
          enterHelper(),
          ...cgroup.procs.flatMap((f) => ['--cgroup', f]),
          '--exec',
          '--',
          ...argv,
        ],
        cgroup,
      };
    }
    if (support.how === 'systemd scope')
      return { argv: systemdScopeArgv(support.systemdRun, spec.name, limits, argv), scope: true };
    if (limits.memoryMax)
      this.log.warn(
        `cage ${spec.name}: MemoryMax=${formatBytes(limits.memoryMax)} is not enforced: ${support.why}`,
      );
    return { argv };
  }

  fileGrants(): 'portal' {
    return 'portal';
  }

  checkHost(spec: SandboxSpec): void {
    requireProgram('bwrap', 'to run bubblewrap cages');
    enterHelper();
    if (spec.network !== 'none')
      requireProgram('slirp4netns', 'for cages with Network=full or internet');
    if (spec.network === 'internet')
      requireProgram('nft', 'for cages with Network=internet', { sbin: true });
  }

  async start(spec: SandboxSpec, io: StartIo): Promise<BubblewrapRecord> {
    const bwrap = requireProgram('bwrap', 'to run bubblewrap cages');
    const ids = identityFiles(this.host);
    await fs.mkdir(io.etcDir, { recursive: true, mode: 0o700 });
    await Promise.all([
      fs.writeFile(path.join(io.etcDir, 'passwd'), ids.passwd),
      fs.writeFile(path.join(io.etcDir, 'group'), ids.group),
      fs.writeFile(path.join(io.etcDir, 'hostname'), spec.hostname + '\n'),
      fs.writeFile(path.join(io.etcDir, 'resolv.conf'), 'nameserver 10.0.2.3\n'),
      fs.writeFile(path.join(io.etcDir, 'empty'), ''),
    ]);
    const withNet = spec.network !== 'none';
    const seccomp = seccompProgram(
      io.cacheDir,
      seccompRules({ nestedSandbox: spec.nestedSandbox ?? true }),
    );
    const seccompFd = fsSync.openSync(
      seccomp,
      fsSync.constants.O_RDONLY | fsSync.constants.O_NOFOLLOW,
    );
    const args = bwrapArgs(spec, io.etcDir, KEEPER, {
      infoFd: 3,
      ...(withNet ? { blockFd: 4 } : {}),
      seccompFd: SECCOMP_FD,
    });
    const limits = this.placeInCgroup(spec, [bwrap, ...args]);
    // Detached (own session, own process group) with its output in a file: the cage must
    // outlive the service, which may be restarted or killed while programs run.
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(limits.argv[0]!, limits.argv.slice(1), {
        detached: true,
        stdio: [
          'ignore',
          io.logFd,
          io.logFd,
          'pipe',
          withNet ? 'pipe' : 'ignore',
          'pipe',
          seccompFd,
        ],
      });
    } finally {
      fsSync.closeSync(seccompFd);
    }
    // A pipe of a child that dies at the wrong moment reports ECONNRESET or EPIPE as an
    // 'error' event; unheard, that ended the service (seen with 200 concurrent starts and stops).
    for (const stream of child.stdio) stream?.on('error', () => undefined);
    const exited = new Promise<number>((resolve) =>
      child.once('exit', (code) => resolve(code ?? 128)),
    );
    const spawnError = new Promise<never>((_, reject) =>
      child.once('error', (e) =>
        reject(
          new KagomeError(
            'BackendFailed',
            `could not start bwrap for cage "${spec.name}": ${e.message}`,
          ),
        ),
      ),
    );
    const info = readBwrapInfo(child.stdio[3] as NodeJS.ReadableStream);
    const initPid = await Promise.race([
      info,
      spawnError,
      exited.then((code) => {
        throw new KagomeError(
          'BackendFailed',
          `bubblewrap failed to set up cage "${spec.name}" (exit ${code}); its log is in the cage's runtime directory. If it says 'No permissions to create new namespace', unprivileged user namespaces are disabled (sysctl kernel.unprivileged_userns_clone=1)`,
        );
      }),
    ]);
    const record: BubblewrapRecord = {
      bwrap: procRef(child.pid!),
      init: procRef(initPid),
      pidNamespace: namespaceId(initPid, 'pid') ?? '',
      seccomp,
      ...(spec.tasksMax ? { tasksMax: spec.tasksMax } : {}),
    };
    const cgroup = limits.cgroup ?? (limits.scope ? scopeOf(child.pid!) : undefined);
    if (cgroup) record.cgroup = cgroup;
    else if (limits.scope)
      this.log.warn(
        `cage ${spec.name}: systemd-run did not put it in a scope; its limits are not enforced`,
      );
    try {
      if (withNet) {
        record.slirp = await startSlirp(record.init, io.logFd);
        // bwrap waits on the block fd, so the rules are in place before any program of the
        // cage runs. The host's addresses are those it has now.
        if (spec.network === 'internet')
          await installRuleset(
            record.init,
            internetRuleset(hostAddresses(os.networkInterfaces())),
            spec.name,
          );
        const block = child.stdio[4] as NodeJS.WritableStream;
        block.end('1');
      }
    } catch (e) {
      await this.stop(record);
      throw e;
    }
    // Node's stdio tuple type stops at five entries; the sixth is there at run time.
    const pipes = child.stdio as unknown as (NodeJS.ReadableStream & { destroy(): void })[];
    const ready = new Promise<void>((resolve, reject) => {
      const pipe = pipes[READY_FD]!;
      pipe.once('data', () => resolve());
      pipe.once('end', () =>
        reject(
          new KagomeError(
            'BackendFailed',
            `cage "${spec.name}" ended before it was ready; see its log`,
          ),
        ),
      );
    });
    try {
      await Promise.race([ready, spawnError]);
    } catch (e) {
      await this.stop(record);
      throw e;
    }
    child.unref();
    for (const fd of [3, READY_FD]) pipes[fd]!.destroy();
    if (record.cgroup) this.entries.prepare(entryKey(record), record.cgroup.procs);
    return record;
  }

  async resolveProgram(
    r: BubblewrapRecord,
    program: string,
    searchPath: string,
  ): Promise<string | undefined> {
    // /proc/PID/root is the cage's root as seen from the host: no process needs to be started.
    return resolveInRoot(r.init, program, searchPath);
  }

  async exec(r: BubblewrapRecord, req: ExecRequest): Promise<ExecHandle> {
    if (!isAlive(r.init)) throw new KagomeError('BackendFailed', 'the cage is no longer running');
    const args = enterArgs(
      r.init,
      req.cwd,
      req.fallbackCwd ?? '/',
      execArgv(req.argv),
      r.seccomp,
      r.tasksMax,
    );
    if (!r.cgroup) return spawnDetached(enterHelper(), args, req.env, req, 'the cage');
    // A cage with limits has a kagome-enter already in its cgroups (waiting-entry.ts says why);
    // the next one is made as this launch takes it, and after a service restart by the first
    // launch, which takes the ordinary path.
    const key = entryKey(r);
    const waiting =
      req.logFile && !req.pipes ? this.entries.launch(key, args, req.env, req.logFile) : undefined;
    const handle =
      waiting ??
      (await spawnDetached(
        enterHelper(),
        [...r.cgroup.procs.flatMap((f) => ['--cgroup', f]), ...args],
        req.env,
        req,
        'the cage',
      ));
    // After the reply: spawning costs the service's thread a millisecond or two.
    const procs = r.cgroup.procs;
    setImmediate(() => {
      if (isAlive(r.init)) this.entries.prepare(key, procs);
    });
    return handle;
  }

  hostPathOf(r: BubblewrapRecord, pathInCage: string): string | undefined {
    return `/proc/${r.init.pid}/root${pathInCage}`;
  }

  checkRecord(v: unknown): BubblewrapRecord | string {
    return checkRecord<BubblewrapRecord>("the bubblewrap sandbox's", v, {
      bwrap: F.process,
      init: F.process,
      slirp: F.optional(F.process),
      pidNamespace: F.string,
      seccomp: F.optional(F.string),
      tasksMax: F.optional(F.number),
      cgroup: F.optional(
        F.shape<CageCgroup>('a cgroup (how, made, procs)', {
          how: F.oneOf('cgroup v1', 'systemd scope'),
          made: F.strings,
          procs: F.strings,
        }),
      ),
    });
  }

  isAlive(record: BubblewrapRecord): boolean {
    return isAlive(record.init);
  }

  async stop(r: BubblewrapRecord): Promise<void> {
    await this.entries.discard(entryKey(r));
    // Programs get a moment to save their work; then pid 1 of the namespace is killed, which
    // makes the kernel kill every process left in the cage: nothing can outlive it.
    if (r.pidNamespace && isAlive(r.init)) {
      for (const pid of pidsInNamespace(r.pidNamespace)) {
        if (pid !== r.init.pid) {
          try {
            process.kill(pid, 'SIGTERM');
          } catch {
            /* already gone */
          }
        }
      }
      await waitUntil(() => pidsInNamespace(r.pidNamespace).length <= 1, 2000, 25);
    }
    signal(r.init, 'SIGKILL');
    signal(r.slirp, 'SIGTERM');
    await waitUntil(() => !isAlive(r.init) && !isAlive(r.bwrap), 3000, 10);
    signal(r.bwrap, 'SIGKILL');
    // Again: a launch that raced the stop may have left one waiting.
    await this.entries.discard(entryKey(r));
    await removeCgroup(r.cgroup);
  }
}

function entryKey(r: BubblewrapRecord): string {
  return `${r.init.pid}:${r.init.start}`;
}
