import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { World } from '../helpers/kagome.js';
import { waitFor } from '../helpers/wait.js';
import { findWindows } from '../helpers/x11.js';

// Windows a program in an xpra cage shows, hides and names quickly, as real programs do, seen
// on the host: a window mapped and at once withdrawn (FeatherPad does it with a hidden window
// whenever it is asked to open a file) leaves nothing on the host, and one mapped again at
// once is shown; a title set while the cage's xpra server takes a new window on is the title
// the host window gets. Both were races in xpra 3.1's window manager (see XPRA_SERVER_LAUNCHER
// in lib/display/xpra.ts); the programs below are python3-xlib scripts that hit them.

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

describe('windows shown, hidden and named quickly in an xpra cage', () => {
  let w: World;

  /** Names of the windows of this WM_CLASS shown on the host display, sorted. */
  const shownNames = async (cls: string): Promise<string[]> =>
    (await findWindows(w.display, { wmClass: cls })).map((f) => f.name).sort();

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
});
