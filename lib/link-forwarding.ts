import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { IN_CAGE, type SandboxSpec } from './sandbox.js';

// Links opened by a SessionBus=portal cage's own tools (issue 19). The cage shares the host's
// /usr, so without this `xdg-open URL` (xdg-utils, no desktop in the cage) and `gio open URL`
// (GLib: the default program for the scheme, from the host's mimeinfo.cache) start the host's
// browser inside the cage: with the cage's network and files, never reaching OpenLinks=. GLib
// asks the OpenURI portal only when no program is found (and only with GTK_USE_PORTAL=1), and
// GTK's own links (gtk_show_uri) go through GIO the same way.
//
// So a portal cage gets, read-only from kagome's install tree:
// - flatpak-xdg-utils' folder first on PATH: its xdg-open and xdg-email call the OpenURI
//   portal on the cage's bus (flatpak-spawn comes along and is refused by the proxy);
// - an XDG_CONFIG_DIRS folder whose mimeapps.list makes io.kagome.OpenLink.desktop (in an
//   XDG_DATA_DIRS folder) the default for http, https and mailto: that entry runs the same
//   xdg-open. The cage's own ~/.config/mimeapps.list still wins: a cage that has its own
//   browser and says so opens its links itself.
// Programs that run /usr/bin/xdg-open by its full path still get xdg-utils' (README).
// CageDefaultApps never picks the forwarding entry for a link sent into a cage: that would send
// it back out.

export const FLATPAK_XDG_UTILS = '/usr/libexec/flatpak-xdg-utils';
export const LINK_FORWARDER_ID = 'io.kagome.OpenLink.desktop';
export const LINKS_SHIPPED = fileURLToPath(new URL('../../packaging/cage-links', import.meta.url));
export const LINKS_IN_CAGE = path.posix.join(IN_CAGE.kagomeRun, 'links');

/**
 * Adds the forwarding to a portal cage's spec; returns why it could not (flatpak-xdg-utils
 * missing), so the caller can say so. No side effects: it runs again on re-adoption.
 */
export function forwardLinks(
  spec: SandboxSpec,
  shipped = LINKS_SHIPPED,
  exists: (p: string) => boolean = existsSync,
): string | undefined {
  if (!exists(path.join(FLATPAK_XDG_UTILS, 'xdg-open')))
    return `${FLATPAK_XDG_UTILS}/xdg-open is missing (Debian package flatpak-xdg-utils), so xdg-open and gio open in the cage do not use the portal`;
  spec.ops.push({ op: 'ro-bind', source: shipped, dest: LINKS_IN_CAGE });
  const env = spec.env;
  env.PATH = `${FLATPAK_XDG_UTILS}:${env.PATH ?? '/usr/local/bin:/usr/bin:/bin'}`;
  env.XDG_CONFIG_DIRS = `${LINKS_IN_CAGE}/config:${env.XDG_CONFIG_DIRS || '/etc/xdg'}`;
  env.XDG_DATA_DIRS = `${LINKS_IN_CAGE}/data:${env.XDG_DATA_DIRS || '/usr/local/share:/usr/share'}`;
  return undefined;
}
