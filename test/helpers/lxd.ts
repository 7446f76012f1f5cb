import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { execFileSync, spawn } from 'node:child_process';
import { execa } from 'execa';
import { stopChild, track } from './daemons.js';
import type { Engine } from './engines.js';

// The LXD daemons of a test run. Tests run as an ordinary user, and LXD has no rootless mode, so
// test/as-user starts them as root and passes their folders in (KAGOME_TEST_LXD_DIR,
// KAGOME_TEST_LXD_FAR); the user reaches them through their group, as through `lxd` on a desktop.
// Started as root without those (by hand), a file gets a private daemon of its own: its own
// LXD_DIR in a temp folder, started as `lxd --group root`, initialised with a preseed: a `dir`
// storage pool and no network bridge (LXD's automatic subnet finding fails on this kind of
// machine, and cages with Network=none need none). Stopped with `lxd shutdown`, which stops its
// containers, then its folder goes, after anything LXD left mounted there is unmounted.

const preseed = (config: string) => `config: ${config}
storage_pools:
- name: default
  driver: dir
profiles:
- name: default
  devices:
    root:
      path: /
      pool: default
      type: disk
`;

function mountsUnder(dir: string): string[] {
  return fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .map((m) => m.replace(/\\040/g, ' '))
    .filter((m) => m === dir || m.startsWith(dir + '/'))
    .sort((a, b) => b.length - a.length);
}

/**
 * The LXD daemons test/as-user started as root for a run as an ordinary user (LXD has no
 * rootless mode): shared by the test files, so each one removes the containers it made and
 * keeps the daemon and its images.
 */
function sharedLxd(dir: string): Engine & { dir: string } {
  const env = { LXD_DIR: dir };
  return {
    env,
    dir,
    stop: async () => {
      const all = { ...process.env, ...env };
      const list = await execa('lxc', ['list', '--format', 'csv', '--columns', 'n'], {
        env: all,
        reject: false,
      });
      for (const name of String(list.stdout)
        .split('\n')
        .filter((n) => n.startsWith('kagome-'))) {
        await execa('lxc', ['delete', '--force', name], { env: all, reject: false });
      }
    },
  };
}

export async function startLxd(
  opts: { https?: { address: string; password: string } } = {},
): Promise<Engine & { dir: string }> {
  const shared = opts.https ? process.env.KAGOME_TEST_LXD_FAR : process.env.KAGOME_TEST_LXD_DIR;
  if (shared) return sharedLxd(shared);
  // A user's own LXD (the system one) is never used: stop() deletes every kagome-* container.
  if (process.getuid?.() !== 0)
    throw new Error(
      'the LXD tests need the LXD daemons test/as-user starts: start the tests as root through test/as-user (they then run as the user kagome-test), or point KAGOME_TEST_LXD_DIR (and KAGOME_TEST_LXD_FAR, _FAR_ADDRESS, _FAR_PASSWORD) at LXD daemons of your own',
    );
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-lxd-'));
  const env = { LXD_DIR: dir };
  const all = { ...process.env, ...env };
  const log = path.join(dir, 'lxd.log');
  const child = spawn('lxd', ['--group', 'root', '--logfile', log], {
    env: all,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const cleanupSync = () => {
    for (const m of mountsUnder(dir)) {
      try {
        execFileSync('umount', ['-l', m]);
      } catch {
        /* best effort at exit */
      }
    }
  };
  track(child, cleanupSync);
  const ready = await execa('lxd', ['waitready', '--timeout', '60'], { env: all, reject: false });
  if (ready.exitCode !== 0) {
    await stopChild(child);
    throw new Error(
      `lxd did not become ready: ${ready.stderr}\n${stderr}\n${fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : ''}`,
    );
  }
  const config = opts.https
    ? `\n  core.https_address: ${opts.https.address}\n  core.trust_password: ${opts.https.password}`
    : '{}';
  const init = await execa('lxd', ['init', '--preseed'], {
    env: all,
    input: preseed(config),
    reject: false,
  });
  if (init.exitCode !== 0) {
    await stopChild(child);
    throw new Error(`lxd init --preseed failed: ${init.stderr}`);
  }
  return {
    env,
    dir,
    stop: async () => {
      await execa('lxd', ['shutdown', '--timeout', '30'], { env: all, reject: false });
      await stopChild(child, 10000);
      for (const m of mountsUnder(dir)) await execa('umount', ['-l', m], { reject: false });
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * "Another machine": a second LXD daemon serving its API over HTTPS on loopback, added as the
 * remote `far` to a private lxc client configuration (LXD_CONF) by trust password, as a user
 * adds a real remote. The service gets only LXD_CONF: it reaches that LXD as it would reach one
 * across the network, never through its local socket. `prepare` runs against the remote
 * daemon's own socket (to import the image) before the service starts.
 */
export async function startLxdRemote(
  prepare: (localEnv: Record<string, string>) => Promise<unknown>,
): Promise<Engine> {
  const address = process.env.KAGOME_TEST_LXD_FAR_ADDRESS ?? `127.0.0.1:${await freePort()}`;
  const password = process.env.KAGOME_TEST_LXD_FAR_PASSWORD ?? `kagome-test-${process.pid}`;
  const daemon = await startLxd({ https: { address, password } });
  const conf = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-lxc-conf-'));
  try {
    await prepare(daemon.env);
    const add = await execa(
      'lxc',
      [
        'remote',
        'add',
        'far',
        `https://${address}`,
        '--accept-certificate',
        '--password',
        password,
      ],
      {
        env: { ...process.env, LXD_CONF: conf, LXD_DIR: path.join(conf, 'no-local-lxd') },
        reject: false,
      },
    );
    if (add.exitCode !== 0) throw new Error(`lxc remote add failed: ${add.stderr}`);
  } catch (e) {
    await daemon.stop();
    fs.rmSync(conf, { recursive: true, force: true });
    throw e;
  }
  return {
    env: { LXD_CONF: conf, LXD_DIR: path.join(conf, 'no-local-lxd') },
    stop: async () => {
      await daemon.stop();
      fs.rmSync(conf, { recursive: true, force: true });
    },
  };
}
