import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { execa } from 'execa';
import { stopChild, track } from './daemons.js';
import { waitFor } from './wait.js';

// The container engines for integration tests, each private to the test run.
//
// podman: its own containers.conf and storage.conf. runc rather than crun (crun refuses this
// kind of machine's cgroup layout) and lowered nofile/nproc limits (root here cannot raise them
// to podman's defaults). The image store lives in a cache folder so the ~800 MB base image is
// imported once per machine, not per run; containers made by a run are removed by its cleanup.
//
// Every podman of a run must open the same store: the helper's (which imports the image, with
// the account's own HOME and no XDG_RUNTIME_DIR), the service's (a World's temporary HOME and
// XDG_RUNTIME_DIR) and `podman system service`'s. Rootless podman derives its whole store from
// those variables unless told otherwise, which is how the image the helper imported was once
// missing for the service; see podmanEnv for the three places it is told.
// docker: the real docker client against `podman system service` on a unix socket in a temp
// folder, the Docker API podman serves: no Docker engine runs here, and the docker code path
// (its client, its options, its error texts) is still exercised for real.

// One per account: rootless podman's store belongs to the user who made it.
export const CACHE =
  process.env.KAGOME_TEST_CACHE ?? `/var/tmp/kagome-test-cache-${os.userInfo().username}`;

export interface Engine {
  /** environment for the service and the engine's client */
  env: Record<string, string>;
  stop(): Promise<void>;
}

/**
 * Where rootless podman keeps what must not outlive a boot (its runroot, with the storage's
 * mount counts, and its tmp_dir, with the pause process that holds its user namespace): a
 * folder of this account's in the temporary folder, as podman's own fallback
 * /tmp/podman-run-UID is, never the per-test XDG_RUNTIME_DIR (removed after each test file).
 */
