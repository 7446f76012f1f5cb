// A headless X server per test file, for tests that need real windows.

import type { Readable } from 'node:stream';
import { readFirstLine, spawnDaemon, stopChild, tail, track, unrefDaemon } from './daemons.js';

export interface XvfbOptions {
  width?: number;
  height?: number;
  /** the resolution the server reports (Xvfb's own default is 100) */
  dpi?: number;
  /**
   * keep the server's state when its last client leaves, as a desktop's server does while its
   * session runs: root properties set by a test (RESOURCE_MANAGER) and RandR modes stay
   */
  noreset?: boolean;
  /** this display (":N") instead of a free one: a server that comes back where another ended, as at the next login */
  display?: string;
}

export interface Xvfb {
  /** e.g. ":3", ready for DISPLAY. */
  display: string;
  pid: number;
  /** Kills the server and waits for it to exit (it removes its own lock and socket). */
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 15_000;

export async function startXvfb(opts: XvfbOptions = {}): Promise<Xvfb> {
  const width = opts.width ?? 1280;
  const height = opts.height ?? 800;
  // -displayfd makes the server pick a free display itself and report it once it is
  // accepting connections: no guessed numbers racing other servers, no polling.
  const child = await spawnDaemon(
    'Xvfb',
    [
      ...(opts.display ? [opts.display] : []),
      '-displayfd',
      '3',
      '-nolisten',
      'tcp',
      '-screen',
      '0',
      `${width}x${height}x24`,
      ...(opts.dpi ? ['-dpi', String(opts.dpi)] : []),
      ...(opts.noreset ? ['-noreset'] : []),
    ],
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] },
    'xvfb',
  );
  track(child);
  const stderr = tail(child.stderr);

  let number: string;
  try {
    number = await readFirstLine(
      'Xvfb',
      child,
      child.stdio[3] as Readable,
      stderr,
      READY_TIMEOUT_MS,
    );
  } catch (err) {
    await stopChild(child);
    throw err;
  }
  if (!/^\d+$/.test(number)) {
    await stopChild(child);
    throw new Error(
      `Xvfb reported an unexpected display number ${JSON.stringify(number)}:\n${stderr()}`,
    );
  }
  unrefDaemon(child);

  let stopped = false;
  return {
    display: ':' + number,
    pid: child.pid ?? -1,
    async stop() {
      if (stopped) return;
      stopped = true;
      await stopChild(child);
    },
  };
}
