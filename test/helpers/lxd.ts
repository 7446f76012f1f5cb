import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { execa } from 'execa';
import { stopChild, track } from './daemons.js';
import type { Engine } from './engines.js';

// A private LXD daemon for a test file: its own LXD_DIR in a temp folder, started as
// `lxd --group root`, initialised with a preseed: a `dir` storage pool and no network bridge
// (LXD's automatic subnet finding fails on this kind of machine, and cages with Network=none
// need none). Stopped with `lxd shutdown`, which stops its containers, then its folder goes,
// after anything LXD left mounted there is unmounted.

const PRESEED = `config: {}
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

export async function startLxd(): Promise<Engine> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-lxd-'));
  const env = { LXD_DIR: dir };
  const all = { ...process.env, ...env };
  const log = path.join(dir, 'lxd.log');
  const child = spawn('lxd', ['--group', 'root', '--logfile', log], { env: all, stdio: ['ignore', 'ignore', 'pipe'] });
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
    throw new Error(`lxd did not become ready: ${ready.stderr}\n${stderr}\n${fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : ''}`);
  }
  const init = await execa('lxd', ['init', '--preseed'], { env: all, input: PRESEED, reject: false });
  if (init.exitCode !== 0) {
    await stopChild(child);
    throw new Error(`lxd init --preseed failed: ${init.stderr}`);
  }
  return {
    env,
    stop: async () => {
      await execa('lxd', ['shutdown', '--timeout', '30'], { env: all, reject: false });
      await stopChild(child, 10000);
      for (const m of mountsUnder(dir)) await execa('umount', ['-l', m], { reject: false });
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
