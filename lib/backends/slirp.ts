import { spawn } from 'node:child_process';
import { execa } from 'execa';
import { KagomeError } from '../errors.js';
import { requireProgram } from '../requirements.js';
import { procRef, type ProcRef } from '../runtime/proc.js';
import { enterHelper } from './enter-helper.js';

/**
 * Give a cage's own network namespace a network through slirp4netns (user-mode TCP/IP, the
 * same as rootless podman). --disable-host-loopback keeps the host's 127.0.0.1 (where an X
 * server or a session bus may listen on TCP) out of reach through the gateway address.
 *
 * It runs in the cage's outer user namespace (kagome-enter --outer-userns), the one that owns
 * the cage's network namespace: given only the pid, slirp4netns would join /proc/PID/ns/user,
 * which for an ordinary user is bwrap's inner namespace as soon as bwrap has made it, and
 * then fail to attach (seen 2 starts in 8 before this).
 */
const READY_TIMEOUT_MS = 15000;

export async function startSlirp(init: ProcRef, logFd: number): Promise<ProcRef> {
  // While bwrap makes the inner user namespace, the kernel marks it non-dumpable for a moment,
  // and opening its /proc/PID/ns files fails with EACCES: slirp4netns then exits at once,
  // having changed nothing. Such an early exit is tried again, a few times.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startSlirpOnce(init, logFd);
    } catch (e) {
      if (!(e instanceof EarlyExit)) throw e;
      if (attempt >= 8) throw e.error;
      await new Promise((r) => setTimeout(r, 25 * attempt));
    }
  }
}

class EarlyExit extends Error {
  constructor(readonly error: KagomeError) {
    super(error.message);
  }
}

async function startSlirpOnce(init: ProcRef, logFd: number): Promise<ProcRef> {
  const slirp = requireProgram('slirp4netns', 'for cages with Network=full or internet');
  const child = spawn(
    enterHelper(),
    [
      '--outer-userns',
      String(init.pid),
      init.start,
      '--',
      slirp,
      '--configure',
      '--mtu=65520',
      '--disable-host-loopback',
      '--ready-fd=3',
      '--netns-type=path',
      `/proc/${init.pid}/ns/net`,
      'tap0',
    ],
    { detached: true, stdio: ['ignore', logFd, logFd, 'pipe'] },
  );
  for (const stream of child.stdio) stream?.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      const ready = child.stdio[3] as NodeJS.ReadableStream;
      ready.once('data', () => resolve());
      child.once('error', (e) =>
        reject(new KagomeError('BackendFailed', `could not start slirp4netns: ${e.message}`)),
      );
      child.once('exit', (code) =>
        reject(
          new EarlyExit(
            new KagomeError(
              'BackendFailed',
              `slirp4netns exited (${code}) before the cage's network was up; see the cage log`,
            ),
          ),
        ),
      );
      // A slirp4netns that never says ready held its cage in "starting" for ten minutes, and
      // every Stop and launch of it waited behind.
      timer = setTimeout(
        () =>
          reject(
            new KagomeError(
              'BackendFailed',
              `slirp4netns did not bring the cage's network up within ${READY_TIMEOUT_MS / 1000} s; see the cage log`,
            ),
          ),
        READY_TIMEOUT_MS,
      );
    });
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  } finally {
    clearTimeout(timer);
  }
  (child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy();
  child.removeAllListeners('exit');
  child.unref();
  return procRef(child.pid!);
}

const NFT_TIMEOUT_MS = 15000;

/**
 * Install a ruleset (net-policy.ts) in the cage's network namespace with nft, run in the
 * cage's outer user namespace, which owns that namespace and in which the cage's programs have
 * no capability. Called before bwrap is let go on, so no program of the cage has run yet.
 */
export async function installRuleset(init: ProcRef, ruleset: string, cage: string): Promise<void> {
  const nft = requireProgram('nft', 'for cages with Network=internet', { sbin: true });
  for (let attempt = 1; ; attempt++) {
    const r = await execa(
      enterHelper(),
      ['--outer-userns', '--net', String(init.pid), init.start, '--', nft, '-f', '-'],
      {
        input: ruleset,
        reject: false,
        timeout: NFT_TIMEOUT_MS,
        env: { LANG: 'C.UTF-8', PATH: process.env.PATH ?? '/usr/bin:/bin' },
        extendEnv: false,
      },
    );
    if (r.exitCode === 0) return;
    // kagome-enter's own refusal (125) with EACCES: the moment when bwrap makes the inner user
    // namespace, as for slirp4netns above. Nothing was changed; try again.
    if (r.exitCode === 125 && /Permission denied/.test(r.stderr) && attempt < 8) {
      await new Promise((resolve) => setTimeout(resolve, 25 * attempt));
      continue;
    }
    const stderr = r.stderr.trim() || '(nothing on stderr)';
    const said = r.timedOut
      ? `nft did not finish within ${NFT_TIMEOUT_MS / 1000} s`
      : r.exitCode === 125
        ? `could not enter the cage's network namespace: ${stderr}`
        : `nft failed (${r.exitCode ?? r.signal}): ${stderr}`;
    throw new KagomeError(
      'BackendFailed',
      `could not install the Network=internet rules of cage "${cage}", so it was not started: ${said}`,
    );
  }
}