function podmanRunDir(): string {
  const dir = path.join(os.tmpdir(), `kagome-test-podman-${os.userInfo().username}`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  // A name in a shared folder could have been made by someone else first: never use theirs.
  const st = fs.statSync(dir);
  if (st.uid !== os.userInfo().uid || (st.mode & 0o077) !== 0)
    throw new Error(`${dir} is not this account's own private folder; remove it`);
  return dir;
}

/** podman's configuration for tests; the same files every run, so its storage is reused. */
export function podmanEnv(): Record<string, string> {
  const dir = path.join(CACHE, 'podman');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const conf = path.join(dir, 'containers.conf');
  const storage = path.join(dir, 'storage.conf');
  const run = podmanRunDir();
  fs.writeFileSync(
    conf,
    [
      '[containers]',
      'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]',
      '[engine]',
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      // Else $XDG_RUNTIME_DIR/libpod/tmp: each World's podman would start its own pause process,
      // so its own user and mount namespaces, in which the layers another one mounted are absent.
      `tmp_dir = "${path.join(run, 'tmp')}"`,
      '',
    ].join('\n'),
  );
  fs.writeFileSync(
    storage,
    [
      '[storage]',
      'driver = "overlay"',
      // graphroot and runroot are obeyed by root's podman only; rootless podman (4.3) ignores
      // them and uses rootless_storage_path, else $XDG_DATA_HOME or ~/.local/share: the image
      // went to the account's home while the service, with a World's HOME, looked in an empty
      // store. Its runroot is not configurable at all: see pinPodmanRunroot.
      `graphroot = "${path.join(dir, 'graph')}"`,
      `runroot = "${path.join(run, 'containers')}"`,
      `rootless_storage_path = "${path.join(dir, 'graph')}"`,
      '',
    ].join('\n'),
  );
  return { CONTAINERS_CONF: conf, CONTAINERS_STORAGE_CONF: storage };
}

/**
 * Rootless podman takes its runroot from XDG_RUNTIME_DIR ($XDG_RUNTIME_DIR/containers), except
 * that a store records the runroot of the podman that made it and every later one adopts that
 * ("Overriding run root ... from database"). So the first podman to open the store is given the
 * pinned folder, and the service's podman, with a World's XDG_RUNTIME_DIR, follows. (An explicit
 * --runroot would make podman refuse a store recorded with another one instead of adopting it.)
 *
 * What still follows each client's XDG_RUNTIME_DIR is runc's state of running containers: only
 * a podman with the service's can stop a container the service started. The service stops its
 * own cages, and World.cleanup has it do so, then kills what is left (a container whose init is
 * gone is removed by any podman): what removeKagomeContainers meets of the service's is stopped.
 */
async function pinPodmanRunroot(penv: Record<string, string>): Promise<void> {
  const r = await execa('podman', ['info', '--format', '{{.Store.RunRoot}}'], {
    env: { ...process.env, ...penv, XDG_RUNTIME_DIR: podmanRunDir() },
    reject: false,
  });
  if (r.exitCode !== 0) throw new Error(`podman cannot open the test store: ${r.stderr}`);
}

/** Remove the containers kagome made (label io.kagome.cage), whatever a failed test left. */
export async function removeKagomeContainers(env: Record<string, string>): Promise<void> {
  const all = { ...process.env, ...env };
  const r = await execa('podman', ['ps', '--all', '--quiet', '--filter', 'label=io.kagome.cage'], {
    env: all,
    reject: false,
  });
  const ids = String(r.stdout).split('\n').filter(Boolean);
  if (ids.length)
    await execa('podman', ['rm', '--force', '--time', '0', ...ids], { env: all, reject: false });
}

export async function startPodman(): Promise<Engine> {
  const env = podmanEnv();
  await pinPodmanRunroot(env);
  return { env, stop: () => removeKagomeContainers(env) };
}

/** podman's Docker-compatible API on a private socket, for the docker client. */
export async function startDockerApi(): Promise<Engine & { podmanEnv: Record<string, string> }> {
  const penv = podmanEnv();
  await pinPodmanRunroot(penv);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-docker-'));
  const sock = path.join(dir, 'docker.sock');
  const child: ChildProcess = spawn('podman', ['system', 'service', '--time=0', `unix://${sock}`], {
    env: { ...process.env, ...penv },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  track(child, () => fs.rmSync(dir, { recursive: true, force: true }));
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const env = { ...penv, DOCKER_HOST: `unix://${sock}` };
  const answers = async () => {
    if (fs.existsSync(sock)) {
      const r = await execa('docker', ['version', '--format', '{{.Server.Version}}'], {
        env: { ...process.env, ...env },
        reject: false,
      });
      if (r.exitCode === 0) return true;
    }
    if (child.exitCode !== null) throw new Error(`podman system service exited: ${stderr}`);
    return false;
  };
  await waitFor(`podman's Docker API to answer on ${sock}`, answers, {
    timeoutMs: 20000,
    pollMs: 50,
    detail: () => stderr,
  });
  return {
    env,
    podmanEnv: penv,
    stop: async () => {
      await removeKagomeContainers(penv);
      await stopChild(child);
      await killOrphanConmons(penv);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * podman 4.3's Docker API leaves the conmon of each `docker exec` session running after its
 * container is removed (`podman exec` does not: tested in containers.test.ts). That is the
 * stand-in engine's bug, not kagome's (a real Docker engine has no conmon), but a test run must
 * leave nothing behind: conmons of this storage whose container no longer exists are killed.
 */
async function killOrphanConmons(penv: Record<string, string>): Promise<void> {
  const graph = path.join(CACHE, 'podman', 'graph');
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let args: string[];
    try {
      args = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (path.basename(args[0] ?? '') !== 'conmon' || !args.some((a) => a.startsWith(graph)))
      continue;
    const id = args[args.indexOf('-c') + 1];
    const exists = await execa('podman', ['container', 'exists', id ?? ''], {
      env: { ...process.env, ...penv },
      reject: false,
    });
    if (exists.exitCode !== 0) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}
