import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { execa } from 'execa';
import { stopChild, track } from './daemons.js';

// The container engines for integration tests, each private to the test run.
//
// podman: its own containers.conf and storage.conf. runc rather than crun (crun refuses this
// kind of machine's cgroup layout) and lowered nofile/nproc limits (root here cannot raise them
// to podman's defaults). The image store lives in a cache folder so the ~800 MB base image is
// imported once per machine, not per run; containers made by a run are removed by its cleanup.
// docker: the real docker client against `podman system service` on a unix socket in a temp
// folder, the Docker API podman serves: no Docker engine runs here, and the docker code path
// (its client, its options, its error texts) is still exercised for real.

// One per account: rootless podman's store belongs to the user who made it.
export const CACHE = process.env.KAGOME_TEST_CACHE ?? `/var/tmp/kagome-test-cache-${os.userInfo().username}`;

export interface Engine {
  /** environment for the service and the engine's client */
  env: Record<string, string>;
  stop(): Promise<void>;
}

/** podman's configuration for tests; the same files every run, so its storage is reused. */
export function podmanEnv(): Record<string, string> {
  const dir = path.join(CACHE, 'podman');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const conf = path.join(dir, 'containers.conf');
  const storage = path.join(dir, 'storage.conf');
  fs.writeFileSync(
    conf,
    [
      '[containers]',
      'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]',
      '[engine]',
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      '',
    ].join('\n'),
  );
  fs.writeFileSync(storage, ['[storage]', 'driver = "overlay"', `graphroot = "${path.join(dir, 'graph')}"`, `runroot = "${path.join(dir, 'run')}"`, ''].join('\n'));
  return { CONTAINERS_CONF: conf, CONTAINERS_STORAGE_CONF: storage };
}

/** Remove the containers kagome made (label io.kagome.cage), whatever a failed test left. */
export async function removeKagomeContainers(env: Record<string, string>): Promise<void> {
  const all = { ...process.env, ...env };
  const r = await execa('podman', ['ps', '--all', '--quiet', '--filter', 'label=io.kagome.cage'], { env: all, reject: false });
  const ids = String(r.stdout).split('\n').filter(Boolean);
  if (ids.length) await execa('podman', ['rm', '--force', '--time', '0', ...ids], { env: all, reject: false });
}

export async function startPodman(): Promise<Engine> {
  const env = podmanEnv();
  return { env, stop: () => removeKagomeContainers(env) };
}

/** podman's Docker-compatible API on a private socket, for the docker client. */
export async function startDockerApi(): Promise<Engine & { podmanEnv: Record<string, string> }> {
  const penv = podmanEnv();
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
  const deadline = Date.now() + 20000;
  for (;;) {
    if (fs.existsSync(sock)) {
      const r = await execa('docker', ['version', '--format', '{{.Server.Version}}'], { env: { ...process.env, ...env }, reject: false });
      if (r.exitCode === 0) break;
    }
    if (child.exitCode !== null) throw new Error(`podman system service exited: ${stderr}`);
    if (Date.now() > deadline) throw new Error(`podman's Docker API did not answer on ${sock} in 20 s: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
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
    if (path.basename(args[0] ?? '') !== 'conmon' || !args.some((a) => a.startsWith(graph))) continue;
    const id = args[args.indexOf('-c') + 1];
    const exists = await execa('podman', ['container', 'exists', id ?? ''], { env: { ...process.env, ...penv }, reject: false });
    if (exists.exitCode !== 0) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}
