import fs from 'node:fs';
import { KagomeError } from '../errors.js';
import { cageProfileFile, ENGINE_DEFAULT_PROFILE } from './oci-seccomp.js';
import { refuseInternet } from './net-policy.js';
import { requireProgram } from '../requirements.js';
import { resolveInRoot } from './proc-root.js';
import { isAlive, procRef, signal } from '../runtime/proc.js';
import { checkRecord, F } from '../runtime/record-check.js';
import { IN_CAGE, type HostFacts, type SandboxSpec, type SetupOp } from '../sandbox.js';
import type { Backend, ExecHandle, ExecRequest, StartIo } from './backend.js';
import {
  checkMountPath,
  containerFacts,
  containerIdOf,
  engineExec,
  engineRun,
  ContainerBackend,
  CONTAINER_FIELDS,
  resolveByShell,
  termPrograms,
  writeIdentity,
  type ContainerRecord,
} from './container.js';

// podman and docker through their command-line clients: one backend, since both take the same
// `run`/`exec`/`rm` options for everything a cage needs. The container is made fresh at every
// cage start and removed at stop (its image stays read-only, its home is the cage's own folder
// bound in), so nothing a program changes outside its home survives, as with bubblewrap.
//
// What keeps it a cage: no capabilities at all, no-new-privileges, a read-only root with
// private /tmp and /run, the engine's own pid, ipc, uts and network namespaces (Network=full is
// the engine's default network, which is a namespace of its own, never `--network host`: that
// would hand the cage the host X server through its abstract socket), the cage's own user list,
// and only the mounts the SandboxSpec lists. A reaping init (`--init`) is pid 1, so programs
// whose parents exit do not pile up as zombies.
//
// Who the cage's user is inside the container depends on the engine, because the folders bound
// in (the home, the xpra folder, the sound socket's) are the host user's, and only the
// container id that the engine maps to the host user can use them:
// - a rootful engine maps ids to themselves: the user's own uid:gid;
// - rootless podman maps its root to the user, and `--userns keep-id` moves that to the user's
//   own id, so programs see the same id as on the host;
// - a rootless Docker engine (and podman's Docker API run by the user) has the same map but no
//   keep-id (the Docker API allows no other user namespace than the engine's): there the user is
//   container root, 0:0, which stays unprivileged as everything else here is (no capabilities,
//   no-new-privileges, a read-only root; a root in a user namespace owns nothing of the host's
//   but what the user owns). Any other uid there is a subordinate id of the user's, which owns
//   nothing bound in: xpra could not make its socket in the xpra folder.
// The map the kernel reports for the running container is checked against that choice, so an
// engine that maps the user elsewhere (Docker's userns-remap) fails the start with its reason
// instead of giving a cage that cannot open its home or display.

export type OciEngine = 'podman' | 'docker';

export interface OciRecord extends ContainerRecord {
  engine: OciEngine;
  /** the cage's user inside the container (absent in records of older services: the host ids) */
  user?: { uid: number; gid: number };
}

/** The cage's user inside the container, and how the engine is asked to map it. */
export interface CageUser {
  uid: number;
  gid: number;
  /** rootless podman: `--userns keep-id`, the user's own id inside */
  keepId: boolean;
}

/** Who runs the cage's programs inside the container (see the comment at the top). Pure. */
export function cageUser(
  engine: OciEngine,
  host: Pick<HostFacts, 'uid' | 'gid'>,
  rootlessEngine: boolean,
): CageUser {
  if (engine === 'podman' && host.uid !== 0) return { uid: host.uid, gid: host.gid, keepId: true };
  if (rootlessEngine) return { uid: 0, gid: 0, keepId: false };
  return { uid: host.uid, gid: host.gid, keepId: false };
}

