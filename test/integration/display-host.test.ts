import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { execa } from 'execa';
import { World } from '../helpers/kagome.js';
import { startXvfb } from '../helpers/xvfb.js';
import { screenshot, waitForWindow } from '../helpers/x11.js';
import { waitFor } from '../helpers/wait.js';
import { pidsInNamespace } from '../../lib/runtime/proc.js';

// A cage's display as the host's: programs start on a display that does not change under them
// (a Firefox with an existing profile stayed black when it did), at the host's size and DPI
// (120 here, which no X server picks by itself, in the X screen and in Xft.dpi), with the host's
// scale variables; an Xephyr cage has a window manager; the host's xpra client comes back when
// killed; a smaller host screen is followed. Screenshots go to $KAGOME_TEST_SHOTS when set (to
// look at them), else to the world's folder. xrandr (x11-xserver-utils) comes with xpra.

const DPI = 120;
const COLOUR = '#ffcc00';

function shotFile(w: World, name: string): string {
  const dir = process.env.KAGOME_TEST_SHOTS;
  if (dir) fs.mkdirSync(dir, { recursive: true });
  return path.join(dir ?? w.tmp.root, name);
}

async function setHostResources(display: string, text: string): Promise<void> {
  await execa(
    'xprop',
    ['-root', '-f', 'RESOURCE_MANAGER', '8s', '-set', 'RESOURCE_MANAGER', text],
    { env: { DISPLAY: display } },
  );
}

async function pixelsOf(
  env: Record<string, string>,
  file: string,
  colour: string,
): Promise<number> {
  await execa('import', ['-window', 'root', file], { env, extendEnv: false });
  const r = await execa(
    'convert',
    [
      file,
      '-fill',
      'black',
      '+opaque',
      colour,
      '-fill',
      'white',
      '-opaque',
      colour,
      '-format',
      '%[fx:mean*w*h]',
      'info:',
    ],
    { env, extendEnv: false },
  );
  return Number(r.stdout);
}

async function waitForPage(w: World, shot: string, cage: string): Promise<number> {
  return waitFor(
    `the page drawn on the host display (pixels of ${COLOUR}; see ${shot})`,
    () => pixelsOf(w.env, shot, COLOUR),
    {
      timeoutMs: 60000,
      pollMs: 500,
      until: (drawn) => drawn >= 100000,
      detail: () => w.programLog(cage, 'firefox-esr').split('\n').slice(-10).join('\n'),
    },
  );
}

let probes = 0;
/** What a shell in the cage prints, run as a program of the cage. */
async function inCage(w: World, cage: string, script: string): Promise<string> {
  const name = `probe-${++probes}`;
  await w.launchCommand(cage, [
    'sh',
    '-c',
    `{ ${script}; } > "$HOME/${name}.tmp" 2>&1; mv "$HOME/${name}.tmp" "$HOME/${name}.out"`,
  ]);
  return w.readFileWhenWritten(w.homeFile(cage, `${name}.out`), 20000);
}

const SCREEN_FACTS = `xdpyinfo | grep -E 'dimensions|resolution'; xprop -root RESOURCE_MANAGER; env | grep -E '^(GDK|QT)_' | sort`;

function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/** How these tests wait: 30 s unless given, asking every 100 ms. */
const WAIT = { timeoutMs: 30000, pollMs: 100 };

