import { KagomeError } from '../errors.js';
import { requireProgram } from '../requirements.js';
import { resolveInRoot } from './proc-root.js';
import { isAlive, procRef, signal } from '../runtime/proc.js';
import { IN_CAGE, type HostFacts, type SandboxSpec, type SetupOp } from '../sandbox.js';
import type { Backend, ExecHandle, ExecRequest, SandboxRecord, StartIo } from './backend.js';
import {
  checkMountPath,
  containerFacts,
  engineExec,
  engineRun,
  ContainerBackend,
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

export type OciEngine = 'podman' | 'docker';

export interface OciRecord extends ContainerRecord {
  engine: OciEngine;
}

const PURPOSE: Record<OciEngine, string> = {
  podman: 'to run Backend=podman cages',
  docker: 'to run Backend=docker cages (the client; the engine may be Docker or podman\'s API service)',
};

/** `--mount` and `--tmpfs` options for the spec's filesystem operations. */
export function mountArgs(engine: OciEngine, ops: readonly SetupOp[]): string[] {
  const out: string[] = [];
  for (const op of ops) {
    switch (op.op) {
      case 'ro-bind':
      case 'bind': {
        const src = checkMountPath(engine, op.source);
        const dst = checkMountPath(engine, op.dest);
        out.push('--mount', `type=bind,source=${src},destination=${dst}${op.op === 'ro-bind' ? ',readonly=true' : ''}`);
        break;
      }
      case 'tmpfs':
      case 'dir':
        // A folder of the cage's own (its runtime dir): a private tmpfs, since the root is read-only.
        out.push('--tmpfs', `${checkMountPath(engine, op.dest)}:rw,nosuid,nodev,mode=${(op.mode ?? 0o755).toString(8).padStart(4, '0')}`);
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
export function runArgs(engine: OciEngine, spec: SandboxSpec, host: Pick<HostFacts, 'uid' | 'gid'>, container: string, identity: { passwd: string; group: string }): string[] {
  if (!spec.image) throw new KagomeError('InvalidCageFile', `cage "${spec.name}" has no Image=`);
  // Rootless podman maps the container's root to the user; keep-id maps the user's own id to
  // itself instead, so the cage's files in its home stay the user's on the host.
  const rootless = engine === 'podman' && host.uid !== 0;
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
    ...(rootless ? ['--userns', 'keep-id'] : []),
    '--user',
    `${host.uid}:${host.gid}`,
    '--cap-drop',
    'all',
    '--security-opt',
    'no-new-privileges',
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
    '--mount',
    `type=bind,source=${checkMountPath(engine, identity.passwd)},destination=/etc/passwd,readonly=true`,
    '--mount',
    `type=bind,source=${checkMountPath(engine, identity.group)},destination=/etc/group,readonly=true`,
    ...mountArgs(engine, spec.ops),
  ];
  for (const [k, v] of Object.entries(spec.env)) args.push('--env', `${k}=${v}`);
  // The image's own entrypoint is not the cage's business: pid 1 only keeps the container up.
  args.push('--entrypoint', 'sleep', spec.image, 'infinity');
  return args;
}

/** `exec` options: the program runs as the cage's user, in its folder, with only its environment. */
export function execPrefix(r: OciRecord, req: ExecRequest, host: Pick<HostFacts, 'uid' | 'gid'>): string[] {
  const args = ['exec', ...(req.pipes ? ['--interactive'] : []), '--user', `${host.uid}:${host.gid}`, '--workdir', '/'];
  for (const [k, v] of Object.entries(req.env)) args.push('--env', `${k}=${v}`);
  args.push(r.container);
  return args;
}

/** The error for a `run` that failed, with what to do when the image is missing. */
export function runFailure(engine: OciEngine, spec: SandboxSpec, e: KagomeError): KagomeError {
  if (/image not known|no such image|unable to find image|not found locally|manifest unknown/i.test(e.message)) {
    return new KagomeError(
      'NoSuchImage',
      `${engine} has no image "${spec.image}" for cage "${spec.name}"; build it with 'kagome image build --engine ${engine}${spec.image === 'kagome/debian12' ? '' : ` --name ${spec.image}`}', or set Image= in the cage file to an image ${engine} has ('${engine} images' lists them)`,
    );
  }
  if (/cannot connect|connection refused|no such file or directory.*sock|is the docker daemon running/i.test(e.message)) {
    return new KagomeError('BackendFailed', `${engine} cannot reach its engine for cage "${spec.name}": ${e.message}; start it (systemctl start ${engine === 'docker' ? 'docker' : 'podman.socket'}) or set DOCKER_HOST`);
  }
  return new KagomeError('BackendFailed', `${engine} could not start cage "${spec.name}": ${e.message}`);
}

export class OciBackend extends ContainerBackend implements Backend {
  private program: string | undefined;

  constructor(
    readonly kind: OciEngine,
    private readonly host: HostFacts,
    /** the environment engine clients run with (DOCKER_HOST, CONTAINERS_CONF, XDG_RUNTIME_DIR, ...) */
    private readonly env: Record<string, string | undefined>,
  ) {
    super();
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

  checkHost(): void {
    this.engine();
  }

  async start(spec: SandboxSpec, io: StartIo): Promise<OciRecord> {
    const engine = this.engine();
    const container = this.containerName(spec.name);
    const identity = await writeIdentity(this.host, spec, io.etcDir);
    // A container of this name is left over from a service that died with it stopping: the
    // cage is being started anew, so the old one goes.
    await engineRun(engine, ['rm', '--force', container], this.env).catch(() => undefined);
    let id: string;
    try {
      id = (await engineRun(engine, runArgs(this.kind, spec, this.host, container, identity), this.env)).trim().split('\n').pop() ?? '';
    } catch (e) {
      throw runFailure(this.kind, spec, e as KagomeError);
    }
    try {
      const pid = Number((await engineRun(engine, ['inspect', '--format', '{{.State.Pid}}', container], this.env)).trim());
      if (!Number.isInteger(pid) || pid <= 0) throw new KagomeError('BackendFailed', `${this.kind} started cage "${spec.name}" but reports no process for it; see '${this.kind} logs ${container}'`);
      const init = procRef(pid);
      return { engine: this.kind, container, id, init, ...containerFacts(init) };
    } catch (e) {
      await engineRun(engine, ['rm', '--force', container], this.env).catch(() => undefined);
      throw e;
    }
  }

  async resolveProgram(record: SandboxRecord, program: string, searchPath: string): Promise<string | undefined> {
    const r = record as OciRecord;
    if (r.rootVisible) return resolveInRoot(r.init, program, searchPath);
    return resolveByShell(this.engine(), ['exec', '--user', `${this.host.uid}:${this.host.gid}`, r.container], this.env, program, searchPath);
  }

  exec(record: SandboxRecord, req: ExecRequest): Promise<ExecHandle> {
    const r = record as OciRecord;
    if (!isAlive(r.init)) throw new KagomeError('BackendFailed', 'the cage is no longer running');
    return engineExec(this.engine(), execPrefix(r, req, this.host), this.env, req);
  }

  async stop(record: SandboxRecord): Promise<void> {
    const r = record as OciRecord;
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
