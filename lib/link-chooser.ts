import dbus from 'dbus-next';
import { KagomeError } from './errors.js';

// OpenLinks=ask (issue 19): where a link from a cage goes is asked on the host, in the host's own
// "Open With" dialog: the AppChooser of xdg-desktop-portal-gtk, called directly on the host's
// bus as xdg-desktop-portal itself calls it (org.freedesktop.impl.portal.AppChooser). It looks
// native on GTK desktops, needs no parent window (1.14 makes a hidden one; tried on Debian 12's
// 1.14.1), and adds no dependency: the file chooser of SessionBus=portal needs the same backend.
// zenity would be a new package with a dialog of its own look.
//
// What 1.14 shows: the title "Open With", a heading "Choose an application to open the file
// “LOCATION”." with the last 40 characters of LOCATION, the choices (desktop ids, shown with
// their names and icons: a shadow entry's name carries its cage, "Firefox [browser]"), Cancel
// and Open. LOCATION is the link's host and the asking cage, cage last, so the cage's name is
// never cut off (a long host loses its start, not its registrable end).

export const APP_CHOOSER_BUS_NAME = 'org.freedesktop.impl.portal.desktop.gtk';
const PORTAL_PATH = '/org/freedesktop/portal/desktop';
const APP_CHOOSER_IFACE = 'org.freedesktop.impl.portal.AppChooser';

export interface LinkQuestion {
  /** the cage that asks */
  cage: string;
  /** what the heading names: the link's host and the cage */
  location: string;
  /** desktop ids, with ".desktop" */
  choices: string[];
  /** the desktop id chosen last time for this cage, preselected */
  last?: string;
}

/** Asks the person; resolves to the chosen desktop id (with ".desktop"), or undefined: cancelled. */
export type LinkChooser = (q: LinkQuestion) => Promise<string | undefined>;

type Bus = ReturnType<typeof dbus.sessionBus>;

/** The AppChooser of xdg-desktop-portal-gtk on `bus` (the host's session bus). */
export function portalLinkChooser(bus: Bus): LinkChooser {
  let n = 0;
  return async (q) => {
    const strip = (id: string) => id.replace(/\.desktop$/, '');
    const options: Record<string, dbus.Variant> = {
      filename: new dbus.Variant('s', q.location),
      modal: new dbus.Variant('b', false),
    };
    if (q.last && q.choices.includes(q.last))
      options.last_choice = new dbus.Variant('s', strip(q.last));
    let reply;
    try {
      // No timeout: the call returns when the person has answered.
      reply = await bus.call(
        new dbus.Message({
          destination: APP_CHOOSER_BUS_NAME,
          path: PORTAL_PATH,
          interface: APP_CHOOSER_IFACE,
          member: 'ChooseApplication',
          signature: 'ossasa{sv}',
          body: [
            `${PORTAL_PATH}/request/kagome/link${++n}`,
            `io.kagome.Cage_${q.cage}`,
            '',
            q.choices.map(strip),
            options,
          ],
        }),
      );
    } catch (e) {
      throw new KagomeError(
        'MissingProgram',
        `the dialog that asks where a link goes could not be shown (${(e as Error).message}); install xdg-desktop-portal-gtk, or set OpenLinks= to something other than ask in the cage's file`,
      );
    }
    const [response, results] = (reply?.body ?? []) as [number, Record<string, dbus.Variant>];
    const choice = results?.choice?.value as unknown;
    if (response !== 0 || typeof choice !== 'string' || !choice) return undefined;
    return `${choice}.desktop`;
  };
}