describe('an xpra cage on a host display at 120 dpi', () => {
  let w: World;

  before(async () => {
    w = await World.create({ xvfb: { dpi: DPI, noreset: true } });
    await setHostResources(w.display, `Xft.dpi:\t${DPI}\nXft.antialias:\t1\n`);
    w.writeCage('web', '[Cage]\n');
    w.writeCage('x', '[Cage]\n');
    await w.startService({ env: { QT_SCALE_FACTOR: '1.25', GDK_DPI_SCALE: '1' } });
  });

  after(async () => {
    await w?.cleanup();
  });

  it("programs see the host's size, DPI, Xft.dpi and scale variables", async () => {
    const facts = await inCage(w, 'x', SCREEN_FACTS);
    assert.match(facts, /dimensions:\s+1280x800 pixels/, facts);
    assert.match(facts, new RegExp(`resolution:\\s+${DPI}x${DPI} dots per inch`), facts);
    assert.match(facts, new RegExp(`Xft\\.dpi:\\\\t${DPI}\\\\n`), facts);
    // Only Xft.dpi is copied; the host's other resources stay the host's.
    assert.doesNotMatch(facts, /antialias/, facts);
    assert.match(facts, /^GDK_DPI_SCALE=1$/m, facts);
    assert.match(facts, /^QT_SCALE_FACTOR=1\.25$/m, facts);
    // The client's attach changed nothing of the screen: no resize, no DPI, no Xinerama trick.
    assert.doesNotMatch(w.cageLog('x'), /Xinerama workaround|DPI set to|virtual display now set/);
  });

  it('a smaller host screen is followed, and the first size again', async () => {
    const env = { DISPLAY: w.display };
    await execa(
      'xrandr',
      ['--newmode', 'kg1024', '60', '1024', '1040', '1060', '1080', '768', '770', '772', '774'],
      { env },
    );
    await execa('xrandr', ['--addmode', 'screen', 'kg1024'], { env });
    await execa('xrandr', ['--output', 'screen', '--mode', 'kg1024'], { env });
    const facts = await waitFor(
      'the cage screen follows the host to 1024x768',
      () => inCage(w, 'x', SCREEN_FACTS),
      { ...WAIT, until: (f) => f.includes('1024x768 pixels') },
    );
    assert.match(facts, new RegExp(`resolution:\\s+${DPI}x${DPI} dots per inch`), facts);
    await execa('xrandr', ['--output', 'screen', '--mode', '1280x800'], { env });
    await waitFor(
      'the cage screen follows the host back to 1280x800',
      () => inCage(w, 'x', SCREEN_FACTS),
      { ...WAIT, until: (f) => f.includes('1280x800 pixels') },
    );
  });

  it('a killed host client is started again, by its watch and else by the next launch', async () => {
    await w.launchCommand('x', ['xlogo', '-name', 'kg-before']);
    await waitForWindow(w.display, { wmClass: 'kg-before' });
    const client = () =>
      (w.cageState('x') as { displayState: { client: { pid: number } } }).displayState.client.pid;
    const first = client();
    process.kill(first, 'SIGKILL');
    const second = await waitFor(
      'a new client in the state',
      () => (client() !== first && alive(client()) ? client() : undefined),
      WAIT,
    );
    // The cage's windows are shown again by the new client.
    await waitForWindow(w.display, { wmClass: 'kg-before' });
    assert.match(
      w.service!.log(),
      /cage x: a part of its xpra display had ended and was started again/,
    );

    // Killed again at once: not restarted in a loop, but by the next launch, which shows its window.
    process.kill(second, 'SIGKILL');
    await waitFor(
      'the service noticed',
      () => /ended again; the next launch starts it/.test(w.service!.log()),
      WAIT,
    );
    assert.ok(!alive(second));
    await w.launchCommand('x', ['xlogo', '-name', 'kg-after']);
    await waitForWindow(w.display, { wmClass: 'kg-after' });
    assert.ok(alive(client()) && client() !== second);
  });

  // Run once, the profile exists; the next cold start used to map a black window for good.
  it('Firefox with an existing profile draws a page in a cold cage', async () => {
    fs.mkdirSync(path.dirname(w.homeFile('web', 'page.html')), { recursive: true });
    fs.writeFileSync(
      w.homeFile('web', 'page.html'),
      `<body style='background:${COLOUR}'><h1>kagome</h1></body>`,
    );
    const firefox = ['firefox-esr', '--new-instance', `file://${w.env.HOME}/page.html`];
    await w.launchCommand('web', firefox);
    await waitForPage(w, shotFile(w, 'firefox-first.png'), 'web');
    await w.dbus.Cages1.Stop('web');
    // ~/.mozilla/firefox or, for newer profiles, ~/.config/mozilla/firefox.
    const profiles = [
      '.mozilla/firefox/profiles.ini',
      '.config/mozilla/firefox/profiles.ini',
    ].filter((f) => fs.existsSync(w.homeFile('web', f)));
    assert.equal(profiles.length, 1, 'a profile was made');
    assert.equal(
      await pixelsOf(w.env, shotFile(w, 'firefox-none.png'), COLOUR),
      0,
      'the first window is gone',
    );

    await w.launchCommand('web', firefox);
    await waitForPage(w, shotFile(w, 'firefox-cold.png'), 'web');
    const second = w.programLog('web', 'firefox-esr').split(/^--- /m).at(-1) ?? '';
    assert.doesNotMatch(
      second,
      /DeviceReset/,
      'Firefox reset its renderer: the display changed under it',
    );
  });
});

