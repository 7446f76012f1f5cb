import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import dbus from 'dbus-next';
import { execa } from 'execa';
import { World } from '../helpers/kagome.js';
import { startNotifications } from '../helpers/notifications.js';
import {
  OPEN_LINK_PROGRAM,
  startDesktopPortal,
  type DesktopPortal,
} from '../helpers/desktop-portal.js';
import { findWindows } from '../helpers/x11.js';
import { waitFor } from '../helpers/wait.js';
import { busSocketPath, portalAddressInCage } from '../../lib/bridges/portal-proxy.js';
import { isAlive, type ProcRef } from '../../lib/runtime/proc.js';

// SessionBus=portal, as the ordinary user against the real xdg-desktop-portal, its GTK backend
// and the document portal on the test's bus and display: a GTK 3 program in a cage opens the
// host's file chooser, the test picks a host file on the host display, and the cage reads that
// file through the document portal, granted to its app id, and no other file of the host. A
// cancelled dialog gives nothing. From inside the cage, the proxy refuses everything else on
// the host's bus; the same attacks through the host's bus given to a cage directly work (the
// control). Notifications from cages: notifications.test.ts.

const TITLE = 'Kagome portal test';

// A GTK 3 program: the native file chooser, which GTK_USE_PORTAL=1 sends to the portal. Opening,
// it reads the file picked; saving, it writes argv[3] into the file named and reads it back.
const CHOOSER = String.raw`
import os, sys, gi
gi.require_version('Gtk', '3.0')
from gi.repository import Gtk
out, action = sys.argv[1], sys.argv[2]
d = Gtk.FileChooserNative.new('${TITLE}', None, Gtk.FileChooserAction.SAVE if action == 'save' else Gtk.FileChooserAction.OPEN, None, None)
r = d.run()
with open(out + '.tmp', 'w') as f:
    if r == Gtk.ResponseType.ACCEPT:
        p = d.get_filename()
        f.write('path=%s\n' % p)
        try:
            if action == 'save':
                with open(p, 'w') as saved:
                    saved.write(sys.argv[3])
            f.write('content=%s' % open(p).read())
        except Exception as e:
            f.write('error=%s\n' % e)
    else:
        f.write('cancelled\n')
os.rename(out + '.tmp', out)
`;

// A Qt 5 program (python3-pyqt5): QFileDialog's Open dialog, which the portal theme kagome
// names in QT_QPA_PLATFORMTHEME sends to the portal. Writes "own-dialog" first if Qt drew its own
// dialog (in the cage), then what the chooser gives as CHOOSER does.
const QT_CHOOSER = String.raw`
import os, sys
from PyQt5.QtCore import Qt, QTimer
from PyQt5.QtWidgets import QApplication, QFileDialog
out = sys.argv[1]
app = QApplication(sys.argv[:1])
own = []
def watch():
    for d in app.topLevelWidgets():
        # A dialog handed to the portal is "visible" but not on any screen.
        if isinstance(d, QFileDialog) and d.isVisible() and not d.testAttribute(Qt.WA_DontShowOnScreen):
            own.append(1)
            return
    QTimer.singleShot(100, watch)
QTimer.singleShot(0, watch)
p, _ = QFileDialog.getOpenFileName(None, '${TITLE}')
with open(out + '.tmp', 'w') as f:
    if own:
        f.write('own-dialog\n')
    if p:
        f.write('path=%s\n' % p)
        try:
            f.write('content=%s' % open(p).read())
        except Exception as e:
            f.write('error=%s\n' % e)
    else:
        f.write('cancelled\n')
os.rename(out + '.tmp', out)
`;

// What a hostile program in the cage tries on the bus at argv[1]; writes what happened as JSON.
// Eavesdropping: it asks to see every call of interface org.example.Probe, says "listening",
// waits for the test to have made such a call on the host's bus, and reports whether it saw it.
// Asks a bus for the chooser's version and opens a chooser whose parent_window names argv[2],
// a window of the host's display; writes what it got, then the Response's code.
const PARENT = String.raw`
import os, sys
from gi.repository import Gio, GLib
addr, parent, out = sys.argv[1] or os.environ['DBUS_SESSION_BUS_ADDRESS'], sys.argv[2], sys.argv[3]
flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
conn = Gio.DBusConnection.new_for_address_sync(addr, flags, None, None)
D = ('org.freedesktop.portal.Desktop', '/org/freedesktop/portal/desktop')
res = []
for iface in ('org.freedesktop.portal.FileChooser', 'org.freedesktop.portal.Settings'):
    try:
        r = conn.call_sync(*D, 'org.freedesktop.DBus.Properties', 'Get', GLib.Variant('(ss)', (iface, 'version')), None, Gio.DBusCallFlags.NONE, 10000, None)
        res.append('version %s' % r.unpack()[0])
    except GLib.Error as e:
        res.append('refused ' + (Gio.DBusError.get_remote_error(e) or e.message))
loop = GLib.MainLoop()
def response(c, sender, path, iface, member, params, _):
    res.append('response %d' % params.unpack()[0])
    loop.quit()
conn.signal_subscribe(None, 'org.freedesktop.portal.Request', 'Response', None, None, Gio.DBusSignalFlags.NONE, response, None)
conn.call_sync(*D, 'org.freedesktop.portal.FileChooser', 'OpenFile', GLib.Variant('(ssa{sv})', (parent, '${TITLE}', {})), None, Gio.DBusCallFlags.NONE, GLib.MAXINT, None)
loop.run()
open(out, 'w').write('\n'.join(res) + '\n')
`;

