import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { KagomeError } from '../errors.js';
import { requireProgram } from '../requirements.js';
import { IN_CAGE } from '../sandbox.js';
import { readBwrapInfo } from '../backends/bwrap-info.js';
import { HOST_USR } from '../display/client-sandbox.js';
import { childrenOf, isAlive, procRef, waitUntil, type ProcRef } from '../runtime/proc.js';

// The host's portals on a cage's own bus (SessionBus=portal). Two parts:
//
// - On the host, xdg-dbus-proxy (flatpak's wall, Debian package xdg-dbus-proxy) between the
//   host's session bus and a socket the cage sees, with a filter that lets calls through to the
//   FileChooser portal and nothing else: no other name can be called, seen, owned or listened
//   to. The proxy is the only host process that reads what the cage sends, and it runs in a
//   bubblewrap sandbox of its own: the host's /usr, the host bus's socket, its own socket's
//   folder, and a /.flatpak-info naming the cage's app id. xdg-desktop-portal 1.16 knows a
//   caller by the pid of its connection, which through a proxy is the proxy's, and reads
//   /proc/PID/root/.flatpak-info (src/xdp-utils.c): so the portal sees the cage as the
//   sandboxed app io.kagome.Cage_NAME, the id its file grants already use, and a file the
//   person picks comes back as a document-portal file granted to that cage alone (a caller
//   without the file would be "the host" and get the raw host path).
//
// - In the cage, a relay (PORTAL_RELAY) that owns org.freedesktop.portal.Desktop on the cage's
//   own bus and passes calls to that name through the proxy, and the replies and the request's
//   Response signal back to the caller. The cage keeps its private bus (single instance,
//   GApplication names, dconf, which a bus that is the host's through a filter would refuse or
//   put on the host's bus), and gains the portal. The relay is the cage's own program and may
//   be replaced by anything the cage runs: the wall is the proxy's filter, not the relay.

/** Where the proxy's socket folder is in the cage (a folder, so a proxy started again is seen). */
export const PORTAL_DIR_IN_CAGE = path.posix.join(IN_CAGE.kagomeRun, 'portal');
const SOCKET_NAME = 'bus';
/** Inside the proxy's own sandbox. */
const HOST_BUS_IN_PROXY = '/run/host/bus';
const SOCKET_DIR_IN_PROXY = '/run/portal';
const READY_MS = 10000;

export function portalAddressInCage(): string {
  return `unix:path=${path.posix.join(PORTAL_DIR_IN_CAGE, SOCKET_NAME)}`;
}

/**
 * What the proxy lets through: calls to the FileChooser portal's methods on its one object and
 * Close on the requests it made; replies and the Response signal come back because xdg-dbus-
 * proxy passes a reply to a call it let through and a signal sent to the caller by a name it
 * may talk to. No --own, --talk or --see: the cage owns nothing on the host's bus and cannot
 * list, call or watch anything else there, eavesdropping and BecomeMonitor included.
 */
export function portalProxyRules(
  o: { notifications: boolean } = { notifications: true },
): string[] {
  const portal = 'org.freedesktop.portal.Desktop';
  return [
    '--filter',
    `--call=${portal}=org.freedesktop.portal.FileChooser.*@/org/freedesktop/portal/desktop`,
    `--call=${portal}=org.freedesktop.portal.Request.Close@/org/freedesktop/portal/desktop/request/*`,
    // Links go to kagome, not to the portal's OpenURI, which would open them with the host's
    // uncaged default program: the one kagome method made for cages, which knows the caller
    // by this proxy and checks what it sends (lib/links.ts). Nothing else of kagome's.
    `--call=${CAGE_PORTAL_NAME}=${CAGE_PORTAL_IFACE}.OpenURI@${CAGE_PORTAL_PATH}`,
    // Notifications go to kagome too, not to the host's Notification portal: xdg-desktop-portal
    // 1.16 and its GTK backend pass title and body to the notification server as they are
    // (markup, links and all) with no app name, so the person could not tell a cage's
    // "System update" from the host's. kagome sends them itself, as plain text marked with the
    // cage's name (lib/cage-notifications.ts). Notifications=none leaves the rule out, so the
    // proxy refuses them.
    ...(o.notifications
      ? ['AddNotification', 'RemoveNotification'].map(
          (m) => `--call=${CAGE_PORTAL_NAME}=${CAGE_PORTAL_IFACE}.${m}@${CAGE_PORTAL_PATH}`,
        )
      : []),
  ];
}

