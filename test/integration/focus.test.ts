import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { execa } from 'execa';
import { World } from '../helpers/kagome.js';
import { stopChild, track } from '../helpers/daemons.js';
import { parseXpropStrings, waitForWindow, windowProperty } from '../helpers/x11.js';
import { waitFor } from '../helpers/wait.js';
import { xpraClientArgv } from '../../lib/display/xpra.js';
import {
  CLIENT_XPRA_DIR,
  clientSandboxArgs,
  writeClientEtc,
} from '../../lib/display/client-sandbox.js';

// Caged windows as a person at the host's desktop meets them: under a real window manager
// (openbox, which like many never writes _NET_WM_STATE_FOCUSED), they carry the title the
// program set, the program's own icon and no pid of another pid namespace, the program knows
// when its window is the active one (and draws itself so), and typing reaches it.
//
// Typing goes through XTest (`xdotool type` without --window), as a keyboard's keys do: the host
// X server makes device events of it, delivered to the focused window. `xdotool type --window W`
// sends XSendEvent instead when W is not exactly the X focus window, and a GTK 3 toplevel keeps
// the focus on a child window of its own; GTK 3 reads its keys through XInput 2 and drops
// synthetic core events. The last test shows that for a GTK 3 window on the host, uncaged: the
// xpra client is a GTK 3 program, so no key sent that way reaches any caged window.

const CAGE = 'focus';
const CONTROL = 'control';

/**
 * A GTK 3 window with an entry. It writes `TITLE.state` into its home, a line for each change of
 * "active=1 focused=1 backdrop=0": is-active (it has the X focus), GDK's focused state (from
 * _NET_WM_STATE_FOCUSED where the window manager sets it) and the backdrop state GTK draws an
 * unfocused window in (greyed); and `TITLE.typed`, every line entered so far. Its icon is four
 * opaque quadrants of four colours, so a scaled, blended or badged copy has other colours.
 */
const PROBE = [
  'import os, sys',
  'import gi',
  'gi.require_version("Gdk", "3.0")',
  'gi.require_version("Gtk", "3.0")',
  'from gi.repository import Gdk, GdkPixbuf, Gtk',
  'title, home = sys.argv[1], os.environ["HOME"]',
  'def write(kind, text):',
  '    tmp = os.path.join(home, "%s.%s.tmp" % (title, kind))',
  '    with open(tmp, "w") as f:',
  '        f.write(text)',
  '    os.rename(tmp, os.path.join(home, "%s.%s" % (title, kind)))',
  'win = Gtk.Window(title=title)',
  'win.set_default_size(360, 120)',
  'icon = GdkPixbuf.Pixbuf.new(GdkPixbuf.Colorspace.RGB, True, 8, 64, 64)',
  'icon.fill(0xff0000ff)',
  'for x, y, rgba in ((32, 0, 0x00ff00ff), (0, 32, 0x0000ffff), (32, 32, 0xffff00ff)):',
  '    icon.new_subpixbuf(x, y, 32, 32).fill(rgba)',
  'win.set_icon(icon)',
  'entry = Gtk.Entry()',
  'win.add(entry)',
  'lines = []',
  'def entered(e):',
  '    lines.append(e.get_text())',
  '    e.set_text("")',
  '    write("typed", "\\n".join(lines))',
  'history = []',
  'def state(*_):',
  '    gdk = win.get_window()',
  '    focused = bool(gdk and gdk.get_state() & Gdk.WindowState.FOCUSED)',
  '    backdrop = bool(win.get_state_flags() & Gtk.StateFlags.BACKDROP)',
  '    now = "active=%d focused=%d backdrop=%d" % (win.is_active(), focused, backdrop)',
  '    if not history or history[-1] != now:',
  '        history.append(now)',
  '        write("state", "\\n".join(history))',
  'entry.connect("activate", entered)',
  'win.connect("notify::is-active", state)',
  'win.connect("state-flags-changed", state)',
  'win.connect_after("window-state-event", lambda *a: state() or False)',
  'win.connect("destroy", Gtk.main_quit)',
  'win.show_all()',
  'state()',
  'Gtk.main()',
].join('\n');