const ATTACK = String.raw`
import json, os, sys, time
from gi.repository import Gio, GLib
addr, out, home = sys.argv[1], sys.argv[2], os.environ['HOME']
flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
conn = Gio.DBusConnection.new_for_address_sync(addr, flags, None, None)
res = {}
def call(key, dest, path, iface, method, args=None):
    try:
        reply = conn.call_sync(dest, path, iface, method, args, None, Gio.DBusCallFlags.NONE, 10000, None)
        res[key] = 'ok ' + reply.print_(False)
    except GLib.Error as e:
        res[key] = 'refused ' + (Gio.DBusError.get_remote_error(e) or e.message)
call('kagome', 'io.kagome.Kagome', '/io/kagome/Kagome', 'io.kagome.Cages1', 'List')
call('notifications', 'org.freedesktop.Notifications', '/org/freedesktop/Notifications', 'org.freedesktop.Notifications', 'Notify',
     GLib.Variant('(susssasa{sv}i)', ('cage', 0, '', 'from the cage', '', [], {}, -1)))
call('secrets', 'org.freedesktop.secrets', '/org/freedesktop/secrets', 'org.example.Fake', 'Ping')
call('systemd', 'org.freedesktop.systemd1', '/org/freedesktop/systemd1', 'org.example.Fake', 'Ping')
for key, name in [('own', 'org.example.Stolen'), ('own-cage-id', 'io.kagome.Cage_hostile.Evil')]:
    call(key, 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'RequestName', GLib.Variant('(su)', (name, 4)))
call('list', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'ListNames')
seen = []
def watch(c, msg, incoming, _):
    if incoming and msg.get_interface() == 'org.example.Probe':
        seen.append(msg.get_member())
    return msg
conn.add_filter(watch, None)
call('eavesdrop-match', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'AddMatch',
     GLib.Variant('(s)', ("type='method_call',interface='org.example.Probe',eavesdrop='true'",)))
open(home + '/listening', 'w').close()
deadline = time.time() + 30
while not os.path.exists(home + '/sent') and time.time() < deadline:
    time.sleep(0.05)
# A round trip to the bus: whatever it sent before its reply has arrived by then.
call('barrier', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'GetId')
ctx = GLib.MainContext.default()
while ctx.iteration(False):
    pass
res['eavesdropped'] = seen
monitor = Gio.DBusConnection.new_for_address_sync(addr, flags, None, None)
try:
    monitor.call_sync('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.Monitoring', 'BecomeMonitor',
                      GLib.Variant('(asu)', ([], 0)), None, Gio.DBusCallFlags.NONE, 10000, None)
    res['monitor'] = 'ok'
except GLib.Error as e:
    res['monitor'] = 'refused ' + (Gio.DBusError.get_remote_error(e) or e.message)
with open(out + '.tmp', 'w') as f:
    json.dump(res, f)
os.rename(out + '.tmp', out)
`;

// A hostile program: kagome's cage portal called directly through the proxy with what a link
// must not be; writes each answer as JSON.
const BAD_LINKS = String.raw`
import json, os, sys
from gi.repository import Gio, GLib
addr, out, secret = sys.argv[1], sys.argv[2], sys.argv[3]
flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
conn = Gio.DBusConnection.new_for_address_sync(addr, flags, None, None)
res = {}
for key, uri in [('shadow', 'file:///etc/shadow'), ('secret', 'file://' + secret), ('newline', 'https://example.org/\n--new-window'),
                 ('escape', 'https://example.org/\x1b]0;owned\x07'), ('huge', 'https://example.org/' + 'a' * (1 << 20)), ('javascript', 'javascript:alert(1)')]:
    try:
        conn.call_sync('io.kagome.Kagome', '/io/kagome/Kagome', 'io.kagome.CagePortal1', 'OpenURI', GLib.Variant('(sa{sv})', (uri, {})), None, Gio.DBusCallFlags.NONE, 10000, None)
        res[key] = 'ok'
    except GLib.Error as e:
        res[key] = 'refused ' + (Gio.DBusError.get_remote_error(e) or e.message)
    print(key, res[key][:200], flush=True)
with open(out + '.tmp', 'w') as f:
    json.dump(res, f)
os.rename(out + '.tmp', out)
`;

