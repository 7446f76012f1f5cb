import fsp from 'node:fs/promises';
import path from 'node:path';
import { KagomeError } from '../errors.js';
import type { Logger } from '../log.js';
import { requireProgram } from '../requirements.js';
import { resolveInRoot } from './proc-root.js';
import { isAlive, procRef, signal } from '../runtime/proc.js';
import { checkRecord, F } from '../runtime/record-check.js';
import { IN_CAGE, type HostFacts, type SandboxSpec } from '../sandbox.js';
import type { Backend, ExecHandle, ExecRequest, StartIo } from './backend.js';
import { refuseInternet } from './net-policy.js';
import { ENOSYS, EPERM, REFUSED_IOCTLS } from './oci-seccomp.js';
import {
  containerFacts,
  engineExec,
  engineRun,
  ContainerBackend,
  CONTAINER_FIELDS,
  resolveByShell,
  termPrograms,
  writeIdentity,
  type ContainerRecord,
} from './container.js';

// LXD through its `lxc` client: each cage has one unprivileged container, made from the cage's
// image at its first start and kept, stopped, between starts (as the older LXD tool kept its
// containers): making one copies the whole image on LXD's `dir` storage, which measured 12 to
// 20 s per start with ephemeral containers against ~1 s to start a kept one. So an LXD cage,
// unlike a podman one, keeps changes to its root filesystem; it is made anew when its image
// changes (`kagome image build`). At every start its devices and settings are rewritten from
// the SandboxSpec: every mount as a disk device, no network device unless Network=full, and
// `lxc exec` carrying programs in. The image needs no init: pid 1 is `sleep infinity`
// (raw.lxc lxc.init.cmd), since a cage runs programs, not services.
//
// The service runs as an ordinary user in the lxd group, and the container's user namespace is
// made by LXD's root daemon: the kernel lets only a process with CAP_SYS_PTRACE in that
// namespace into /proc/PID/root or /proc/PID/ns of its processes, even one running as the user's
// own id. So nothing of the container is read or written through /proc here: folders are made
// by `lxc exec` as the container's root, programs are looked up and stopped by `lxc exec` as its
// user (rootVisible and pidNamespace stay as found, false and empty, unless the service is root).
//
// Ids: an unprivileged container's users are a range of host ids, which LXD chooses and which
// kagome reads back from the container (volatile.idmap.next) rather than assuming 100000.
// Folders shared with the cage must be usable by its user:
// - a normal user's cage maps the user's own id to itself (raw.idmap "both UID UID", which LXD
//   allows when /etc/subuid and /etc/subgid give root that id), so the user's files are the
//   cage user's, and nothing on the host changes owner;
// - a root service never maps host root into a container (that container's user would own
//   every root file it can reach). Its cage user is the container's root, and the folders kagome
//   made for the cage (home, runtime folder, granted copies: StartIo.ownFolders, never a file
//   of the user's) are handed to that user's host id. Other host folders (ReadOnly=) are seen
//   through their "other" permission bits.
// LXD can shift ids on disk devices instead (shift=true, idmapped mounts), but LXD 5.0 refuses
// it on hosts where its own check fails even though the kernel has idmapped mounts; kagome does
// not depend on it.

export interface LxdRecord extends ContainerRecord {
  remote: string;
  /** the cage user inside the container, and the host ids it has */
  user: { uid: number; gid: number; hostUid: number; hostGid: number };
}

interface IdMapEntry {
  Isuid: boolean;
  Isgid: boolean;
  Hostid: number;
  Nsid: number;
  Maprange: number;
}

/** The host id of a container id, from LXD's map. */
export function hostIdOf(
  map: readonly IdMapEntry[],
  id: number,
  kind: 'uid' | 'gid',
): number | undefined {
  for (const e of map) {
    if ((kind === 'uid' ? e.Isuid : e.Isgid) && id >= e.Nsid && id < e.Nsid + e.Maprange)
      return e.Hostid + (id - e.Nsid);
  }
  return undefined;
}

