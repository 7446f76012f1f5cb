import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { World } from '../helpers/kagome.js';
import { countWindows } from '../helpers/x11.js';
import { waitFor } from '../helpers/wait.js';
import { pidsInNamespace } from '../../lib/runtime/proc.js';

// Browsers in a default cage, as the ordinary user, with the cage's seccomp filter and task
// limit on, keeps its own sandbox: Chromium's renderers live in user namespaces of their own,
// which the filter leaves allowed (NestedSandbox, default true). The page is checked on the
// host display's pixels, not by a window's existence.

const COLOUR = '#ffcc00';
const PAGE = `data:text/html,<body style='background:${COLOUR.replace('#', '%23')}'><h1>kagome</h1></body>`;

function status(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return '';
  }
}

async function pixelsOf(
  display: string,
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
  void display;
  return Number(r.stdout);
}

/** Waits until the page's colour covers a good part of the host display; the pixel count. */
async function waitForPage(
  w: World,
  shot: string,
  colour = COLOUR,
  log = () => w.cageLog('web'),
): Promise<number> {
  return waitFor(
    `the page drawn on the host display (pixels of ${colour})`,
    () => pixelsOf(w.display, w.env, shot, colour),
    {
      timeoutMs: 60000,
      pollMs: 500,
      until: (drawn) => drawn >= 100000,
      detail: () => log().split('\n').slice(-15).join('\n'),
    },
  );
}

/** Chromium's browser processes in the cage (not its zygotes, renderers or helpers: those have --type=). */
function chromiumMains(w: World): number[] {
  const state = w.cageState('web') as { sandbox: { pidNamespace: string } };
  return pidsInNamespace(state.sandbox.pidNamespace).filter((p) => {
    try {
      const argv = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').filter(Boolean);
      // Chromium may set its process title, which makes the command line one string, words
      // separated by spaces (with a session bus in the cage, its browser process does).
      const words = argv.length === 1 ? argv[0]!.split(' ') : argv;
      return /chromium$/.test(words[0] ?? '') && !words.some((a) => a.startsWith('--type='));
    } catch {
      return false;
    }
  });
}

describe('Chromium in a default cage', () => {
  let w: World;

  before(async () => {
    const found = await execa('sh', ['-c', 'command -v chromium'], { reject: false });
    assert.equal(
      found.exitCode,
      0,
      'chromium is not installed: packaging/install-deps installs it for this test',
    );
    w = await World.create();
    w.writeCage('web', '[Cage]\n');
    await w.startService();
  });

  after(async () => {
    await w?.cleanup();
  });

  it('draws a page, with its own sandbox on under the cage filter', async () => {
    const shot = path.join(w.tmp.root, 'chromium.png');
    // Control: before the launch, nothing of that colour is on the screen.
    assert.equal(await pixelsOf(w.display, w.env, shot, COLOUR), 0);
    await w.launchCommand('web', [
      'chromium',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--window-size=800,600',
      PAGE,
    ]);
    await waitForPage(w, shot);

    const state = w.cageState('web') as {
      sandbox: { pidNamespace: string; init: { pid: number } };
    };
    const depth = (pid: number) =>
      (/^NSpid:\s+(.*)$/m.exec(status(pid))?.[1] ?? '').trim().split(/\s+/).length;
    const cageDepth = depth(state.sandbox.init.pid);
    const all = fs
      .readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .map(Number);
    const browser = all.filter((p) => {
      try {
        return (
          /chromium/.test(fs.readFileSync(`/proc/${p}/cmdline`, 'utf8')) && depth(p) >= cageDepth
        );
      } catch {
        return false;
      }
    });
    assert.ok(
      browser.some((p) => pidsInNamespace(state.sandbox.pidNamespace).includes(p)),
      'chromium runs in the cage',
    );
    for (const pid of browser)
      assert.match(status(pid), /^Seccomp:\s+2$/m, `chromium ${pid} runs under a seccomp filter`);
    // Its zygote and renderers sandbox themselves in namespaces of their own, below the cage's.
    const sandboxed = browser.filter((p) => depth(p) > cageDepth);
    assert.ok(
      sandboxed.length > 0,
      "no chromium process is in a namespace of its own below the cage's: its sandbox is off",
    );
    for (const pid of browser)
      assert.doesNotMatch(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /--no-sandbox/);
  });

  // As on the host: a second launch reaches the running browser (its singleton socket in the
  // profile and the cage's /tmp), which opens the page; it does not fail nor start another.
  it('a second launch opens its page in the running Chromium', async () => {
    const second = '#00ccff';
    const page = `data:text/html,<body style='background:${second.replace('#', '%23')}'><h1>again</h1></body>`;
    const mains = () => chromiumMains(w);
    const before = mains();
    assert.equal(before.length, 1, `one browser process runs: ${before.join(' ')}`);
    await w.launchCommand('web', [
      'chromium',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      page,
    ]);
    await waitForPage(w, path.join(w.tmp.root, 'chromium-2.png'), second, () =>
      w.programLog('web', 'chromium'),
    );
    assert.deepEqual(mains(), before, 'the same browser process, no second one');
  });
});

