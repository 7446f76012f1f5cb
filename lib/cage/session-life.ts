import type { Logger } from '../log.js';
import type { HostSession } from '../display/host-session.js';
import type { CageManager } from './manager.js';
import { asKagomeError } from '../errors.js';

// What a desktop session's end and the next login do to running cages. At logout (the host
// display gone, host-session.ts) each cage's OnLogout decides: stop (the default) closes its
// programs as the logout closes the host's, so nothing runs on unseen and no profile is left
// "crashed"; keep lets it run on, and the next login's display shows its windows again, the
// host client started anew on the new session. A Xephyr cage's display is a window on the
// host's and ends with it, so such cages are stopped whatever they say.
//
// The service may not see the display go: a systemd unit stopped at logout gets SIGTERM as the
// X server ends, or before. So the same decision is made again by a service that starts in a
// new session and adopts cages that were shown in an ended one (their state keeps the stamp),
// and at a SIGTERM that finds the display already gone.

const ENDED = 'its desktop session ended';

export class SessionLife {
  private watching = false;

  constructor(
    private readonly manager: CageManager,
    private readonly session: HostSession,
    private readonly log: Logger,
  ) {}

  /** Before cages are adopted: which session is shown now decides how each is adopted. */
  async begin(): Promise<void> {
    const stamp = await this.session.start();
    if (stamp !== undefined) this.manager.hostSessionIs(stamp);
    else if (this.session.watched) this.manager.hostSessionEnded();
    this.session.on('gone', () => {
      this.manager.hostSessionEnded();
      void this.settle();
    });
    this.session.on('back', (s) => {
      this.manager.hostSessionIs(s);
      void this.settle();
    });
    this.watching = true;
  }

  /** Each cage shown in an ended session is stopped or kept (and shown again, when a session is back). */
  async settle(): Promise<void> {
    const away = this.session.stamp === undefined;
    await Promise.all(
      this.manager.cagesFromEndedSessions().map(async ({ name, config, displayKind }) => {
        try {
          if (config.onLogout === 'keep' && displayKind === 'xpra') {
            if (away)
              this.log.info(
                `cage ${name}: kept running after the logout (OnLogout=keep); its windows come back at the next login`,
              );
            else {
              await this.manager.reattach(name);
              this.log.info(`cage ${name}: its windows are shown in the new desktop session`);
            }
            return;
          }
          if (config.onLogout === 'keep')
            this.log.info(
              `cage ${name}: a ${displayKind} display ends with the desktop session, so the cage stops although it says OnLogout=keep`,
            );
          await this.manager.stop(name, ENDED);
        } catch (e) {
          this.log.warn(
            `cage ${name}: after the end of its desktop session: ${asKagomeError(e).message}`,
          );
        }
      }),
    );
  }

  close(): void {
    this.session.close();
  }

  /**
   * The service is stopping. A logout's SIGTERM (systemd stops the unit with the graphical
   * session) may come after the display went: then the cages are settled now rather than at the
   * next login. A restart in a session that goes on leaves every cage as it is.
   */
  async stopping(): Promise<void> {
    if (!this.watching) return;
    this.session.close();
    if (this.session.stamp === undefined || (await this.session.stillThere())) return;
    this.manager.hostSessionEnded();
    this.log.info('the desktop session ended before the service was stopped');
    await this.settle();
  }
}