/** kagome's own methods for cages, called through the proxy (dbus/io.kagome.CagePortal1.xml). */
export const CAGE_PORTAL_NAME = 'io.kagome.Kagome';
export const CAGE_PORTAL_PATH = '/io/kagome/Kagome';
export const CAGE_PORTAL_IFACE = 'io.kagome.CagePortal1';

/** The file the portal reads to name its caller. */
export function flatpakInfo(appId: string): string {
  return `[Application]\nname=${appId}\n`;
}

/** The socket file of a unix:path= bus address (percent-escapes undone). */
export function busSocketPath(address: string): string | undefined {
  const m = /^unix:(?:.*,)?path=([^,]*)/.exec(address);
  if (!m) return undefined;
  try {
    return decodeURIComponent(m[1]!);
  } catch {
    return undefined;
  }
}

/** bwrap's arguments around the proxy; fd `infoFd` takes bwrap's report, fd `appInfoFd` holds flatpakInfo. */
export function portalProxyArgs(o: {
  program: string;
  hostBusSocket: string;
  socketDir: string;
  infoFd: number;
  appInfoFd: number;
  notifications?: boolean;
}): string[] {
  return [
    '--unshare-all',
    '--unshare-user',
    '--new-session',
    '--clearenv',
    '--info-fd',
    String(o.infoFd),
    ...HOST_USR,
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    '--ro-bind-data',
    String(o.appInfoFd),
    '/.flatpak-info',
    '--ro-bind',
    o.hostBusSocket,
    HOST_BUS_IN_PROXY,
    '--bind',
    o.socketDir,
    SOCKET_DIR_IN_PROXY,
    '--',
    o.program,
    `unix:path=${HOST_BUS_IN_PROXY}`,
    path.posix.join(SOCKET_DIR_IN_PROXY, SOCKET_NAME),
    ...portalProxyRules({ notifications: o.notifications ?? true }),
  ];
}

/**
 * Starts the proxy, detached so that it outlives a restart of the service, and returns the
 * proxy's own process (the child of its sandbox's init, which ends with it) once its socket
 * listens.
 */
export async function startPortalProxy(o: {
  hostBusAddress: string;
  socketDir: string;
  appId: string;
  logFd: number;
  notifications: boolean;
}): Promise<ProcRef> {
  const bwrap = requireProgram('bwrap', "to confine a cage's portal proxy");
  // Run by its path in the host's /usr, which is the proxy's.
  const program = requireProgram(
    'xdg-dbus-proxy',
    "to carry a SessionBus=portal cage's calls to the host's portals",
  );
  const hostBusSocket = busSocketPath(o.hostBusAddress);
  if (!hostBusSocket)
    throw new KagomeError(
      'NotSupported',
      `the session bus address ${o.hostBusAddress} has no socket path for the portal proxy`,
    );
  fs.mkdirSync(o.socketDir, { recursive: true, mode: 0o700 });
  const socket = path.join(o.socketDir, SOCKET_NAME);
  fs.rmSync(socket, { force: true });
  const child = spawn(
    bwrap,
    portalProxyArgs({
      program,
      hostBusSocket,
      socketDir: o.socketDir,
      infoFd: 3,
      appInfoFd: 4,
      notifications: o.notifications,
    }),
    {
      detached: true,
      env: {},
      stdio: ['ignore', o.logFd, o.logFd, 'pipe', 'pipe'],
    },
  );
  child.on('error', () => undefined);
  const data = child.stdio[4] as NodeJS.WritableStream;
  data.on('error', () => undefined);
  data.end(flatpakInfo(o.appId));
  const info = child.stdio[3] as NodeJS.ReadableStream & { destroy(): void };
  info.on('error', () => undefined);
  const init = await readBwrapInfo(info);
  child.unref();
  let pid: number | undefined;
  await waitUntil(
    () => (pid = childrenOf(init)[0]) !== undefined || !isAlive(procRef(init)),
    READY_MS,
    5,
  );
  if (pid === undefined)
    throw new KagomeError(
      'Failed',
      'the portal proxy ended as it started; its messages are in the cage log',
    );
  const proxy = procRef(pid);
  const listening = await waitUntil(() => fs.existsSync(socket) || !isAlive(proxy), READY_MS, 10);
  if (!listening || !fs.existsSync(socket)) {
    throw new KagomeError(
      'Failed',
      `the portal proxy did not listen within ${READY_MS / 1000} s; its messages are in the cage log`,
    );
  }
  return proxy;
}