/** LXD instance names: letters, digits and '-', not starting with a digit or '-', at most 63. */
export function instanceName(cage: string): string {
  return `kagome-${cage.replace(/[^A-Za-z0-9-]/g, '-')}`.slice(0, 63).replace(/-+$/, '');
}

type Devices = Record<string, Record<string, string>>;

/**
 * What kagome refuses in a cage, as podman's and docker's cages refuse it (oci-seccomp.ts), in
 * LXC's policy format. LXD's default policy refuses kexec, module loading and
 * open_by_handle_at, but not keyctl, perf_event_open or TIOCSTI, and the kernel keyring is per
 * user, not per container: the cage's user is the host user's own uid (raw.idmap). Seen on LXD
 * 5.0.2 without these lines, a process in a cage listed the host user's keys in /proc/keys,
 * read a key after linking the host's user keyring into its own session keyring, added a key
 * to it and unlinked one from it.
 *
 * Given as security.syscalls.deny, whose value LXD appends as it is to the policy it makes (a
 * denylist after LXD's own refusals), so LXD's defaults stay; raw.seccomp would replace that
 * whole policy. Every line names its action: a line with none takes a denylist's default, kill
 * (an earlier list of bare names killed xpra with SIGSYS). [all] makes them hold on the 32-bit
 * syscall table too, and after any one architecture's section LXD may have written before them.
 */
export const LXC_DENY = [
  '[all]',
  ...EPERM.map((s) => `${s} errno 1`),
  ...ENOSYS.map((s) => `${s} errno 38`),
  // Compared on the request's low 32 bits, all the kernel reads: [arg, value, op, mask].
  ...REFUSED_IOCTLS.map((r) => `ioctl errno 1 [1,${r},SCMP_CMP_MASKED_EQ,${0xffffffff}]`),
].join('\n');

/**
 * /proc/keys would list the host user's keys to the cage's user, who is that user, and
 * /proc/key-users its key counts: /dev/null over both, as OCI runtimes mask them; /dev/null is
 * on every machine, a remote LXD's too.
 */
const KEY_MASKS: Devices = {
  'kagome-proc-keys': { type: 'disk', source: '/dev/null', path: '/proc/keys', readonly: 'true' },
  'kagome-proc-key-users': {
    type: 'disk',
    source: '/dev/null',
    path: '/proc/key-users',
    readonly: 'true',
  },
};

/**
 * What a cage on a remote LXD gets instead of this machine's folders, which its daemon cannot
 * reach: the home is a storage volume on that machine (it persists as a home folder does), the
 * xpra folder and runtime dir are made inside, and kagome's bridges' folders (granted files,
 * sound) are left out, which is said once. A folder the cage file shares (ReadOnly=,
 * ReadWrite=) or a Xephyr display cannot be had there: refused by name.
 */
export interface RemotePlan {
  devices: Devices;
  /** folders to make inside, for the cage's user */
  dirs: { path: string; mode: number }[];
  /** kagome's own folders left out, by where the cage would see them */
  leftOut: string[];
}

export function remotePlan(
  spec: SandboxSpec,
  home: string,
  volume: { pool: string; name: string },
): RemotePlan {
  const plan: RemotePlan = {
    devices: {
      'kagome-home': { type: 'disk', pool: volume.pool, source: volume.name, path: home },
    },
    dirs: [],
    leftOut: [],
  };
  for (const op of spec.ops) {
    if (op.op === 'dir' || op.op === 'tmpfs')
      plan.dirs.push({ path: op.dest, mode: op.mode ?? 0o755 });
    if (op.op !== 'bind' && op.op !== 'ro-bind') continue;
    if (op.dest === home) continue;
    if (op.dest === IN_CAGE.xpraDir) plan.dirs.push({ path: op.dest, mode: 0o700 });
    else if (op.dest.startsWith(spec.runtimeDir + '/')) plan.leftOut.push(op.dest);
    else if (op.dest.startsWith('/tmp/.X11-unix/'))
      throw new KagomeError(
        'NotSupported',
        `cage "${spec.name}" runs on LXD remote ${spec.remote}: Display=xephyr needs the cage on this machine; use Display=xpra`,
      );
    else
      throw new KagomeError(
        'NotSupported',
        `cage "${spec.name}" runs on LXD remote ${spec.remote}, which cannot see ${op.source} of this machine; remove it from ReadOnly=/ReadWrite= or run the cage here`,
      );
  }
  return plan;
}

