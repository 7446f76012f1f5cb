import fsp from 'node:fs/promises';
import { KagomeError, FileError } from '../errors.js';
import { writableAncestorProblem, type CageConfig } from './config.js';
import type { Backend, SandboxRecord } from '../backends/backend.js';
import type { ArgValue } from '../../xdg/exec.js';

// What is checked before a cage starts or a program is carried into it, so that a mistake is
// named (the file and key, the program, the argument) instead of failing somewhere inside.

/**
 * Every mounted host folder exists, and none lies inside another the cage writes, also through
 * links. `fileOf` names the cage file for the error.
 */
export async function checkMounts(
  config: CageConfig,
  fileOf: (name: string) => string,
): Promise<void> {
  for (const m of config.mounts) {
    try {
      await fsp.stat(m.source);
    } catch {
      throw new FileError(
        'InvalidCageFile',
        { file: fileOf(config.name), key: m.writable ? 'ReadWrite' : 'ReadOnly' },
        `${m.source} does not exist on the host; create it or remove it from the cage file`,
      );
    }
  }
  // The same rule as when the file was read, on the real paths: a link of the person's
  // (~/dl -> /data/dl) must not hide that one folder lies inside another the cage writes.
  const real = async (p: string) => fsp.realpath(p).catch(() => p);
  const mounts = await Promise.all(
    config.mounts.map(async (m) => ({ ...m, source: await real(m.source) })),
  );
  const problem = writableAncestorProblem(mounts, await real(config.home));
  if (problem) {
    throw new FileError(
      'InvalidCageFile',
      { file: fileOf(config.name), key: problem.mount.writable ? 'ReadWrite' : 'ReadOnly' },
      problem.reason,
    );
  }
}

/** A program name is text (it comes from an Exec line or a D-Bus string); only file arguments may be bytes. */
export async function resolveInCage(
  name: string,
  cage: { backend: Backend; sandbox: SandboxRecord },
  program: string,
  searchPath: string,
): Promise<void> {
  if (await cage.backend.resolveProgram(cage.sandbox, program, searchPath)) return;
  throw new KagomeError(
    'NoSuchProgram',
    `"${program}" was not found in cage "${name}" (searched ${program.includes('/') ? 'that path' : searchPath} inside the cage); install it on the host (bubblewrap cages share the host's /usr) or check the name`,
  );
}

/**
 * The cage's terminal emulator: Debian's x-terminal-emulator alternative (every one it names
 * takes `-e PROGRAM ARGS...`), else xterm.
 */
export async function terminalIn(
  name: string,
  cage: { backend: Backend; sandbox: SandboxRecord },
  searchPath: string,
): Promise<string> {
  for (const t of ['x-terminal-emulator', 'xterm'])
    if (await cage.backend.resolveProgram(cage.sandbox, t, searchPath)) return t;
  throw new KagomeError(
    'NoSuchProgram',
    `cage "${name}" has no terminal emulator for a terminal program; install xterm (Debian package xterm) or another x-terminal-emulator on the host (bubblewrap cages) or in the image`,
  );
}

export function checkArgv(argv: unknown): asserts argv is ArgValue[] {
  if (!Array.isArray(argv) || argv.length === 0) {
    throw new KagomeError(
      'InvalidArgument',
      'the command is empty: give the program to run and its arguments',
    );
  }
  for (const a of argv) {
    if (typeof a !== 'string' && !Buffer.isBuffer(a))
      throw new KagomeError('InvalidArgument', 'every command argument must be a string');
    if (typeof a === 'string' ? a.includes('\0') : a.includes(0))
      throw new KagomeError(
        'InvalidArgument',
        'a command argument contains a NUL byte, which no program can receive',
      );
  }
  if (typeof argv[0] !== 'string' || argv[0] === '')
    throw new KagomeError('InvalidArgument', 'the program name is empty');
}