// A GLib program asking its session bus for the portal, as GTK and GLib do in a sandbox (the
// Settings portal; with GTK_USE_PORTAL=1 the file chooser too): the call auto-starts the name if
// the bus can. Then which portal processes run in the cage (its own /proc), and whether dconf,
// which GSettings needs, can still be started. argv: the bus address, the output file.
const ASK_PORTAL = String.raw`
import os, sys
from gi.repository import Gio, GLib
addr, out = sys.argv[1], sys.argv[2]
flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
bus = Gio.DBusConnection.new_for_address_sync(addr, flags, None, None)
def call(dest, path, iface, method, args):
    try:
        return 'ok ' + bus.call_sync(dest, path, iface, method, args, None, Gio.DBusCallFlags.NONE, 30000, None).print_(False)
    except GLib.Error as e:
        return 'refused ' + (Gio.DBusError.get_remote_error(e) or e.message)
lines = ['portal=' + call('org.freedesktop.portal.Desktop', '/org/freedesktop/portal/desktop', 'org.freedesktop.portal.Settings', 'Read',
                          GLib.Variant('(ss)', ('org.freedesktop.appearance', 'color-scheme')))]
lines.append('dconf=' + call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'StartServiceByName',
                             GLib.Variant('(su)', ('ca.desrt.dconf', 0))))
procs = set()
for pid in os.listdir('/proc'):
    try:
        exe = open('/proc/%s/cmdline' % pid, 'rb').read().split(b'\0')[0].decode()
    except Exception:
        continue
    if 'portal' in os.path.basename(exe):
        procs.add(os.path.basename(exe))
lines.append('procs=' + ','.join(sorted(procs)))
with open(out + '.tmp', 'w') as f:
    f.write('\n'.join(lines) + '\n')
os.rename(out + '.tmp', out)
`;

const BROWSER_ID = 'org.kagome.FakeBrowser.desktop';
// A "browser" that writes its arguments, and the content of a local file it was given, to
// $HOME/opened.log: where a link arrived, and what it could read.
const FAKE_BROWSER =
  'for a in "$@"; do printf \'arg=%s\\n\' "$a"; p="${a#file://}"; [ -f "$p" ] && printf \'content=%s\\n\' "$(cat "$p")"; done >> "$HOME/opened.log"; true\n';
const browserEntry = (home: string) => `[Desktop Entry]
Type=Application
Name=Fake Browser
Exec=sh ${home}/fakebrowser.sh %u
MimeType=x-scheme-handler/http;x-scheme-handler/https;x-scheme-handler/mailto;
`;

const { Interface } = dbus.interface;
class Fake extends Interface {
  calls = 0;
  Ping(): string {
    this.calls++;
    return 'pong';
  }
}
Fake.configureMembers({ methods: { Ping: { inSignature: '', outSignature: 's' } } });

interface BusRecord {
  policy: string;
  daemon?: ProcRef;
  proxy?: ProcRef;
  relay?: ProcRef;
  portalDir?: string;
}

