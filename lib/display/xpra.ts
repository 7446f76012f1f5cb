import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { KagomeError } from '../errors.js';
import { requireProgram } from '../requirements.js';
import { childrenOf, isAlive, procRef, signal, waitUntil, type ProcRef } from '../runtime/proc.js';
import { checkRecord, F } from '../runtime/record-check.js';
import { IN_CAGE, type Contribution } from '../sandbox.js';
import type { Backend, SandboxRecord } from '../backends/backend.js';
import type { CageDisplay, DisplayContext, DisplayRecord } from './display.js';
import { CLIENT_XPRA_DIR, clientSandboxArgs, writeClientEtc } from './client-sandbox.js';
import { readBwrapInfo } from '../backends/bwrap-info.js';
import {
  DISPLAY_SETTINGS_SCRIPT,
  FALLBACK_DPI,
  scaleEnvFor,
  readHostScreen,
} from './host-screen.js';

// xpra: the server (with its own Xvfb) runs inside the cage; its unix socket lies in a host
// directory bind-mounted into the cage, and a host-side `xpra attach` shows each cage window as
// a normal host window with its WM_CLASS, plus a border in the cage's colour.
//
// Cold start is dominated by xpra's Python start-up on both ends, so the two run in parallel:
// a few lines of Python inside the cage bind the socket first and hand it to the server through
// systemd socket activation (LISTEN_FDS, which xpra supports), so the client can be started
// about 30 ms after the cage, and the kernel queues its connection until the server accepts.
// Measured on Debian 12 with xpra 3.1.3: attached after ~1.2 s instead of ~1.7 s.
//
// Display numbers: the X server lives in the cage's own network namespace (abstract sockets)
// and its own /tmp (path sockets), so the fixed number below can never collide with another
// cage or the host; nothing is guessed and nothing can race.

export const XPRA_DISPLAY = ':100';
const SOCKET_NAME = 'xpra.sock';
const X_SOCKET_IN_CAGE = '/tmp/.X11-unix/X100';

const SOCKET_ACTIVATE = [
  'import os, socket, sys',
  'path = sys.argv[1]',
  'try: os.unlink(path)',
  'except FileNotFoundError: pass',
  's = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)',
  's.bind(path); os.chmod(path, 0o600); s.listen(64)',
  'if s.fileno() != 3: os.dup2(s.fileno(), 3)',
  'os.set_inheritable(3, True)',
  "os.environ['LISTEN_FDS'] = '1'; os.environ['LISTEN_PID'] = str(os.getpid())",
  'os.execvp(sys.argv[2], sys.argv[2:])',
].join('\n');

// Everything that would carry data between cage and host beyond windows is off: sound and
// clipboard get their own bridges with a policy; file transfer, URL and file opening would let
// a cage hand things to the host unasked. Tray icons (--system-tray) follow the cage's
// TrayIcons= key (xpraServerArgv, xpraClientArgv).
const COMMON_OPTIONS = [
  '--mdns=no',
  '--pulseaudio=no',
  '--notifications=no',
  '--webcam=no',
  '--printing=no',
  '--file-transfer=no',
  '--open-files=no',
  '--open-url=no',
  '--clipboard=no',
  '--opengl=no',
  '--bell=no',
  '-d',
  'none',
];

// xpra's default Xvfb screen (5760x2560) is not a mode the host client asks for, so at every
// attach xpra 3.1 adds the mode and sleeps 500 ms. Starting the cage's Xvfb at the host's size
// removes that sleep: attached after ~0.6 s instead of ~1.2 s (Debian 12, xpra 3.1.3). It also
// starts at the host's DPI (host-screen.ts), so the attach changes neither. That size is also
// the most Xvfb's RandR allows: a host screen made smaller later is followed (the client asks,
// the server resizes), one made bigger than it was gives windows no more room until the cage
// restarts. A larger maximum would cost its framebuffer, which Xvfb fills at start: 54 MiB more
// per cage for 5760x2560.
export const DEFAULT_SCREEN = '5760x2560';

export function xvfbCommand(screen: string, dpi = FALLBACK_DPI): string {
  return `Xvfb +extension GLX +extension Composite -screen 0 ${screen}x24+32 -dpi ${dpi} -nolisten tcp -noreset -auth $XAUTHORITY`;
}

/**
 * The server reads no configuration files: the distribution's (Debian's /etc/xpra runs
 * `start = /etc/X11/Xsession true`, which ran the host's session scripts in every cage and
 * showed an Xsession error window) nor any a program in the cage could write. Every option it
 * needs is on its command line. /dev/null is not a folder, so xpra finds no files there.
 */
export const XPRA_SERVER_ENV = {
  XPRA_SYSTEM_CONF_DIRS: '/dev/null',
  XPRA_USER_CONF_DIRS: '/dev/null',
} as const;

