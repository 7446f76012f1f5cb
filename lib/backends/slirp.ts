import { spawn } from 'node:child_process';
import { KagomeError } from '../errors.js';
import { requireProgram } from '../requirements.js';
import { procRef, type ProcRef } from '../runtime/proc.js';

/**
 * Give a cage's own network namespace a network through slirp4netns (user-mode TCP/IP, the
 * same as rootless podman). --disable-host-loopback keeps the host's 127.0.0.1 (where an X
 * server or a session bus may listen on TCP) out of reach through the gateway address.
 */
export async function startSlirp(targetPid: number, logFd: number): Promise<ProcRef> {
  const slirp = requireProgram('slirp4netns', 'for cages with Network=full');
  const child = spawn(
    slirp,
    ['--configure', '--mtu=65520', '--disable-host-loopback', '--ready-fd=3', String(targetPid), 'tap0'],
    { detached: true, stdio: ['ignore', logFd, logFd, 'pipe'] },
  );
  await new Promise<void>((resolve, reject) => {
    const ready = child.stdio[3] as NodeJS.ReadableStream;
    ready.once('data', () => resolve());
    child.once('error', (e) => reject(new KagomeError('BackendFailed', `could not start slirp4netns: ${e.message}`)));
    child.once('exit', (code) => reject(new KagomeError('BackendFailed', `slirp4netns exited (${code}) before the cage's network was up; see the cage log`)));
  });
  (child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy();
  child.removeAllListeners('exit');
  child.unref();
  return procRef(child.pid!);
}