/** The instance as LXD's API takes it: config, disk devices for the spec's mounts, masked nics. */
export function instanceBody(
  spec: SandboxSpec,
  host: Pick<HostFacts, 'uid' | 'gid'>,
  name: string,
  mounts: { identity: { passwd: string; group: string } } | { remote: RemotePlan },
  profileNics: string[],
): Record<string, unknown> {
  if (!spec.image) throw new KagomeError('InvalidCageFile', `cage "${spec.name}" has no Image=`);
  let devices: Devices;
  if ('remote' in mounts) devices = { ...mounts.remote.devices, ...KEY_MASKS };
  else {
    devices = {
      ...KEY_MASKS,
      'kagome-passwd': {
        type: 'disk',
        source: mounts.identity.passwd,
        path: '/etc/passwd',
        readonly: 'true',
      },
      'kagome-group': {
        type: 'disk',
        source: mounts.identity.group,
        path: '/etc/group',
        readonly: 'true',
      },
    };
    spec.ops.forEach((op, i) => {
      if (op.op === 'bind' || op.op === 'ro-bind')
        devices[`kagome-${i}`] = {
          type: 'disk',
          source: op.source,
          path: op.dest,
          readonly: op.op === 'ro-bind' ? 'true' : 'false',
        };
    });
  }
  // Network=none: the default profile's network devices are masked, leaving only loopback in
  // the container's own network namespace.
  if (spec.network === 'none') for (const nic of profileNics) devices[nic] = { type: 'none' };
  const config: Record<string, string> = {
    'raw.lxc': 'lxc.init.cmd = /bin/sleep infinity',
    'security.privileged': 'false',
    'security.nesting': 'false',
    'security.syscalls.deny': LXC_DENY,
    'user.kagome.cage': spec.name,
    // LXD's own cgroup limits: its daemon is root, so they hold on cgroup v1 and v2 alike.
    ...(spec.memoryMax ? { 'limits.memory': String(spec.memoryMax) } : {}),
    ...(spec.tasksMax ? { 'limits.processes': String(spec.tasksMax) } : {}),
  };
  if (host.uid !== 0 && !('remote' in mounts))
    config['raw.idmap'] = `uid ${host.uid} ${host.uid}\ngid ${host.gid} ${host.gid}`;
  return {
    name,
    ephemeral: false,
    profiles: ['default'],
    source: { type: 'image', alias: spec.image },
    config,
    devices,
  };
}

/** The folders a local cage needs made inside: the spec's own (its runtime dir). */
export function localDirs(spec: SandboxSpec): { path: string; mode: number }[] {
  return spec.ops.flatMap((op) =>
    op.op === 'dir' || op.op === 'tmpfs' ? [{ path: op.dest, mode: op.mode ?? 0o755 }] : [],
  );
}

/**
 * sh making each folder with its mode and the cage user's ids. Paths are arguments, never part
 * of the script, so no path needs quoting; only mkdir, chmod and chown are used, which any image
 * with /bin/sh has. chmod and chown follow mkdir because a folder may already be there (the
 * container is kept, and LXD makes a device's mount points as root).
 */
export function makeDirsArgv(
  dirs: readonly { path: string; mode: number }[],
  uid: number,
  gid: number,
): string[] {
  const script =
    'o=$1; shift; while [ $# -gt 0 ]; do mkdir -p -- "$2" && chmod "$1" -- "$2" && chown "$o" -- "$2" || exit 1; shift 2; done';
  return [
    '/bin/sh',
    '-c',
    script,
    'kagome-dirs',
    `${uid}:${gid}`,
    ...dirs.flatMap((d) => [d.mode.toString(8).padStart(4, '0'), d.path]),
  ];
}

