import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { KagomeError } from '../errors.js';
import { requireProgram } from '../requirements.js';
import { MmdebstrapProgress, type BuildProgress } from './progress.js';

// The base image of container cages, made from Debian's own packages: mmdebstrap writes the
// root filesystem as a tarball (no registry is needed, and none may be reachable), then the
// engine imports it: `podman import`, `docker import`, or `lxc image import` with LXD's
// metadata. mmdebstrap rather than debootstrap: it writes the tarball itself, runs without
// root (unshare mode), and installs with apt in one pass (~40 s for the recipe here).

export type ImageEngine = 'podman' | 'docker' | 'lxd';
export const IMAGE_ENGINES: readonly ImageEngine[] = ['podman', 'docker', 'lxd'];
export const DEFAULT_SUITE = 'bookworm';
export const DEFAULT_MIRROR = 'http://deb.debian.org/debian';
export const DEFAULT_RECIPE = path.resolve(
  fileURLToPath(new URL('../../../packaging/image/debian12.packages', import.meta.url)),
);

type Env = Record<string, string | undefined>;

/** The recipe's packages: one per line, '#' comments and blank lines ignored. */
export function readPackages(file = DEFAULT_RECIPE): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new KagomeError(
      'NoSuchFile',
      `the image recipe ${file} cannot be read (${(e as Error).message}); give a file with one Debian package per line`,
    );
  }
  const pkgs = text
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter(Boolean);
  const bad = pkgs.find((p) => !/^[a-z0-9][a-z0-9+.-]+$/.test(p));
  if (bad)
    throw new KagomeError(
      'InvalidArgument',
      `${file}: ${JSON.stringify(bad)} is not a Debian package name`,
    );
  return pkgs;
}

/** A short hash of what the image is made of, so caches know when to rebuild. */
export function recipeDigest(file = DEFAULT_RECIPE, suite = DEFAULT_SUITE): string {
  return createHash('sha256')
    .update(JSON.stringify({ suite, packages: readPackages(file), variant: 'apt' }))
    .digest('hex')
    .slice(0, 12);
}

export function mmdebstrapArgs(opts: {
  out: string;
  packages: string[];
  suite: string;
  mirror: string;
  rootless: boolean;
}): string[] {
  return [
    '--verbose',
    '--variant=apt',
    ...(opts.rootless ? ['--mode=unshare'] : []),
    `--include=${opts.packages.join(',')}`,
    opts.suite,
    opts.out,
    opts.mirror,
  ];
}

export interface RootfsOptions {
  out: string;
  packagesFile?: string;
  suite?: string;
  mirror?: string;
  env?: Env;
  onProgress?: (p: BuildProgress) => void;
  signal?: AbortSignal;
}

/** Build the root filesystem tarball. Partial output is removed on failure or abort. */
export async function buildRootfs(opts: RootfsOptions): Promise<void> {
  const mmdebstrap = requireProgram('mmdebstrap', 'to build the base image of container cages');
  const packages = readPackages(opts.packagesFile);
  // mmdebstrap picks its output format by the name's extension: the partial file keeps .tar.
  const tmp = path.join(
    path.dirname(opts.out),
    `.${path.basename(opts.out, '.tar')}.${process.pid}.part.tar`,
  );
  const args = mmdebstrapArgs({
    out: tmp,
    packages,
    suite: opts.suite ?? DEFAULT_SUITE,
    mirror: opts.mirror ?? DEFAULT_MIRROR,
    rootless: process.getuid?.() !== 0,
  });
  const progress = new MmdebstrapProgress();
  const last: string[] = [];
  const child = execa(mmdebstrap, args, {
    env: opts.env ?? process.env,
    extendEnv: false,
    reject: false,
    all: true,
    stdin: 'ignore',
    ...(opts.signal ? { cancelSignal: opts.signal } : {}),
  });
  let buf = '';
  child.all!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      last.push(line);
      if (last.length > 12) last.shift();
      const p = progress.line(line);
      if (p) opts.onProgress?.(p);
    }
  });
  const r = await child;
  if (r.exitCode === 0 && !r.isCanceled) {
    await fsp.rename(tmp, opts.out);
    return;
  }
  await fsp.rm(tmp, { force: true, recursive: true });
  if (r.isCanceled)
    throw new KagomeError('Failed', 'the image build was interrupted; nothing was kept');
  const tail = last.join('\n');
  const why =
    /Could not resolve|Temporary failure resolving|Failed to fetch|Connection failed|Unable to connect/i.test(
      tail,
    )
      ? `the package mirror ${opts.mirror ?? DEFAULT_MIRROR} cannot be reached; check the network or give --mirror`
      : /Unable to locate package|has no installation candidate/i.test(tail)
        ? 'a package of the recipe does not exist in that suite; check the recipe'
        : 'see its last lines below';
  throw new KagomeError(
    'Failed',
    `mmdebstrap failed (exit ${r.exitCode}) while ${progressPhase(last)}: ${why}\n${tail}`,
  );
}