/** The probe's icon as _NET_WM_ICON holds it (ARGB), one entry per colour. */
const PROBE_ICON_COLOURS = ['ff0000ff', 'ff00ff00', 'ffff0000', 'ffffff00'];

/**
 * The _NET_WM_ICON images of a window, given as an id ("0x...") or, inside a cage, as the
 * WM_CLASS of the first window that has icons. xpra's server sends icons premultiplied by
 * their alpha in a PNG the client takes as not premultiplied, so images are compared by their
 * alpha and by their opaque pixels, which that leaves alone.
 */
const ICONS = [
  'import hashlib, json, sys',
  'from Xlib import Xatom, display',
  'd = display.Display()',
  'NET_WM_ICON = d.intern_atom("_NET_WM_ICON")',
  'def with_icon(w, cls):',
  '    try:',
  '        if cls in (w.get_wm_class() or ()) and w.get_full_property(NET_WM_ICON, Xatom.CARDINAL):',
  '            return w',
  '    except Exception:',
  '        pass',
  '    for child in w.query_tree().children:',
  '        found = with_icon(child, cls)',
  '        if found:',
  '            return found',
  'what = sys.argv[1]',
  'w = d.create_resource_object("window", int(what, 16)) if what.startswith("0x") else with_icon(d.screen().root, what)',
  'p = w.get_full_property(NET_WM_ICON, Xatom.CARDINAL) if w else None',
  'data, images = list(p.value) if p else [], []',
  'sha = lambda values: hashlib.sha256(repr(values).encode()).hexdigest()[:16]',
  'while len(data) >= 2:',
  '    width, height = data[0], data[1]',
  '    pixels = [v & 0xffffffff for v in data[2:2 + width * height]]',
  '    data = data[2 + width * height:]',
  '    colours = sorted(set("%08x" % v for v in pixels if v >> 24))',
  '    images.append({"width": width, "height": height, "alpha": sha([v >> 24 for v in pixels]),',
  '                   "opaque": sha([v for v in pixels if v >> 24 == 255]), "colours": colours[:16], "count": len(colours)})',
  'out = sys.argv[2] if len(sys.argv) > 2 else None',
  'if out:',
  '    open(out + ".tmp", "w").write(json.dumps(images))',
  '    __import__("os").rename(out + ".tmp", out)',
  'else:',
  '    print(json.dumps(images))',
].join('\n');

interface IconImage {
  width: number;
  height: number;
  alpha: string;
  opaque: string;
  colours: string[];
  count: number;
}

async function hostIcons(display: string, id: string): Promise<IconImage[]> {
  const { stdout } = await execa('/usr/bin/python3', ['-c', ICONS, id], {
    env: { DISPLAY: display },
  });
  return JSON.parse(stdout) as IconImage[];
}

/** A window's CARDINAL property as a number, or undefined when it is not set. */
async function cardinal(display: string, id: string, prop: string): Promise<number | undefined> {
  try {
    return Number(await windowProperty(display, id, prop));
  } catch (err) {
    if (/has no/.test(String(err))) return undefined;
    throw err;
  }
}

async function stringProperty(
  display: string,
  id: string,
  prop: string,
): Promise<string | undefined> {
  try {
    return parseXpropStrings(await windowProperty(display, id, prop))[0];
  } catch (err) {
    if (/has no/.test(String(err))) return undefined;
    throw err;
  }
}

/** The window that WM_CLIENT_LEADER names, as "0x...". */
async function leaderOf(display: string, id: string): Promise<string | undefined> {
  try {
    return /0x[0-9a-f]+/.exec(await windowProperty(display, id, 'WM_CLIENT_LEADER'))?.[0];
  } catch {
    return undefined;
  }
}

/**
 * Has openbox put a window above the others and back, so that it rewrites the window's
 * _NET_WM_STATE, as it does when a window is maximized, shaded or asks for attention. xpra's
 * own client took each rewrite without _NET_WM_STATE_FOCUSED for "the window lost the focus".
 */