/**
 * sh, run as the cage's user with its uid as $1: TERM to every process that user has in the
 * container (kill -1 spares the shell itself and pid 1), then up to about 2 s until none is left
 * running, as termPrograms gives a bubblewrap cage's programs. Zombies are not waited for: pid 1
 * is `sleep`, which reaps no orphan, so they stay until the container stops.
 */
export const TERM_INSIDE = [
  'kill -TERM -1 2>/dev/null',
  'running() {',
  '  for s in /proc/[0-9]*/status; do',
  '    p=${s#/proc/}; p=${p%/status}',
  '    { [ "$p" = 1 ] || [ "$p" = $$ ]; } && continue',
  '    st=; o=',
  '    { while read -r k v _; do case $k in State:) st=$v ;; Uid:) o=$v ;; esac; done <"$s"; } 2>/dev/null',
  '    [ "$o" = "$1" ] && [ "$st" != Z ] && return 0',
  '  done',
  '  return 1',
  '}',
  'i=0',
  'while [ $i -lt 20 ] && running "$1"; do sleep 0.1; i=$((i + 1)); done',
].join('\n');

export class LxdBackend extends ContainerBackend implements Backend<LxdRecord> {
  readonly kind = 'lxd';
  private program: string | undefined;
  private readonly toldRemote = new Set<string>();

  constructor(
    private readonly host: HostFacts,
    private readonly env: Record<string, string | undefined>,
    private readonly log: Logger,
  ) {
    super();
  }

  checkRecord(v: unknown): LxdRecord | string {
    return checkRecord<LxdRecord>("the lxd sandbox's", v, {
      ...CONTAINER_FIELDS,
      remote: F.string,
      user: F.shape('a user (uid, gid, hostUid, hostGid)', {
        uid: F.number,
        gid: F.number,
        hostUid: F.number,
        hostGid: F.number,
      }),
    });
  }

  private lxc(): string {
    this.program ??= requireProgram('lxc', 'to run Backend=lxd cages');
    return this.program;
  }

  private target(remote: string, name: string): string {
    return remote ? `${remote}:${name}` : name;
  }

  private async query<T>(remote: string, method: string, url: string, body?: unknown): Promise<T> {
    const args = ['query', '--wait', '-X', method, `${remote ? `${remote}:` : ''}${url}`];
    if (body !== undefined) args.push('--data', JSON.stringify(body));
    const out = await engineRun(this.lxc(), args, this.env);
    return (out.trim() ? JSON.parse(out) : {}) as T;
  }

  /** A local LXD daemon cannot reach the user's FUSE folder; a remote one no folder of this machine. */
  fileGrants(spec: SandboxSpec): 'copies' | 'none' {
    return spec.remote ? 'none' : 'copies';
  }

  checkHost(spec: SandboxSpec): void {
    refuseInternet(spec, 'lxd');
    this.lxc();
  }