/**
 * How the server is started: xpra's own entry point, with two changes to its window manager
 * (xpra 3.1's x11/models and gtk_x11/wm.py), both races between a program and the server.
 *
 * A window mapped and at once withdrawn stayed on the host, black. The program's map request
 * waits for xpra; its unmap right after is a no-op on a window still unmapped, and xpra then
 * manages and maps the window the program has withdrawn. ICCCM 4.1.4 has a program send a
 * synthetic UnmapNotify to the root for this (Qt and Xlib's XWithdrawWindow do), but xpra routes
 * an event delivered to the root to its Wm object, which has no handler for it (gdk_bindings
 * _route_event, "xpra-child-unmap-event"), so the window stayed mapped, in the cage and on the
 * host. FeatherPad does this with a hidden window whenever it is asked to open a file. The
 * server now unmaps such a window, as the program asked, and xpra's own handling of that
 * unmap unmanages it; a program that maps the window again before then keeps it shown.
 *
 * A window's title (or class, hints, icon) changed right after it was mapped could stay
 * unseen: xpra reads a new window's properties (CoreX11WindowModel.call_setup,
 * _read_initial_X11_properties) before it asks for their change events (setup, addDefaultEvents),
 * so a change in between reached no one, and the host window kept the earlier title
 * ("FeatherPad" where the program had set its file's name). They are read once more once the
 * events are asked for.
 *
 * And the server says it reads _NET_WM_ICON, as it does. xpra 3.1's list of what its window
 * manager supports (gtk_x11/wm.py DEFAULT_NET_SUPPORTED) lacks a comma after
 * "_NET_WM_STRUT_PARTIAL", so the root's _NET_SUPPORTED named "_NET_WM_STRUT_PARTIAL_NET_WM_ICON"
 * instead. LibreOffice's X11 backend (VCL "gen", vcl/unx/generic: X11SalFrame::Init,
 * NetWMAdaptor::initAtoms) writes _NET_WM_ICON only where _NET_SUPPORTED lists it, and
 * otherwise only WM_HINTS' icon pixmap, which xpra does not forward: its host windows had no
 * icon, and the host's window manager showed its generic one. The icon's pixels take the path
 * every program's _NET_WM_ICON already took (read up to 4 MiB, x11/prop_conv.py PROP_SIZES;
 * scaled to the client's size by server/window/windowicon_source.py). A program that sets
 * only the pixmap whatever the list says still gets no icon on the host.
 *
 * A server without the parts patched (another xpra in a container image) runs unpatched, and
 * says so in the cage log.
 */
export const XPRA_SERVER_LAUNCHER = [
  'import ctypes, sys',
  // Named as xpra's own script would be (the bench counts the cage's "xpra" processes).
  'ctypes.CDLL(None).prctl(15, b"xpra", 0, 0, 0)',
  'from xpra.platform import init, set_default_name',
  'set_default_name("Xpra")',
  'init()',
  'from xpra.log import Logger',
  // Called once xpra has opened the cage's display: the window manager's modules need it.
  'def patch_server():',
  '    from gi.repository import GObject',
  '    from xpra.gtk_common.error import xswallow',
  '    from xpra.gtk_common.gobject_util import one_arg_signal',
  '    from xpra.x11.bindings.window_bindings import X11WindowBindings',
  '    from xpra.x11.gtk_x11 import wm',
  '    from xpra.x11.gtk_x11.gdk_bindings import add_catchall_receiver',
  '    from xpra.x11.models.core import CoreX11WindowModel',
  '    X = X11WindowBindings()',
  // Before the Wm object writes the list to the root window (Wm.__init__, "_NET_SUPPORTED").
  '    supported = getattr(wm, "NET_SUPPORTED", None)',
  '    if isinstance(supported, list) and "_NET_WM_ICON" not in supported:',
  '        supported.append("_NET_WM_ICON")',
  '    managers = []',
  // Windows whose withdrawal the server completes, by window: the serial of its unmap.
  '    withdrawing = {}',
  '    original_wm_init = wm.Wm.__init__',
  '    def wm_init(self, *args, **kwargs):',
  '        original_wm_init(self, *args, **kwargs)',
  '        managers.append(self)',
  '    wm.Wm.__init__ = wm_init',
  '    class Withdrawals(GObject.GObject):',
  '        __gsignals__ = {"xpra-child-unmap-event": one_arg_signal}',
  '        def do_xpra_child_unmap_event(self, event):',
  '            if not event.send_event or event.window is None or event.delivered_to is None:',
  '                return',
  '            for manager in managers:',
  '                model = manager._windows.get(event.window)',
  '                if model is None or event.delivered_to.get_xid() != manager._root.get_xid():',
  '                    continue',
  // Mapped: unmapped, and xpra's own handling of the UnmapNotify that follows unmanages it,
  // in the order of the events (unmanaged here, the frame window xpra destroys would still
  // be named by events to come, and another window could be taken for it).
  '                mapped = False',
  '                with xswallow:',
  '                    mapped = X.is_mapped(model.xid)',
  '                    if mapped:',
  '                        withdrawing[model.xid] = X.Unmap(model.xid)',
  '                if not mapped:',
  '                    model.unmanage()',
  '    GObject.type_register(Withdrawals)',
  // A catch-all receiver hears every event xpra routes, also those the Wm object ignores.
  '    add_catchall_receiver("xpra-child-unmap-event", Withdrawals())',
  // Mapped again before that UnmapNotify came: the program wants it shown after all, so it
  // stays managed and is mapped again, and the UnmapNotify is taken for the server's own.
  '    original_manage = wm.Wm._manage_client',
  '    def manage_client(self, gdkwindow):',
  '        model = self._windows.get(gdkwindow) if gdkwindow is not None else None',
  '        serial = withdrawing.pop(model.xid, None) if model is not None else None',
  '        if serial is None:',
  '            return original_manage(self, gdkwindow)',
  '        model.last_unmap_serial = serial',
  '        with xswallow:',
  '            X.MapWindow(model.xid)',
  '    wm.Wm._manage_client = manage_client',
  '    original_call_setup = CoreX11WindowModel.call_setup',
  '    def call_setup(self):',
  '        withdrawing.pop(self.xid, None)',
  '        original_call_setup(self)',
  '        handlers = []',
  '        for name in self._initial_x11_properties:',
  '            handler = self._x11_property_handlers.get(name)',
  '            if handler and handler not in handlers:',
  '                handlers.append(handler)',
  '                with xswallow:',
  '                    handler(self)',
  '    CoreX11WindowModel.call_setup = call_setup',
  'try:',
  '    from xpra.scripts import server as xpra_server',
  '    original_make_server = xpra_server.make_server',
  '    def make_server(*args):',
  '        try:',
  '            patch_server()',
  '        except Exception as e:',
  '            Logger("server").warn("kagome: xpra\'s window manager is not patched: %s", e)',
  '        return original_make_server(*args)',
  '    xpra_server.make_server = make_server',
  'except Exception as e:',
  '    Logger("server").warn("kagome: xpra\'s server is not patched: %s", e)',
  'from xpra.scripts.main import main',
  'sys.exit(main("/usr/bin/xpra", ["/usr/bin/xpra"] + sys.argv[1:]))',
].join('\n');

