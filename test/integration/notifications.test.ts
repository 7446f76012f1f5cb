import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import dbus from 'dbus-next';
import { World } from '../helpers/kagome.js';
import { startNotifications } from '../helpers/notifications.js';
import { startDesktopPortal, type DesktopPortal } from '../helpers/desktop-portal.js';
import { waitFor } from '../helpers/wait.js';
import { Keyfile } from '../../xdg/keyfile.js';

// Notifications from a SessionBus=portal cage, as the ordinary user: a GLib program in the cage
// sends them through the Notification portal on its bus; kagome (not the host's portal) shows
// them on the test's notification server as plain text marked with the cage's name, with the
// cage's NoDisplay desktop entry named in the desktop-entry hint. The cage is the attacker: its
// notification has a link, an image, a direction override, a host icon, a button and "urgent".
// The control: the same notification given to the host's real xdg-desktop-portal 1.16 (what
// cages used before) reaches the server with its markup and no name.

// A GLib program's notifications, as GApplication sends them (GTK_USE_PORTAL=1 in the cage picks
// GLib's portal backend). argv: out, then commands: "send ID TITLE BODY" or "withdraw ID".
const NOTIFY = String.raw`
import os, sys
from gi.repository import Gio, GLib
out, cmds = sys.argv[1], sys.argv[2:]
app = Gio.Application.new('org.example.CagedNotifier', Gio.ApplicationFlags.NON_UNIQUE)
app.register(None)
while cmds:
    if cmds[0] == 'send':
        _, nid, title, body = cmds[:4]
        cmds = cmds[4:]
        n = Gio.Notification.new(title)
        n.set_body(body)
        n.set_icon(Gio.ThemedIcon.new('system-software-update'))
        n.add_button('Update now', 'app.update')
        n.set_priority(Gio.NotificationPriority.URGENT)
        app.send_notification(nid, n)
    else:
        app.withdraw_notification(cmds[1])
        cmds = cmds[2:]
Gio.bus_get_sync(Gio.BusType.SESSION, None).flush_sync(None)
with open(out + '.tmp', 'w') as f:
    f.write('sent\n')
os.rename(out + '.tmp', out)
`;

// The Notification portal called directly, waiting for the answer: "ok" or "refused NAME".
const DIRECT_NOTIFY = String.raw`
import os, sys
from gi.repository import Gio, GLib
out, title = sys.argv[1], sys.argv[2]
bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
try:
    bus.call_sync('org.freedesktop.portal.Desktop', '/org/freedesktop/portal/desktop', 'org.freedesktop.portal.Notification', 'AddNotification',
                  GLib.Variant('(sa{sv})', ('direct', {'title': GLib.Variant('s', title)})), None, Gio.DBusCallFlags.NONE, 10000, None)
    r = 'ok'
except GLib.Error as e:
    r = 'refused ' + (Gio.DBusError.get_remote_error(e) or e.message)
with open(out + '.tmp', 'w') as f:
    f.write(r + '\n')
os.rename(out + '.tmp', out)
`;

const HOSTILE_TITLE = 'System update';
const HOSTILE_BODY =
  'Click <a href="https://evil.example/">here</a><img src="file:///etc/passwd"/> \u202eyadot &amp; now';

