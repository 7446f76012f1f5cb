import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { execa } from 'execa';
import { World } from '../helpers/kagome.js';
import { waitFor } from '../helpers/wait.js';
import { findWindows } from '../helpers/x11.js';

// Windows a program in an xpra cage shows, hides and names quickly, as real programs do, seen
// on the host: a window mapped and at once withdrawn (FeatherPad does it with a hidden window
// whenever it is asked to open a file) leaves nothing on the host, and one mapped again at
// once is shown; a title set while the cage's xpra server takes a new window on is the title
// the host window gets. Both were races in xpra 3.1's window manager (see XPRA_SERVER_LAUNCHER
// in lib/display/xpra.ts); the programs below are python3-xlib scripts that hit them. And a
// program that gives its windows an icon the way LibreOffice does (_NET_WM_ICON only where the
// window manager lists it in _NET_SUPPORTED, else only WM_HINTS' icon pixmap) has its icon on
// the host, while bad or huge icons stop neither the cage's server nor the host's client.

/**
 * Maps windows and withdraws them the way Xlib's XWithdrawWindow and Qt's hide() do (an unmap,
 * then a synthetic UnmapNotify to the root, ICCCM 4.1.4), at once or after a while; one is
 * mapped again right after; "ready" last. Once "ready" is viewable, the cage's server has
 * handled everything before it, and the script writes the map state of each window.
 */
const WITHDRAW = `
import os, time
from Xlib import X, display
from Xlib.protocol import event
d = display.Display()
s = d.screen()
root = s.root
def window(name):
    w = root.create_window(0, 0, 640, 480, 0, s.root_depth, X.InputOutput, X.CopyFromParent, background_pixel=s.black_pixel)
    w.set_wm_name(name)
    w.set_wm_class("withdraw", "Withdraw")
    return w
def withdraw(w):
    w.unmap()
    root.send_event(event.UnmapNotify(window=w, event=root, from_configure=False), event_mask=X.SubstructureRedirectMask | X.SubstructureNotifyMask)
windows = []
for ms in (0, 10, 50, 200):
    w = window("withdrawn after %d ms" % ms)
    w.map()
    if ms:
        d.sync()
        time.sleep(ms / 1000)
    withdraw(w)
    d.sync()
    windows.append(w)
again = window("withdrawn and shown again")
again.map()
withdraw(again)
again.map()
windows.append(again)
ready = window("ready")
ready.map()
d.sync()
while ready.get_attributes().map_state != X.IsViewable:
    time.sleep(0.05)
states = ["%s: %s" % (w.get_wm_name(), "viewable" if w.get_attributes().map_state == X.IsViewable else "unmapped") for w in windows]
with open(os.path.expanduser("~/withdraw.tmp"), "w") as f:
    f.write("\\n".join(states) + "\\n")
os.rename(os.path.expanduser("~/withdraw.tmp"), os.path.expanduser("~/withdraw.out"))
time.sleep(3600)
`;

/**
 * Maps windows and renames each one until the cage's server listens for its property changes
 * (another client's PropertyChangeMask shows in the window's attributes). Each check and
 * rename is made under a server grab, so the last name is set before the server listens, and
 * the server must read it after. Writes the last name of each window.
 */
const RETITLE = `
import os, time
from Xlib import X, display
d = display.Display()
s = d.screen()
utf8 = d.intern_atom("UTF8_STRING")
net_wm_name = d.intern_atom("_NET_WM_NAME")
last = []
for i in range(10):
    w = s.root.create_window(20 * i, 20 * i, 300, 200, 0, s.root_depth, X.InputOutput, X.CopyFromParent, background_pixel=s.white_pixel)
    def name(text):
        w.set_wm_name(text)
        w.change_property(net_wm_name, utf8, 8, text.encode())
    n = 0
    name("window %d title %d" % (i, n))
    w.set_wm_class("retitle", "Retitle")
    w.map()
    while True:
        d.grab_server()
        if w.get_attributes().all_event_masks & X.PropertyChangeMask:
            d.ungrab_server()
            d.sync()
            break
        n += 1
        name("window %d title %d" % (i, n))
        d.ungrab_server()
        d.sync()
    last.append("window %d title %d" % (i, n))
with open(os.path.expanduser("~/retitle.tmp"), "w") as f:
    f.write("\\n".join(last) + "\\n")
os.rename(os.path.expanduser("~/retitle.tmp"), os.path.expanduser("~/retitle.out"))
time.sleep(3600)
`;

/** The colour of the programs' icons, not one of xpra's. */
const ICON_RGB = 0x12a456;

/**
 * Windows with icons, named by argv[1:]: NAME or NAME=WIDTHxHEIGHT (a solid icon of that size)
 * or NAME=raw:N,N,... (the property's numbers as they are: a hostile icon). Every window also
 * has the icon as WM_HINTS' pixmap, and gets _NET_WM_ICON only where the cage's window manager
 * lists it in _NET_SUPPORTED, as LibreOffice's X11 backend (vcl/unx/generic) does. Writes
 * ~/icons.out once every window is mapped.
 */