  async start(spec: SandboxSpec, io: StartIo): Promise<LxdRecord> {
    const remote = spec.remote ?? '';
    const name = instanceName(spec.name);
    const identity = await writeIdentity(this.host, spec, io.etcDir);
    const profile = await this.query<{ devices?: Devices }>(
      remote,
      'GET',
      '/1.0/profiles/default',
    ).catch((e: Error) => {
      if (remote)
        throw new KagomeError(
          'BackendFailed',
          `LXD remote "${remote}" cannot be reached for cage "${spec.name}": ${e.message}; check 'lxc remote list' and that the machine is up`,
        );
      return { devices: {} as Devices };
    });
    const nics = Object.entries(profile.devices ?? {})
      .filter(([, d]) => d.type === 'nic')
      .map(([n]) => n);
    if (spec.network === 'full' && nics.length === 0)
      this.log.warn(
        `cage ${spec.name}: Network=full, but LXD's default profile has no network device; the cage has loopback only`,
      );
    const image = await this.imageFingerprint(remote, spec);
    let plan: RemotePlan | undefined;
    if (remote) {
      const volume = { pool: profile.devices?.root?.pool ?? 'default', name: `${name}-home` };
      plan = remotePlan(spec, spec.cwd, volume);
      await engineRun(
        this.lxc(),
        ['storage', 'volume', 'create', `${remote}:${volume.pool}`, volume.name],
        this.env,
      ).catch((e: Error) => {
        if (!/already exists/i.test(e.message)) throw e;
      });
      if (plan.leftOut.length && !this.toldRemote.has(spec.name)) {
        this.toldRemote.add(spec.name);
        this.log.info(
          `cage ${spec.name} runs on LXD remote ${remote}: this machine's ${plan.leftOut.join(', ')} cannot reach it, so granted files and sound are not carried there`,
        );
      }
    }
    const body = instanceBody(spec, this.host, name, plan ? { remote: plan } : { identity }, nics);
    const existing = await this.query<{
      status: string;
      config: Record<string, string>;
      devices: Devices;
      profiles: string[];
    }>(remote, 'GET', `/1.0/instances/${name}`).catch(() => undefined);
    const reusable =
      existing !== undefined &&
      existing.config['volatile.base_image'] === image &&
      existing.config['user.kagome.cage'] === spec.name;
    if (existing && !reusable) {
      this.log.info(
        `cage ${spec.name}: its image changed since its LXD container was made; making it anew`,
      );
      await engineRun(this.lxc(), ['delete', '--force', this.target(remote, name)], this.env);
    } else if (existing) {
      // Left running by a service that died while stopping it, or found already stopped.
      if (existing.status !== 'Stopped')
        await engineRun(this.lxc(), ['stop', '--force', this.target(remote, name)], this.env);
      const {
        source: _image,
        name: _name,
        ...settings
      } = body as { source: unknown; name: string; config: Record<string, string> };
      const config = Object.fromEntries(
        Object.entries(existing.config).filter(([k]) => k.startsWith('volatile.')),
      );
      await this.query(remote, 'PUT', `/1.0/instances/${name}`, {
        ...settings,
        config: { ...config, ...settings.config },
      });
    }
    if (!reusable) {
      try {
        await this.query(remote, 'POST', '/1.0/instances', body);
      } catch (e) {
        const msg = (e as Error).message;
        if (this.host.uid !== 0 && /raw\.idmap|idmap/i.test(msg)) {
          throw new KagomeError(
            'BackendFailed',
            `LXD would not map your user id ${this.host.uid} into cage "${spec.name}" (${msg}); allow it with: echo "root:${this.host.uid}:1" | sudo tee -a /etc/subuid /etc/subgid, then restart LXD`,
          );
        }
        throw new KagomeError('BackendFailed', `LXD could not create cage "${spec.name}": ${msg}`);
      }
    }
    if (plan) return this.startRemote(spec, name, plan, identity);
    try {
      const inst = await this.query<{ config: Record<string, string> }>(
        remote,
        'GET',
        `/1.0/instances/${name}`,
      );
      const map = JSON.parse(inst.config['volatile.idmap.next'] ?? '[]') as IdMapEntry[];
      const uid = this.host.uid === 0 ? 0 : this.host.uid;
      const gid = this.host.uid === 0 ? 0 : this.host.gid;
      const hostUid = hostIdOf(map, uid, 'uid');
      const hostGid = hostIdOf(map, gid, 'gid');
      if (hostUid === undefined || hostGid === undefined)
        throw new KagomeError(
          'BackendFailed',
          `LXD gave cage "${spec.name}" no host id for its user ${uid}:${gid} (idmap ${JSON.stringify(map)})`,
        );
      if (hostUid !== this.host.uid)
        await handOver(spec, io.ownFolders, identity, hostUid, hostGid);
      await engineRun(this.lxc(), ['start', this.target(remote, name)], this.env);
      const state = await this.query<{ pid: number }>(
        remote,
        'GET',
        `/1.0/instances/${name}/state`,
      );
      const init = procRef(state.pid);
      // The runtime folder is made after the start: LXD has made the mount points of the disk
      // devices under it by then, as the container's root, and the mode and owner are set over them.
      await this.makeDirs(this.target(remote, name), localDirs(spec), uid, gid);
      return {
        remote,
        container: name,
        init,
        ...containerFacts(init),
        user: { uid, gid, hostUid, hostGid },
      };
    } catch (e) {
      await engineRun(this.lxc(), ['stop', '--force', this.target(remote, name)], this.env).catch(
        () => undefined,
      );
      if (e instanceof KagomeError) throw e;
      throw new KagomeError(
        'BackendFailed',
        `LXD could not start cage "${spec.name}": ${(e as Error).message}`,
      );
    }
  }