export function xpraServerArgv(
  screen = DEFAULT_SCREEN,
  dpi = FALLBACK_DPI,
  trayIcons = false,
): string[] {
  return [
    'python3',
    '-I',
    '-c',
    SOCKET_ACTIVATE,
    path.posix.join(IN_CAGE.xpraDir, SOCKET_NAME),
    'python3',
    '-I',
    '-c',
    XPRA_SERVER_LAUNCHER,
    'start',
    XPRA_DISPLAY,
    '--bind=none',
    '--daemon=no',
    `--socket-dirs=${IN_CAGE.xpraDir}`,
    '--dbus-proxy=no',
    '--dbus-control=no',
    '--dbus-launch=',
    '--systemd-run=no',
    '--exit-with-children=no',
    '--start-new-commands=no',
    '--html=off',
    '--speaker=off',
    '--microphone=off',
    '--xsettings=no',
    '--start-via-proxy=no',
    '--av-sync=no',
    '--input-method=none',
    `--xvfb=${xvfbCommand(screen, dpi)}`,
    // xpra's Xinerama faking reaches only the programs xpra starts itself (an LD_PRELOAD
    // library, not even installed), but with it on, every attach wrote the host's monitors
    // (names and sizes) to ~/.fakexinerama in the cage's home and set the screen's size again
    // ("Xinerama workaround") under running programs, at the client's DPI. Empty, not "no":
    // xpra 3.1.3 keeps the value as a string and tests its truth, and "no" is true.
    '--fake-xinerama=',
    // The cage's X server gets a tray (xpra's, for XEmbed icons, _NET_SYSTEM_TRAY_S0) whose
    // icons the client shows in the host's tray; without it the cage has no tray at all.
    `--system-tray=${trayIcons ? 'yes' : 'no'}`,
    ...COMMON_OPTIONS,
  ];
}

/**
 * How the host client is started: xpra's own entry point, with these changes. xpra 3.1's client
 * does what the server's "control" packets ask, and the server is the cage's: any program in
 * the cage could make the host client open unbordered "Session Info" and "Bug Report" windows
 * on the host (`xpra control SOCKET client show_bug_report`) or turn on its debug logging.
 * Those requests are refused and logged, and no longer offered in the client's hello; the
 * compression and packet-encoding switches stay, they are part of the protocol.
 *
 * And the client's hello, which the cage's server keeps and shows to anyone in the cage
 * (`xpra info`), said who and where the host is: its hostname, the user's name and real name,
 * the machine id and a user id made from it, the client's command line (with the host path of
 * the cage's folder), the host's display name, window manager, workspace names, kernel,
 * processor and distribution, xpra's build, the monitors' colour profiles, the icon theme's
 * names and the sound server's. Those are left out (the workspaces keep their number, with
 * plain names), whether the client is confined or not (a remote cage's is not). What stays is
 * what drawing and typing need: screen and monitor sizes, DPI, keyboard layout and keymap,
 * encodings.
 *
 * And a window is placed by the host's window manager unless its program asked for a position
 * (USPosition or PPosition, xpra's "set-initial-position"), as on the host. xpra 3.1's client
 * moved every window to the spot where its program had created it, asked or not: ImageMagick's
 * display creates its window at (800, 800) of a 1600x1000 screen and leaves its placing to the
 * window manager, so a picture opened in a cage came up with most of it below the screen's
 * edge. Right after mapping, display also asks for a new size at the position it created the
 * window at, which it still believes it has (the cage's server has not heard of the host's
 * placement yet); that one request is taken as a resize only, and the server is told where the
 * window really is.
 *
 * A window in the cage looks focused when its host window has the keyboard focus. GTK 3 in the
 * cage draws a window as focused only while it carries _NET_WM_STATE_FOCUSED, which the cage's
 * xpra server advertises and sets from the "focused" state the client reports. xpra 3.1's client
 * reports what the host window manager writes in the host window's _NET_WM_STATE, so under a
 * window manager that never writes _NET_WM_STATE_FOCUSED (openbox, fluxbox, icewm, i3...) it said
 * "not focused" at the first change of that property, and every program in every cage had greyed
 * menus and text for good. The client reports instead the window it gives the keyboard focus to
 * in the cage (the window whose host window has the focus, on any window manager).
 *
 * _NET_WM_PID: GDK writes the client's pid, which in its sandbox is a pid of its own pid
 * namespace (2, say, or one of xpra's "signal listener" children), and a window manager that
 * offers to kill a window that stopped answering kills that pid on the host, some other process
 * of the person's. The client's windows carry none (the client cannot know its pid on the host),
 * so a window manager closes the client's X connection instead, and no signal listeners are
 * started. Window icons are the program's own, without xpra's logo drawn over half of them.
 *
 * The client does not watch the host's root window (--xsettings=no, xpraClientArgv), so it
 * never hears that the person switched workspaces (_NET_CURRENT_DESKTOP). xpra 3.1 slows a
 * window on another workspace to a frame a second and speeds it up again at that switch
 * (gtk_client_window_base do_workspace_changed, send_control_refresh); unheard, the window
 * would stay at a frame a second on the workspace the person came to. It is never slowed: a
 * window manager unmaps the windows of other workspaces, and the client then tells the
 * server, which unmaps the window in the cage, so it draws nothing anyway.
 */
