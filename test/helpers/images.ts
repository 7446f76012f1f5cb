import fs from 'node:fs';
import path from 'node:path';
import {
  buildRootfs,
  DEFAULT_RECIPE,
  imageExists,
  importImage,
  recipeDigest,
  type ImageEngine,
} from '../../lib/image/build.js';
import { CACHE } from './engines.js';
import { waitFor } from './wait.js';

// The base image for integration tests and benchmarks: the root filesystem tarball of the
// real recipe (packaging/image/debian12.packages) is built once per machine with the same
// code as `kagome image build`, kept in the cache named after the recipe's digest (a changed
// recipe builds anew), and imported into an engine's storage when that engine lacks it.

export const TEST_IMAGE = 'kagome/debian12';

/**
 * The root filesystem tarball of a recipe (default: the image's), built once per machine and
 * named after the recipe's digest. package.test.ts makes a clean root for the Debian package
 * from a recipe of that package's dependencies the same way.
 */
export async function cachedRootfs(recipe = DEFAULT_RECIPE, prefix = 'rootfs'): Promise<string> {
  fs.mkdirSync(CACHE, { recursive: true });
  const tar = path.join(CACHE, `${prefix}-${recipeDigest(recipe)}.tar`);
  if (fs.existsSync(tar)) return tar;
  // One builder at a time: a second process waits for the first one's tarball.
  const lock = `${tar}.lock`;
  const taken = () => {
    try {
      return { fd: fs.openSync(lock, 'wx') };
    } catch {
      return fs.existsSync(tar) ? { built: true } : undefined;
    }
  };
  const got = await waitFor(`the lock ${lock}, or another build's ${tar}`, taken, {
    timeoutMs: 15 * 60_000,
    pollMs: 1000,
    detail: () => `remove ${lock} if no other build runs`,
  });
  const { fd } = got;
  if (fd === undefined) return tar;
  try {
    if (fs.existsSync(tar)) return tar;
    process.stderr.write(
      `building a root filesystem with mmdebstrap into ${tar} (a minute or two, once per machine)\n`,
    );
    const t0 = Date.now();
    await buildRootfs({ out: tar, packagesFile: recipe });
    process.stderr.write(`built in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
    return tar;
  } finally {
    fs.closeSync(fd);
    fs.rmSync(lock, { force: true });
  }
}

export async function ensureTestImage(
  engine: ImageEngine,
  env: Record<string, string>,
): Promise<string> {
  const all = { ...process.env, ...env };
  if (await imageExists(engine, TEST_IMAGE, all)) return TEST_IMAGE;
  const tar = await cachedRootfs();
  process.stderr.write(`importing ${TEST_IMAGE} into ${engine}\n`);
  await importImage({ engine, tar, name: TEST_IMAGE, env: all });
  return TEST_IMAGE;
}