// The control: what made that renderer reset. A compositor that appears under a running Firefox
// (xpra's server becoming the display's compositor after the program had started, as it did on
// a cold cage) makes it log the survey's line. No kagome here: a bare Xvfb.
describe('control: a compositor appearing under Firefox', () => {
  it('makes it reset its renderer, the line the survey saw', async () => {
    const x = await startXvfb();
    const home = fs.mkdtempSync('/tmp/kagome-ff-control-');
    const env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      DISPLAY: x.display,
      LANG: 'C.UTF-8',
    };
    fs.writeFileSync(path.join(home, 'page.html'), `<body style='background:${COLOUR}'></body>`);
    const run = async (claim: boolean): Promise<string> => {
      let out = '';
      const ff = spawn('firefox-esr', ['--new-instance', `file://${home}/page.html`], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      ff.stdout.on('data', (d: Buffer) => (out += d.toString()));
      ff.stderr.on('data', (d: Buffer) => (out += d.toString()));
      try {
        await waitFor(
          'Firefox draws on the bare Xvfb',
          () => pixelsOf(env, path.join(home, 'shot.png'), COLOUR),
          { ...WAIT, timeoutMs: 60000, until: (drawn) => drawn > 100000 },
        );
        if (!claim) return out;
        const cm = spawn(
          '/usr/bin/python3',
          [
            '-c',
            'import time\nfrom Xlib import X, display\nd = display.Display()\nw = d.screen().root.create_window(0, 0, 1, 1, 0, X.CopyFromParent)\nw.set_selection_owner(d.intern_atom("_NET_WM_CM_S0"), X.CurrentTime)\nd.sync()\ntime.sleep(60)',
          ],
          { env, stdio: 'ignore' },
        );
        try {
          await waitFor('Firefox resets its renderer', () => /DeviceReset/.test(out), {
            ...WAIT,
            timeoutMs: 20000,
          });
        } finally {
          cm.kill('SIGKILL');
        }
        return out;
      } finally {
        ff.kill('SIGTERM');
        await new Promise((r) => ff.once('close', r));
      }
    };
    try {
      await run(false); // makes the profile
      assert.match(await run(true), /DeviceReset.*WR_SIMULATE/);
    } finally {
      await x.stop();
      fs.rmSync(home, { recursive: true, force: true });
    }
  });
});

