import { asKagomeError } from '../errors.js';
import { isAlive } from '../runtime/proc.js';
import type { Logger } from '../log.js';
import type { RunningCage } from './running-cage.js';

// A cage with IdleStop= set is stopped once it has run no program for that long. Its programs
// are those this service started (their exit is seen) and those inherited from an earlier
// service after a restart, which are not our children: their exit cannot be observed, so they
// are checked once a second, and only while there are any.

const INHERITED_POLL_MS = 1000;

/** What the idle stop needs of the manager that holds the cages. */
export interface IdleHost {
  /** every cage the manager holds now, by name */
  running(): Iterable<[string, RunningCage]>;
  /** is this still the cage of that name the manager holds? */
  holds(name: string, cage: RunningCage): boolean;
  stop(name: string): Promise<void>;
  persist(name: string, cage: RunningCage): Promise<void>;
  log: Logger;
}

export class IdleStop {
  private inheritedPoll: NodeJS.Timeout | undefined;

  constructor(private readonly host: IdleHost) {}

  /** Programs running in the cage: started by this service, or inherited and still alive. */
  programCount(cage: RunningCage): number {
    return cage.programs.size + cage.inherited.filter((r) => isAlive(r)).length;
  }

  /** A program started: the cage is not idle. */
  clear(cage: RunningCage): void {
    if (cage.idleTimer) clearTimeout(cage.idleTimer);
    cage.idleTimer = undefined;
  }

  /** A program ended (or IdleStop= changed): with none left, the cage stops after IdleStop=. */
  arm(name: string, cage: RunningCage): void {
    this.clear(cage);
    if (cage.config.idleStopSeconds <= 0 || this.programCount(cage) > 0) return;
    cage.idleTimer = setTimeout(() => {
      if (this.host.holds(name, cage) && this.programCount(cage) === 0) {
        this.host.log.info(`cage ${name}: idle for ${cage.config.idleStopSeconds} s, stopping`);
        void this.host
          .stop(name)
          .catch((e) =>
            this.host.log.error(`cage ${name}: idle stop failed: ${asKagomeError(e).message}`),
          );
      }
    }, cage.config.idleStopSeconds * 1000);
    cage.idleTimer.unref();
  }

  /** Adopted cages have inherited programs: poll them until none is left in any cage. */
  watchInherited(): void {
    if (this.inheritedPoll) return;
    this.inheritedPoll = setInterval(() => {
      let any = false;
      for (const [name, cage] of this.host.running()) {
        const before = cage.inherited.length;
        cage.inherited = cage.inherited.filter((r) => isAlive(r));
        if (cage.inherited.length !== before) {
          // The state file is rewritten on the next change anyway; a failed write loses nothing.
          void this.host.persist(name, cage).catch(() => undefined);
          this.arm(name, cage);
        }
        if (cage.inherited.length) any = true;
      }
      if (!any) this.stopWatching();
    }, INHERITED_POLL_MS);
    this.inheritedPoll.unref();
  }

  /** The service detaches from its cages (they outlive it): nothing is watched any more. */
  stopWatching(): void {
    if (this.inheritedPoll) clearInterval(this.inheritedPoll);
    this.inheritedPoll = undefined;
  }
}
