import dbus from 'dbus-next';
import { KagomeError } from './errors.js';
import { cageEntryId, cageEntryName } from './desktop/cage-entry.js';

// Notifications from cages (SessionBus=portal, issue 19). A program in the cage calls the
// Notification portal on its own bus; kagome's relay there sends the call through the cage's
// proxy to io.kagome.CagePortal1.AddNotification, and kagome, on the host, sends the person's
// notification server a notification of its own making:
//
// - marked with the cage: the summary starts with "[NAME]", which every server shows (dunst and
//   notify-osd show no app name by default), the app name is the cage's entry's Name, and the
//   desktop-entry hint names the cage's NoDisplay entry (lib/desktop/cage-entry.ts), from which
//   GNOME Shell and Plasma take a name and an icon in the cage's colour;
// - plain text: the portal's title and body are plain text (portal spec 1.16), but the host's
//   portal passes them on unchanged and most servers read the body as markup (body-markup),
//   dunst even the summary: a cage could put a link there that the server opens on the host
//   with the host's uncaged browser (xfce4-notifyd's body-hyperlinks), past OpenLinks=, or an
//   image, or style a fake "System update". "<", ">" and "&" are replaced with look-alikes (‹ ›
//   ＆), which no server reads as markup and every server shows as such, with or without
//   body-markup (escaping with entities would show "&lt;" on servers without it). Control and
//   bidirectional-override characters go, and lengths are capped;
// - with nothing else: no icon (a themed name could borrow a host program's icon; an image
//   would need the portal's sandboxed loader), no buttons and no default action (nothing goes
//   back into the cage yet), and "urgent" is sent as normal (critical notifications stay on
//   screen until dismissed and pass do-not-disturb: not a cage's call).
//
// Why not the host's portal: xdg-desktop-portal 1.16's notification.c checks only the types of
// title and body, and xdg-desktop-portal-gtk 1.14's fdonotification.c sends them to
// org.freedesktop.Notifications unchanged with an empty app name; whatever checks them must be
// on the host, outside the proxy, which cannot change a message. The price: notifications from
// cages no longer go through org.gtk.Notifications on GNOME (GNOME Shell shows them as
// freedesktop ones, named by the same desktop-entry hint).

export const MAX_SUMMARY = 120;
export const MAX_BODY = 1000;
export const MAX_BODY_LINES = 12;
export const MAX_ID = 256;
/** Notification ids remembered per cage (for replacing and withdrawing); the oldest goes first. */
export const MAX_IDS = 64;

/** A portal notification's values as they arrive: dbus-next variants. */
export type PortalNotification = Record<string, { signature: string; value: unknown }>;

export interface SentNotification {
  appName: string;
  summary: string;
  body: string;
  desktopEntry: string;
  /** freedesktop urgency: 0 low, 1 normal; never 2 (critical) */
  urgency: 0 | 1;
}

// C0 and C1 controls, DEL, and the characters that reorder or hide text.
const HIDDEN =
  /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]/g;
const LOOK_ALIKE: Record<string, string> = { '<': '\u2039', '>': '\u203a', '&': '\uff06' };

/** `s` as plain text nothing reads as markup, `max` characters at most: one line, or `lines`. */
export function plainText(s: string, max: number, lines = 1): string {
  let t = s.replace(/\r\n?/g, '\n').replace(/\t/g, ' ');
  t = t
    .split('\n')
    .map((l) => l.replace(HIDDEN, '').replace(/ {2,}/g, ' ').trim())
    .filter((l, i, all) => l !== '' || (i > 0 && all[i - 1] !== ''))
    .slice(0, lines > 1 ? lines : undefined)
    .join(lines > 1 ? '\n' : ' ')
    .trim();
  t = t.replace(/[<>&]/g, (c) => LOOK_ALIKE[c]!);
  const chars = Array.from(t);
  return chars.length > max ? `${chars.slice(0, max - 1).join('')}…` : t;
}

function text(n: PortalNotification, key: string): string {
  const v = n[key];
  if (v === undefined) return '';
  if (v.signature !== 's' || typeof v.value !== 'string')
    throw new KagomeError(
      'InvalidArgument',
      `a notification's ${key} is text (type s), not type ${v.signature}`,
    );
  return v.value;
}