export const XPRA_CLIENT_LAUNCHER = [
  'import ctypes, os, struct, sys, uuid',
  // Named as xpra's own script would be (ps, tests and the bench look for "xpra").
  'ctypes.CDLL(None).prctl(15, b"xpra", 0, 0, 0)',
  // xpra would derive it from the machine id, uid and home: the same on every attach.
  'os.environ["XPRA_USER_UUID"] = uuid.uuid4().hex',
  // Read when xpra's modules are imported.
  'os.environ["XPRA_ICON_OVERLAY"] = "0"',
  'os.environ["XPRA_SIGNAL_WATCHER"] = "0"',
  'from xpra.platform import init, set_default_name',
  'set_default_name("Xpra")',
  'init()',
  // Before the client's modules take their own references to these.
  'from xpra.platform import gui',
  'host_desktop_names = gui.get_desktop_names',
  'gui.get_wm_name = lambda: None',
  'gui.get_desktop_names = lambda: ["Desktop %d" % (i + 1) for i in range(len(host_desktop_names()))]',
  'from xpra.client import client_base, ui_client_base',
  'from xpra.log import Logger',
  'REFUSED = ("show_session_info", "show_bug_report", "debug")',
  'C = ui_client_base.UIXpraClient',
  'original_control, original_caps = C._process_control, C.get_control_commands_caps',
  'def process_control(self, packet):',
  '    command = packet[1].decode("latin1") if isinstance(packet[1], bytes) else str(packet[1])',
  '    if command in REFUSED:',
  '        Logger("client").warn("kagome: refused the cage server\'s control request %r", command)',
  '        return',
  '    return original_control(self, packet)',
  'def control_caps(self):',
  '    return {k: [c for c in v if c not in REFUSED] for k, v in original_caps(self).items()}',
  'C._process_control, C.get_control_commands_caps = process_control, control_caps',
  'WITHHELD = ("hostname", "username", "name", "argv", "machine_id", "display", "server_uuid", "wm_name",',
  '            "session-type", "session-type.full", "icc", "display-icc")',
  'WITHHELD_PREFIXES = ("platform.", "build.", "theme.", "sound.pulseaudio", "sound.device")',
  'def withheld(key):',
  '    key = key.decode("latin1") if isinstance(key, bytes) else str(key)',
  '    return key in WITHHELD or key.startswith(WITHHELD_PREFIXES)',
  // Every part of the hello (the base's, the mixins', GTK's) passes here, and only the hello.
  'original_send = client_base.XpraClientBase.send',
  'def send(self, *parts):',
  '    if parts and parts[0] == "hello":',
  '        parts = ("hello", {k: v for k, v in parts[1].items() if not withheld(k)}) + parts[2:]',
  '    return original_send(self, *parts)',
  'client_base.XpraClientBase.send = send',
  // The GTK window's setup calls this one first and moves the window only where _pos is not
  // (0, 0) afterwards; the GTK module itself cannot be loaded before the client opens its display.
  'from xpra.client.client_window_base import ClientWindowBase',
  'original_setup_window = ClientWindowBase.setup_window',
  'def setup_window(self, *args):',
  '    if not self._set_initial_position and not self.is_OR() and self._pos != (0, 0):',
  '        self._kagome_created_at, self._pos = self._pos, (0, 0)',
  '    return original_setup_window(self, *args)',
  'ClientWindowBase.setup_window = setup_window',
  'original_window_init = ClientWindowBase.__init__',
  'def window_init(self, *args, **kwargs):',
  '    cls = type(self)',
  '    if hasattr(cls, "move_resize") and not getattr(cls, "_kagome_moves", False):',
  '        cls._kagome_moves = True',
  '        original_move_resize = cls.move_resize',
  '        def move_resize(self, x, y, w, h, resize_counter=0):',
  '            created_at, self._kagome_created_at = getattr(self, "_kagome_created_at", None), None',
  '            if created_at != (x, y) or self.is_OR():',
  '                return original_move_resize(self, x, y, w, h, resize_counter)',
  '            here = self.get_drawing_area_geometry()[:2]',
  '            resized = self._size != (w, h)',
  '            original_move_resize(self, here[0], here[1], w, h, resize_counter)',
  '            if not resized:',
  '                self.send_configure_event()',
  '        cls.move_resize = move_resize',
  '    original_window_init(self, *args, **kwargs)',
  'ClientWindowBase.__init__ = window_init',
  // The window classes are patched once xpra has made the client: importing them earlier would
  // come before xpra's X11 bindings are set up for GDK's display.
  'def patch_windows():',
  '    from xpra.gtk_common.error import xswallow',
  '    from xpra.client.gtk_base import gtk_client_base, gtk_client_window_base as base',
  '    from xpra.client.mixins.window_manager import WindowClient',
  '    W = base.GTKClientWindowBase',
  '    def drop_pid(gdk_window):',
  '        if not base.HAS_X11_BINDINGS or gdk_window is None:',
  '            return',
  '        X = base.X11Window',
  '        with xswallow:',
  '            xid = gdk_window.get_xid()',
  '            leader = X.XGetWindowProperty(xid, "WM_CLIENT_LEADER", "WINDOW")',
  '            for w in (xid, struct.unpack("@L", leader[:struct.calcsize("@L")])[0] if leader else None):',
  '                if w:',
  '                    X.XDeleteProperty(w, "_NET_WM_PID")',
  '    original_realize, original_state = W.on_realize, W.update_window_state',
  '    def on_realize(self, widget):',
  '        original_realize(self, widget)',
  '        drop_pid(self.get_window())',
  '    def update_window_state(self, state_updates, focused=None):',
  '        state_updates = {k: v for k, v in state_updates.items() if k != "focused"}',
  '        if focused is not None:',
  '            state_updates["focused"] = focused',
  '        return original_state(self, state_updates)',
  '    W.on_realize, W.update_window_state = on_realize, update_window_state',
  '    original_refresh = W.send_control_refresh',
  '    def send_control_refresh(self, suspend_resume, *args, **kwargs):',
  '        return original_refresh(self, None if suspend_resume is True else suspend_resume, *args, **kwargs)',
  '    W.send_control_refresh = send_control_refresh',
  '    C = gtk_client_base.GTKXpraClient',
  '    original_leader = C.get_group_leader',
  '    def get_group_leader(self, *args):',
  '        leader = original_leader(self, *args)',
  // xpra's own hidden leaders are GDK toplevels too; a client window as leader is done already.
  '        if leader is not None and not isinstance(leader, W):',
  '            drop_pid(leader)',
  '        return leader',
  '    C.get_group_leader = get_group_leader',
  '    original_focus = WindowClient.send_focus',
  '    def send_focus(self, wid):',
  '        original_focus(self, wid)',
  '        for window in list(self._id_to_window.values()):',
  '            if isinstance(window, W) and not window.is_OR() and not window.is_tray():',
  '                window.update_window_state({}, focused=window._id == wid)',
  '    WindowClient.send_focus = send_focus',
  'from xpra.scripts import main as xpra_main',
  'original_make_client = xpra_main.make_client',
  'def make_client(*args):',
  '    client = original_make_client(*args)',
  '    patch_windows()',
  '    if TRAY_CAGE is not None:',
  '        patch_tray()',
  '    return client',
  // Tray icons (TrayIcons=true): xpra 3.1 shows each icon of the cage's tray as a GTK
  // StatusIcon in the host's tray, with the cage's window title of the icon as its tooltip, and
  // its pixels: both the cage's to choose, so a cage's icon could pass for the host's network or
  // update icon. The tooltip and title start with "[CAGE]", and the icon gets a frame in the
  // cage's border colour. The launcher's own arguments come first and are not xpra's.
  'TRAY_CAGE, TRAY_COLOUR = None, None',
  'while len(sys.argv) > 1 and sys.argv[1].startswith("--kagome-tray"):',
  '    key, _, value = sys.argv.pop(1).partition("=")',
  '    if key == "--kagome-tray":',
  '        TRAY_CAGE = value',
  '    else:',
  '        TRAY_COLOUR = value',
  'def patch_tray():',
  '    from gi.repository import Gdk',
  '    from xpra.client.gtk_base import statusicon_tray',
  '    T = statusicon_tray.GTKStatusIconTray',
  '    def label(text):',
  '        return "[%s] %s" % (TRAY_CAGE, text) if text else "[%s]" % TRAY_CAGE',
  '    original_init, original_pixbuf = T.__init__, T.set_icon_from_pixbuf',
  '    def init(self, *args, **kwargs):',
  '        original_init(self, *args, **kwargs)',
  '        self.tray_widget.set_tooltip_text(label(self.tooltip))',
  '        self.tray_widget.set_title(label(self.tooltip))',
  '    def set_tooltip(self, tooltip=None):',
  '        if self.tray_widget:',
  '            self.tray_widget.set_tooltip_text(label(tooltip))',
  '    rgba = Gdk.RGBA()',
  '    framed = bool(TRAY_COLOUR) and rgba.parse(TRAY_COLOUR.replace(" ", ""))',
  '    fill = (int(rgba.red * 255) << 24) | (int(rgba.green * 255) << 16) | (int(rgba.blue * 255) << 8) | 0xff',
  '    def set_icon_from_pixbuf(self, icon):',
  '        if icon and framed:',
  '            icon = icon.add_alpha(False, 0, 0, 0)',
  '            w, h = icon.get_width(), icon.get_height()',
  '            b = max(1, min(w, h) // 8)',
  '            for x, y, fw, fh in ((0, 0, w, b), (0, h - b, w, b), (0, 0, b, h), (w - b, 0, b, h)):',
  '                icon.new_subpixbuf(x, y, fw, fh).fill(fill)',
  '        original_pixbuf(self, icon)',
  '    T.__init__, T.set_tooltip, T.set_icon_from_pixbuf = init, set_tooltip, set_icon_from_pixbuf',
  'xpra_main.make_client = make_client',
  'sys.exit(xpra_main.main("/usr/bin/xpra", ["/usr/bin/xpra"] + sys.argv[1:]))',
].join('\n');