describe('SessionBus=portal: the host file chooser, and nothing else of the host bus', () => {
  let w: World;
  let portal: DesktopPortal | undefined;
  let notifications: Awaited<ReturnType<typeof startNotifications>> | undefined;
  let fakes: dbus.MessageBus | undefined;
  const fakeServices = {
    secrets: new Fake('org.example.Fake'),
    systemd: new Fake('org.example.Fake'),
  };
  let n = 0;
  let picked: string;
  let secret: string;

  const busRecord = (cage: string): BusRecord | undefined =>
    (w.cageState(cage) as { bridges?: Record<string, BusRecord> } | undefined)?.bridges?.[
      'session-bus'
    ];
  const run = (cage: string, script: string) => w.runShell(cage, script);
  const x = (args: string[]) => execa('xdotool', args, { env: { DISPLAY: w.display } });
  const logs = () =>
    `--- cage log\n${w.cageLog('files')}\n--- program log\n${w.programLog('files', 'python3')}\n--- portal\n${portal?.log() ?? ''}`;

  /**
   * Opens the chooser in the cage (to open a file, or to save `content`), waits for its dialog
   * on the host display, then `answer`s it: the host path typed, or Escape.
   *
   * Two things a person does without thinking are done here on purpose. The dialog is the one
   * this call opened, never an earlier one still on the screen with the same title (that is how
   * one failed Save used to take the next test's Escape with it). And Return is pressed until
   * the dialog has gone: GTK 3.24's Save name entry drops a Return that follows the last typed
   * character too closely, while its completion still loads the folder typed, and the dialog
   * then waits for ever. Seen without kagome or the portal at all: a plain GtkFileChooserDialog
   * (SAVE) on Xvfb, `xdotool type NAME; xdotool key Return` answered in 0 of 2 runs at once and
   * 1 of 2 after 0.1 s, and always after 0.5 s or with a second Return. A dropped Return does
   * nothing, so pressing it again is what a person would do.
   */
  const choose = async (
    answer: 'pick' | 'cancel',
    save?: { path: string; content: string },
    program: (out: string) => string[] = (out) => [
      'python3',
      '-c',
      CHOOSER,
      out,
      save ? 'save' : 'open',
      save?.content ?? '',
    ],
  ): Promise<string> => {
    const out = `chooser-${++n}.out`;
    const earlier = new Set((await findWindows(w.display, { name: TITLE })).map((d) => d.id));
    await w.launchCommand('files', program(`${w.env.HOME}/${out}`));
    // The host's dialog, drawn by xdg-desktop-portal-gtk: not one drawn in the cage and shown
    // through xpra with the same title.
    const dialog = await waitFor(
      "the host's dialog this program opened",
      async () =>
        (await findWindows(w.display, { name: TITLE })).find(
          (d) => !earlier.has(d.id) && d.wmClass.includes('xdg-desktop-portal-gtk'),
        ),
      {
        timeoutMs: 60_000,
        detail: async () =>
          `${JSON.stringify(await findWindows(w.display, { name: TITLE }))}\n${logs()}`,
      },
    );
    // No window manager on the test display: the test gives the dialog the keyboard, as one would.
    await waitFor(
      'the dialog has the keyboard',
      async () => {
        await x(['windowfocus', dialog.id]);
        const focused = Number((await x(['getwindowfocus'])).stdout.trim());
        return focused === Number(dialog.id);
      },
      { timeoutMs: 10_000, pollMs: 200 },
    );
    // Opening, a "/" opens GTK's location entry with "/" in it; saving, the name entry has the
    // keyboard and takes a whole path. Ctrl+A first, so that typing again replaces what an
    // earlier try left in the entry (in the file list it selects, which changes nothing). The
    // path is typed again every fifth second: a dialog still being built when the test first
    // typed (seen on a cold start) may have lost part of it.
    const key = answer === 'pick' ? 'Return' : 'Escape';
    let tries = 0;
    await waitFor(
      `the dialog gone after ${key}`,
      async () => {
        if (!(await findWindows(w.display, { name: TITLE })).some((d) => d.id === dialog.id))
          return true;
        if (answer === 'pick' && tries++ % 5 === 0) {
          await x(['key', 'ctrl+a']);
          await x(['type', '--delay', '40', save?.path ?? picked]);
        }
        await x(['key', key]);
        return false;
      },
      { timeoutMs: 60_000, pollMs: 1000, detail: logs },
    );
    return w.readFileWhenWritten(w.homeFile('files', out), 60_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${logs()}`);
    });
  };

  before(async () => {
    w = await World.create({ documentPortal: true, systemData: true });
    const hostBusDir = path.dirname(busSocketPath(w.bus.address)!);
    w.writeCage('files', '[Cage]\nSessionBus=portal\n');
    w.writeCage('other', '[Cage]\nSessionBus=portal\nOpenLinks=cage:browser\nNotifications=none\n');
    w.writeCage('browser', '[Cage]\n');
    // SessionBus=private, the default.
    w.writeCage('plain', '[Cage]\n');
    // The fake browser: installed on the host, and the browser cage's own default for links.
    fs.mkdirSync(w.homeFile('browser', '.config'), { recursive: true });
    for (const home of [w.env.HOME!, w.homeFile('browser', '')])
      fs.writeFileSync(path.join(home, 'fakebrowser.sh'), FAKE_BROWSER);
    fs.writeFileSync(path.join(w.systemApps, BROWSER_ID), browserEntry(w.env.HOME!));
    fs.mkdirSync(w.homeFile('browser', '.local/share/applications'), { recursive: true });
    fs.writeFileSync(
      w.homeFile('browser', `.local/share/applications/${BROWSER_ID}`),
      browserEntry(w.env.HOME!),
    );
    const defaults = `[Default Applications]\nx-scheme-handler/https=${BROWSER_ID};\nx-scheme-handler/mailto=${BROWSER_ID};\n`;
    fs.writeFileSync(w.homeFile('browser', '.config/mimeapps.list'), defaults);
    // The host's default for links is the fake browser too.
    fs.writeFileSync(path.join(w.env.XDG_CONFIG_HOME!, 'mimeapps.list'), defaults);
    // The control: a cage given the host's bus itself, through a plain bind mount.
    w.writeCage('direct', `[Cage]\nReadWrite=${hostBusDir}:/run/hostbus;\n`);
    const dir = path.join(w.tmp.root, 'host-files');
    fs.mkdirSync(dir);
    picked = path.join(dir, 'picked.txt');
    secret = path.join(dir, 'secret.txt');
    fs.writeFileSync(picked, 'chosen on the host\n');
    fs.writeFileSync(secret, 'never for the cage\n');
    portal = await startDesktopPortal(w.env);
    notifications = await startNotifications(w.bus.address);
    fakes = dbus.sessionBus({ busAddress: w.bus.address });
    fakes.export('/org/freedesktop/secrets', fakeServices.secrets);
    fakes.export('/org/freedesktop/systemd1', fakeServices.systemd);
    await fakes.requestName('org.freedesktop.secrets', 4);
    await fakes.requestName('org.freedesktop.systemd1', 4);
    await w.startService();
  });

  after(async () => {
    notifications?.stop();
    fakes?.disconnect();
    await w?.cleanup();
    await portal?.stop();
  });

  it('a GTK program in the cage opens the host dialog and reads the file picked there, through the document portal', async () => {
    const got = await choose('pick');
    const docRoot = path.join(w.env.XDG_RUNTIME_DIR!, 'doc');
    const m = new RegExp(
      `^path=${docRoot.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/([^/]+)/picked\\.txt\ncontent=chosen on the host\n$`,
    ).exec(got);
    assert.ok(m, `${got}\n${logs()}`);
    const id = m[1]!;
    // The portal named the cage: the document is granted to its app id, not to another cage's.
    assert.ok(
      fs.existsSync(path.join(docRoot, 'by-app', 'io.kagome.Cage_files', id, 'picked.txt')),
    );
    await run('other', 'true');
    assert.equal(fs.existsSync(path.join(docRoot, 'by-app', 'io.kagome.Cage_other', id)), false);
    // Nothing else of the host: the file beside it and the folder are not in the cage.
    const inCage = await run(
      'files',
      `cat ${JSON.stringify(secret)} || echo no-secret; ls ${JSON.stringify(path.dirname(picked))} || echo no-folder; ls ${JSON.stringify(docRoot)}`,
    );
    assert.match(inCage, /no-secret\n/);
    assert.match(inCage, /no-folder\n/);
    assert.ok(!inCage.includes('never for the cage'));
    assert.equal(inCage.trim().split('\n').at(-1), id, inCage);
  });

  it('a cancelled dialog gives the program nothing', async () => {
    assert.equal(await choose('cancel'), 'cancelled\n');
  });

  it('Save: the file named in the host dialog is made on the host with what the cage wrote, through its document-portal folder', async () => {
    const dir = path.dirname(picked);
    const saved = path.join(dir, 'saved-by-cage.txt');
    const got = await choose('pick', { path: saved, content: 'written in the cage\n' });
    const docRoot = path.join(w.env.XDG_RUNTIME_DIR!, 'doc');
    const m = new RegExp(
      `^path=${docRoot.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/([^/]+)/saved-by-cage\\.txt\ncontent=written in the cage\n$`,
    ).exec(got);
    assert.ok(m, `${got}\n${logs()}`);
    const id = m[1]!;
    // The host file is the one named, with what the cage wrote through the portal's folder.
    assert.equal(fs.readFileSync(saved, 'utf8'), 'written in the cage\n');
    assert.ok(
      fs.existsSync(path.join(docRoot, 'by-app', 'io.kagome.Cage_files', id, 'saved-by-cage.txt')),
    );
    assert.equal(fs.existsSync(path.join(docRoot, 'by-app', 'io.kagome.Cage_other', id)), false);
    // That file and nothing else: the folder it was saved in and the file beside it stay out.
    const inCage = await run(
      'files',
      `cat ${JSON.stringify(secret)} || echo no-secret; ls ${JSON.stringify(dir)} || echo no-folder; ls ${JSON.stringify(path.join(docRoot, id))}`,
    );
    assert.match(inCage, /no-secret\n/);
    assert.match(inCage, /no-folder\n/);
    assert.equal(inCage.trim().split('\n').at(-1), 'saved-by-cage.txt', inCage);
  });

  it('a Qt 5 program in the cage opens the host dialog through the portal theme and reads the file picked there; without the theme Qt shows its own dialog in the cage (the control)', async () => {
    const got = await choose('pick', undefined, (out) => ['python3', '-c', QT_CHOOSER, out]);
    const docRoot = path.join(w.env.XDG_RUNTIME_DIR!, 'doc');
    assert.match(
      got,
      new RegExp(
        `^path=${docRoot.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/[^/]+/picked\\.txt\ncontent=chosen on the host\n$`,
      ),
      `${got}\n${logs()}`,
    );

    // The control: the same program without the variable, and with it naming a theme that is not
    // installed (a host without qt5-xdgdesktopportal-platformtheme): it still runs, and Qt draws
    // its own dialog in the cage, shown on the host through xpra; no dialog of the host's.
    for (const env of [
      ['-u', 'QT_QPA_PLATFORMTHEME'],
      ['QT_QPA_PLATFORMTHEME=kagome-test-not-installed'],
    ]) {
      const out = `qt-own-${++n}.out`;
      const earlier = new Set((await findWindows(w.display, { name: TITLE })).map((d) => d.id));
      await w.launchCommand('files', [
        'env',
        ...env,
        'python3',
        '-c',
        QT_CHOOSER,
        `${w.env.HOME}/${out}`,
      ]);
      const own = await waitFor(
        `Qt's own dialog through xpra (env ${env.join(' ')})`,
        async () => (await findWindows(w.display, { name: TITLE })).find((d) => !earlier.has(d.id)),
        { timeoutMs: 60_000, detail: logs },
      );
      assert.ok(!own.wmClass.includes('xdg-desktop-portal-gtk'), JSON.stringify(own));
      await waitFor(
        "Qt's own dialog closed",
        async () => {
          if (fs.existsSync(w.homeFile('files', out))) return true;
          await x(['windowfocus', own.id]).catch(() => undefined);
          await x(['key', 'Escape']);
          return false;
        },
        { timeoutMs: 30_000, pollMs: 1000, detail: logs },
      );
      assert.equal(fs.readFileSync(w.homeFile('files', out), 'utf8'), 'own-dialog\ncancelled\n');
    }
  });

  it('Save cancelled: nothing is written', async () => {
    const before = fs.readdirSync(path.dirname(picked)).sort();
    assert.equal(
      await choose('cancel', {
        path: path.join(path.dirname(picked), 'never.txt'),
        content: 'never\n',
      }),
      'cancelled\n',
    );
    assert.deepEqual(fs.readdirSync(path.dirname(picked)).sort(), before);
  });

  it("SessionBus=private: a program asking for the portal starts none in the cage, dconf still starts; the cage's own session.conf starts it (the control)", async () => {
    // argv[0] is a shell line run in the cage before the program, with the program's argv after.
    const ask = async (shell: string): Promise<string> => {
      const out = `ask-portal-${++n}.out`;
      await w.launchCommand('plain', ['sh', '-c', shell, ASK_PORTAL, `${w.env.HOME}/${out}`]);
      return w.readFileWhenWritten(w.homeFile('plain', out), 90_000).catch((e: Error) => {
        throw new Error(`${e.message}\n${w.programLog('plain', 'sh')}\n${w.cageLog('plain')}`);
      });
    };
    const got = await ask('exec python3 -c "$0" "$DBUS_SESSION_BUS_ADDRESS" "$1"');
    assert.match(got, /^portal=refused org\.freedesktop\.DBus\.Error\.ServiceUnknown\n/, got);
    assert.match(got, /\ndconf=ok \((uint32 )?[12],\)\n/, got);
    assert.match(got, /\nprocs=\n$/, got);

    // The control: a second bus in the same cage with the configuration its daemon had before,
    // the cage's own session.conf (--session), and the same program once it listens.
    const old = await ask(
      'a="$XDG_RUNTIME_DIR/control-bus"; dbus-daemon --session --nofork --nopidfile --address="unix:path=$a" & ' +
        'while [ ! -S "$a" ]; do sleep 0.1; done; exec python3 -c "$0" "unix:path=$a" "$1"',
    );
    assert.match(old, /\nprocs=.*xdg-desktop-portal/, old);
  });

  /** Opens `uri` through the OpenURI portal from a program of `cage`; resolves to the Response code. */
  const openLink = async (cage: string, uri: string): Promise<number> => {
    const out = `link-${++n}.out`;
    await w.launchCommand(cage, ['python3', '-c', OPEN_LINK_PROGRAM, uri, `${w.env.HOME}/${out}`]);
    const got = await w.readFileWhenWritten(w.homeFile(cage, out), 60_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${w.programLog(cage, 'python3')}\n${w.cageLog(cage)}`);
    });
    return Number(/^response=(\d+)/.exec(got)?.[1]);
  };
  const browserLog = () => fs.readFileSync(w.homeFile('browser', 'opened.log'), 'utf8');
  const arrived = (uri: string) =>
    waitFor(
      `${uri} in the browser cage`,
      () =>
        fs.existsSync(w.homeFile('browser', 'opened.log')) && browserLog().includes(`arg=${uri}\n`),
      { timeoutMs: 60_000, detail: () => w.service!.log() },
    );

  it("OpenLinks=cage:NAME: a link opened in one cage arrives in the other, with that cage's default program", async () => {
    const uri = 'https://example.org/from-other?x=1#y';
    assert.equal(await openLink('other', uri), 0);
    await arrived(uri);
  });

  it("OpenLinks=caged-default (the default): the host's default program for the scheme when it is caged, never an uncaged one", async () => {
    // Caged: the host default is the shadow entry of the browser put in its cage.
    const r = await w.kagome(['app', 'add', 'browser', BROWSER_ID]);
    assert.equal(r.exitCode, 0, String(r.stderr));
    const uri = 'https://example.org/through-the-host-default';
    assert.equal(await openLink('files', uri), 0);
    await arrived(uri);
    // Uncaged: refused, and nothing runs on the host.
    assert.equal((await w.kagome(['app', 'remove', 'browser', BROWSER_ID])).exitCode, 0);
    const refused = 'https://example.org/not-to-the-uncaged-browser';
    assert.equal(await openLink('files', refused), 2);
    assert.match(w.service!.log(), /is not in one; put it in a cage/);
    assert.equal(fs.existsSync(path.join(w.env.HOME!, 'opened.log')), false);
    assert.ok(!browserLog().includes(refused));
  });

  it('OpenLinks=none refuses; the policy is read at each link', async () => {
    w.writeCage('other', '[Cage]\nSessionBus=portal\nOpenLinks=none\nNotifications=none\n');
    const uri = 'https://example.org/nowhere';
    assert.equal(await openLink('other', uri), 2);
    assert.match(w.service!.log(), /cage other may not open links \(OpenLinks=none/);
    assert.ok(!browserLog().includes(uri));
    w.writeCage('other', '[Cage]\nSessionBus=portal\nOpenLinks=cage:browser\nNotifications=none\n');
  });

  it('a hostile cage sending file:, control characters or 1 MB links is refused and the service goes on; the same links given to the launch are handed on (the control)', async () => {
    const out = `bad-links-${++n}.json`;
    // From the cage whose links go to the browser cage: only the check stands in the way.
    await w.launchCommand('other', [
      'python3',
      '-c',
      BAD_LINKS,
      portalAddressInCage(),
      `${w.env.HOME}/${out}`,
      secret,
    ]);
    const got = JSON.parse(
      await w.readFileWhenWritten(w.homeFile('other', out), 90_000).catch((e: Error) => {
        throw new Error(`${e.message}\n${w.programLog('other', 'python3')}\n${w.service!.log()}`);
      }),
    ) as Record<string, string>;
    for (const key of ['shadow', 'secret', 'javascript'])
      assert.match(
        got[key]!,
        /^refused io\.kagome\.Error\.NotPermitted/,
        `${key}: ${JSON.stringify(got)}`,
      );
    for (const key of ['newline', 'escape', 'huge'])
      assert.match(
        got[key]!,
        /^refused io\.kagome\.Error\.InvalidArgument/,
        `${key}: ${JSON.stringify(got)}`,
      );
    // The host's own callers are not cages: refused.
    const host = await w.rejection(
      w.dbus.CagePortal1.OpenURI('https://example.org/from-the-host', {}),
    );
    assert.equal(host.type, 'io.kagome.Error.NotPermitted', host.text);
    // The service goes on: a good link still arrives.
    const after = 'https://example.org/after-the-attack';
    assert.equal(await openLink('other', after), 0);
    await arrived(after);
    assert.ok(
      !browserLog().includes('example.org/\n') && !browserLog().includes('secret'),
      browserLog(),
    );

    // The control: the launch a link ends in, given those links without kagome's check, grants
    // the host file named by a file: URI to the cage and passes a newline into argv.
    await w.dbus.Launcher1.Launch(
      'browser',
      BROWSER_ID,
      [`file://${secret}`, 'https://example.org/\n--new-window'],
      {},
    );
    await waitFor(
      'the control in the browser cage',
      // Exec's %u runs the fake browser once per link, side by side: wait for both.
      () =>
        browserLog().includes('arg=https://example.org/\n--new-window\n') &&
        browserLog().includes('content=never for the cage'),
      { timeoutMs: 60_000, detail: browserLog },
    );
  });

  it("the relay answers the chooser's version and leaves out the cage's parent window; straight to the proxy, neither (the control)", async () => {
    const hostWindow = execa('xlogo', ['-name', 'kagome-parent'], { env: { DISPLAY: w.display } });
    try {
      const [parent] = await waitFor(
        'a window on the host display',
        async () => {
          const found = await findWindows(w.display, { wmClass: 'kagome-parent' });
          return found.length ? found : undefined;
        },
        { timeoutMs: 20_000 },
      );
      const ask = async (address: string): Promise<{ got: string; transientFor: string }> => {
        const out = `parent-${++n}.out`;
        const earlier = new Set((await findWindows(w.display, { name: TITLE })).map((d) => d.id));
        await w.launchCommand('files', [
          'python3',
          '-c',
          PARENT,
          address,
          `x11:${parent!.id}`,
          `${w.env.HOME}/${out}`,
        ]);
        const dialog = await waitFor(
          "the host's dialog",
          async () =>
            (await findWindows(w.display, { name: TITLE })).find(
              (d) => !earlier.has(d.id) && d.wmClass.includes('xdg-desktop-portal-gtk'),
            ),
          { timeoutMs: 60_000, detail: logs },
        );
        const transientFor = (
          await execa('xprop', ['-id', dialog.id, 'WM_TRANSIENT_FOR'], {
            env: { DISPLAY: w.display },
          })
        ).stdout;
        await waitFor(
          'the dialog gone after Escape',
          async () => {
            if (!(await findWindows(w.display, { name: TITLE })).some((d) => d.id === dialog.id))
              return true;
            await x(['windowfocus', dialog.id]).catch(() => undefined);
            await x(['key', 'Escape']);
            return undefined;
          },
          { timeoutMs: 30_000, pollMs: 1000 },
        );
        return { got: await w.readFileWhenWritten(w.homeFile('files', out), 30_000), transientFor };
      };
      const parentId = Number(parent!.id);
      const relayed = await ask(''); // the cage's own bus, where the relay is
      assert.match(relayed.got, /^version 3\nrefused .*AccessDenied\nresponse 2\n$/, relayed.got);
      assert.doesNotMatch(relayed.transientFor, new RegExp(`0x0*${parentId.toString(16)}\\b`));
      const direct = await ask(portalAddressInCage());
      assert.match(direct.got, /^refused .*\nrefused .*\nresponse 2\n$/, direct.got);
      assert.match(direct.transientFor, new RegExp(`0x0*${parentId.toString(16)}\\b`));
    } finally {
      hostWindow.kill();
      await hostWindow.catch(() => undefined);
    }
  });

  it('the proxy lets nothing else of the host bus through; the host bus given directly lets it all (the control)', async () => {
    const attack = async (cage: string, address: string): Promise<Record<string, unknown>> => {
      const out = `attack-${++n}.json`;
      for (const f of ['listening', 'sent']) fs.rmSync(w.homeFile(cage, f), { force: true });
      await w.launchCommand(cage, ['python3', '-c', ATTACK, address, `${w.env.HOME}/${out}`]);
      await waitFor('the attacker listens', () => fs.existsSync(w.homeFile(cage, 'listening')), {
        timeoutMs: 30_000,
        detail: () => w.programLog(cage, 'python3'),
      });
      // A call on the host's bus the attacker must not see.
      await w
        .callRaw(
          'org.freedesktop.secrets',
          '/org/freedesktop/secrets',
          'org.example.Probe',
          'Leak',
          '',
          [],
        )
        .catch(() => undefined);
      fs.writeFileSync(w.homeFile(cage, 'sent'), '');
      return JSON.parse(await w.readFileWhenWritten(w.homeFile(cage, out), 60_000)) as Record<
        string,
        unknown
      >;
    };
    const control = await attack(
      'direct',
      `unix:path=/run/hostbus/${path.basename(busSocketPath(w.bus.address)!)}`,
    );
    for (const key of [
      'kagome',
      'notifications',
      'secrets',
      'systemd',
      'own',
      'own-cage-id',
      'list',
      'eavesdrop-match',
      'monitor',
    ]) {
      assert.match(String(control[key]), /^ok/, `control ${key}: ${JSON.stringify(control)}`);
    }
    assert.deepEqual(control.eavesdropped, ['Leak'], JSON.stringify(control));
    assert.equal(
      notifications!.server.calls.filter((c) => c.summary === 'from the cage').length,
      1,
    );
    const secretsCalls = fakeServices.secrets.calls;

    const hostile = await attack('files', portalAddressInCage());
    for (const key of [
      'kagome',
      'notifications',
      'secrets',
      'systemd',
      'own',
      'own-cage-id',
      'monitor',
    ]) {
      assert.match(
        String(hostile[key]),
        /^refused/,
        `through the proxy ${key}: ${JSON.stringify(hostile)}`,
      );
    }
    assert.deepEqual(hostile.eavesdropped, [], JSON.stringify(hostile));
    // The names it may list are the bus's own, the portal's and kagome's (whose one cage method,
    // CagePortal1.OpenURI, it may call: Cages1.List above was refused), nothing else of the desktop.
    for (const name of [
      'org.freedesktop.Notifications',
      'org.freedesktop.secrets',
      'org.freedesktop.systemd1',
    ]) {
      assert.ok(
        !String(hostile.list).includes(`'${name}'`),
        `${name} listed: ${String(hostile.list)}`,
      );
    }
    assert.equal(
      notifications!.server.calls.filter((c) => c.summary === 'from the cage').length,
      1,
      'no notification through the proxy',
    );
    assert.equal(fakeServices.secrets.calls, secretsCalls);
  });

  it('the proxy and the relay outlive a restart of the service; a proxy gone is started again; both go with the cage', async () => {
    const before = busRecord('files');
    assert.ok(
      before?.proxy && isAlive(before.proxy) && before.relay && isAlive(before.relay),
      JSON.stringify(before),
    );
    await w.killService();
    assert.ok(isAlive(before.proxy), 'the proxy lives on without the service');
    process.kill(before.proxy.pid, 'SIGKILL');
    await waitFor('the proxy gone', () => !isAlive(before.proxy), { timeoutMs: 10_000 });
    await w.startService();
    const after = busRecord('files');
    assert.ok(
      after?.proxy && isAlive(after.proxy) && after.relay && isAlive(after.relay),
      JSON.stringify(after),
    );
    assert.notDeepEqual(after.proxy, before.proxy);
    assert.equal(String((await w.dbus.Cages1.Get('files')).SessionBusState?.value), 'up');
    assert.match(await choose('pick'), /content=chosen on the host\n$/);
    await w.dbus.Cages1.Stop('files');
    assert.equal(isAlive(after.proxy), false);
    assert.equal(fs.existsSync(after.portalDir!), false);
  });
});