/** What kagome sends for a cage's notification: see the top of this file. */
export function cageNotification(cage: string, n: PortalNotification): SentNotification {
  const title = plainText(text(n, 'title'), MAX_SUMMARY);
  const priority = n.priority?.value;
  return {
    appName: cageEntryName(cage),
    summary: title ? `[${cage}] ${title}` : `[${cage}]`,
    body: plainText(text(n, 'body'), MAX_BODY, MAX_BODY_LINES),
    desktopEntry: cageEntryId(cage).replace(/\.desktop$/, ''),
    urgency: priority === 'low' ? 0 : 1,
  };
}

/** The host's notification server, as kagome talks to it. */
export interface NotificationServer {
  notify(n: SentNotification, replacesId: number): Promise<number>;
  close(id: number): Promise<void>;
}

/** Cages' notifications, with their ids: the same id again replaces, RemoveNotification closes. */
export class CageNotifications {
  private readonly ids = new Map<string, Map<string, number>>();
  /** Each cage's calls, one after another: a replacement needs the id its first call got. */
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(private readonly server: NotificationServer) {}

  async add(cage: string, id: string, n: PortalNotification): Promise<void> {
    checkId(id);
    const sent = cageNotification(cage, n);
    return this.inTurn(cage, async (mine) => {
      const serverId = await this.server.notify(sent, mine.get(id) ?? 0);
      mine.delete(id);
      mine.set(id, serverId);
      for (const old of mine.keys()) {
        if (mine.size <= MAX_IDS) break;
        mine.delete(old);
      }
    });
  }

  async remove(cage: string, id: string): Promise<void> {
    checkId(id);
    return this.inTurn(cage, async (mine) => {
      const serverId = mine.get(id);
      if (serverId === undefined) return;
      mine.delete(id);
      await this.server.close(serverId);
    });
  }

  private inTurn(cage: string, work: (ids: Map<string, number>) => Promise<void>): Promise<void> {
    let mine = this.ids.get(cage);
    if (!mine) this.ids.set(cage, (mine = new Map()));
    const ids = mine;
    const done = (this.queues.get(cage) ?? Promise.resolve()).then(
      () => work(ids),
      () => work(ids),
    );
    // The queue waits for this call either way; its failure is the caller's answer.
    const settled = done.catch(() => undefined);
    this.queues.set(cage, settled);
    void settled.then(() => {
      if (this.queues.get(cage) === settled) this.queues.delete(cage);
    });
    return done;
  }
}

function checkId(id: string): void {
  if (id.length > MAX_ID)
    throw new KagomeError(
      'InvalidArgument',
      `a notification id is at most ${MAX_ID} characters; this one has ${id.length}`,
    );
}

type Bus = ReturnType<typeof dbus.sessionBus>;

/** org.freedesktop.Notifications on the service's own connection to the host's session bus. */
export function busNotificationServer(bus: Bus): NotificationServer {
  const call = async (member: string, signature: string, body: unknown[]) => {
    try {
      return await bus.call(
        new dbus.Message({
          destination: 'org.freedesktop.Notifications',
          path: '/org/freedesktop/Notifications',
          interface: 'org.freedesktop.Notifications',
          member,
          signature,
          body,
        }),
      );
    } catch (e) {
      throw new KagomeError(
        'Failed',
        `the host's notification server did not take the cage's notification: ${(e as Error).message}`,
      );
    }
  };
  return {
    async notify(n, replacesId) {
      const reply = await call('Notify', 'susssasa{sv}i', [
        n.appName,
        replacesId,
        '',
        n.summary,
        n.body,
        [],
        {
          'desktop-entry': new dbus.Variant('s', n.desktopEntry),
          urgency: new dbus.Variant('y', n.urgency),
        },
        -1,
      ]);
      const id = reply?.body[0] as unknown;
      return typeof id === 'number' ? id : 0;
    },
    async close(id) {
      await call('CloseNotification', 'u', [id]);
    },
  };
}