/**
 * The host client. `socketPath` is the server's socket in the cage's xpra folder, or, for a
 * cage on another machine, the script xpra runs in place of ssh (see remoteProxyScript).
 */
export function xpraClientArgv(
  socketPath: string,
  border: string | undefined,
  remote = false,
  trayCage?: string,
): string[] {
  return [
    // For XPRA_CLIENT_LAUNCHER, which takes them off: the cage's tray icons are marked with it.
    ...(trayCage !== undefined
      ? [`--kagome-tray=${trayCage}`, ...(border ? [`--kagome-tray-colour=${border}`] : [])]
      : []),
    'attach',
    ...(remote
      ? [`ssh://kagome/${XPRA_DISPLAY.slice(1)}`, `--ssh=${socketPath}`]
      : [`socket:${socketPath}`]),
    // Keep the program's own title; the border colour tells cages apart.
    '--title=@title@',
    ...(border ? [`--border=${border},3`] : ['--border=no']),
    '--tray=no',
    '--speaker=disabled',
    '--microphone=disabled',
    // The client would send its own log lines to the server, which is the cage's.
    '--remote-logging=no',
    // Nothing of the host's settings: xpra 3.1's client would send the host's XSETTINGS and X
    // resources (RESOURCE_MANAGER) to the cage's server, which ignores them (--xsettings=no
    // there; kagome sets the cage's Xft.dpi itself), and to watch them it passes every event of
    // the host display through xpra's X11 filter, an XSync round trip for each window an event
    // names (x11/gtk3/gdk_bindings). A new window brings a burst of such events: the client
    // handled its map event 28-51 ms and drew the first pixels 42-69 ms after the host's window
    // manager had shown the window, 6-8 and 16 ms without the filter (xterm, 2 cores;
    // bench/README.md, "the xpra hop"). It no longer hears workspace switches (see
    // XPRA_CLIENT_LAUNCHER).
    '--xsettings=no',
    `--system-tray=${trayCage !== undefined ? 'yes' : 'no'}`,
    ...COMMON_OPTIONS,
  ];
}

/**
 * For a cage on another machine (a remote LXD): xpra's client reaches the server the way it
 * reaches one over ssh, with `--ssh` naming this script instead of ssh. Whatever xpra asks to
 * run there, the script runs `xpra _proxy` inside the cage through the backend's own command
 * (`lxc exec`), so no ssh server or key is needed: the LXD remote's trust is the only one.
 * `_proxy` finds a server by its socket name (HOSTNAME-DISPLAY), which the socket-activated
 * server does not have, hence the link.
 */