async function rewriteNetWmState(display: string, id: string): Promise<void> {
  const script = [
    'import sys',
    'from Xlib import X, display, protocol',
    'd = display.Display()',
    'root = d.screen().root',
    'w = d.create_resource_object("window", int(sys.argv[1], 16))',
    'state, above = d.intern_atom("_NET_WM_STATE"), d.intern_atom("_NET_WM_STATE_ABOVE")',
    'for action in (1, 0):',
    '    e = protocol.event.ClientMessage(window=w, client_type=state, data=(32, [action, above, 0, 1, 0]))',
    '    root.send_event(e, event_mask=X.SubstructureRedirectMask | X.SubstructureNotifyMask)',
    'd.sync()',
  ].join('\n');
  await execa('/usr/bin/python3', ['-c', script, id], { env: { DISPLAY: display } });
}

/** How these tests wait: 30 s unless given, asking every 100 ms. */
const WAIT = { timeoutMs: 30000, pollMs: 100 };

function readOr(file: string, fallback = ''): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

/** openbox on the test display: a window manager that focuses new windows and titles them. */
async function startOpenbox(display: string, home: string): Promise<ChildProcess> {
  const child = spawn('openbox', ['--sm-disable'], {
    env: { DISPLAY: display, HOME: home, PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' },
    stdio: 'ignore',
  });
  track(child);
  await waitFor(
    'openbox manages the display',
    async () =>
      (
        await execa('xprop', ['-root', '_NET_SUPPORTING_WM_CHECK'], {
          env: { DISPLAY: display },
          reject: false,
        })
      ).stdout,
    { ...WAIT, until: (out) => /window id/.test(out) },
  );
  const { stdout } = await execa('xprop', ['-root', '_NET_SUPPORTED'], {
    env: { DISPLAY: display },
  });
  // What made every caged GTK window look unfocused: a window manager without it.
  assert.ok(
    !stdout.includes('_NET_WM_STATE_FOCUSED'),
    'openbox does not set _NET_WM_STATE_FOCUSED',
  );
  return child;
}

describe('caged windows under a window manager: title, icon, pid, focus and typing', () => {
  let w: World;
  let openbox: ChildProcess | undefined;
  const others: ChildProcess[] = [];
  const xdotool = (args: string[]) => execa('xdotool', args, { env: { DISPLAY: w.display } });
  /** Waits until the probe's latest state is `want`; a timeout names every state it went through. */
  const probeState = async (cage: string, title: string, want: string) => {
    const file = w.homeFile(cage, `${title}.state`);
    const latest = () => readOr(file).split('\n').at(-1);
    await waitFor(`${title} becomes ${want}`, latest, { ...WAIT, until: (s) => s === want }).catch(
      (err: Error) => {
        throw new Error(`${err.message}; its states: ${JSON.stringify(readOr(file).split('\n'))}`);
      },
    );
  };
  const probeTyped = (cage: string, title: string) => readOr(w.homeFile(cage, `${title}.typed`));

  before(async () => {
    w = await World.create();
    openbox = await startOpenbox(w.display, w.env.HOME!);
    w.writeCage(CAGE, '[Cage]\n');
    w.writeCage(CONTROL, '[Cage]\n');
    await w.startService();
  });

  after(async () => {
    for (const c of others) await stopChild(c);
    await w?.cleanup();
    if (openbox) await stopChild(openbox);
  });

  const TITLE = 'kagome-focus-probe';

  it('a GTK 3 window: the title it set, no pid of another namespace, its own icon', async () => {
    await w.launchCommand(CAGE, ['/usr/bin/python3', '-c', PROBE, TITLE]);
    const win = await waitForWindow(w.display, { name: TITLE });
    assert.equal(await stringProperty(w.display, win.id, 'WM_NAME'), TITLE);
    // What openbox shows in the title bar: " (kagome-client)" was added for the client's hostname.
    assert.equal(
      await waitFor(
        'openbox titles the window',
        () => stringProperty(w.display, win.id, '_NET_WM_VISIBLE_NAME'),
        { ...WAIT, until: (v) => v !== undefined },
      ),
      TITLE,
    );
    assert.equal(await stringProperty(w.display, win.id, 'WM_CLIENT_MACHINE'), os.hostname());
    // A window manager kills _NET_WM_PID on WM_CLIENT_MACHINE when the window hangs: a pid of the client's namespace would be a stranger here.
    const leader = await leaderOf(w.display, win.id);
    assert.ok(leader, 'GDK names its client leader');
    for (const id of [win.id, leader])
      assert.equal(await cardinal(w.display, id, '_NET_WM_PID'), undefined, `_NET_WM_PID on ${id}`);
    const group = /group leader: (0x[0-9a-f]+)/.exec(
      await windowProperty(w.display, win.id, 'WM_HINTS'),
    )?.[1];
    if (group)
      assert.equal(
        await cardinal(w.display, group, '_NET_WM_PID'),
        undefined,
        `_NET_WM_PID on the group leader ${group}`,
      );
    const icons = await waitFor('the icon arrives', () => hostIcons(w.display, win.id), {
      ...WAIT,
      until: (v) => v.length > 0,
    });
    assert.deepEqual(
      icons.map((i) => [i.width, i.height, i.colours]),
      [[64, 64, PROBE_ICON_COLOURS]],
      "the probe's own 64x64 four-colour icon, without xpra's logo on it",
    );
  });

  it('the first window of a launch is active and drawn so; typing reaches it', async () => {
    // Nothing activates it here: openbox gives a new window the focus, as it does on the host.
    await probeState(CAGE, TITLE, 'active=1 focused=1 backdrop=0');
    await rewriteNetWmState(w.display, (await waitForWindow(w.display, { name: TITLE })).id);
    // Nothing to wait for: a wrong report would come within the time typing takes.
    await xdotool(['type', '--delay', '20', 'Kagome-Test_1!@#']);
    await xdotool(['key', 'Return']);
    assert.equal(
      await waitFor('typed text', () => probeTyped(CAGE, TITLE), {
        ...WAIT,
        until: (t) => t !== '',
      }),
      'Kagome-Test_1!@#',
    );
    await probeState(CAGE, TITLE, 'active=1 focused=1 backdrop=0');
  });

  it('another window takes the focus and gives it back: the program sees both, typing follows (xterm)', async () => {
    await w.launchCommand(CAGE, ['xterm', '-T', 'kagome-focus-xterm']);
    const xterm = await waitForWindow(w.display, { name: 'kagome-focus-xterm' });
    assert.equal(
      await waitFor(
        'openbox titles xterm',
        () => stringProperty(w.display, xterm.id, '_NET_WM_VISIBLE_NAME'),
        { ...WAIT, until: (v) => v !== undefined },
      ),
      'kagome-focus-xterm',
    );
    assert.equal(await cardinal(w.display, xterm.id, '_NET_WM_PID'), undefined);
    await probeState(CAGE, TITLE, 'active=0 focused=0 backdrop=1');
    await xdotool(['windowactivate', '--sync', xterm.id]);
    await xdotool(['type', '--delay', '20', 'echo typed-in-xterm > "$HOME/xterm-typed"']);
    await xdotool(['key', 'Return']);
    assert.equal(
      (await w.readFileWhenWritten(w.homeFile(CAGE, 'xterm-typed'), 30000)).trim(),
      'typed-in-xterm',
    );

    const probe = await waitForWindow(w.display, { name: TITLE });
    await xdotool(['windowactivate', '--sync', probe.id]);
    await probeState(CAGE, TITLE, 'active=1 focused=1 backdrop=0');
    await xdotool(['type', '--delay', '20', 'again']);
    await xdotool(['key', 'Return']);
    assert.equal(
      await waitFor('typed text', () => probeTyped(CAGE, TITLE), {
        ...WAIT,
        until: (t) => t.includes('\n'),
      }),
      'Kagome-Test_1!@#\nagain',
    );
  });

  it('Mousepad: its title, its own icon, and what is typed is saved', async () => {
    const note = 'mousepad-note.txt';
    await w.launchCommand(CAGE, ['mousepad', path.join(w.env.HOME!, note)]);
    const mousepad = await waitForWindow(w.display, { wmClass: 'Mousepad' });
    const title = await stringProperty(w.display, mousepad.id, 'WM_NAME');
    assert.match(title ?? '', / - Mousepad$/);
    assert.equal(
      await waitFor(
        'openbox titles Mousepad',
        () => stringProperty(w.display, mousepad.id, '_NET_WM_VISIBLE_NAME'),
        { ...WAIT, until: (v) => v !== undefined },
      ),
      title,
    );
    assert.equal(await cardinal(w.display, mousepad.id, '_NET_WM_PID'), undefined);

    const [hostIcon] = await waitFor('the icon arrives', () => hostIcons(w.display, mousepad.id), {
      ...WAIT,
      until: (v) => v.length > 0,
    });
    await w.launchCommand(CAGE, [
      '/usr/bin/python3',
      '-c',
      ICONS,
      'Mousepad',
      path.join(w.env.HOME!, 'mousepad-icons.json'),
    ]);
    const cageIcons = JSON.parse(
      await w.readFileWhenWritten(w.homeFile(CAGE, 'mousepad-icons.json'), 30000),
    ) as IconImage[];
    const same = cageIcons.find(
      (i) => i.width === hostIcon!.width && i.height === hostIcon!.height,
    );
    assert.ok(
      same,
      `an icon of ${hostIcon!.width}x${hostIcon!.height} among Mousepad's own: ${JSON.stringify(cageIcons.map((i) => [i.width, i.height]))}`,
    );
    assert.deepEqual(
      [hostIcon!.alpha, hostIcon!.opaque],
      [same.alpha, same.opaque],
      'the host shows the icon Mousepad set',
    );

    await xdotool(['windowactivate', '--sync', mousepad.id]);
    await xdotool(['type', '--delay', '20', 'Typed in Mousepad']);
    await xdotool(['key', 'ctrl+s']);
    assert.match(
      await w.readFileWhenWritten(w.homeFile(CAGE, note), 30000),
      /^Typed in Mousepad\n?$/,
    );
  });

  it("control: xpra's own client in kagome's sandbox shows an active window as unfocused, badges its icon and names a pid of its namespace", async () => {
    const title = 'kagome-control-probe';
    await w.launchCommand(CONTROL, ['/usr/bin/python3', '-c', PROBE, title]);
    await waitForWindow(w.display, { name: title });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-control-client-'));
    writeClientEtc(dir, {
      name: os.userInfo().username,
      uid: process.getuid!(),
      gid: process.getgid!(),
    });
    const argv = [
      '/usr/bin/xpra',
      ...xpraClientArgv(path.posix.join(CLIENT_XPRA_DIR, 'xpra.sock'), undefined),
    ];
    const args = clientSandboxArgs(
      {
        display: w.display,
        xauthority: undefined,
        xpraDir: path.join(w.runtimeDir, 'cages', CONTROL, 'xpra'),
        lang: 'C.UTF-8',
        etcDir: dir,
      },
      argv,
      3,
    )!;
    // It takes the cage's display over from kagome's client, whose window goes.
    const plain = spawn('bwrap', args, { env: {}, stdio: ['ignore', 'ignore', 'ignore', 'pipe'] });
    track(plain);
    others.push(plain);
    try {
      const id = await waitFor(
        "xpra's own window for the probe",
        async () => {
          const r = await execa('xdotool', ['search', '--onlyvisible', '--name', `^${title}$`], {
            env: { DISPLAY: w.display },
            reject: false,
          });
          for (const dec of r.stdout.split('\n').filter(Boolean)) {
            const hex = '0x' + Number(dec).toString(16);
            // kagome's client's window may go between the search and the look.
            if (
              (await cardinal(w.display, hex, '_NET_WM_PID').catch(() => undefined)) !== undefined
            )
              return hex;
          }
          return '';
        },
        { ...WAIT, until: (v) => v !== '' },
      );
      const pid = (await cardinal(w.display, id, '_NET_WM_PID'))!;
      const cmdline = readOr(`/proc/${pid}/cmdline`);
      assert.ok(
        !cmdline.includes('xpra'),
        `_NET_WM_PID ${pid} is not the client's pid on the host but ${JSON.stringify(cmdline.replace(/\0/g, ' '))}`,
      );
      const icons = await waitFor('the icon arrives', () => hostIcons(w.display, id), {
        ...WAIT,
        until: (v) => v.length > 0,
      });
      assert.ok(
        icons[0]!.count > PROBE_ICON_COLOURS.length,
        `xpra's logo drawn over the icon: ${icons[0]!.count} colours`,
      );
      await xdotool(['windowactivate', '--sync', id]);
      await rewriteNetWmState(w.display, id);
      // Active (it has the X focus in its cage), yet drawn as unfocused.
      await probeState(CONTROL, title, 'active=1 focused=0 backdrop=1');
    } finally {
      await stopChild(plain);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('control: openbox adds the machine to the title of a window from another one', async () => {
    // What the title check above would catch: a window whose WM_CLIENT_MACHINE is not the host's.
    const script = [
      'from Xlib import X, display',
      'd = display.Display()',
      's = d.screen()',
      'w = s.root.create_window(0, 0, 200, 80, 0, s.root_depth, background_pixel=s.white_pixel)',
      'w.set_wm_name("kagome-foreign")',
      'w.set_wm_class("kagome-foreign", "KagomeForeign")',
      'w.set_wm_client_machine("kagome-client")',
      'w.map()',
      'd.flush()',
      'import sys; sys.stdin.read()',
    ].join('\n');
    const foreign = spawn('/usr/bin/python3', ['-c', script], {
      env: { DISPLAY: w.display },
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    track(foreign);
    others.push(foreign);
    const win = await waitForWindow(w.display, { name: 'kagome-foreign' });
    assert.equal(
      await waitFor(
        'openbox titles it',
        () => stringProperty(w.display, win.id, '_NET_WM_VISIBLE_NAME'),
        { ...WAIT, until: (v) => v !== undefined },
      ),
      'kagome-foreign (kagome-client)',
    );
    foreign.stdin!.end();
  });

  it('typing through XSendEvent (`xdotool type --window`) reaches no GTK 3 window, even uncaged: tests type through XTest', async () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-host-probe-'));
    const title = 'kagome-host-probe';
    const probe = spawn('/usr/bin/python3', ['-c', PROBE, title], {
      env: { DISPLAY: w.display, HOME: home, PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' },
      stdio: 'ignore',
    });
    track(probe);
    others.push(probe);
    try {
      const win = await waitForWindow(w.display, { name: title });
      await xdotool(['windowactivate', '--sync', win.id]);
      await waitFor(
        'the host probe is active',
        () =>
          readOr(path.join(home, `${title}.state`))
            .split('\n')
            .at(-1) ?? '',
        { ...WAIT, until: (s) => s.startsWith('active=1') },
      );
      const { stdout: focus } = await xdotool(['getwindowfocus', '-f']);
      assert.notEqual(
        '0x' + Number(focus).toString(16),
        win.id,
        'GTK keeps the X focus on a child window of its toplevel',
      );
      await xdotool(['type', '--window', win.id, 'sent']);
      await xdotool(['key', '--window', win.id, 'Return']);
      await xdotool(['type', 'xtest']);
      await xdotool(['key', 'Return']);
      assert.equal(
        await waitFor('typed text', () => readOr(path.join(home, `${title}.typed`)), {
          ...WAIT,
          until: (t) => t !== '',
        }),
        'xtest',
      );
    } finally {
      await stopChild(probe);
      fs.rmSync(home, { recursive: true, force: true });
    }
  });
});
