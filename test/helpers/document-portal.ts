import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { execa } from 'execa';
import { spawnDaemon, stopChild, tail, track, unrefDaemon } from './daemons.js';
import { waitFor } from './wait.js';

// The real document portal for a test world: xdg-permission-store and xdg-document-portal
// (Debian package xdg-desktop-portal) on the world's private bus, mounted on FUSE at
// $XDG_RUNTIME_DIR/doc. A private bus has no activatable services, so both are started here,
// and stopped with their mount undone: a stale FUSE mount would make the temp folder
// impossible to remove.

const LIBEXEC = '/usr/libexec';

export interface DocumentPortal {
  mountPoint: string;
  log(): string;
  stop(): Promise<void>;
}

export function isMounted(mountPoint: string): boolean {
  const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  return mounts.split('\n').some((l) => l.split(' ')[4] === mountPoint);
}

export async function startDocumentPortal(env: Record<string, string>): Promise<DocumentPortal> {
  const mountPoint = path.join(env.XDG_RUNTIME_DIR!, 'doc');
  const opts = { env, stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'] };
  const store = await spawnDaemon(
    path.join(LIBEXEC, 'xdg-permission-store'),
    ['--replace'],
    opts,
    'xdg-desktop-portal',
  );
  track(store);
  let portal: ChildProcess;
  try {
    portal = await spawnDaemon(
      path.join(LIBEXEC, 'xdg-document-portal'),
      ['--replace'],
      opts,
      'xdg-desktop-portal',
    );
  } catch (e) {
    await stopChild(store);
    throw e;
  }
  track(portal, () => {
    if (isMounted(mountPoint))
      execFileSync('fusermount3', ['-u', '-z', mountPoint], { stdio: 'ignore' });
  });
  const logs = [tail(store.stderr), tail(portal.stderr)];
  const log = () => logs.map((l) => l()).join('\n');
  const stop = async () => {
    await stopChild(portal);
    if (isMounted(mountPoint))
      await execa('fusermount3', ['-u', '-z', mountPoint], { reject: false });
    await stopChild(store);
  };
  try {
    const mounted = () => {
      if (portal.exitCode !== null)
        throw new Error(`xdg-document-portal exited (${portal.exitCode})`);
      return isMounted(mountPoint);
    };
    await waitFor(`xdg-document-portal to mount ${mountPoint}`, mounted, {
      timeoutMs: 10_000,
      pollMs: 20,
    });
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}:\n${log()}`);
  }
  unrefDaemon(store);
  unrefDaemon(portal);
  return { mountPoint, log, stop };
}