export function remoteProxyScript(
  shell: { argv: string[]; env: Record<string, string> },
  serverEnv: Record<string, string>,
): string {
  const q = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;
  const inner = `ln -sf ${SOCKET_NAME} "${IN_CAGE.xpraDir}/$(hostname)-${XPRA_DISPLAY.slice(1)}" && exec xpra _proxy ${XPRA_DISPLAY} --socket-dirs=${IN_CAGE.xpraDir}`;
  const envArgs = Object.entries({ ...serverEnv, ...XPRA_SERVER_ENV }).flatMap(([k, v]) => [
    '--env',
    `${k}=${v}`,
  ]);
  const [program, ...rest] = shell.argv;
  const inCage = [...rest.slice(0, -1), ...envArgs, rest.at(-1)!, '/bin/sh', '-c', inner];
  return [
    '#!/bin/sh',
    '# xpra runs this in place of ssh; kagome wrote it (lib/display/xpra.ts remoteProxyScript).',
    ...Object.entries(shell.env).map(([k, v]) => `export ${k}=${q(v)}`),
    `exec ${[program!, ...inCage].map(q).join(' ')}`,
    '',
  ].join('\n');
}

function nonEmpty(file: string): boolean {
  try {
    return fs.statSync(file).size > 0;
  } catch {
    return false;
  }
}

export interface XpraRecord extends DisplayRecord {
  server: ProcRef;
  client?: ProcRef;
  /** the server's socket on the host, or the proxy script for a remote cage */
  socket: string;
  remote?: boolean;
  /** the toolkits' scale variables of the host, for the cage's programs (host-screen.ts) */
  scaleEnv?: Record<string, string>;
}

/** What prepare read of the host's screen, for start. */
interface XpraPrepared extends DisplayRecord {
  screen: string;
  dpi: number;
  xftDpi?: string;
  scaleEnv: Record<string, string>;
}

/**
 * The host client prints this once the server has answered its hello, and the server answers
 * only after it has applied the client's keymap and screen size (xpra 3.1's
 * server_base._process_hello_ui), and it is listening only once it is the display's window
 * manager and compositor. Programs started before that saw the display change under them:
 * Firefox with an existing profile saw the compositor appear, reset its WebRender
 * ("DeviceReset ... WR_SIMULATE") and stayed black. The line comes from the client's own log,
 * which kagome gives it (the cage log); a program in the cage that printed it there would only
 * make its own launch early.
 */
const ATTACHED = /^[0-9-]+ [0-9:,.]+ Attached to /m;
/** A cold server is ready in about a second; a loaded machine (a test suite on 2 cores) takes longer. */
const ATTACH_TIMEOUT_MS = 30000;
/** How often a client this service did not start (re-adopted) is checked for life. */
const CLIENT_POLL_MS = 2000;

export class XpraDisplay implements CageDisplay<XpraRecord, XpraPrepared> {
  readonly kind = 'xpra';

  checkHost(): void {
    requireProgram('xpra', 'to show cage windows on the host');
    requireProgram('Xvfb', 'by xpra, as the X server inside the cage');
    requireProgram('python3', 'by xpra');
    requireProgram('xauth', "by xpra, to write the cage display's cookie");
  }

  /** Clients this service spawned, by the pid in their ProcRef: their exit is an event, not a poll. */
  private readonly spawned = new Map<number, ChildProcess>();

  async prepare(ctx: DisplayContext): Promise<XpraPrepared> {
    fs.mkdirSync(ctx.rt.xpraDir, { recursive: true, mode: 0o700 });
    // The home persists between runs; a cookie left from the last run would make the cage look
    // ready before xpra has written the new one.
    fs.rmSync(path.join(ctx.config.home, '.Xauthority'), { force: true });
    const host = await readHostScreen(ctx.hostEnv);
    return {
      screen: host.size ?? DEFAULT_SCREEN,
      dpi: host.dpi ?? FALLBACK_DPI,
      ...(host.xftDpi ? { xftDpi: host.xftDpi } : {}),
      scaleEnv: host.scaleEnv,
    };
  }

  contribute(ctx: DisplayContext, record: XpraPrepared | XpraRecord): Contribution {
    return {
      ops: [{ op: 'bind', source: ctx.rt.xpraDir, dest: IN_CAGE.xpraDir }],
      env: {
        DISPLAY: XPRA_DISPLAY,
        // xpra 3.1 writes the display's cookie to ~/.Xauthority whatever XAUTHORITY says, so
        // every program of the cage is pointed there (the cage's private home, never the host's).
        XAUTHORITY: path.posix.join(ctx.spec.env.HOME ?? ctx.spec.cwd, '.Xauthority'),
        ...scaleEnvFor(ctx, record.scaleEnv),
      },
    };
  }