describe("Notifications from a cage: plain text, marked with the cage's name", () => {
  let w: World;
  let notifications: Awaited<ReturnType<typeof startNotifications>>;
  let portal: DesktopPortal | undefined;
  let n = 0;

  const calls = () => notifications.server.calls;
  const logs = () =>
    `${JSON.stringify(calls())}\n--- cage log\n${w.cageLog('files')}\n--- program log\n${w.programLog('files', 'python3')}`;
  const notify = async (cage: string, cmds: string[]): Promise<void> => {
    const out = `notify-${++n}.out`;
    await w.launchCommand(cage, ['python3', '-c', NOTIFY, `${w.env.HOME}/${out}`, ...cmds]);
    await w.readFileWhenWritten(w.homeFile(cage, out), 30_000);
  };
  const arrived = (summary: string) =>
    waitFor(`the notification "${summary}"`, () => calls().find((c) => c.summary === summary), {
      timeoutMs: 30_000,
      detail: logs,
    });

  before(async () => {
    w = await World.create();
    w.writeCage('files', '[Cage]\nSessionBus=portal\nBorder=#3465a4\n');
    w.writeCage('quiet', '[Cage]\nSessionBus=portal\nNotifications=none\n');
    w.writeCage('plain', '[Cage]\n');
    notifications = await startNotifications(w.bus.address);
    await w.startService();
    // Started first, so that by the time the portal cage's entry is there, this one's would be.
    await w.launchCommand('plain', ['true']);
  });

  after(async () => {
    notifications?.stop();
    await w?.cleanup();
    await portal?.stop();
  });

  it("a hostile notification arrives as plain text with the cage's name, no icon, button or urgency; the host's portal passes it unchanged (the control)", async () => {
    await notify('files', ['send', 'hostile', HOSTILE_TITLE, HOSTILE_BODY]);
    const got = await arrived(`[files] ${HOSTILE_TITLE}`);
    assert.equal(got.app, 'files (kagome cage)');
    assert.equal(got.desktopEntry, 'io.kagome.Cage_files');
    // No markup a server could read, no hidden reordering: the words are all still there.
    assert.ok(!/[<>&\u202e]/.test(got.body), got.body);
    assert.equal(
      got.body,
      'Click \u2039a href="https://evil.example/"\u203ahere\u2039/a\u203a\u2039img src="file:///etc/passwd"/\u203a yadot \uff06amp; now',
    );
    assert.equal(got.icon, '');
    assert.deepEqual(got.actions, []);
    assert.equal(got.urgency, 1);

    // The control: the host's portal, as cages reached it before, called by a program it takes
    // for a host app (as the cage's proxy was taken for the app io.kagome.Cage_files).
    portal = await startDesktopPortal(w.env);
    const bus = dbus.sessionBus({ busAddress: w.bus.address });
    try {
      await bus.call(
        new dbus.Message({
          destination: 'org.freedesktop.portal.Desktop',
          path: '/org/freedesktop/portal/desktop',
          interface: 'org.freedesktop.portal.Notification',
          member: 'AddNotification',
          signature: 'sa{sv}',
          body: [
            'control',
            {
              title: new dbus.Variant('s', HOSTILE_TITLE),
              body: new dbus.Variant('s', HOSTILE_BODY),
            },
          ],
        }),
      );
    } finally {
      bus.disconnect();
    }
    const control = await waitFor(
      "the host portal's notification",
      () => calls().find((c) => c.summary === HOSTILE_TITLE),
      { timeoutMs: 30_000, detail: () => `${logs()}\n--- portal\n${portal?.log() ?? ''}` },
    );
    assert.equal(control.body, HOSTILE_BODY);
    assert.equal(control.app, '');
  });

  it('the same id replaces the notification, and withdrawing it closes it on the server', async () => {
    await notify('files', [
      'send',
      'k',
      'first',
      'one',
      'send',
      'k',
      'second',
      'two',
      'withdraw',
      'k',
    ]);
    const first = await arrived('[files] first');
    const second = await arrived('[files] second');
    assert.equal(second.replaces, first.id, logs());
    await waitFor('the notification closed', () => notifications.server.closed.includes(first.id), {
      timeoutMs: 30_000,
      detail: () => `closed ${JSON.stringify(notifications.server.closed)}\n${logs()}`,
    });
  });

  it('Notifications=none: the proxy refuses; the same call from a cage allowed them gets through (the control)', async () => {
    const call = async (cage: string, title: string): Promise<string> => {
      const out = `direct-notify-${++n}.out`;
      await w.launchCommand(cage, ['python3', '-c', DIRECT_NOTIFY, `${w.env.HOME}/${out}`, title]);
      return w.readFileWhenWritten(w.homeFile(cage, out), 30_000);
    };
    assert.match(
      await call('quiet', 'refused title'),
      /^refused org\.freedesktop\.DBus\.Error\.AccessDenied/,
    );
    assert.equal(await call('files', 'allowed title'), 'ok\n');
    await arrived('[files] allowed title');
    assert.equal(calls().filter((c) => c.summary.includes('refused title')).length, 0);
  });

  it("kagome's notification methods refuse a caller that is not a cage's proxy", async () => {
    const err = await w.rejection(
      w.dbus.CagePortal1.AddNotification('host', { title: new dbus.Variant('s', 'from the host') }),
    );
    assert.equal(err.type, 'io.kagome.Error.NotPermitted', err.text);
    assert.equal(calls().filter((c) => c.summary.includes('from the host')).length, 0);
  });

  it('the cage has a hidden desktop entry with its name and an icon in its colour, gone with the cage; a cage without the portal has none', async () => {
    const entry = path.join(w.userApps, 'io.kagome.Cage_files.desktop');
    await waitFor('the cage entry', () => fs.existsSync(entry), { timeoutMs: 10_000 });
    const kf = Keyfile.parse(fs.readFileSync(entry, 'utf8'));
    const get = (k: string) => kf.get('Desktop Entry', k);
    assert.equal(get('NoDisplay'), 'true');
    assert.equal(get('Name'), 'files (kagome cage)');
    const icon = get('Icon')!;
    assert.match(fs.readFileSync(icon, 'utf8'), /fill="#3465a4"/);
    // A cage without the portal bus (started before) gets none.
    assert.ok(!fs.existsSync(path.join(w.userApps, 'io.kagome.Cage_plain.desktop')));
    await w.dbus.Cages1.Stop('files');
    const r = await w.kagome(['cage', 'remove', 'files']);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.ok(!fs.existsSync(entry));
    assert.ok(!fs.existsSync(icon));
  });
});