/**
 * Whether a Docker engine runs as this user, from `docker info`. Docker says so in its
 * SecurityOptions (`name=rootless`); podman's Docker API (4.3, Debian 12's) does not, but an
 * engine whose storage (DockerRootDir) belongs to the user runs as the user, and a rootful
 * engine's storage is root's. A wrong guess is caught by the id map check at start, before a
 * program of the cage's is started. Pure: `rootDirOwner` is the folder's owner, when known.
 */
export function dockerIsRootless(
  securityOptions: readonly string[] | null | undefined,
  rootDirOwner: number | undefined,
  hostUid: number,
): boolean {
  const said = (securityOptions ?? []).some((o) => o.split(',').includes('name=rootless'));
  return said || (hostUid !== 0 && rootDirOwner === hostUid);
}

const PURPOSE: Record<OciEngine, string> = {
  podman: 'to run Backend=podman cages',
  docker:
    "to run Backend=docker cages (the client; the engine may be Docker or podman's API service)",
};

/**
 * The option that gives a tmpfs to the cage's user. The engine makes a tmpfs as container root:
 * a runtime folder of mode 0700 owned by anyone else is closed to the programs (granted files
 * in <runtime dir>/doc and the sound socket in <runtime dir>/pulse were unreachable). podman
 * hands it to --user with `U`; Docker has no `U` but passes tmpfs' own uid=/gid= options, which
 * podman refuses. Container root needs neither.
 */
export function tmpfsOwner(engine: OciEngine, user: Pick<CageUser, 'uid' | 'gid'>): string {
  if (user.uid === 0 && user.gid === 0) return '';
  return engine === 'podman' ? ',U' : `,uid=${user.uid},gid=${user.gid}`;
}

/** `--mount` and `--tmpfs` options for the spec's filesystem operations. */
export function mountArgs(
  engine: OciEngine,
  ops: readonly SetupOp[],
  user: Pick<CageUser, 'uid' | 'gid'>,
): string[] {
  const out: string[] = [];
  for (const op of ops) {
    switch (op.op) {
      case 'ro-bind':
      case 'bind': {
        const src = checkMountPath(engine, op.source);
        const dst = checkMountPath(engine, op.dest);
        out.push(
          '--mount',
          `type=bind,source=${src},destination=${dst}${op.op === 'ro-bind' ? ',readonly=true' : ''}`,
        );
        break;
      }
      case 'tmpfs':
      case 'dir':
        // A folder of the cage's own (its runtime dir): a private tmpfs, since the root is read-only.
        // The cage's user owns it, as bubblewrap's --dir and --tmpfs are the sandbox user's.
        out.push(
          '--tmpfs',
          `${checkMountPath(engine, op.dest)}:rw,nosuid,nodev,mode=${(op.mode ?? 0o755).toString(8).padStart(4, '0')}${tmpfsOwner(engine, user)}`,
        );
        break;
      case 'symlink':
      case 'proc':
      case 'dev':
        // The engine makes /proc and /dev itself, and the image has its own /bin, /lib links.
        break;
    }
  }
  return out;
}