  /**
   * A cage on another machine: started there, its user list pushed in, its folders made inside.
   * Its pid 1 is not a process of this machine, so a local `lxc exec ... sleep` stands for it:
   * it lives exactly as long as the container, which is what isAlive needs, without a round
   * trip to the remote at every launch.
   */
  private async startRemote(
    spec: SandboxSpec,
    name: string,
    plan: RemotePlan,
    identity: { passwd: string; group: string },
  ): Promise<LxdRecord> {
    const remote = spec.remote!;
    const target = this.target(remote, name);
    const uid = this.host.uid;
    const gid = this.host.gid;
    try {
      await engineRun(this.lxc(), ['start', target], this.env);
      await engineRun(
        this.lxc(),
        [
          'file',
          'push',
          '--uid',
          '0',
          '--gid',
          '0',
          '--mode',
          '0644',
          identity.passwd,
          `${target}/etc/passwd`,
        ],
        this.env,
      );
      await engineRun(
        this.lxc(),
        [
          'file',
          'push',
          '--uid',
          '0',
          '--gid',
          '0',
          '--mode',
          '0644',
          identity.group,
          `${target}/etc/group`,
        ],
        this.env,
      );
      await this.makeDirs(target, [...plan.dirs, { path: spec.cwd, mode: 0o700 }], uid, gid);
      const keeper = await engineExec(
        this.lxc(),
        ['exec', target, '--mode', 'non-interactive', '--disable-stdin', '--'],
        this.env,
        { argv: ['/bin/sleep', 'infinity'], env: {}, cwd: '/', logFd: 2 },
      );
      return {
        remote,
        container: name,
        init: procRef(keeper.pid),
        pidNamespace: '',
        rootVisible: false,
        user: { uid, gid, hostUid: -1, hostGid: -1 },
      };
    } catch (e) {
      await engineRun(this.lxc(), ['stop', '--force', target], this.env).catch(() => undefined);
      if (e instanceof KagomeError) throw e;
      throw new KagomeError(
        'BackendFailed',
        `LXD remote ${remote} could not start cage "${spec.name}": ${(e as Error).message}`,
      );
    }
  }

  /** How a display reaches a cage whose folders are not on this machine: a command run inside it. */
  remoteShell(r: LxdRecord): { argv: string[]; env: Record<string, string> } | undefined {
    if (!r.remote) return undefined;
    const env = Object.fromEntries(
      ['LXD_CONF', 'LXD_DIR', 'HOME', 'PATH']
        .filter((k) => this.env[k] !== undefined)
        .map((k) => [k, this.env[k]!]),
    );
    return {
      argv: [
        this.lxc(),
        'exec',
        this.target(r.remote, r.container),
        '--mode',
        'non-interactive',
        ...this.userArgs(r),
        '--',
      ],
      env,
    };
  }

  /** The image's fingerprint, or NoSuchImage saying how to make it. */
  private async imageFingerprint(remote: string, spec: SandboxSpec): Promise<string> {
    try {
      const alias = await this.query<{ target: string }>(
        remote,
        'GET',
        `/1.0/images/aliases/${encodeURIComponent(spec.image ?? '')}`,
      );
      return alias.target;
    } catch {
      throw new KagomeError(
        'NoSuchImage',
        `LXD has no image "${spec.image}" for cage "${spec.name}"; build it with 'kagome image build --engine lxd${spec.image === 'kagome/debian12' ? '' : ` --name ${spec.image}`}', or set Image= to an alias 'lxc image list' shows`,
      );
    }
  }