describe('a Xephyr cage on a host display at 120 dpi', () => {
  let w: World;
  let nested: Record<string, string>;

  before(async () => {
    w = await World.create({ xvfb: { dpi: DPI, noreset: true } });
    await setHostResources(w.display, `Xft.dpi:\t${DPI}\n`);
    w.writeCage('nested', '[Cage]\nDisplay=xephyr\n');
    await w.startService({ env: { GDK_SCALE: '2' } });
  });

  after(async () => {
    await w?.cleanup();
  });

  const state = () =>
    (
      w.cageState('nested') as {
        displayState: { number: number; authFile: string; wm?: { pid: number } };
      }
    ).displayState;

  it("programs see the host's DPI, Xft.dpi and scale (Xephyr's own is 75 dpi)", async () => {
    const facts = await inCage(w, 'nested', SCREEN_FACTS);
    assert.match(facts, new RegExp(`resolution:\\s+${DPI}x${DPI} dots per inch`), facts);
    assert.match(facts, new RegExp(`Xft\\.dpi:\\\\t${DPI}\\\\n`), facts);
    assert.match(facts, /^GDK_SCALE=2$/m, facts);
    nested = { DISPLAY: `:${state().number}`, XAUTHORITY: state().authFile };
  });

  /** The xlogo window's frame: its parent (not the root) and _NET_FRAME_EXTENTS. */
  async function frameOf(instance: string): Promise<{ parent: string; extents: number[] }> {
    const shown = async () => {
      const r = await execa(
        'xdotool',
        ['search', '--onlyvisible', '--classname', `^${instance}$`],
        { env: nested, reject: false },
      );
      return String(r.stdout).trim().split('\n')[0] || undefined;
    };
    const id = await waitFor(`${instance} on the nested display`, shown, WAIT);
    const framed = async () => {
      const tree = String(
        (await execa('xwininfo', ['-id', id, '-children'], { env: nested })).stdout,
      );
      const parent = /Parent window id: (0x[0-9a-f]+)(.*)/.exec(tree);
      const ext = await execa('xprop', ['-id', id, '_NET_FRAME_EXTENTS'], {
        env: nested,
        reject: false,
      });
      const extents = (/= (.*)$/m.exec(String(ext.stdout))?.[1] ?? '')
        .split(',')
        .map((v) => Number(v.trim()));
      if (!parent || /the root window/.test(parent[2] ?? '') || extents.length !== 4)
        return undefined;
      return { parent: parent[1]!, extents };
    };
    return waitFor(`${instance} framed`, framed, WAIT);
  }

  it('its windows get frames from a window manager in the cage', async () => {
    await w.launchCommand('nested', ['xlogo', '-name', 'kg-framed']);
    const frame = await frameOf('kg-framed');
    // left, right, top, bottom: a title bar on top.
    assert.ok(frame.extents[2]! > frame.extents[0]!, `a title bar: ${frame.extents.join(',')}`);
    await waitForWindow(w.display, { name: 'nested (kagome)' });
    await screenshot(w.display, shotFile(w, 'xephyr-framed.png'));
    const wm = state().wm;
    assert.ok(wm && alive(wm.pid), 'the window manager is in the record, for re-adoption');
    const ns = (w.cageState('nested') as { sandbox: { pidNamespace: string } }).sandbox
      .pidNamespace;
    assert.ok(
      pidsInNamespace(ns).some(
        (p) => fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'openbox',
      ),
      'openbox runs in the cage',
    );
  });

  it('a window manager that ends is started again, and survives a service restart', async () => {
    const ns = (w.cageState('nested') as { sandbox: { pidNamespace: string } }).sandbox
      .pidNamespace;
    const first = state().wm!.pid;
    for (const p of pidsInNamespace(ns))
      if (fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'openbox')
        process.kill(p, 'SIGKILL');
    const second = await waitFor(
      'a new window manager',
      () =>
        state().wm && state().wm!.pid !== first && alive(state().wm!.pid)
          ? state().wm!.pid
          : undefined,
      WAIT,
    );
    await w.launchCommand('nested', ['xlogo', '-name', 'kg-framed-again']);
    await frameOf('kg-framed-again');

    await w.killService();
    await w.startService({ env: { GDK_SCALE: '2' } });
    await waitFor('re-adopted', () => /cage nested: re-adopted/.test(w.service!.log()), WAIT);
    assert.equal(state().wm?.pid, second, 'the same window manager, re-adopted');
    assert.ok(alive(second));
  });
});
