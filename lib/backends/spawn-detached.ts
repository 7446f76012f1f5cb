import os from 'node:os';
import { spawn } from 'node:child_process';
import { KagomeError } from '../errors.js';
import type { ExecHandle, ExecRequest } from './backend.js';

/**
 * Start the process that carries a program into a cage (nsenter, or an engine's exec client):
 * detached, in its own session, so that it outlives a restarted or killed service; its exit
 * status is the program's.
 */
export async function spawnDetached(
  program: string,
  argv: string[],
  env: Record<string, string | undefined>,
  req: ExecRequest,
  into: string,
): Promise<ExecHandle> {
  const child = spawn(program, argv, {
    detached: true,
    env: env as NodeJS.ProcessEnv,
    stdio: req.pipes ? ['pipe', 'pipe', req.logFd] : ['ignore', req.logFd, req.logFd],
  });
  // Pipes of a program that ends at the wrong moment report ECONNRESET or EPIPE as 'error'
  // events, which must never reach the top of the service.
  for (const stream of [child.stdin, child.stdout, child.stderr])
    stream?.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (e) =>
      reject(new KagomeError('BackendFailed', `could not enter ${into}: ${e.message}`)),
    );
  });
  const exited = new Promise<number>((resolve) =>
    child.once('exit', (code, sig) => resolve(code ?? 128 + (sig ? os.constants.signals[sig] : 0))),
  );
  child.unref();
  if (req.pipes) return { pid: child.pid!, exited, stdin: child.stdin!, stdout: child.stdout! };
  return { pid: child.pid!, exited };
}