function progressPhase(lines: readonly string[]): string {
  const p = new MmdebstrapProgress();
  let phase = 'starting';
  for (const l of lines) phase = p.line(l)?.phase ?? phase;
  return phase;
}

const ENGINE_PROGRAM: Record<ImageEngine, string> = {
  podman: 'podman',
  docker: 'docker',
  lxd: 'lxc',
};

/** LXD's architecture names for `uname -m`. */
export function lxdArchitecture(machine = os.machine()): string {
  return (
    {
      x86_64: 'x86_64',
      aarch64: 'aarch64',
      armv7l: 'armv7l',
      ppc64le: 'ppc64le',
      s390x: 's390x',
      riscv64: 'riscv64',
    }[machine] ?? machine
  );
}

export function lxdMetadata(suite: string, now = new Date()): string {
  return [
    `architecture: ${lxdArchitecture()}`,
    `creation_date: ${Math.floor(now.getTime() / 1000)}`,
    'properties:',
    `  description: kagome cage base (Debian ${suite})`,
    '  os: debian',
    `  release: ${suite}`,
    '',
  ].join('\n');
}

async function engineCmd(
  engine: ImageEngine,
  args: string[],
  env: Env,
): Promise<{ ok: boolean; text: string }> {
  const program = requireProgram(ENGINE_PROGRAM[engine], `to import the image into ${engine}`);
  const r = await execa(program, args, {
    env,
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    all: true,
  });
  return { ok: r.exitCode === 0, text: String(r.all ?? '').trim() };
}

export async function imageExists(
  engine: ImageEngine,
  name: string,
  env: Env = process.env,
  remote?: string,
): Promise<boolean> {
  if (engine === 'lxd')
    return (await engineCmd(engine, ['image', 'info', `${remote ? `${remote}:` : ''}${name}`], env))
      .ok;
  return (await engineCmd(engine, ['image', 'inspect', name], env)).ok;
}

export interface ImportOptions {
  engine: ImageEngine;
  tar: string;
  name: string;
  suite?: string;
  remote?: string;
  env?: Env;
}

/** Import a root filesystem tarball as the engine's image `name`, replacing an older one. */
export async function importImage(opts: ImportOptions): Promise<void> {
  const env = opts.env ?? process.env;
  if (opts.engine !== 'lxd') {
    const r = await engineCmd(opts.engine, ['import', opts.tar, opts.name], env);
    if (!r.ok)
      throw new KagomeError(
        'Failed',
        `${opts.engine} import of ${opts.tar} as ${opts.name} failed: ${r.text}`,
      );
    return;
  }
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'kagome-image-'));
  try {
    await fsp.writeFile(path.join(dir, 'metadata.yaml'), lxdMetadata(opts.suite ?? DEFAULT_SUITE));
    const meta = path.join(dir, 'metadata.tar');
    await execa('tar', ['-C', dir, '-cf', meta, 'metadata.yaml']);
    const target = opts.remote ? `${opts.remote}:` : '';
    // An alias names one image: the old one is dropped (its containers keep their copy).
    if (await imageExists('lxd', opts.name, env, opts.remote))
      await engineCmd('lxd', ['image', 'delete', `${target}${opts.name}`], env);
    const r = await engineCmd(
      'lxd',
      ['image', 'import', meta, opts.tar, ...(target ? [target] : []), '--alias', opts.name],
      env,
    );
    if (!r.ok)
      throw new KagomeError(
        'Failed',
        `lxc image import of ${opts.tar} as ${opts.name} failed: ${r.text}`,
      );
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/** The engine to build for when none is named: the first one installed. */
export function defaultEngine(envPath = process.env.PATH): ImageEngine | undefined {
  for (const e of IMAGE_ENGINES) {
    for (const d of (envPath ?? '').split(':'))
      if (d && fs.existsSync(path.join(d, ENGINE_PROGRAM[e]))) return e;
  }
  return undefined;
}
