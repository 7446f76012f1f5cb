import cliProgress from 'cli-progress';
import type { Notifier } from '../notify.js';
import type { BuildProgress } from './progress.js';

// What a person sees of an image build, which takes a minute or more: a bar in the terminal
// (plain lines when the output is not a terminal, e.g. a log), and one desktop notification
// updated in place with a progress value, at most every NOTIFY_EVERY_MS so the notification
// server is not flooded, then replaced by the outcome.

const NOTIFY_EVERY_MS = 2000;

export class BuildReport {
  private bar: cliProgress.SingleBar | undefined;
  private lastLine = '';
  private notification: number | undefined;
  private lastNotified = 0;
  private pending: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly what: string,
    private readonly out: NodeJS.WriteStream,
    private readonly notifier: Notifier | undefined,
  ) {
    if (out.isTTY) {
      this.bar = new cliProgress.SingleBar(
        {
          format: `${what} [{bar}] {percentage}% | {phase} {detail}`,
          hideCursor: true,
          clearOnComplete: false,
          stream: out,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(100, 0, { phase: 'starting', detail: '' });
    }
  }

  update(p: BuildProgress): void {
    const pct = Math.round(p.fraction * 100);
    if (this.bar) this.bar.update(pct, { phase: p.phase, detail: p.detail ?? '' });
    else {
      const line = `${pct}% ${p.phase}`;
      if (line !== this.lastLine) this.out.write(`${line}${p.detail ? ` (${p.detail})` : ''}\n`);
      this.lastLine = line;
    }
    const now = Date.now();
    if (this.notifier && now - this.lastNotified >= NOTIFY_EVERY_MS) {
      this.lastNotified = now;
      this.notify({
        summary: this.what,
        body: `${p.phase}${p.detail ? ` (${p.detail})` : ''}`,
        progress: pct,
        icon: 'dialog-information',
        urgency: 'low',
      });
    }
  }

  /** Text for a step after the root filesystem (the engine's import), which has no counts. */
  step(phase: string, fraction: number): void {
    this.update({ phase, fraction });
  }

  async finish(
    outcome: { ok: true; message: string } | { ok: false; message: string },
  ): Promise<void> {
    this.bar?.stop();
    if (this.notifier) {
      this.notify(
        outcome.ok
          ? {
              summary: `${this.what}: done`,
              body: outcome.message,
              progress: 100,
              icon: 'dialog-information',
              urgency: 'normal',
            }
          : {
              summary: `${this.what}: failed`,
              body: outcome.message,
              icon: 'dialog-error',
              urgency: 'critical',
            },
      );
    }
    await this.pending;
  }

  private notify(n: Parameters<Notifier['notify']>[0]): void {
    // In order, each replacing the last: the first call's id is used by the rest.
    this.pending = this.pending.then(async () => {
      const id = await this.notifier!.notify({
        ...n,
        ...(this.notification !== undefined ? { replaces: this.notification } : {}),
      });
      if (id) this.notification = id;
    });
  }
}