  async start(
    ctx: DisplayContext,
    backend: Backend,
    sandbox: SandboxRecord,
    prepared: XpraPrepared,
  ): Promise<XpraRecord> {
    const socket = path.join(ctx.rt.xpraDir, SOCKET_NAME);
    fs.rmSync(socket, { force: true });
    const server = await backend.exec(sandbox, {
      argv: xpraServerArgv(prepared.screen, prepared.dpi, ctx.config.trayIcons),
      env: { ...ctx.spec.env, ...XPRA_SERVER_ENV },
      cwd: ctx.spec.cwd,
      logFd: ctx.logFd,
    });
    let serverEnded: number | undefined;
    void server.exited.then((code) => (serverEnded = code));
    const failed = () => serverEnded !== undefined || !backend.isAlive(sandbox);
    const remote = backend.remoteShell?.(sandbox);
    if (remote)
      return this.startRemote(ctx, backend, sandbox, server.pid, remote, failed, prepared);
    const sockReady = await waitUntil(() => fs.existsSync(socket) || failed(), 15000, 5);
    if (!sockReady || failed()) throw this.failure(ctx, 'the xpra server did not start');

    const logFrom = fs.fstatSync(ctx.logFd).size;
    const client = await this.startClient(ctx, socket);
    // Programs can connect once the X socket exists and xpra has written the cookie for it.
    const xSocket = backend.hostPathOf(sandbox, X_SOCKET_IN_CAGE);
    const xauth = backend.hostPathOf(sandbox, ctx.spec.env.XAUTHORITY ?? '');
    // A backend whose cage this machine cannot read (LXD run by a user: its containers'
    // namespaces are LXD root's) is asked inside, as a remote cage is.
    const here = xSocket && xauth ? () => fs.existsSync(xSocket) && nonEmpty(xauth) : undefined;
    const xReady = here
      ? await waitUntil(() => here() || failed(), 20000, 5)
      : await waitUntil(
          async () => failed() || (await this.readyInside(ctx, backend, sandbox)),
          20000,
          50,
        );
    if (!xReady || failed())
      throw this.failure(ctx, 'the X server inside the cage did not come up');
    await Promise.all([
      this.setResources(ctx, backend, sandbox, prepared),
      this.waitAttached(ctx, logFrom, client, failed),
    ]);
    return { server: procRef(server.pid), client, socket, scaleEnv: prepared.scaleEnv };
  }

  /** Xft.dpi of the host in the cage's resources, before any program reads them. */
  private async setResources(
    ctx: DisplayContext,
    backend: Backend,
    sandbox: SandboxRecord,
    prepared: XpraPrepared,
  ): Promise<void> {
    if (!prepared.xftDpi) return;
    const h = await backend.exec(sandbox, {
      argv: ['python3', '-I', '-c', DISPLAY_SETTINGS_SCRIPT, prepared.xftDpi, ''],
      env: ctx.spec.env,
      cwd: ctx.spec.cwd,
      logFd: ctx.logFd,
    });
    // Not fatal: programs then draw at 96 dpi, as before; the log says why (python3-xlib missing).
    if ((await h.exited) !== 0)
      fs.writeSync(
        ctx.logFd,
        `kagome: could not set Xft.dpi ${prepared.xftDpi} on cage ${ctx.config.name}'s display\n`,
      );
  }