const ICONS = `
import os, sys, time
from Xlib import X, Xatom, Xutil, display
d = display.Display()
s = d.screen()
root = s.root
NET_WM_ICON = d.intern_atom("_NET_WM_ICON")
supported = root.get_full_property(d.intern_atom("_NET_SUPPORTED"), Xatom.ATOM)
listed = supported is not None and NET_WM_ICON in supported.value
COLOUR = 0x${ICON_RGB.toString(16)}
windows = []
for arg in sys.argv[1:]:
    name, _, spec = arg.partition("=")
    if spec.startswith("raw:"):
        icon = [int(n) for n in spec[4:].split(",")]
    else:
        width, height = (int(n) for n in (spec or "32x32").split("x"))
        icon = [width, height] + [0xff000000 | COLOUR] * (width * height)
    w = root.create_window(0, 0, 200, 100, 0, s.root_depth, X.InputOutput, X.CopyFromParent, background_pixel=s.white_pixel)
    w.set_wm_name(name)
    w.set_wm_class("icons", "Icons")
    pixmap = w.create_pixmap(32, 32, s.root_depth)
    pixmap.fill_rectangle(pixmap.create_gc(foreground=COLOUR), 0, 0, 32, 32)
    w.set_wm_hints(flags=Xutil.IconPixmapHint, icon_pixmap=pixmap)
    if listed:
        # In pieces: one request carries at most 256 KiB.
        for i in range(0, len(icon), 16384):
            w.change_property(NET_WM_ICON, Xatom.CARDINAL, 32, icon[i:i + 16384], X.PropModeAppend if i else X.PropModeReplace)
    w.map()
    windows.append(w)
d.sync()
with open(os.path.expanduser("~/icons.tmp"), "w") as f:
    f.write("_NET_WM_ICON listed: %s\\n" % listed)
os.rename(os.path.expanduser("~/icons.tmp"), os.path.expanduser("~/icons.out"))
time.sleep(3600)
`;

interface Icon {
  width: number;
  height: number;
  /** ARGB, one number a pixel */
  pixels: number[];
}