/**
 * Runs in the cage (python3 with GLib's GDBus, python3-gi, which xpra needs too): argv is the
 * cage's bus and the proxy's address. Writes "ready" on fd 3 once it owns the portal's name on
 * the cage's bus; ends when either connection closes.
 *
 * Calls to the name (or to the relay's own unique name, which GDBusProxy uses once it has
 * looked the owner up) are sent on through the proxy, and their replies returned to the caller
 * with its serial. A call that returns a request handle (o) names the caller that request's
 * Response goes to: the portal sends it to the relay, the relay to that caller. The handle then
 * carries the relay's name on the host's bus, not the caller's, which GTK and GIO accept (they
 * subscribe again when the returned handle differs from the one they expected). GDBus runs the
 * filters of both connections in its one worker thread, in the order messages arrive, so a
 * reply is always seen before the Response that follows it.
 *
 * OpenURI is the relay's own: it answers with a request handle, passes the URI to kagome's
 * CagePortal1.OpenURI through the proxy, and sends the request's Response (0 opened, 2 not)
 * when kagome has answered, however long that takes (OpenLinks=ask waits for the person). OpenFile
 * and OpenDirectory are refused: files are not links.
 *
 * A file chooser call's parent_window is emptied (it names a window of the cage's display), and
 * property reads are the relay's: the chooser's version, nothing else.
 *
 * Notification calls (AddNotification, RemoveNotification) go to kagome's CagePortal1 methods of
 * the same name and arguments instead of the portal; replies come back as for any call.
 */
