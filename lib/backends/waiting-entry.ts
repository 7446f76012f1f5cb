import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import type { Socket } from 'node:net';
import { KagomeError } from '../errors.js';
import type { ExecHandle } from './backend.js';
import { enterHelper } from './enter-helper.js';

/**
 * One kagome-enter per cage that has already joined the cage's cgroups and waits for a launch
 * (`kagome-enter --cgroup FILE... --await`, see kagome-enter.c).
 *
 * Why: writing a process into a cgroup.procs file makes the kernel wait for an RCU grace
 * period (the write side of cgroup_threadgroup_rwsem). That was 12-16 ms of every warm launch
 * into a cage with limits, measured with a cage idle between launches, more than the D-Bus
 * call, the service and entering the namespaces together. A process forked inside the cgroup
 * is in it from the start, so the join is done once, ahead of the launch that needs it.
 *
 * The waiting process is a host process like any kagome-enter before it enters: in the
 * host's namespaces, the person's credentials, the cage's cgroups (so it counts against the
 * cage's task limit, and the cage's memory pressure can end it: then the next launch starts
 * a fresh one, at the old cost). Nothing of it is reachable from the cage. Its input is a
 * pipe from the service; when the service ends, the pipe closes and it exits, so none outlives
 * the service. A launch that needs pipes to the program takes the ordinary path.
 */
export class WaitingEntries {
  private readonly waiting = new Map<string, Waiting>();

  /** Have one waiting for the cage `key`, in the cgroups whose cgroup.procs files are given. */
  prepare(key: string, cgroupProcs: readonly string[]): void {
    if (this.waiting.has(key)) return;
    let child: ChildProcess;
    try {
      child = spawn(enterHelper(), [...cgroupProcs.flatMap((f) => ['--cgroup', f]), '--await'], {
        detached: true,
        env: {},
        stdio: ['pipe', 'ignore', 'ignore'],
      });
    } catch {
      return; // launches take the ordinary path
    }
    if (child.pid === undefined || !child.stdin) return;
    const waiting: Waiting = { child, exited: exitOf(child) };
    // Errors of a pipe whose reader has gone are seen as its exit.
    child.stdin.on('error', () => undefined);
    child.unref();
    (child.stdin as Socket).unref?.();
    this.waiting.set(key, waiting);
    void waiting.exited.then(() => {
      if (this.waiting.get(key) === waiting) this.waiting.delete(key);
    });
  }

  /**
   * Hand a launch to the one waiting for `key`, if there is one; `args` are kagome-enter's
   * arguments for the launch, `env` the program's environment, `logFile` its output.
   */
  launch(
    key: string,
    args: readonly string[],
    env: Readonly<Record<string, string>>,
    logFile: string,
  ): ExecHandle | undefined {
    const waiting = this.waiting.get(key);
    if (!waiting || waiting.child.exitCode !== null || waiting.child.signalCode !== null)
      return undefined;
    this.waiting.delete(key);
    waiting.child.stdin!.end(launchRequest(logFile, env, args));
    return { pid: waiting.child.pid!, exited: waiting.exited };
  }

  /** The cage stops: its waiting entry ends (before its cgroups can be removed). */
  async discard(key: string): Promise<void> {
    const waiting = this.waiting.get(key);
    if (!waiting) return;
    this.waiting.delete(key);
    waiting.child.stdin!.end();
    const killer = setTimeout(() => waiting.child.kill('SIGKILL'), 1000);
    await waiting.exited;
    clearTimeout(killer);
  }
}

interface Waiting {
  child: ChildProcess;
  exited: Promise<number>;
}

function exitOf(child: ChildProcess): Promise<number> {
  return new Promise<number>((resolve) => {
    child.once('exit', (code, sig) => resolve(code ?? 128 + (sig ? os.constants.signals[sig] : 0)));
    child.once('error', () => resolve(125));
  });
}

/** LOG \0 N \0 ENV... ARGS..., every field ending in \0 (kagome-enter.c, --await). */
export function launchRequest(
  logFile: string,
  env: Readonly<Record<string, string>>,
  args: readonly string[],
): Buffer {
  const entries = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const fields = [logFile, String(entries.length), ...entries, ...args];
  for (const f of fields)
    if (f.includes('\0'))
      throw new KagomeError(
        'InvalidArgument',
        `a launch's argument or environment holds a NUL byte, which no program can be given: ${JSON.stringify(f.slice(0, 80))}`,
      );
  return Buffer.concat(fields.map((f) => Buffer.from(`${f}\0`)));
}