  /**
   * Folders for the cage's user, made inside by the container's root (see the top of this file),
   * all in one `lxc exec`, locally as on a remote.
   */
  private async makeDirs(
    target: string,
    dirs: readonly { path: string; mode: number }[],
    uid: number,
    gid: number,
  ): Promise<void> {
    if (dirs.length === 0) return;
    await engineRun(
      this.lxc(),
      [
        'exec',
        target,
        '--mode',
        'non-interactive',
        '--disable-stdin',
        '--',
        ...makeDirsArgv(dirs, uid, gid),
      ],
      this.env,
    );
  }

  private userArgs(r: LxdRecord): string[] {
    return ['--user', String(r.user.uid), '--group', String(r.user.gid)];
  }

  async resolveProgram(
    r: LxdRecord,
    program: string,
    searchPath: string,
  ): Promise<string | undefined> {
    // Only a root service sees the container's root; a user's service asks a shell inside.
    if (r.rootVisible) return resolveInRoot(r.init, program, searchPath);
    return resolveByShell(
      this.lxc(),
      ['exec', this.target(r.remote, r.container), ...this.userArgs(r), '--'],
      this.env,
      program,
      searchPath,
    );
  }

  exec(r: LxdRecord, req: ExecRequest): Promise<ExecHandle> {
    if (!isAlive(r.init)) throw new KagomeError('BackendFailed', 'the cage is no longer running');
    const args = [
      'exec',
      this.target(r.remote, r.container),
      '--mode',
      'non-interactive',
      ...this.userArgs(r),
      '--cwd',
      '/',
    ];
    if (!req.pipes) args.push('--disable-stdin');
    for (const [k, v] of Object.entries(req.env)) args.push('--env', `${k}=${v}`);
    args.push('--');
    return engineExec(this.lxc(), args, this.env, req);
  }

  async stop(r: LxdRecord): Promise<void> {
    if (r.remote || !r.pidNamespace) {
      // Programs get a moment to save their work. Where the service cannot list the container's
      // processes (on a remote, or a local container whose namespaces are LXD root's), a shell
      // inside, as the cage's user, sends TERM to every process of that user there.
      await engineRun(
        this.lxc(),
        [
          'exec',
          this.target(r.remote, r.container),
          '--mode',
          'non-interactive',
          '--disable-stdin',
          ...this.userArgs(r),
          '--',
          '/bin/sh',
          '-c',
          TERM_INSIDE,
          'kagome-term',
          String(r.user.uid),
        ],
        this.env,
      ).catch(() => undefined);
    } else await termPrograms(r);
    try {
      // Kept, stopped, for the next start (see the top of this file).
      await engineRun(
        this.lxc(),
        ['stop', '--force', this.target(r.remote, r.container)],
        this.env,
      );
    } catch (e) {
      if (/not found|already stopped|not running/i.test((e as Error).message)) return;
      signal(r.init, 'SIGKILL');
      throw e;
    } finally {
      if (r.remote) signal(r.init, 'SIGTERM');
    }
  }
}

/**
 * The folders kagome made for this cage, and only those, are given to the container's user
 * (see the top of this file); the identity files are read-only and stay the service's.
 */
async function handOver(
  spec: SandboxSpec,
  ownFolders: readonly string[],
  identity: { passwd: string; group: string },
  uid: number,
  gid: number,
): Promise<void> {
  const own = (p: string) => ownFolders.some((f) => p === f || p.startsWith(f + '/'));
  for (const op of spec.ops) {
    if ((op.op === 'bind' || op.op === 'ro-bind') && own(op.source))
      await chownTree(op.source, uid, gid);
  }
  await fsp.chmod(path.dirname(identity.passwd), 0o755);
  await Promise.all([fsp.chmod(identity.passwd, 0o644), fsp.chmod(identity.group, 0o644)]);
}

async function chownTree(p: string, uid: number, gid: number): Promise<void> {
  let st;
  try {
    st = await fsp.lstat(p);
  } catch {
    return;
  }
  // Already handed over (the cage's home from an earlier run): its contents are the cage's own.
  if (st.uid === uid && st.gid === gid) return;
  await fsp.lchown(p, uid, gid);
  if (st.isDirectory()) {
    for (const e of await fsp.readdir(p)) await chownTree(path.join(p, e), uid, gid);
  }
}
