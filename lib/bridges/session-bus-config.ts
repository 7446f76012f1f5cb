import fs from 'node:fs';
import path from 'node:path';
import { IN_CAGE } from '../sandbox.js';

// The configuration of a cage's own dbus-daemon (session-bus.ts), written by the service.
//
// `dbus-daemon --session` would read the cage's session.conf, whose standard service folders
// activate everything installed: xdg-desktop-portal, its GTK backend and the document portal
// in every cage whose program merely asks (GTK_USE_PORTAL, flatpak-aware libraries), systemd's
// user manager, notification daemons, the keyring, the accessibility bus. In a cage those are
// wasted processes at best; an in-cage portal would also answer a program's file dialog with
// an in-cage dialog, and shadow the host's portal that SessionBus=portal gives.
//
// So the service writes the daemon's configuration and its one service folder into a folder of
// its own on the host (the cage's runtime folder), bind-mounted read-only into the cage: the
// daemon reads them there, the cage can neither change nor replace them, and the service never
// reads or follows anything the cage can write. The service folder holds a symbolic link for
// each activatable service of the host's /usr that a program may legitimately start in its
// cage (dconf for GSettings, a program's own D-Bus-activated server such as gnome-terminal's,
// GVfs, GLib's proxy helper...), to the same file in the cage's /usr: the daemon follows them
// inside the cage, so a container cage starts its image's program, and a name its image lacks
// is a dangling link, which dbus-daemon skips.

/** Where the folder is in the cage. */
export const BUS_CONFIG_DIR_IN_CAGE = path.posix.join(IN_CAGE.kagomeRun, 'session-bus');
export const BUS_CONFIG_FILE = 'session.conf';
const SERVICES = 'services';

/** The folders of activatable session services that `standard_session_servicedirs` reads in /usr. */
export const HOST_SERVICE_DIRS = ['/usr/local/share/dbus-1/services', '/usr/share/dbus-1/services'];

/**
 * The services a cage's bus does not activate, by their bus name: the portals and their
 * backends (the host's come through SessionBus=portal, never an in-cage one), and the desktop
 * session's services, which are the host's to run and would be empty copies in a cage (systemd's
 * user manager, notification servers, the secrets service and keyrings, the accessibility
 * bus, whose screen reader is on the host and cannot reach in).
 */
export function leftOutOfCages(name: string): boolean {
  return (
    /^org\.freedesktop\.(impl\.)?portal\./.test(name) ||
    /^org\.freedesktop\.(systemd1|Notifications|secrets)$/.test(name) ||
    /^org\.gnome\.keyring(\.|$)/.test(name) ||
    name === 'org.a11y.Bus'
  );
}

/** The Name= of a .service file's [D-BUS Service] group, or undefined. */
export function serviceName(text: string): string | undefined {
  let inGroup = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('[')) inGroup = line === '[D-BUS Service]';
    else if (inGroup) {
      const m = /^Name\s*=\s*(.*)$/.exec(line);
      if (m) return m[1]!.trim();
    }
  }
  return undefined;
}

/** The daemon's configuration: the session bus's own, with `servicesDir` as its only service folder. */
export function busConfig(servicesDir: string): string {
  const esc = servicesDir.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<!-- Written by kagome for a cage's own session bus (lib/bridges/session-bus-config.ts):
     Debian's session.conf without its standard service folders and includes. -->
<busconfig>
  <type>session</type>
  <keep_umask/>
  <!-- kagome passes the cage's address with address= -->
  <listen>unix:tmpdir=/tmp</listen>
  <auth>EXTERNAL</auth>
  <servicedir>${esc}</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
  <limit name="max_incoming_bytes">1000000000</limit>
  <limit name="max_incoming_unix_fds">250000000</limit>
  <limit name="max_outgoing_bytes">1000000000</limit>
  <limit name="max_outgoing_unix_fds">250000000</limit>
  <limit name="max_message_size">1000000000</limit>
  <limit name="service_start_timeout">120000</limit>
  <limit name="auth_timeout">240000</limit>
  <limit name="pending_fd_timeout">150000</limit>
  <limit name="max_completed_connections">100000</limit>
  <limit name="max_incomplete_connections">10000</limit>
  <limit name="max_connections_per_user">100000</limit>
  <limit name="max_pending_service_starts">10000</limit>
  <limit name="max_names_per_connection">50000</limit>
  <limit name="max_match_rules_per_connection">50000</limit>
  <limit name="max_replies_per_connection">50000</limit>
</busconfig>
`;
}

/**
 * Writes the configuration and the service folder into `dir` (on the host, the service's own),
 * for the cage to see at BUS_CONFIG_DIR_IN_CAGE. Files are replaced inside the folder, never the
 * folder itself, which a running cage has bind-mounted. Returns the names left out.
 */
export function writeBusConfig(dir: string, hostServiceDirs = HOST_SERVICE_DIRS): string[] {
  const services = path.join(dir, SERVICES);
  fs.mkdirSync(services, { recursive: true, mode: 0o755 });
  const links = new Map<string, string>();
  const leftOut: string[] = [];
  // In dbus-daemon the first folder to hold a file wins: read them last to first.
  for (const folder of [...hostServiceDirs].reverse()) {
    let entries: string[];
    try {
      entries = fs.readdirSync(folder);
    } catch {
      continue;
    }
    for (const file of entries) {
      if (!file.endsWith('.service') || file.includes('/')) continue;
      let text: string;
      try {
        text = fs.readFileSync(path.join(folder, file), 'utf8');
      } catch {
        continue;
      }
      const name = serviceName(text);
      if (!name) continue;
      if (leftOutOfCages(name)) {
        leftOut.push(name);
        links.delete(file);
        continue;
      }
      links.set(file, path.posix.join(folder, file));
    }
  }
  for (const old of fs.readdirSync(services))
    if (!links.has(old)) fs.rmSync(path.join(services, old), { force: true });
  for (const [file, target] of links) {
    const at = path.join(services, file);
    fs.rmSync(at, { force: true });
    fs.symlinkSync(target, at);
  }
  const conf = path.join(dir, BUS_CONFIG_FILE);
  fs.writeFileSync(`${conf}.tmp`, busConfig(path.posix.join(BUS_CONFIG_DIR_IN_CAGE, SERVICES)));
  fs.renameSync(`${conf}.tmp`, conf);
  return [...new Set(leftOut)].sort();
}
