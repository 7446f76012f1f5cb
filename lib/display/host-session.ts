import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { findInPath } from '../requirements.js';
import type { Logger } from '../log.js';

// The host display as a login session. A logout ends the X server (GDM, startx) or resets it
// (xdm): either way every client is cut off and root window properties are gone. So the service
// marks the display's root window with a random stamp of its own and keeps one connection open
// (`xprop -spy`, a 2 MB C program rather than a Python with Xlib): when that connection ends and
// the stamp cannot be read back, the session is over; when the display can be opened again (our
// cookie file is valid once more: the next login) without the stamp, a new session has begun.
// A service restarted in the same session finds its stamp, and one started in a new session
// finds none: that is how cages adopted after a logout know their session is gone, even when
// the service was stopped before it saw the display go (a systemd unit stopped at logout).

export interface HostSessionEvents {
  /** the display went away: the session ended */
  gone: [];
  /** a display can be opened again, as a new session with this stamp */
  back: [stamp: string];
}

/** While the display is gone, how often it is tried again: xprop costs about 3 ms. */
const RETRY_MS = 2000;
const XPROP_TIMEOUT_MS = 5000;

export class HostSession extends EventEmitter<HostSessionEvents> {
  private spy: ChildProcess | undefined;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;
  private current: string | undefined;
  private readonly property: string;
  private isWatched = false;

  /**
   * @param env DISPLAY, XAUTHORITY and PATH of the host's session
   * @param retryMs how long to wait between tries while the display is gone
   */
  constructor(
    private readonly env: Record<string, string>,
    private readonly log: Logger,
    private readonly retryMs = RETRY_MS,
  ) {
    super();
    // Per user: two people's services on one X server (a shared seat) keep their own stamps.
    this.property = `_KAGOME_SESSION_${process.getuid?.() ?? 0}`;
  }

  /** Is there a display to watch (DISPLAY set, xprop installed), whether it can be opened now or not? */
  get watched(): boolean {
    return this.isWatched;
  }

  /** The stamp of the session shown now, or undefined while there is no display. */
  get stamp(): string | undefined {
    return this.current;
  }

  /**
   * Opens the display and starts watching it. Resolves with the stamp, or undefined when no
   * display can be opened now (no DISPLAY, no x11-utils, a logged-out seat): then it is tried
   * again in the background and `back` is emitted when it opens.
   */
  async start(): Promise<string | undefined> {
    if (!this.env.DISPLAY) {
      this.log.info('no DISPLAY: cages start when a launch gives one; logouts are not watched');
      return undefined;
    }
    if (!findInPath('xprop', this.env.PATH)) {
      this.log.warn(
        'xprop was not found (Debian package x11-utils): the end of a desktop session is not noticed, so cages are not stopped at logout',
      );
      return undefined;
    }
    this.isWatched = true;
    this.current = await this.open();
    if (this.current === undefined) {
      this.log.warn(
        `the host display ${this.env.DISPLAY} cannot be opened; cages show their windows when it can`,
      );
      this.scheduleRetry();
    }
    return this.current;
  }

  /** Checks now whether the session shown is still there (a SIGTERM at logout races the watch). */
  async stillThere(): Promise<boolean> {
    if (this.current === undefined) return false;
    return (await this.readStamp()) === this.current;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retry);
    this.spy?.kill();
    this.spy = undefined;
  }

  /**
   * Connects the watcher and returns the display's stamp, written first when it has none;
   * undefined when the display cannot be opened. The watcher connects before the stamp is
   * written: a server whose last client leaves resets and forgets its root's properties.
   */
  private async open(): Promise<string | undefined> {
    // Spied on is a predefined atom that roots seldom change (xprop cannot spy on an atom that
    // does not exist yet, as the stamp's does not in a new session): the point is the connection.
    const spy = spawn('xprop', ['-root', '-notype', '-spy', 'WM_ICON_SIZE'], {
      env: this.env,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    spy.on('error', () => undefined);
    spy.stdout!.on('error', () => undefined);
    // The service lives as long as its bus connection, not its watcher.
    spy.unref();
    const connected = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => spy.kill(), XPROP_TIMEOUT_MS);
      const done = (ok: boolean) => {
        clearTimeout(timer);
        resolve(ok);
      };
      spy.stdout!.once('data', () => done(true));
      spy.once('exit', () => done(false));
    });
    // What it prints later (someone setting the spied property) is read and dropped.
    spy.stdout!.resume();
    let stamp = connected ? await this.readStamp() : undefined;
    if (stamp === null) {
      await this.xprop([
        '-root',
        '-f',
        this.property,
        '8s',
        '-set',
        this.property,
        randomBytes(16).toString('hex'),
      ]);
      stamp = await this.readStamp();
    }
    if (!stamp || this.closed) {
      spy.kill();
      return undefined;
    }
    this.spy = spy;
    const ended = () => {
      if (this.closed || this.spy !== spy) return;
      this.spy = undefined;
      void this.lost(stamp);
    };
    // It may have ended while the stamp was read.
    if (spy.exitCode !== null || spy.signalCode !== null) setImmediate(ended);
    else spy.once('exit', ended);
    return stamp;
  }

  /** The stamp; null when the display has none; undefined when it cannot be opened. */
  private async readStamp(): Promise<string | null | undefined> {
    const out = await this.xprop(['-root', '-notype', this.property]);
    if (out === undefined) return undefined;
    return /^\S+ = "([0-9a-f]{32})"$/m.exec(out)?.[1] ?? null;
  }

  private xprop(args: string[]): Promise<string | undefined> {
    return new Promise((resolve) => {
      execFile('xprop', args, { env: this.env, timeout: XPROP_TIMEOUT_MS }, (err, stdout) =>
        resolve(err ? undefined : stdout),
      );
    });
  }

  private async lost(stamp: string): Promise<void> {
    const now = await this.readStamp();
    if (this.closed) return;
    // Only the watcher died (killed by hand): the same session goes on.
    if (now === stamp && (await this.open()) === stamp) return;
    this.current = undefined;
    this.log.info(`the host display ${this.env.DISPLAY} has gone: the desktop session ended`);
    this.emit('gone');
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.closed) return;
    this.retry = setTimeout(() => {
      void this.open().then((stamp) => {
        if (this.closed) return;
        if (stamp === undefined) return this.scheduleRetry();
        this.current = stamp;
        this.log.info(`the host display ${this.env.DISPLAY} is back: a new desktop session`);
        this.emit('back', stamp);
      });
    }, this.retryMs);
    this.retry.unref();
  }
}