describe('windows shown, hidden, named and given icons in an xpra cage', () => {
  let w: World;

  /** Names of the windows of this WM_CLASS shown on the host display, sorted. */
  const shownNames = async (cls: string): Promise<string[]> =>
    (await findWindows(w.display, { wmClass: cls })).map((f) => f.name).sort();

  /** The icons in a host window's _NET_WM_ICON, none when it has none. */
  const hostIcons = async (name: string): Promise<Icon[]> => {
    const found = (await findWindows(w.display, { wmClass: 'Icons' })).find((f) => f.name === name);
    if (!found) return [];
    const r = await execa(
      'xprop',
      ['-id', found.id, '-notype', '-f', '_NET_WM_ICON', '32c', ' $0+', '_NET_WM_ICON'],
      {
        env: { DISPLAY: w.display },
        reject: false,
      },
    );
    const numbers =
      /^_NET_WM_ICON (.*)$/m.exec(String(r.stdout))?.[1]?.split(',').map(Number) ?? [];
    const icons: Icon[] = [];
    for (let i = 0; i + 2 <= numbers.length;) {
      const [width, height] = [numbers[i]!, numbers[i + 1]!];
      icons.push({ width, height, pixels: numbers.slice(i + 2, i + 2 + width * height) });
      i += 2 + width * height;
    }
    return icons;
  };
  /** Every icon of the host window is the program's colour, and there is one. */
  const hasProgramsIcon = (icons: Icon[]): boolean =>
    icons.length > 0 &&
    icons.every(
      (icon) =>
        icon.pixels.length > 0 && icon.pixels.every((p) => p === (0xff000000 | ICON_RGB) >>> 0),
    );

  before(async () => {
    w = await World.create();
    w.writeCage('quick', '[Cage]\n');
    await w.startService();
  });

  after(async () => {
    await w?.cleanup();
  });

  it('a window mapped and withdrawn at once leaves no window on the host, and one mapped again is shown', async () => {
    await w.launchCommand('quick', ['/usr/bin/python3', '-c', WITHDRAW]);
    const states = await w.readFileWhenWritten(w.homeFile('quick', 'withdraw.out'), 60000);
    // What the program asked for is what the cage's display has.
    assert.equal(
      states,
      [
        'withdrawn after 0 ms: unmapped',
        'withdrawn after 10 ms: unmapped',
        'withdrawn after 50 ms: unmapped',
        'withdrawn after 200 ms: unmapped',
        'withdrawn and shown again: viewable',
        '',
      ].join('\n'),
    );
    // A leftover stays for good: waiting long enough for a lost window to leave shows it.
    await waitFor('only the shown windows on the host', () => shownNames('Withdraw'), {
      timeoutMs: 20000,
      pollMs: 200,
      until: (names) => names.join('|') === ['ready', 'withdrawn and shown again'].join('|'),
      detail: () => w.cageLog('quick').split('\n').slice(-10).join('\n'),
    });
  });

  it('the host window has the title its program set while the server took the window on', async () => {
    await w.launchCommand('quick', ['/usr/bin/python3', '-c', RETITLE]);
    const last = (await w.readFileWhenWritten(w.homeFile('quick', 'retitle.out'), 60000))
      .trim()
      .split('\n')
      .sort();
    assert.equal(last.length, 10);
    // A missed title is never sent later: waiting long enough for the last title shows it.
    await waitFor('the last titles on the host', () => shownNames('Retitle'), {
      timeoutMs: 20000,
      pollMs: 200,
      until: (names) => names.join('|') === last.join('|'),
      detail: () => `the program's last titles: ${JSON.stringify(last)}`,
    });
  });

  it('a window whose program sets its icon as LibreOffice does has that icon on the host', async () => {
    fs.rmSync(w.homeFile('quick', 'icons.out'), { force: true });
    await w.launchCommand('quick', ['/usr/bin/python3', '-c', ICONS, 'icon']);
    const out = await w.readFileWhenWritten(w.homeFile('quick', 'icons.out'), 60000);
    // The program writes _NET_WM_ICON only where the cage's xpra server says it reads it.
    assert.equal(out, '_NET_WM_ICON listed: True\n');
    await waitFor("the program's icon on its host window", () => hostIcons('icon'), {
      timeoutMs: 20000,
      pollMs: 200,
      until: hasProgramsIcon,
      detail: () => w.cageLog('quick').split('\n').slice(-10).join('\n'),
    });
  });

  it("bad and huge icons stop neither the cage's server nor the host's client", async () => {
    const state = () =>
      w.cageState('quick') as {
        displayState: { server: { pid: number }; client: { pid: number } };
      };
    // The cage runs (also when this test runs alone), and this is its client.
    await w.runShell('quick', 'true');
    const client = state().displayState.client.pid;
    const pixel = String((0xff000000 | ICON_RGB) >>> 0);
    const hostile = [
      'zero=raw:0,0',
      `truncated=raw:65535,65535,${Array(16).fill(pixel).join(',')}`,
      `overflowing=raw:4294967295,4294967295,${Array(16).fill(pixel).join(',')}`,
      // Over the 4 MiB xpra reads of a property.
      'over the cap=1100x1000',
      // Scaled to 64 pixels wide, 0 high.
      'thin=1000x1',
      // Scaled down to the client's size.
      'large=1000x1000',
    ];
    fs.rmSync(w.homeFile('quick', 'icons.out'), { force: true });
    await w.launchCommand('quick', ['/usr/bin/python3', '-c', ICONS, ...hostile, 'after']);
    await w.readFileWhenWritten(w.homeFile('quick', 'icons.out'), 60000);
    const names = [...hostile.map((h) => h.split('=')[0]!), 'after'];
    await waitFor('every window on the host', () => shownNames('Icons'), {
      timeoutMs: 30000,
      pollMs: 200,
      until: (shown) => names.every((n) => shown.includes(n)),
    });
    // The window after the bad ones has its icon: the server went on reading and sending.
    await waitFor('the icon of the window after the bad ones', () => hostIcons('after'), {
      timeoutMs: 20000,
      pollMs: 200,
      until: hasProgramsIcon,
      detail: () => w.cageLog('quick').split('\n').slice(-20).join('\n'),
    });
    // A large icon reaches the host at the client's size (xpra's icons.max_size, 128).
    const large = await waitFor('the large icon, scaled', () => hostIcons('large'), {
      timeoutMs: 20000,
      pollMs: 200,
      until: hasProgramsIcon,
    });
    for (const icon of large)
      assert.ok(icon.width <= 128 && icon.height <= 128, `${icon.width}x${icon.height}`);
    // Each bad one reached the server's reading or sending of it, which refused it (xpra 3.1's
    // words: x11/prop_conv.py, x11/gtk_x11/prop.py, server/window/windowicon_source.py).
    const log = w.cageLog('quick');
    assert.match(log, /corrupt _NET_WM_ICON/, 'truncated');
    assert.match(log, /Weird corruption in _NET_WM_ICON/, 'overflowing');
    assert.match(log, /reserved 4194304 bytes for icons buffer/, 'over the cap');
    assert.match(log, /invalid buffer size: 0/, 'zero');
    assert.match(log, /height and width must be > 0/, 'thin');
    assert.equal(state().displayState.client.pid, client, 'the host client was restarted');
    assert.ok(fs.existsSync(`/proc/${client}`), 'the host client ended');
    assert.ok(fs.existsSync(`/proc/${state().displayState.server.pid}`), "the cage's server ended");
  });
});
