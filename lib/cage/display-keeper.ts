import { KagomeError, asKagomeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { DisplayContext } from '../display/display.js';
import type { RunningCage } from './running-cage.js';

// Keeps each running cage's windows reaching the host. The display's parts that can end while
// the cage runs (xpra's host client, Xephyr's window manager) are brought back: at once when the
// display's watch sees one end, and at the next launch, which waits for it, so its window has
// somewhere to appear (a client killed by mistake left launches "succeeding" with no window).
// And it knows which desktop session windows are shown in (host-session.ts): after a logout
// nothing is brought back and launches are refused, until a session is back and the cages kept
// through the logout are shown in it (session-life.ts decides which).

/** A display part that ends again sooner than this after being brought back is left to the next launch. */
const REVIVE_INTERVAL_MS = 10000;

/** What the keeper needs of the manager that holds the cages. */
export interface KeeperHost {
  /** is this still the cage of that name the manager holds (perhaps being stopped)? */
  holds(name: string, cage: RunningCage): boolean;
  /** ...and not being stopped, and healthy? */
  stillRuns(name: string, cage: RunningCage): boolean;
  displayContext(cage: RunningCage): DisplayContext;
  persist(name: string, cage: RunningCage): Promise<void>;
  log: Logger;
}

export class DisplayKeeper {
  /** the host session windows are shown in now; undefined: not watched */
  private stamp: string | undefined;
  /** the host display has gone (a logout): no window can be shown until a session is back */
  private away = false;

  constructor(
    private readonly host: KeeperHost,
    private readonly hostDisplay: string,
  ) {}

  get session(): string | undefined {
    return this.stamp;
  }

  sessionIs(stamp: string): void {
    this.stamp = stamp;
    this.away = false;
  }

  sessionEnded(): void {
    this.away = true;
  }

  /** A launch or start now would show nothing: say so rather than "succeed" without a window. */
  refuseWhileAway(name: string): void {
    if (!this.away) return;
    throw new KagomeError(
      'DisplayFailed',
      `cannot show cage "${name}": the desktop session this service showed windows in has ended (its display ${this.hostDisplay} is gone); log in again and launch again`,
    );
  }

  /** Was a cage whose windows were last shown in `recorded` shown in a session that has ended? */
  fromEndedSession(recorded: string | undefined): boolean {
    return (
      this.away || (recorded !== undefined && this.stamp !== undefined && recorded !== this.stamp)
    );
  }

  /** Brings back what ended; launches wait for it. One at a time per cage. */
  keep(name: string, cage: RunningCage): Promise<void> {
    cage.reviving ??= this.revive(name, cage).finally(() => (cage.reviving = undefined));
    return cage.reviving;
  }

  /** Shows a kept cage's windows in the session now: its display's host part starts on the current DISPLAY. */
  async reattach(name: string, cage: RunningCage): Promise<void> {
    if (this.away) return;
    await this.keep(name, cage);
    cage.hostSession = this.stamp;
    cage.revivedAt = undefined;
    this.watch(name, cage);
    await this.host.persist(name, cage);
  }

  watch(name: string, cage: RunningCage): void {
    cage.unwatchDisplay?.();
    cage.unwatchDisplay = cage.display.watch?.(cage.displayRecord, () => {
      // After a logout there is no display to bring a client back on.
      if (this.away || !this.host.stillRuns(name, cage)) return;
      // One that keeps ending (a host display gone) is not restarted in a loop; the next
      // launch tries again and reports why.
      if (cage.revivedAt !== undefined && Date.now() - cage.revivedAt < REVIVE_INTERVAL_MS) {
        this.host.log.warn(
          `cage ${name}: a part of its ${cage.display.kind} display ended again; the next launch starts it`,
        );
        return;
      }
      cage.revivedAt = Date.now();
      void this.keep(name, cage).catch((e) =>
        this.host.log.warn(
          `cage ${name}: could not bring its display back: ${asKagomeError(e).message}`,
        ),
      );
    });
  }

  private async revive(name: string, cage: RunningCage): Promise<void> {
    const before = cage.displayRecord;
    const record = await cage.display.readopt(
      this.host.displayContext(cage),
      before,
      cage.backend,
      cage.sandbox,
    );
    // A cage being stopped still gets the new record, so its stop ends what was just started.
    if (record === before || !this.host.holds(name, cage)) return;
    cage.displayRecord = record;
    this.host.log.info(
      `cage ${name}: a part of its ${cage.display.kind} display had ended and was started again`,
    );
    this.watch(name, cage);
    await this.host.persist(name, cage);
  }
}