/** The whole `run` command line. Pure: tested without an engine. */
export function runArgs(
  engine: OciEngine,
  spec: SandboxSpec,
  user: CageUser,
  container: string,
  identity: { passwd: string; group: string },
  seccompProfile?: string,
): string[] {
  if (!spec.image) throw new KagomeError('InvalidCageFile', `cage "${spec.name}" has no Image=`);
  const args = [
    'run',
    '--detach',
    '--name',
    container,
    '--label',
    `io.kagome.cage=${spec.name}`,
    // Never fetch: a launch must not wait on (or silently pull from) a registry.
    '--pull',
    'never',
    '--init',
    '--hostname',
    spec.hostname,
    // Rootless podman maps the container's root to the user; keep-id maps the user's own id to
    // itself instead, so the cage's files in its home stay the user's on the host.
    ...(user.keepId ? ['--userns', 'keep-id'] : []),
    '--user',
    `${user.uid}:${user.gid}`,
    '--cap-drop',
    'all',
    '--security-opt',
    'no-new-privileges',
    // The engine's default profile with kagome's refusals (oci-seccomp.ts): the keyring,
    // TIOCSTI, perf and the new mount API, as in bubblewrap cages.
    ...(seccompProfile ? ['--security-opt', `seccomp=${seccompProfile}`] : []),
    '--read-only',
    '--tmpfs',
    '/tmp:rw,nosuid,nodev,mode=1777',
    '--tmpfs',
    '/var/tmp:rw,nosuid,nodev,mode=1777',
    '--tmpfs',
    '/run:rw,nosuid,nodev,mode=0755',
    '--tmpfs',
    `${IN_CAGE.kagomeRun}:rw,nosuid,nodev,mode=0755`,
    '--workdir',
    spec.cwd,
    ...(spec.network === 'none' ? ['--network', 'none'] : []),
    // The engine holds these where it can: rootful, or rootless on cgroup v2 with systemd
    // (rootless podman on cgroup v1 says "Resource limits are not supported" in the cage log).
    ...(spec.memoryMax ? ['--memory', String(spec.memoryMax)] : []),
    ...(spec.tasksMax ? ['--pids-limit', String(spec.tasksMax)] : []),
    '--mount',
    `type=bind,source=${checkMountPath(engine, identity.passwd)},destination=/etc/passwd,readonly=true`,
    '--mount',
    `type=bind,source=${checkMountPath(engine, identity.group)},destination=/etc/group,readonly=true`,
    ...mountArgs(engine, spec.ops, user),
  ];
  for (const [k, v] of Object.entries(spec.env)) args.push('--env', `${k}=${v}`);
  // The image's own entrypoint is not the cage's business: pid 1 only keeps the container up.
  args.push('--entrypoint', 'sleep', spec.image, 'infinity');
  return args;
}

/** `exec` options: the program runs as the cage's user, in its folder, with only its environment. */
export function execPrefix(
  r: OciRecord,
  req: ExecRequest,
  host: Pick<HostFacts, 'uid' | 'gid'>,
): string[] {
  const args = [
    'exec',
    ...(req.pipes ? ['--interactive'] : []),
    '--user',
    userArg(r, host),
    '--workdir',
    '/',
  ];
  for (const [k, v] of Object.entries(req.env)) args.push('--env', `${k}=${v}`);
  args.push(r.container);
  return args;
}

/** The container user a record was started with; the host's ids for records that do not say. */
function userArg(r: OciRecord, host: Pick<HostFacts, 'uid' | 'gid'>): string {
  const u = r.user ?? host;
  return `${u.uid}:${u.gid}`;
}

/** The error for a `run` that failed, with what to do when the image is missing. */
export function runFailure(engine: OciEngine, spec: SandboxSpec, e: KagomeError): KagomeError {
  if (
    /image not known|no such image|unable to find image|not found locally|manifest unknown/i.test(
      e.message,
    )
  ) {
    return new KagomeError(
      'NoSuchImage',
      `${engine} has no image "${spec.image}" for cage "${spec.name}"; build it with 'kagome image build --engine ${engine}${spec.image === 'kagome/debian12' ? '' : ` --name ${spec.image}`}', or set Image= in the cage file to an image ${engine} has ('${engine} images' lists them)`,
    );
  }
  if (
    /cannot connect|connection refused|no such file or directory.*sock|is the docker daemon running/i.test(
      e.message,
    )
  ) {
    return new KagomeError(
      'BackendFailed',
      `${engine} cannot reach its engine for cage "${spec.name}": ${e.message}; start it (systemctl start ${engine === 'docker' ? 'docker' : 'podman.socket'}) or set DOCKER_HOST`,
    );
  }
  return new KagomeError(
    'BackendFailed',
    `${engine} could not start cage "${spec.name}": ${e.message}`,
  );
}

export class OciBackend extends ContainerBackend implements Backend<OciRecord> {
  private program: string | undefined;
  private rootlessAnswer: Promise<boolean> | undefined;

