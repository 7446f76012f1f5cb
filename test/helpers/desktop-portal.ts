import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { execa } from 'execa';
import { spawnDaemon, stopChild, tail, track, unrefDaemon } from './daemons.js';
import { waitFor } from './wait.js';

// The real xdg-desktop-portal (Debian package xdg-desktop-portal) with its GTK backend
// (xdg-desktop-portal-gtk, which draws the dialogs) on a test world's private bus and host
// display. A private bus activates nothing, so both are started here; the world's document
// portal (World.create({ documentPortal: true })) must already run, since the file chooser
// hands sandboxed callers their files through it. The backend is picked by
// XDG_CURRENT_DESKTOP: its gtk.portal says UseIn=gnome.

const LIBEXEC = '/usr/libexec';

export interface DesktopPortal {
  log(): string;
  stop(): Promise<void>;
}

async function owned(address: string, name: string): Promise<boolean> {
  const r = await execa(
    'gdbus',
    [
      'call',
      '--address',
      address,
      '--dest',
      'org.freedesktop.DBus',
      '--object-path',
      '/org/freedesktop/DBus',
      '--method',
      'org.freedesktop.DBus.NameHasOwner',
      name,
    ],
    { reject: false },
  );
  return r.exitCode === 0 && String(r.stdout).includes('true');
}

// A program that opens a link through the OpenURI portal, as GLib and GTK do (GTK_USE_PORTAL=1,
// or in flatpak): the call, then the request's Response. Writes "response=N".
export const OPEN_LINK_PROGRAM = String.raw`
import os, sys
from gi.repository import Gio, GLib
uri, out = sys.argv[1], sys.argv[2]
bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
handle = '/org/freedesktop/portal/desktop/request/%s/kagometest' % bus.get_unique_name()[1:].replace('.', '_')
loop = GLib.MainLoop()
got = []
def response(conn, sender, path, iface, member, params):
    got.append(params[0])
    loop.quit()
bus.signal_subscribe(None, 'org.freedesktop.portal.Request', 'Response', handle, None, Gio.DBusSignalFlags.NO_MATCH_RULE, response)
bus.call_sync('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'AddMatch',
              GLib.Variant('(s)', ("type='signal',interface='org.freedesktop.portal.Request',path='%s'" % handle,)), None, Gio.DBusCallFlags.NONE, -1, None)
bus.call_sync('org.freedesktop.portal.Desktop', '/org/freedesktop/portal/desktop', 'org.freedesktop.portal.OpenURI', 'OpenURI',
              GLib.Variant('(ssa{sv})', ('', uri, {'handle_token': GLib.Variant('s', 'kagometest')})), None, Gio.DBusCallFlags.NONE, -1, None)
loop.run()
with open(out + '.tmp', 'w') as f:
    f.write('response=%d\n' % got[0])
os.rename(out + '.tmp', out)
`;

export async function startDesktopPortal(env: Record<string, string>): Promise<DesktopPortal> {
  const address = env.DBUS_SESSION_BUS_ADDRESS!;
  const opts = {
    env: { ...env, XDG_CURRENT_DESKTOP: 'gnome', GTK_A11Y: 'none', NO_AT_BRIDGE: '1' },
    stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'],
  };
  const started: ChildProcess[] = [];
  const logs: (() => string)[] = [];
  const log = () => logs.map((l) => l()).join('\n');
  const stop = async () => {
    for (const c of started.reverse()) await stopChild(c);
  };
  try {
    for (const [program, name] of [
      ['xdg-desktop-portal-gtk', 'org.freedesktop.impl.portal.desktop.gtk'],
      ['xdg-desktop-portal', 'org.freedesktop.portal.Desktop'],
    ] as const) {
      const child = await spawnDaemon(path.join(LIBEXEC, program), ['--replace'], opts, program);
      track(child);
      started.push(child);
      logs.push(tail(child.stderr), tail(child.stdout));
      await waitFor(
        `${program} on the test bus`,
        async () => child.exitCode === null && (await owned(address, name)),
        { timeoutMs: 20_000, pollMs: 100, detail: log },
      );
    }
  } catch (e) {
    await stop();
    throw e;
  }
  for (const c of started) unrefDaemon(c);
  return { log, stop };
}
