import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MmdebstrapProgress } from '../../lib/image/progress.js';
import {
  lxdMetadata,
  mmdebstrapArgs,
  readPackages,
  recipeDigest,
  DEFAULT_RECIPE,
} from '../../lib/image/build.js';
import { KagomeError } from '../../lib/errors.js';

// The image build's pure parts: progress read from mmdebstrap's real --verbose output
// (recorded from `mmdebstrap --verbose --variant=apt --include=hello bookworm`), the recipe,
// the command line and LXD's metadata.

const FIXTURE = new URL('../../../test/fixtures/mmdebstrap/verbose-hello.txt', import.meta.url);

describe('MmdebstrapProgress', () => {
  const updates = fs
    .readFileSync(FIXTURE, 'utf8')
    .split('\n')
    .reduce<{ p: MmdebstrapProgress; out: NonNullable<ReturnType<MmdebstrapProgress['line']>>[] }>(
      (acc, l) => {
        const u = acc.p.line(l);
        if (u) acc.out.push(u);
        return acc;
      },
      { p: new MmdebstrapProgress(), out: [] },
    ).out;

  it('goes from the start to 1, never backwards', () => {
    const f = updates.map((u) => u.fraction);
    assert.deepEqual(
      f,
      [...f].sort((a, b) => a - b),
    );
    assert.equal(f.at(-1), 1);
    assert.ok(f[0]! < 0.1);
  });

  it('counts downloads and installed packages against the number apt announced', () => {
    assert.ok(
      updates.some((u) => u.phase === 'downloading packages' && u.detail === '45/89 packages'),
    );
    assert.ok(
      updates.some(
        (u) => u.phase === 'installing packages' && /^\d+\/89 packages$/.test(u.detail ?? ''),
      ),
    );
    const steps = new Set(updates.map((u) => Math.round(u.fraction * 100)));
    assert.ok(steps.size > 50, `a smooth bar, not a few jumps (${steps.size} steps)`);
  });

  it('says nothing for lines that change nothing', () => {
    const p = new MmdebstrapProgress();
    assert.equal(p.line('Preparing to unpack .../libc6.deb ...'), undefined);
  });
});

describe('the image recipe', () => {
  it("has the programs a cage needs (xpra and its X server, the bridges' tools)", () => {
    const pkgs = readPackages();
    for (const p of [
      'xpra',
      'xvfb',
      'xauth',
      'xclip',
      'python3-xlib',
      'pulseaudio-utils',
      'x11-apps',
    ])
      assert.ok(pkgs.includes(p), p);
  });

  it('refuses what is not a package name, naming it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-recipe-'));
    const f = path.join(dir, 'r');
    try {
      fs.writeFileSync(f, 'hello # fine\n--force-yes\n');
      assert.throws(
        () => readPackages(f),
        (e: unknown) =>
          e instanceof KagomeError && /"--force-yes" is not a Debian package name/.test(e.message),
      );
      assert.throws(
        () => readPackages(f + '.missing'),
        (e: unknown) => e instanceof KagomeError && e.errorName === 'NoSuchFile',
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('has a digest that changes with the recipe and the suite', () => {
    assert.match(recipeDigest(), /^[0-9a-f]{12}$/);
    assert.notEqual(
      recipeDigest(DEFAULT_RECIPE, 'bookworm'),
      recipeDigest(DEFAULT_RECIPE, 'trixie'),
    );
  });

  it('runs mmdebstrap verbose (for progress), unshared when not root, writing a tarball', () => {
    const a = mmdebstrapArgs({
      out: '/x/r.tar',
      packages: ['xpra', 'xvfb'],
      suite: 'bookworm',
      mirror: 'http://m/debian',
      rootless: true,
    });
    assert.deepEqual(a, [
      '--verbose',
      '--variant=apt',
      '--mode=unshare',
      '--include=xpra,xvfb',
      'bookworm',
      '/x/r.tar',
      'http://m/debian',
    ]);
  });

  it('gives LXD the metadata it needs', () => {
    const m = lxdMetadata('bookworm', new Date(1_700_000_000_000));
    assert.match(m, /^architecture: \S+$/m);
    assert.match(m, /^creation_date: 1700000000$/m);
    assert.match(m, /^  release: bookworm$/m);
  });
});