export const PORTAL_RELAY = String.raw`
import os, re, sys
from gi.repository import Gio, GLib
NAME = 'org.freedesktop.portal.Desktop'
REQUEST = '/org/freedesktop/portal/desktop/request/'
T = Gio.DBusMessageType
flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
cage = Gio.DBusConnection.new_for_address_sync(sys.argv[1], flags, None, None)
host = Gio.DBusConnection.new_for_address_sync(sys.argv[2], flags, None, None)
loop = GLib.MainLoop()
pending = {}
requests = {}
KAGOME = ('io.kagome.Kagome', '/io/kagome/Kagome', 'io.kagome.CagePortal1')
tokens = [0]
def open_uri(msg):
    body = msg.get_body()
    if msg.get_member() != 'OpenURI' or body is None or body.get_type_string() != '(ssa{sv})':
        cage.send_message(Gio.DBusMessage.new_method_error_literal(msg, 'org.freedesktop.portal.Error.NotAllowed',
            'kagome: a cage opens links (OpenURI), not files or folders; give a file to another cage with Open in cage'), Gio.DBusSendMessageFlags.NONE)
        return
    _, uri, opts = body.unpack()
    caller = msg.get_sender()
    token = opts.get('handle_token')
    if not isinstance(token, str) or not re.fullmatch('[A-Za-z0-9_]{1,64}', token):
        tokens[0] += 1
        token = 'kagome%d' % tokens[0]
    handle = REQUEST + caller[1:].replace('.', '_') + '/' + token
    reply = Gio.DBusMessage.new_method_reply(msg)
    reply.set_body(GLib.Variant('(o)', (handle,)))
    cage.send_message(reply, Gio.DBusSendMessageFlags.NONE)
    def done(conn, res, _):
        try:
            conn.call_finish(res)
            code = 0
        except GLib.Error as e:
            sys.stderr.write('kagome portal relay: the link was not opened: %s\n' % e.message)
            code = 2
        sig = Gio.DBusMessage.new_signal(handle, 'org.freedesktop.portal.Request', 'Response')
        sig.set_body(GLib.Variant('(ua{sv})', (code, {})))
        sig.set_destination(caller)
        cage.send_message(sig, Gio.DBusSendMessageFlags.NONE)
    host.call(KAGOME[0], KAGOME[1], KAGOME[2], 'OpenURI', GLib.Variant('(sa{sv})', (uri, {})), None, Gio.DBusCallFlags.NONE, GLib.MAXINT, None, done, None)
CHOOSER = 'org.freedesktop.portal.FileChooser'
# The proxy lets no property through. Qt's dialog reads the chooser's version to decide what it
# may ask for (folders from version 3), so the relay answers for it: Debian 12's portal (1.16)
# implements version 3, and a portal that knows less ignores the options it does not know.
VERSIONS = {CHOOSER: 3}
def properties(msg):
    body = msg.get_body()
    member = msg.get_member()
    kind = body.get_type_string() if body is not None else '()'
    args = body.unpack() if body is not None else ()
    if member == 'Get' and kind == '(ss)' and args[1] == 'version' and args[0] in VERSIONS:
        out = GLib.Variant('(v)', (GLib.Variant('u', VERSIONS[args[0]]),))
    elif member == 'GetAll' and kind == '(s)':
        found = {'version': GLib.Variant('u', VERSIONS[args[0]])} if args[0] in VERSIONS else {}
        out = GLib.Variant('(a{sv})', (found,))
    else:
        cage.send_message(Gio.DBusMessage.new_method_error_literal(msg, 'org.freedesktop.DBus.Error.AccessDenied',
            'kagome: a cage reads only the portals\' versions'), Gio.DBusSendMessageFlags.NONE)
        return
    reply = Gio.DBusMessage.new_method_reply(msg)
    reply.set_body(out)
    cage.send_message(reply, Gio.DBusSendMessageFlags.NONE)
def to_host(conn, msg, incoming, _):
    if not incoming or msg.get_message_type() != T.METHOD_CALL:
        return msg
    dest = msg.get_destination()
    if dest != NAME and not (dest == cage.get_unique_name() and msg.get_interface() != 'org.freedesktop.DBus.Peer'):
        return msg
    if msg.get_interface() == 'org.freedesktop.portal.OpenURI':
        open_uri(msg)
        return None
    if msg.get_interface() == 'org.freedesktop.DBus.Properties':
        properties(msg)
        return None
    out = msg.copy()
    out.set_destination(NAME)
    body = out.get_body()
    if msg.get_interface() == CHOOSER and body is not None and body.n_children() > 0 and body.get_child_value(0).get_type_string() == 's':
        # parent_window names a window of the cage's display, which on the host's is another
        # window or none: the dialog is the host's own, without a parent.
        out.set_body(GLib.Variant.new_tuple(GLib.Variant('s', ''), *[body.get_child_value(i) for i in range(1, body.n_children())]))
    if msg.get_interface() == 'org.freedesktop.portal.Notification':
        # kagome's own methods, same arguments: it sends the notification, marked and plain.
        out.set_destination(KAGOME[0])
        out.set_path(KAGOME[1])
        out.set_interface(KAGOME[2])
    out.set_sender(None)
    ok, serial = host.send_message(out, Gio.DBusSendMessageFlags.NONE)
    if not msg.get_flags() & Gio.DBusMessageFlags.NO_REPLY_EXPECTED:
        pending[serial] = (msg.get_sender(), msg.get_serial())
    return None
def to_cage(conn, msg, incoming, _):
    if not incoming:
        return msg
    kind = msg.get_message_type()
    if kind in (T.METHOD_RETURN, T.ERROR):
        caller = pending.pop(msg.get_reply_serial(), None)
        if caller is None:
            return msg
        out = msg.copy()
        out.set_destination(caller[0])
        out.set_reply_serial(caller[1])
        out.set_sender(None)
        body = msg.get_body()
        if kind == T.METHOD_RETURN and body is not None and body.get_type_string() == '(o)' and body[0].startswith(REQUEST):
            requests[body[0]] = caller[0]
        cage.send_message(out, Gio.DBusSendMessageFlags.NONE)
        return None
    if kind == T.SIGNAL and msg.get_sender() != 'org.freedesktop.DBus':
        caller = requests.get(msg.get_path())
        if msg.get_destination() is None or caller is None:
            return None
        if msg.get_member() == 'Response':
            del requests[msg.get_path()]
        out = msg.copy()
        out.set_sender(None)
        out.set_destination(caller)
        cage.send_message(out, Gio.DBusSendMessageFlags.NONE)
        return None
    return msg
cage.add_filter(to_host, None)
host.add_filter(to_cage, None)
host.connect('closed', lambda *a: loop.quit())
cage.connect('closed', lambda *a: loop.quit())
got = cage.call_sync('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'RequestName', GLib.Variant('(su)', (NAME, 4)), None, Gio.DBusCallFlags.NONE, -1, None)
if got[0] != 1:
    sys.exit('kagome portal relay: %s already has an owner on the cage bus' % NAME)
os.write(3, b'ready\n')
os.close(3)
loop.run()
sys.exit('kagome portal relay: a connection closed')
`;
