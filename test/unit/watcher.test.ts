import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, realpath, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BatchWatcher, type BatchWatcherOptions } from '../../xdg/watcher.js';
import { waitFor } from '../helpers/wait.js';

// The sleeps below stay sleeps: chokidar gives no signal that every event of the file system
// has been handled, so a batch that must not come is given time to come.
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** How these tests wait for a batch. */
const WAIT = { timeoutMs: 8000, pollMs: 20 };

interface Harness {
  watcher: BatchWatcher;
  batches: Set<string>[];
  errors: Error[];
  /** Every path of every batch so far. */
  all(): string[];
}

async function watch(dirs: string[], options: Partial<BatchWatcherOptions> = {}): Promise<Harness> {
  const batches: Set<string>[] = [];
  const errors: Error[] = [];
  const watcher = new BatchWatcher({
    accept: (p) => p.endsWith('.desktop'),
    onBatch: async (paths) => {
      batches.push(new Set(paths));
    },
    onError: (e) => errors.push(e),
    // Generous: the writes of one test step all land well inside it, even on a loaded machine.
    settleMs: 500,
    maxDelayMs: 3000,
    ...options,
  });
  await watcher.start(dirs);
  return { watcher, batches, errors, all: () => batches.flatMap((b) => [...b]) };
}

describe('BatchWatcher', () => {
  let root: string;
  let h: Harness | undefined;
  beforeEach(async () => {
    // The real path, as events carry it.
    root = await realpath(await mkdtemp(path.join(tmpdir(), 'kagome-watcher-')));
    h = undefined;
  });
  afterEach(async () => {
    await h?.watcher.close();
    await rm(root, { recursive: true, force: true });
  });

  it('delivers several writes in quick succession as one batch with every path', async () => {
    h = await watch([root]);
    const files = ['a.desktop', 'b.desktop', 'c.desktop'].map((n) => path.join(root, n));
    for (const f of files) await writeFile(f, '[Desktop Entry]\n');
    await waitFor('a batch', () => h!.batches.length > 0, WAIT);
    await h.watcher.idle();
    // Give a stray second batch time to show up.
    await sleep(1500);
    assert.equal(h.batches.length, 1, `batches: ${JSON.stringify(h.batches.map((b) => [...b]))}`);
    assert.deepEqual([...h.batches[0]!].sort(), files);
    assert.deepEqual(h.errors, []);
  });

  it('does not report files that accept() rejects', async () => {
    h = await watch([root]);
    await writeFile(path.join(root, 'notes.txt'), 'x');
    await writeFile(path.join(root, 'mimeinfo.cache'), 'x');
    await writeFile(path.join(root, 'app.desktop'), '[Desktop Entry]\n');
    await waitFor('app.desktop', () => h!.all().includes(path.join(root, 'app.desktop')), WAIT);
    // Give a stray batch with a rejected file time to show up.
    await sleep(1500);
    assert.deepEqual(h.all(), [path.join(root, 'app.desktop')]);
  });

  it('reports a removed file', async () => {
    const file = path.join(root, 'gone.desktop');
    await writeFile(file, '[Desktop Entry]\n');
    h = await watch([root]);
    await unlink(file);
    await waitFor('the removal', () => h!.all().includes(file), WAIT);
    assert.deepEqual(h.all(), [file]);
  });

  it('reports files in subfolders', async () => {
    await mkdir(path.join(root, 'vendor'));
    h = await watch([root]);
    const file = path.join(root, 'vendor', 'x.desktop');
    await writeFile(file, '[Desktop Entry]\n');
    await waitFor('the file in the subfolder', () => h!.all().includes(file), WAIT);
  });

  it('watches each folder once despite symbolic link loops, and still reports changes by their real path', async () => {
    const apps = path.join(root, 'applications');
    await mkdir(apps);
    await symlink('.', path.join(apps, 'loop1'));
    await symlink('.', path.join(apps, 'loop2'));
    h = await watch([apps]);
    // chokidar's own record of what it watches: folder -> names in it.
    const watched = (
      h.watcher as unknown as { watcher: { getWatched(): Record<string, string[]> } }
    ).watcher.getWatched();
    const folders = Object.keys(watched);
    assert.ok(
      folders.length <= 5,
      `watches ${folders.length} folders: ${folders.slice(0, 20).join(', ')}`,
    );
    assert.ok(
      !folders.some((f) => f.includes('loop1/loop') || f.includes('loop2/loop')),
      folders.join(', '),
    );

    const file = path.join(apps, 'app.desktop');
    await writeFile(file, '[Desktop Entry]\n');
    await waitFor('the change', () => h!.all().includes(file), WAIT);
    await h.watcher.idle();
    // Give a stray batch through a loop's path time to show up.
    await sleep(1500);
    const reported = h.all().filter((p) => p.endsWith('.desktop'));
    assert.deepEqual(reported, [file], `reported: ${h.all().join(', ')}`);
  });

  it('reports nothing after close()', async () => {
    h = await watch([root]);
    await writeFile(path.join(root, 'before.desktop'), '[Desktop Entry]\n');
    await waitFor('the first batch', () => h!.batches.length > 0, WAIT);
    await h.watcher.close();
    const seen = h.batches.length;
    await writeFile(path.join(root, 'after.desktop'), '[Desktop Entry]\n');
    await unlink(path.join(root, 'before.desktop'));
    // Give a batch of the writes after close() time to show up.
    await sleep(1000);
    assert.equal(h.batches.length, seen);
    assert.ok(!h.all().includes(path.join(root, 'after.desktop')));
  });

  it('stops a batch pending at close() from being delivered', async () => {
    h = await watch([root], { settleMs: 2000, maxDelayMs: 5000 });
    const file = path.join(root, 'late.desktop');
    await writeFile(file, '[Desktop Entry]\n');
    // Wait until chokidar has seen the file (it is then in the pending batch), then close.
    const w = h.watcher as unknown as { pending: Set<string> };
    await waitFor('the pending event', () => w.pending.has(file), WAIT);
    await h.watcher.close();
    // Past settleMs: the pending batch would have been delivered by now.
    await sleep(2500);
    assert.deepEqual(h.batches, []);
  });
});
