// Watching folders for changed files, in batches. chokidar does the watching: it uses inotify
// (no polling, so an idle desktop session never wakes kagome up), follows symlinks, sees an
// editor's write-to-temporary-then-rename as one change, and copes with folders appearing
// and disappearing. This module only filters by file name and gathers a burst of events
// (a package upgrade touches dozens of files) into one batch.

import { watch, type FSWatcher } from 'chokidar';
import { realpathSync } from 'node:fs';
import path from 'node:path';

export interface BatchWatcherOptions {
  /** Files whose names this accepts are reported; others are not even watched. */
  accept(file: string): boolean;
  /** Called with every path that changed (added, changed, removed) since the last batch. */
  onBatch(paths: ReadonlySet<string>): Promise<void>;
  onError(error: Error): void;
  /** Quiet time after the last event before a batch is delivered. */
  settleMs?: number;
  /** A batch is delivered at the latest this long after its first event, even in a storm. */
  maxDelayMs?: number;
  /** Folder levels below each watched folder (desktop entries may sit in subfolders). */
  depth?: number;
  /** enter linked folders (default true: applications folders are often links) */
  followSymlinks?: boolean;
}

export class BatchWatcher {
  private watcher: FSWatcher | undefined;
  private pending = new Set<string>();
  private settleTimer: NodeJS.Timeout | undefined;
  private firstEventAt = 0;
  private running: Promise<void> = Promise.resolve();
  private closed = false;
  /** real path of every watched folder -> the path it is watched under */
  private readonly realDirs = new Map<string, string>();

  constructor(private readonly opts: BatchWatcherOptions) {}

  /** Starts watching; resolves once the folders are being watched. */
  async start(dirs: readonly string[]): Promise<void> {
    const w = watch([...dirs], {
      ignoreInitial: true,
      followSymlinks: this.opts.followSymlinks ?? true,
      depth: this.opts.depth ?? 8,
      // Files only when wanted (each watched file costs an inotify watch, and most folders
      // here hold other things too); each real folder once.
      ignored: (p, stats) =>
        (stats?.isFile() === true && !this.opts.accept(p)) ||
        (stats?.isDirectory() === true && this.seenElsewhere(p)),
    });
    this.watcher = w;
    const onEvent = (p: string): void => {
      if (this.opts.accept(p)) this.queue(path.resolve(p));
    };
    w.on('add', onEvent).on('change', onEvent).on('unlink', onEvent);
    // A removed or added folder may hold (or have held) entries: report the folder itself.
    w.on('addDir', (p) => this.queue(path.resolve(p))).on('unlinkDir', (p) =>
      this.queue(path.resolve(p)),
    );
    w.on('error', (e) => this.opts.onError(e instanceof Error ? e : new Error(String(e))));
    await new Promise<void>((resolve) => w.once('ready', () => resolve()));
  }

  /**
   * Whether a folder is reached again through a symbolic link (a loop, or two links to one
   * place). chokidar follows links without noticing loops: two links back to their own folder
   * make it watch 2^depth paths.
   */
  private seenElsewhere(dir: string): boolean {
    let real: string;
    try {
      real = realpathSync(dir);
    } catch {
      return true;
    }
    const first = this.realDirs.get(real);
    if (first === undefined) this.realDirs.set(real, dir);
    return first !== undefined && first !== dir;
  }

  private queue(p: string): void {
    if (this.closed) return;
    const now = Date.now();
    if (this.pending.size === 0) this.firstEventAt = now;
    this.pending.add(p);
    if (this.settleTimer) clearTimeout(this.settleTimer);
    const settle = this.opts.settleMs ?? 100;
    const latest = this.firstEventAt + (this.opts.maxDelayMs ?? 500) - now;
    this.settleTimer = setTimeout(() => this.flush(), Math.max(0, Math.min(settle, latest)));
  }

  private flush(): void {
    this.settleTimer = undefined;
    const batch = this.pending;
    this.pending = new Set();
    if (batch.size === 0 || this.closed) return;
    // One batch at a time, in order: a batch never races the one before it.
    this.running = this.running
      .then(() => this.opts.onBatch(batch))
      .catch((e) => this.opts.onError(e instanceof Error ? e : new Error(String(e))));
  }

  /** Waits for the batch in progress, if any. */
  async idle(): Promise<void> {
    await this.running;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.settleTimer) clearTimeout(this.settleTimer);
    await this.watcher?.close();
    await this.running;
  }
}
