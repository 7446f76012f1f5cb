// Shared plumbing for helpers that run a background daemon (dbus-daemon, Xvfb) for
// the length of a test file.

import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import type { Readable } from 'node:stream';

const live = new Map<ChildProcess, (() => void) | undefined>();
let hooked = false;

/**
 * Remembers a daemon so it is SIGKILLed if the test process exits without stopping it
 * (an uncaught exception, a forgotten `after`), then `atExit` runs (synchronously:
 * nothing async survives 'exit'). Signals that kill node outright skip 'exit'
 * handlers; nothing in-process can cover those.
 */
export function track(child: ChildProcess, atExit?: () => void): void {
  live.set(child, atExit);
  // Only a stopped daemon is forgotten: one that died by itself still needs atExit.
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const [c, atExit] of live) {
      // kill() is a no-op for a child already reaped, so a reused pid is never hit
      c.kill('SIGKILL');
      try {
        atExit?.();
      } catch {
        // best effort: the process is exiting anyway
      }
    }
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has really exited. */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    live.delete(child);
    return;
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), graceMs);
  });
  if ((await Promise.race([exited, late])) === 'late') {
    child.kill('SIGKILL');
    await exited;
  }
  clearTimeout(timer);
  live.delete(child);
}

/**
 * Reads the first newline-terminated line a daemon writes to a pipe (its
 * --print-address / -displayfd descriptor). Rejects, with whatever the daemon said on
 * stderr, if it exits or times out first, so a broken setup fails with a reason.
 */
export function readFirstLine(
  what: string,
  child: ChildProcess,
  stream: Readable,
  stderrText: () => string,
  timeoutMs: number,
): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const done = (err: Error | null, line?: string): void => {
      clearTimeout(timer);
      stream.off('data', onData);
      child.off('exit', onExit);
      child.off('error', onError);
      if (err) reject(err);
      else resolve(line ?? '');
    };
    const onData = (chunk: Buffer): void => {
      buf += chunk.toString('utf8');
      const nl = buf.indexOf('\n');
      if (nl >= 0) done(null, buf.slice(0, nl).trim());
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      done(
        new Error(
          `${what} exited (code ${code}, signal ${signal}) before it was ready:\n${stderrText()}`,
        ),
      );
    };
    const onError = (err: Error): void => done(err);
    const timer = setTimeout(() => {
      done(new Error(`${what} was not ready after ${timeoutMs} ms:\n${stderrText()}`));
    }, timeoutMs);
    stream.on('data', onData);
    child.once('exit', onExit);
    child.once('error', onError);
  });
}

/** Keeps the last few KiB of a stream so startup failures can be reported. */
export function tail(stream: Readable | null, max = 8192): () => string {
  let text = '';
  stream?.on('data', (chunk: Buffer) => {
    text = (text + chunk.toString('utf8')).slice(-max);
  });
  return () => text;
}

/**
 * Once a daemon is up, stop it from keeping the event loop alive: a test file that
 * forgets to stop it then exits normally (and the 'exit' hook kills it) instead of
 * hanging until the runner's timeout.
 */
export function unrefDaemon(child: ChildProcess): void {
  child.unref();
  for (const s of child.stdio) (s as { unref?: () => void } | null)?.unref?.();
}

/** Spawns a daemon and waits until it runs; a missing binary is named with its Debian package. */
export async function spawnDaemon(
  command: string,
  args: string[],
  options: SpawnOptions,
  debianPackage: string,
): Promise<ChildProcess> {
  const child = spawn(command, args, options);
  try {
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(`${command} is not installed (Debian package: ${debianPackage})`, {
        cause: err,
      });
    }
    throw err;
  }
  return child;
}