  /** Until the client's "Attached to" line appears in the cage log after `from` (see ATTACHED). */
  private async waitAttached(
    ctx: DisplayContext,
    from: number,
    client: ProcRef,
    failed: () => boolean,
  ): Promise<void> {
    // The cage log is open for appending only; /proc gives a reader of the same file.
    const fd = fs.openSync(`/proc/self/fd/${ctx.logFd}`, 'r');
    let pos = from;
    let partial = '';
    let attached = false;
    try {
      const done = await waitUntil(
        () => {
          const size = fs.fstatSync(fd).size;
          if (size > pos) {
            const chunk = Buffer.alloc(size - pos);
            const n = fs.readSync(fd, chunk, 0, chunk.length, pos);
            pos += n;
            const text = partial + chunk.subarray(0, n).toString('latin1');
            const end = text.lastIndexOf('\n') + 1;
            partial = text.slice(end);
            if (ATTACHED.test(text.slice(0, end))) attached = true;
          }
          return attached || !isAlive(client) || failed();
        },
        ATTACH_TIMEOUT_MS,
        10,
      );
      if (attached) return;
      if (failed())
        throw this.failure(ctx, 'the xpra server ended before its host client attached');
      if (done) throw this.failure(ctx, 'the host xpra client ended before it attached');
      throw this.failure(
        ctx,
        `the host xpra client did not attach within ${ATTACH_TIMEOUT_MS / 1000} s`,
      );
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * A cage on another machine: nothing of it is on this one to watch, so readiness is asked
   * inside (a shell test through the backend, every 100 ms), and the client goes through the
   * proxy script.
   */
  private async startRemote(
    ctx: DisplayContext,
    backend: Backend,
    sandbox: SandboxRecord,
    serverPid: number,
    shell: { argv: string[]; env: Record<string, string> },
    failed: () => boolean,
    prepared: XpraPrepared,
  ): Promise<XpraRecord> {
    const up = await waitUntil(
      async () => failed() || (await this.readyInside(ctx, backend, sandbox)),
      30000,
      100,
    );
    if (!up || failed())
      throw this.failure(ctx, 'the xpra server in the remote cage did not come up');
    const script = path.join(ctx.rt.xpraDir, 'remote-proxy');
    fs.writeFileSync(script, remoteProxyScript(shell, ctx.spec.env), { mode: 0o700 });
    const record: XpraRecord = {
      server: procRef(serverPid),
      socket: script,
      remote: true,
      scaleEnv: prepared.scaleEnv,
    };
    const logFrom = fs.fstatSync(ctx.logFd).size;
    const client = await this.startClient(ctx, script, true);
    await Promise.all([
      this.setResources(ctx, backend, sandbox, prepared),
      this.waitAttached(ctx, logFrom, client, failed),
    ]);
    return { ...record, client };
  }

  /** xpra's socket, the X socket and the cookie, tested by a shell in the cage. */
  private async readyInside(
    ctx: DisplayContext,
    backend: Backend,
    sandbox: SandboxRecord,
  ): Promise<boolean> {
    const test = `test -S ${path.posix.join(IN_CAGE.xpraDir, SOCKET_NAME)} && test -S ${X_SOCKET_IN_CAGE} && test -s "$XAUTHORITY"`;
    const h = await backend.exec(sandbox, {
      argv: ['/bin/sh', '-c', test],
      env: ctx.spec.env,
      cwd: ctx.spec.cwd,
      logFd: ctx.logFd,
    });
    return (await h.exited) === 0;
  }

  /**
   * The host client, detached with its own log so the windows stay when the service is
   * restarted or killed, in a sandbox of its own (client-sandbox.ts). A remote cage's client
   * runs `lxc exec` through its proxy script and needs the LXD client's configuration, so it
   * is not confined, and neither is one whose display is not a local socket; the log says so.
   */
  private async startClient(ctx: DisplayContext, socket: string, remote = false): Promise<ProcRef> {
    // The client runs as python3 with xpra's modules: a missing xpra is told here, by name.
    requireProgram('xpra', 'to show cage windows on the host');
    const tray = ctx.config.trayIcons ? ctx.config.name : undefined;
    const argv = xpraClientArgv(socket, ctx.config.border, remote, tray);
    const etcDir = path.join(ctx.rt.dir, 'client-etc');
    // Inside its sandbox the client reaches the socket where the cage has it.
    const confinedArgv = [
      '/usr/bin/python3',
      '-I',
      '-c',
      XPRA_CLIENT_LAUNCHER,
      ...xpraClientArgv(
        path.posix.join(CLIENT_XPRA_DIR, path.basename(socket)),
        ctx.config.border,
        false,
        tray,
      ),
    ];
    const sandboxed = remote
      ? undefined
      : clientSandboxArgs(
          {
            display: ctx.hostEnv.DISPLAY ?? '',
            xauthority: ctx.hostEnv.XAUTHORITY,
            xpraDir: ctx.rt.xpraDir,
            lang: ctx.hostEnv.LANG,
            etcDir,
          },
          confinedArgv,
          3,
        );
    if (sandboxed) {
      const user = os.userInfo();
      writeClientEtc(etcDir, { name: user.username, uid: user.uid, gid: user.gid });
    }
    if (!sandboxed) {
      fs.writeSync(
        ctx.logFd,
        `kagome: the xpra client of cage ${ctx.config.name} runs unconfined (${remote ? 'a remote cage' : `display ${JSON.stringify(ctx.hostEnv.DISPLAY ?? '')} is not a local socket`})\n`,
      );
      const child = spawn('/usr/bin/python3', ['-I', '-c', XPRA_CLIENT_LAUNCHER, ...argv], {
        detached: true,
        env: ctx.hostEnv,
        stdio: ['ignore', ctx.logFd, ctx.logFd],
      });
      child.on('error', () => undefined);
      child.unref();
      return this.spawnedAs(procRef(child.pid!), child);
    }
    const bwrap = requireProgram('bwrap', "to confine the cage's xpra client");
    const child = spawn(bwrap, sandboxed, {
      detached: true,
      env: {},
      stdio: ['ignore', ctx.logFd, ctx.logFd, 'pipe'],
    });
    child.on('error', () => undefined);
    const info = child.stdio[3] as NodeJS.ReadableStream & { destroy(): void };
    info.on('error', () => undefined);
    // bwrap reports the pid 1 of the client's pid namespace (its init, which reaps and exits
    // with the client); the client is that init's child. It is what stop signals and
    // re-adoption checks: as a pid 1 itself, xpra could not die of the TERM it re-raises.
    const init = await readBwrapInfo(info).catch(() => {
      throw new KagomeError(
        'DisplayFailed',
        `the sandbox of cage ${ctx.config.name}'s xpra client did not start; see ${path.join(ctx.rt.logDir, 'cage.log')}`,
      );
    });
    child.unref();
    let pid: number | undefined;
    await waitUntil(
      () => (pid = childrenOf(init)[0]) !== undefined || !isAlive(procRef(init)),
      10000,
      5,
    );
    if (pid === undefined)
      throw new KagomeError(
        'DisplayFailed',
        `the sandbox of cage ${ctx.config.name}'s xpra client ended before it started xpra; see ${path.join(ctx.rt.logDir, 'cage.log')}`,
      );
    return this.spawnedAs(procRef(pid), child);
  }

  /** bwrap exits with the client it carries, so its exit is the client's. */
  private spawnedAs(client: ProcRef, child: ChildProcess): ProcRef {
    this.spawned.set(client.pid, child);
    child.once('exit', () => this.spawned.delete(client.pid));
    return client;
  }

  private failure(ctx: DisplayContext, what: string): KagomeError {
    return new KagomeError(
      'DisplayFailed',
      `${what} for cage "${ctx.config.name}"; see ${path.join(ctx.rt.logDir, 'cage.log')}`,
    );
  }

  checkRecord(v: unknown): XpraRecord | string {
    return checkRecord<XpraRecord>("the xpra display's", v, {
      server: F.process,
      client: F.optional(F.process),
      socket: F.string,
      remote: F.optional(F.boolean),
      scaleEnv: F.optional(F.stringMap),
    });
  }

  isAlive(r: XpraRecord, backend: Backend, sandbox: SandboxRecord): boolean {
    return isAlive(r.server) && backend.isAlive(sandbox);
  }

  async readopt(ctx: DisplayContext, r: XpraRecord): Promise<XpraRecord> {
    if (isAlive(r.client)) return r;
    const logFrom = fs.fstatSync(ctx.logFd).size;
    const client = await this.startClient(ctx, r.socket, r.remote === true);
    // The next launch's window must have a client to show it.
    await this.waitAttached(ctx, logFrom, client, () => !isAlive(r.server));
    return { ...r, client };
  }

  watch(record: XpraRecord, lost: () => void): () => void {
    const client = record.client;
    let watching = true;
    const end = () => {
      if (!watching) return;
      unwatch();
      lost();
    };
    const child = client && this.spawned.get(client.pid);
    let timer: NodeJS.Timeout | undefined;
    if (child) child.once('exit', end);
    else {
      timer = setInterval(() => isAlive(client) || end(), CLIENT_POLL_MS);
      timer.unref();
    }
    const unwatch = () => {
      watching = false;
      child?.off('exit', end);
      clearInterval(timer);
    };
    return unwatch;
  }

  async stop(record: XpraPrepared | XpraRecord): Promise<void> {
    // What prepare returned has no client: nothing of the host's to end then.
    const r: Partial<XpraRecord> = record;
    // The server dies with the cage; the host client would otherwise try to reconnect.
    signal(r.client, 'SIGTERM');
    await waitUntil(() => !isAlive(r.client), 2000, 20);
    signal(r.client, 'SIGKILL');
  }
}
