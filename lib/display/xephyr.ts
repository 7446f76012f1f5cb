import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { KagomeError } from '../errors.js';
import { requireProgram } from '../requirements.js';
import { isAlive, procRef, signal, waitUntil, type ProcRef } from '../runtime/proc.js';
import type { Backend, SandboxRecord } from '../backends/backend.js';
import type { CageDisplay, DisplayContext, DisplayRecord } from './display.js';
import { newCookie, xauthorityEntry } from './xauth.js';

// Xephyr: a nested X server in one host window, for cages that want a whole desktop-like
// screen rather than seamless windows, and the fastest start (~0.1 s). It runs on the host
// (it draws into the host display); the cage gets only its socket, bound to /tmp/.X11-unix/X0
// inside, and a cookie. The display number is chosen by the X server itself through
// -displayfd, which is race-free, instead of being guessed.
//
// The Xephyr server must exist before the sandbox, since its socket is mounted into it, so
// here the two start one after the other; Xephyr is ready in about a tenth of a second.

export interface XephyrRecord extends DisplayRecord {
  server: ProcRef;
  number: number;
  authFile: string;
}

const START_TIMEOUT_MS = 10000;

export class XephyrDisplay implements CageDisplay {
  readonly kind = 'xephyr';

  checkHost(): void {
    requireProgram('Xephyr', 'for cages with Display=xephyr');
  }

  async prepare(ctx: DisplayContext): Promise<XephyrRecord> {
    const xephyr = requireProgram('Xephyr', 'for cages with Display=xephyr');
    const dir = path.join(ctx.rt.dir, 'xephyr');
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const authFile = path.join(dir, 'Xauthority');
    fs.writeFileSync(authFile, xauthorityEntry(newCookie()), { mode: 0o600 });
    const child = spawn(
      xephyr,
      ['-displayfd', '3', '-nolisten', 'tcp', '-auth', authFile, '-title', `${ctx.config.name} (kagome)`, '-screen', '1280x800', '-resizeable', '-br', '-no-host-grab'],
      { detached: true, env: ctx.hostEnv, stdio: ['ignore', ctx.logFd, ctx.logFd, 'pipe'] },
    );
    const number = await new Promise<number>((resolve, reject) => {
      let text = '';
      const timer = setTimeout(() => reject(new KagomeError('DisplayFailed', `Xephyr did not start within ${START_TIMEOUT_MS / 1000} s for cage "${ctx.config.name}"`)), START_TIMEOUT_MS);
      (child.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => {
        text += d.toString();
        if (text.includes('\n')) {
          clearTimeout(timer);
          resolve(Number(text.trim()));
        }
      });
      child.once('error', (e) => reject(new KagomeError('DisplayFailed', `could not start Xephyr: ${e.message}`)));
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new KagomeError('DisplayFailed', `Xephyr exited (${code}) for cage "${ctx.config.name}": is the host DISPLAY (${ctx.hostDisplay || 'unset'}) reachable? See ${path.join(ctx.rt.logDir, 'cage.log')}`));
      });
    });
    (child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy();
    child.removeAllListeners('exit');
    child.unref();
    return { server: procRef(child.pid!), number, authFile };
  }

  contribute(ctx: DisplayContext, record: DisplayRecord): void {
    const r = record as XephyrRecord;
    const auth = path.posix.join(ctx.spec.runtimeDir, 'Xauthority');
    ctx.spec.ops.push({ op: 'bind', source: `/tmp/.X11-unix/X${r.number}`, dest: '/tmp/.X11-unix/X0' });
    ctx.spec.ops.push({ op: 'ro-bind', source: r.authFile, dest: auth });
    ctx.spec.env.DISPLAY = ':0';
    ctx.spec.env.XAUTHORITY = auth;
  }

  async start(_ctx: DisplayContext, _backend: Backend, _sandbox: SandboxRecord, prepared: DisplayRecord): Promise<XephyrRecord> {
    return prepared as XephyrRecord;
  }

  isAlive(record: DisplayRecord): boolean {
    return isAlive((record as XephyrRecord).server);
  }

  async readopt(_ctx: DisplayContext, record: DisplayRecord): Promise<XephyrRecord> {
    return record as XephyrRecord;
  }

  async stop(record: DisplayRecord): Promise<void> {
    const r = record as XephyrRecord;
    signal(r.server, 'SIGTERM');
    await waitUntil(() => !isAlive(r.server), 2000, 20);
    signal(r.server, 'SIGKILL');
  }
}