  constructor(
    readonly kind: OciEngine,
    private readonly host: HostFacts,
    /** the environment engine clients run with (DOCKER_HOST, CONTAINERS_CONF, XDG_RUNTIME_DIR, ...) */
    private readonly env: Record<string, string | undefined>,
  ) {
    super();
  }

  checkRecord(v: unknown): OciRecord | string {
    return checkRecord<OciRecord>(`the ${this.kind} sandbox's`, v, {
      ...CONTAINER_FIELDS,
      engine: F.oneOf('podman', 'docker'),
      user: F.optional(F.shape('a user (uid, gid)', { uid: F.number, gid: F.number })),
    });
  }

  private engine(): string {
    this.program ??= requireProgram(this.kind, PURPOSE[this.kind]);
    return this.program;
  }

  containerName(cage: string): string {
    return `kagome-${cage}`;
  }

  fileGrants(): 'copies' {
    return 'copies';
  }

  checkHost(spec: SandboxSpec): void {
    refuseInternet(spec, this.kind);
    this.engine();
  }

  /**
   * Whether the Docker engine is rootless, asked once: `docker info` takes 0.8 s from podman's
   * Docker API, on every cold start otherwise. The answer is forgotten when it failed, and when
   * a container's id map contradicted it (the engine was changed under the service, by
   * `docker context use` say), so the next start asks again.
   */
  private rootlessDocker(engine: string): Promise<boolean> {
    this.rootlessAnswer ??= (async () => {
      const info = JSON.parse(
        await engineRun(engine, ['info', '--format', '{{json .}}'], this.env),
      ) as { SecurityOptions?: string[] | null; DockerRootDir?: string };
      let owner: number | undefined;
      try {
        owner = info.DockerRootDir ? fs.statSync(info.DockerRootDir).uid : undefined;
      } catch {
        /* another machine's engine, or a folder out of sight: not the user's own */
      }
      return dockerIsRootless(info.SecurityOptions, owner, this.host.uid);
    })();
    this.rootlessAnswer.catch(() => (this.rootlessAnswer = undefined));
    return this.rootlessAnswer;
  }

