import type { CageConfig, NetworkMode } from './cage/config.js';
import { KagomeError } from './errors.js';

// A cage's sandbox as data: a typed list of filesystem operations plus namespaces and
// environment, built from the cage file and extended by the display and the bridges. A backend
// turns it into its own arguments (bwrap flags, podman options, LXD devices) in one place, so
// what a cage can see is decided here and can be tested without starting anything.

export type SetupOp =
  | { op: 'ro-bind'; source: string; dest: string; optional?: boolean }
  | { op: 'bind'; source: string; dest: string }
  | { op: 'tmpfs'; dest: string; mode?: number }
  | { op: 'dir'; dest: string; mode?: number }
  | { op: 'symlink'; target: string; dest: string }
  | { op: 'proc'; dest: string }
  | { op: 'dev'; dest: string };

export interface SandboxSpec {
  name: string;
  hostname: string;
  network: NetworkMode;
  /** container backends: the image to run */
  image?: string;
  /** lxd: the remote the container runs on */
  remote?: string;
  /** filesystem operations, applied in order: later mounts cover earlier ones */
  ops: SetupOp[];
  /** the environment of every program in the cage (nothing is inherited from the service) */
  env: Record<string, string>;
  /** where programs start: the cage's home */
  cwd: string;
  /** runtime directory inside the cage (XDG_RUNTIME_DIR) */
  runtimeDir: string;
  /** programs may make user namespaces (their own sandboxes); unset: they may. See lib/backends/seccomp.ts */
  nestedSandbox?: boolean;
  /** at most this many tasks (processes and threads) in the cage; unset or 0: no limit */
  tasksMax?: number;
  /** at most this much memory in bytes, where the machine lets kagome hold it; unset or 0: no limit */
  memoryMax?: number;
}

/**
 * What a display or a bridge adds to a cage's sandbox (its `contribute`), computed from the
 * cage's own spec and never written into it: `addContributions` adds them all in one place.
 */
export interface Contribution {
  /** mounts, after the cage's own, in the order given */
  ops?: SetupOp[];
  /**
   * variables for every program of the cage. They replace the cage's own (the cage file's
   * Environment= cannot point DISPLAY elsewhere); a part that means to yield to the cage file
   * leaves out what the cage's spec already has
   */
  env?: Record<string, string>;
}

/**
 * The one place a cage's spec is extended by its parts: every contribution, computed from the
 * cage's own spec, is added in the order given, which is the display's first, then the
 * bridges' in the service's order. Mounts are appended in that order (later mounts cover
 * earlier ones). Two parts setting the same variable is a mistake in kagome, not a choice of
 * the cage: refused, naming both, before anything is added, rather than one silently winning.
 */
export function addContributions(
  spec: SandboxSpec,
  contributions: readonly { from: string; contribution: Contribution }[],
): void {
  const setBy = new Map<string, string>();
  for (const { from, contribution } of contributions) {
    for (const k of Object.keys(contribution.env ?? {})) {
      const earlier = setBy.get(k);
      if (earlier !== undefined)
        throw new KagomeError(
          'Failed',
          `cage "${spec.name}": ${earlier} and ${from} both set ${k}; kagome cannot tell which is meant (a mistake in kagome: please report it)`,
        );
      setBy.set(k, from);
    }
  }
  for (const { contribution } of contributions) {
    spec.ops.push(...(contribution.ops ?? []));
    Object.assign(spec.env, contribution.env ?? {});
  }
}

export interface HostFacts {
  uid: number;
  gid: number;
  user: string;
  /** the user's home path; the cage's private home is mounted at the same path, as flatpak does */
  home: string;
  lang: string | undefined;
}

/** Fixed paths inside every cage; a cage's namespaces are its own, so they never collide. */
export const IN_CAGE = {
  kagomeRun: '/run/kagome',
  xpraDir: '/run/kagome/xpra',
  etc: '/run/kagome/etc',
};

/**
 * The parts of a cage that do not depend on the backend: home, extra mounts, environment.
 * Backends add their root filesystem before these ops.
 */
/** XDG_RUNTIME_DIR inside every cage, where systemd puts it on the host. */
export function cageRuntimeDir(host: Pick<HostFacts, 'uid'>): string {
  return `/run/user/${host.uid}`;
}

export function cageSpec(config: CageConfig, host: HostFacts): SandboxSpec {
  const runtimeDir = cageRuntimeDir(host);
  const ops: SetupOp[] = [
    { op: 'dir', dest: runtimeDir, mode: 0o700 },
    { op: 'bind', source: config.home, dest: host.home },
  ];
  for (const m of config.mounts) {
    ops.push(
      m.writable
        ? { op: 'bind', source: m.source, dest: m.dest }
        : { op: 'ro-bind', source: m.source, dest: m.dest },
    );
  }
  const env: Record<string, string> = {
    PATH: '/usr/local/bin:/usr/bin:/bin',
    HOME: host.home,
    USER: host.user,
    LOGNAME: host.user,
    SHELL: '/bin/sh',
    LANG: host.lang ?? 'C.UTF-8',
    XDG_RUNTIME_DIR: runtimeDir,
    KAGOME_CAGE: config.name,
    // GTK 3's accessibility bridge waits seconds for an accessibility bus in a cage without a
    // session bus, and in one with its own bus starts one (at-spi-bus-launcher and a second
    // dbus-daemon) per cage that no assistive technology of the host can reach: xpra carries
    // no accessibility.
    NO_AT_BRIDGE: '1',
    ...config.environment,
  };
  return {
    name: config.name,
    hostname: `kagome-${config.name}`.slice(0, 63),
    network: config.network,
    ...(config.image ? { image: config.image } : {}),
    ...(config.remote ? { remote: config.remote } : {}),
    ops,
    env,
    cwd: host.home,
    runtimeDir,
    nestedSandbox: config.nestedSandbox,
    tasksMax: config.tasksMax,
    memoryMax: config.memoryMax,
  };
}

/** /etc/passwd and /etc/group for the cage: only the user and nobody, never the host's list. */
export function identityFiles(host: HostFacts): { passwd: string; group: string } {
  const passwd =
    `${host.user}:x:${host.uid}:${host.gid}:${host.user}:${host.home}:/bin/sh\n` +
    (host.uid === 65534 ? '' : 'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n');
  const group = `${host.user}:x:${host.gid}:\n` + (host.gid === 65534 ? '' : 'nogroup:x:65534:\n');
  return { passwd, group };
}