describe('Firefox ESR in a default cage', () => {
  let w: World;

  before(async () => {
    const found = await execa('sh', ['-c', 'command -v firefox-esr'], { reject: false });
    assert.equal(
      found.exitCode,
      0,
      'firefox-esr is not installed: packaging/install-deps installs it for this test',
    );
    w = await World.create();
    w.writeCage('web', '[Cage]\n');
    await w.startService();
    await w.dbus.Cages1.Start('web');
  });

  after(async () => {
    await w?.cleanup();
  });

  it('draws a local page, its content processes under the cage filter', async () => {
    const shot = path.join(w.tmp.root, 'firefox.png');
    assert.equal(await pixelsOf(w.display, w.env, shot, COLOUR), 0);
    // Firefox refuses data: pages given on its command line; a file in the cage's home it opens.
    fs.writeFileSync(
      w.homeFile('web', 'page.html'),
      `<body style='background:${COLOUR}'><h1>kagome</h1></body>`,
    );
    await w.launchCommand('web', [
      'firefox-esr',
      '--new-instance',
      `file://${w.env.HOME}/page.html`,
    ]);
    await waitForPage(w, shot);
    const state = w.cageState('web') as { sandbox: { pidNamespace: string } };
    const content = pidsInNamespace(state.sandbox.pidNamespace).filter((p) =>
      fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('-contentproc'),
    );
    assert.ok(
      content.length > 0,
      'Firefox started content processes (it did not crash back to one process)',
    );
    for (const pid of content) assert.match(status(pid), /^Seccomp:\s+2$/m);
  });

  // Firefox finds its running instance over the cage's own session bus (its remote service),
  // as on the host: a second launch hands its page over and exits. With no bus in the cage it
  // found its profile locked and, after about 15 s, said "Firefox is already running".
  it('a second launch opens a new window in the running Firefox', async () => {
    const second = '#00ccff';
    fs.writeFileSync(
      w.homeFile('web', 'again.html'),
      `<body style='background:${second}'><h1>again</h1></body>`,
    );
    const mains = () => {
      const state = w.cageState('web') as { sandbox: { pidNamespace: string } };
      return pidsInNamespace(state.sandbox.pidNamespace).filter((p) => {
        try {
          const argv = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
          return /firefox-esr$/.test(argv[0] ?? '') && !argv.includes('-contentproc');
        } catch {
          return false;
        }
      });
    };
    const before = mains();
    assert.equal(before.length, 1, `one Firefox runs: ${before.join(' ')}`);
    assert.equal(await countWindows(w.display, 'firefox-esr'), 1);
    await w.launchCommand('web', [
      'sh',
      '-c',
      'firefox-esr --new-window "file://$HOME/again.html"; echo $? > "$HOME/again.tmp"; mv "$HOME/again.tmp" "$HOME/again.status"',
    ]);
    assert.equal(
      (await w.readFileWhenWritten(w.homeFile('web', 'again.status'), 60000)).trim(),
      '0',
      w.programLog('web', 'sh'),
    );
    await waitForPage(w, path.join(w.tmp.root, 'firefox-2.png'), second, () =>
      w.programLog('web', 'sh'),
    );
    assert.equal(
      await countWindows(w.display, 'firefox-esr'),
      2,
      'a second Firefox window, and no dialog',
    );
    assert.deepEqual(mains(), before, 'the same Firefox, no second one');
  });
});