  async start(spec: SandboxSpec, io: StartIo): Promise<OciRecord> {
    const engine = this.engine();
    const container = this.containerName(spec.name);
    const [rootless] = await Promise.all([
      (this.kind === 'docker' ? this.rootlessDocker(engine) : Promise.resolve(false)).catch(
        (e: unknown) => {
          throw runFailure(
            this.kind,
            spec,
            e instanceof KagomeError
              ? e
              : new KagomeError(
                  'BackendFailed',
                  `docker info gave no answer: ${(e as Error).message}`,
                ),
          );
        },
      ),
      // A container of this name is left over from a service that died with it stopping: the
      // cage is being started anew, so the old one goes.
      engineRun(engine, ['rm', '--force', container], this.env).catch(() => undefined),
    ]);
    const user = cageUser(this.kind, this.host, rootless);
    // The user list names the cage's user with the id it has inside, so `id`, ~ and the
    // programs that look themselves up agree with the files they own.
    const identity = await writeIdentity(
      { ...this.host, uid: user.uid, gid: user.gid },
      spec,
      io.etcDir,
    );
    const profile = cageProfileFile(io.cacheDir);
    if (!profile)
      fs.writeSync(
        io.logFd,
        `kagome: no ${ENGINE_DEFAULT_PROFILE} (containers-common) to build the cage's seccomp profile on; ${this.kind}'s own default applies\n`,
      );
    let id: string;
    try {
      const run = (withProfile: string | undefined) =>
        engineRun(
          engine,
          runArgs(this.kind, spec, user, container, identity, withProfile),
          this.env,
        );
      id =
        (
          await run(profile).catch(async (e: KagomeError) => {
            // podman 4.3's Docker API reads the profile the docker client sends as a file name
            // ("opening seccomp profile failed: open {...}"); a Docker engine takes it. There the
            // engine's own default is all that can apply, and the cage log says so.
            if (!profile || !/opening seccomp profile failed: open \{/.test(e.message)) throw e;
            fs.writeSync(
              io.logFd,
              `kagome: this ${this.kind} engine cannot take a seccomp profile from its client (podman's Docker API); its own default applies\n`,
            );
            await engineRun(engine, ['rm', '--force', container], this.env).catch(() => undefined);
            return run(undefined);
          })
        )
          .trim()
          .split('\n')
          .pop() ?? '';
    } catch (e) {
      throw runFailure(this.kind, spec, e as KagomeError);
    }
    try {
      const pid = Number(
        (
          await engineRun(engine, ['inspect', '--format', '{{.State.Pid}}', container], this.env)
        ).trim(),
      );
      if (!Number.isInteger(pid) || pid <= 0)
        throw new KagomeError(
          'BackendFailed',
          `${this.kind} started cage "${spec.name}" but reports no process for it; see '${this.kind} logs ${container}'`,
        );
      const init = procRef(pid);
      this.checkUserMap(spec, pid, user);
      return {
        engine: this.kind,
        container,
        id,
        init,
        user: { uid: user.uid, gid: user.gid },
        ...containerFacts(init),
      };
    } catch (e) {
      await engineRun(engine, ['rm', '--force', container], this.env).catch(() => undefined);
      throw e;
    }
  }

  /**
   * The container's own id map, as the kernel shows it to the host: the cage's user must be the
   * host user there (see the comment at the top). A map that cannot be read is no evidence
   * either way, and the start goes on.
   */
  private checkUserMap(spec: SandboxSpec, pid: number, user: CageUser): void {
    const read = (f: string): string | undefined => {
      try {
        return fs.readFileSync(`/proc/${pid}/${f}`, 'utf8');
      } catch {
        return undefined;
      }
    };
    const [uidMap, gidMap] = [read('uid_map'), read('gid_map')];
    if (uidMap === undefined || gidMap === undefined) return;
    const uid = containerIdOf(uidMap, this.host.uid);
    const gid = containerIdOf(gidMap, this.host.gid);
    if (uid === user.uid && gid === user.gid) return;
    this.rootlessAnswer = undefined;
    const where =
      uid === undefined ? 'to no id in the container' : `to ${uid}:${gid ?? '?'} in the container`;
    throw new KagomeError(
      'BackendFailed',
      `${this.kind} maps your ids ${this.host.uid}:${this.host.gid} ${where}, not to the cage's user ${user.uid}:${user.gid}, so cage "${spec.name}" could not use its home or its display folder; ${this.kind === 'docker' ? 'a Docker engine with userns-remap cannot run kagome cages: use rootless Docker or the default engine, or Backend=podman' : 'check the user namespace settings of containers.conf (userns)'}`,
    );
  }

  async resolveProgram(
    r: OciRecord,
    program: string,
    searchPath: string,
  ): Promise<string | undefined> {
    if (r.rootVisible) return resolveInRoot(r.init, program, searchPath);
    return resolveByShell(
      this.engine(),
      ['exec', '--user', userArg(r, this.host), r.container],
      this.env,
      program,
      searchPath,
    );
  }

  exec(r: OciRecord, req: ExecRequest): Promise<ExecHandle> {
    if (!isAlive(r.init)) throw new KagomeError('BackendFailed', 'the cage is no longer running');
    return engineExec(this.engine(), execPrefix(r, req, this.host), this.env, req);
  }

  async stop(r: OciRecord): Promise<void> {
    await termPrograms(r);
    try {
      await engineRun(this.engine(), ['rm', '--force', '--volumes', r.container], this.env);
    } catch (e) {
      // The engine is gone (its socket, its storage): the processes are still ended.
      signal(r.init, 'SIGKILL');
      throw e;
    }
  }
}
