import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { execa } from 'execa';
import { World } from '../helpers/kagome.js';
import { track } from '../helpers/daemons.js';
import { listenToHost } from '../helpers/pulseaudio.js';
import { waitFor } from '../helpers/wait.js';

// Real desktop programs in default cages, as the ordinary user, on documents granted through the
// real document portal: LibreOffice Writer edits and saves a granted document in place, and a
// second LibreOffice (another cage's, the host's) is told the document is in use; a stop lets
// it end cleanly, so its next start offers no recovery; GIMP's window is on the screen and
// painted; a window is placed on the screen by the host, not where its program created it.
// FeatherPad (Qt 5) opens granted text files, cold and warm, by `kagome open` and xdg-open,
// titled with their own names, and saves what is typed; mpv, started from its shadow entry in
// a cold cage with sound, shows a test pattern and plays its tone on the host's sound server.
// What is checked is what a person sees: window titles and pixels of the host display.

/** Set KAGOME_TEST_SHOTS to a folder to keep the screenshots the checks were made on. */
const SHOTS = process.env.KAGOME_TEST_SHOTS;
const MARK = '4711 typed in a cage';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Geometry {
  x: number;
  y: number;
  width: number;
  height: number;
}

describe('desktop programs in cages', () => {
  let w: World;
  let dir: string;
  let odt: string;
  let png: string;
  let texts: string;
  let clip: string;
  const hostPrograms: ChildProcess[] = [];

  const x = (args: string[]) =>
    execa(args[0]!, args.slice(1), { env: w.env, extendEnv: false, reject: false });
  /** Names of the windows a person sees on the host display. */
  const visibleNames = async (): Promise<string[]> => {
    const r = await x(['xdotool', 'search', '--onlyvisible', '--name', '.']);
    const names: string[] = [];
    for (const id of String(r.stdout).split('\n').filter(Boolean)) {
      const n = await x(['xdotool', 'getwindowname', id]);
      if (n.exitCode === 0) names.push(String(n.stdout));
    }
    return names;
  };
  const waitForName = async (match: RegExp, what: string, timeoutMs = 120000): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await x(['xdotool', 'search', '--onlyvisible', '--name', match.source]);
      const id = String(r.stdout).split('\n').find(Boolean);
      if (id) {
        const n = await x(['xdotool', 'getwindowname', id]);
        if (match.test(String(n.stdout))) return id;
      }
      if (Date.now() > deadline)
        throw new Error(
          `${what}: no window named ${match} appeared; the screen shows: ${JSON.stringify(await visibleNames())}`,
        );
      await sleep(250);
    }
  };
  /** The first window shown on the host with this WM_CLASS (the host window carries its program's). */
  const waitForClass = async (cls: string, what: string, timeoutMs = 120000): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const id = String(
        (await x(['xdotool', 'search', '--onlyvisible', '--class', `^${cls}$`])).stdout,
      )
        .split('\n')
        .find(Boolean);
      if (id) return id;
      if (Date.now() > deadline)
        throw new Error(
          `${what}: no window of class ${cls} appeared; the screen shows: ${JSON.stringify(await visibleNames())}`,
        );
      await sleep(250);
    }
  };
  const geometry = async (id: string): Promise<Geometry> => {
    const r = await x(['xwininfo', '-id', id]);
    const n = (label: string) =>
      Number(new RegExp(`${label}:\\s+(-?\\d+)`).exec(String(r.stdout))?.[1]);
    return {
      x: n('Absolute upper-left X'),
      y: n('Absolute upper-left Y'),
      width: n('Width'),
      height: n('Height'),
    };
  };
  const screen = async (): Promise<{ width: number; height: number }> => {
    const r = await x(['xwininfo', '-root']);
    const n = (label: string) =>
      Number(new RegExp(`${label}:\\s+(\\d+)`).exec(String(r.stdout))?.[1]);
    return { width: n('Width'), height: n('Height') };
  };
  const shot = async (name: string): Promise<string> => {
    const file = path.join(SHOTS ?? w.tmp.root, `programs-${name}.png`);
    await x(['import', '-window', 'root', file]);
    return file;
  };
  /** A shell script in a cage, its output once it ends (as files.test.ts runs them). */
  const inCage = async (cage: string, script: string, out: string): Promise<string> => {
    fs.rmSync(w.homeFile(cage, out), { force: true });
    await w.launchCommand(cage, [
      '/bin/sh',
      '-c',
      `{ ${script}; } > "$HOME/${out}.tmp" 2>&1; mv "$HOME/${out}.tmp" "$HOME/${out}"`,
    ]);
    return w.readFileWhenWritten(w.homeFile(cage, out), 30000);
  };
  const odtText = async (file: string): Promise<string> =>
    String(
      (
        await execa('/usr/bin/python3', [
          '-c',
          'import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).read("content.xml").decode())',
          file,
        ])
      ).stdout,
    );
  /** A LibreOffice profile as a person has it after the first start: no Tip of the Day dialog. */
  const seedProfile = (userDir: string) => {
    fs.mkdirSync(userDir, { recursive: true });
    fs.writeFileSync(
      path.join(userDir, 'registrymodifications.xcu'),
      '<?xml version="1.0" encoding="UTF-8"?>\n<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n' +
        '<item oor:path="/org.openoffice.Office.Common/Misc"><prop oor:name="ShowTipOfTheDay" oor:op="fuse"><value>false</value></prop></item>\n</oor:items>\n',
    );
  };
  /**
   * Until the window's area on the host is drawn, twice in a row at the same size: a window
   * shows black until its first frame arrives, and again after LibreOffice resizes it to the
   * size its profile remembers.
   */
  const waitPainted = async (id: string, what: string): Promise<void> => {
    const deadline = Date.now() + 60000;
    let drawnAt = '';
    for (;;) {
      const g = await geometry(id);
      const full = path.join(w.tmp.root, 'painted.png');
      await x(['import', '-window', 'root', full]);
      const r = await x([
        'convert',
        full,
        '-crop',
        `${g.width}x${g.height}+${g.x}+${g.y}`,
        '+repage',
        '-fuzz',
        '2%',
        '-fill',
        'white',
        '+opaque',
        'black',
        '-negate',
        '-format',
        '%[fx:mean]',
        'info:',
      ]);
      const black = Number(r.stdout);
      const here = JSON.stringify(g);
      if (black < 0.5 && drawnAt === here) return;
      drawnAt = black < 0.5 ? here : '';
      assert.ok(
        Date.now() < deadline,
        `${what} was never drawn on the host (${Math.round(black * 100)}% black)`,
      );
      await sleep(300);
    }
  };
  /**
   * Every window shown on the host display, named or not: a leftover window a program never
   * drew may have no name, and visibleNames() would miss it.
   */
  const shownWindows = async (): Promise<{ id: string; name: string; g: Geometry }[]> => {
    const r = await x(['xwininfo', '-root', '-children']);
    const shown: { id: string; name: string; g: Geometry }[] = [];
    for (const m of String(r.stdout).matchAll(/^\s+(0x[0-9a-f]+) (?:"(.*)"|\(has no name\)):/gm)) {
      const info = await x(['xwininfo', '-id', m[1]!]);
      if (!/Map State: IsViewable/.test(String(info.stdout))) continue;
      // As xdotool names windows: in decimal.
      shown.push({ id: String(Number(m[1])), name: m[2] ?? '', g: await geometry(m[1]!) });
    }
    return shown;
  };
  /** Windows shown before FeatherPad's tests (the other programs'), which stay open. */
  const shownBefore = new Set<string>();
  const newWindows = async () => (await shownWindows()).filter((s) => !shownBefore.has(s.id));
  /** Gives a window the keyboard, until the program in its cage has it (the test display has no window manager). */
  const focusInCage = async (cage: string, id: string, name: RegExp): Promise<void> => {
    const deadline = Date.now() + 30000;
    for (;;) {
      await x(['xdotool', 'windowfocus', id]);
      const focused = await inCage(cage, 'xdotool getwindowfocus getwindowname', 'focus.out');
      if (name.test(focused.trim())) return;
      assert.ok(
        Date.now() < deadline,
        `${name} never got the keyboard in cage ${cage}: ${focused}`,
      );
      await sleep(300);
    }
  };
  /**
   * Until the host shows the window as its program drew it in the cage (xpra refreshes
   * losslessly once a window is still), and that is more than one flat colour: a window never
   * drawn is black on both sides, and would match.
   */
  const waitDrawnAsInCage = async (
    cage: string,
    id: string,
    cageSearch: string,
    what: string,
    timeoutMs = 60000,
  ): Promise<string> => {
    const hostCut = path.join(w.tmp.root, `${cage}-host.png`);
    const cageCut = path.join(w.tmp.root, `${cage}-cage.png`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const g = await geometry(id);
      await inCage(
        cage,
        `id=$(xdotool search --onlyvisible ${cageSearch} | head -1) && import -window "$id" "$HOME/window.png" && echo ok`,
        'window-shot.out',
      );
      const full = await shot(cage);
      // xpra's border in the cage's colour is drawn over the window's outer pixels on the host.
      await x([
        'convert',
        full,
        '-crop',
        `${g.width - 8}x${g.height - 8}+${g.x + 4}+${g.y + 4}`,
        '+repage',
        hostCut,
      ]);
      await x(['convert', w.homeFile(cage, 'window.png'), '-shave', '4x4', '+repage', cageCut]);
      const cmp = await x(['compare', '-metric', 'AE', '-fuzz', '12%', hostCut, cageCut, 'null:']);
      const differing = Number(String(cmp.stderr).trim().split(/\s/)[0]);
      const spread = Number(
        (
          await x([
            'convert',
            hostCut,
            '-colorspace',
            'gray',
            '-format',
            '%[fx:standard_deviation]',
            'info:',
          ])
        ).stdout,
      );
      if (differing < g.width * g.height * 0.02 && spread > 0.05) return full;
      assert.ok(
        Date.now() < deadline,
        `${what}: the host does not show the window as its program drew it (${differing} of ${g.width * g.height} pixels differ, grey spread ${spread})`,
      );
      await sleep(1000);
    }
  };
  /** The share of a window's pixels on the host near a colour. */
  const colourShare = async (file: string, g: Geometry, colour: string): Promise<number> => {
    const r = await x([
      'convert',
      file,
      '-crop',
      `${g.width}x${g.height}+${g.x}+${g.y}`,
      '+repage',
      '-fuzz',
      '12%',
      '-fill',
      'black',
      '+opaque',
      colour,
      '-fill',
      'white',
      '-opaque',
      colour,
      '-colorspace',
      'gray',
      '-format',
      '%[fx:mean]',
      'info:',
    ]);
    return Number(r.stdout);
  };
  const lockFiles = () =>
    fs.readdirSync(dir).filter((f) => f.startsWith('.~lock.') || f.startsWith('.xdp-'));

  before(async () => {
    for (const program of [
      'libreoffice',
      'gimp',
      'display-im6.q16',
      'featherpad',
      'mpv',
      'ffmpeg',
    ]) {
      const found = await execa('sh', ['-c', `command -v ${program}`], { reject: false });
      assert.equal(
        found.exitCode,
        0,
        `${program} is not installed: packaging/install-deps installs it for this test`,
      );
    }
    w = await World.create({ documentPortal: true, pulseaudio: true });
    dir = path.join(w.tmp.root, 'documents');
    fs.mkdirSync(dir);
    // A real Writer document, made by LibreOffice itself from text.
    fs.writeFileSync(path.join(dir, 'letter.txt'), 'A letter written on the host.\n');
    const made = await execa(
      'libreoffice',
      [
        `-env:UserInstallation=file://${w.tmp.root}/lo-convert`,
        '--headless',
        '--convert-to',
        'odt',
        '--outdir',
        dir,
        path.join(dir, 'letter.txt'),
      ],
      {
        env: w.env,
        extendEnv: false,
        reject: false,
        timeout: 120000,
      },
    );
    odt = path.join(dir, 'letter.odt');
    assert.ok(
      fs.existsSync(odt),
      `libreoffice --convert-to odt made no document: ${made.stdout}${made.stderr}`,
    );
    fs.rmSync(path.join(dir, 'letter.txt'));
    png = path.join(dir, 'picture.png');
    await execa('convert', ['-size', '320x240', 'gradient:#2050c0-#c03020', png]);
    for (const cage of ['office', 'office2', 'paint']) {
      w.writeCage(cage, '[Cage]\n');
      seedProfile(w.homeFile(cage, '.config/libreoffice/4/user'));
    }
    texts = path.join(w.tmp.root, 'texts');
    fs.mkdirSync(texts);
    for (const name of ['notes', 'other', 'third'])
      fs.writeFileSync(path.join(texts, `${name}.txt`), `The ${name} file, written on the host.\n`);
    w.writeCage('pad', '[Cage]\n');
    // A minute of SMPTE colour bars with a steady 440 Hz tone at half scale: long enough to be
    // playing while the checks look and listen, whatever the machine's load.
    const media = path.join(w.tmp.root, 'media');
    fs.mkdirSync(media);
    clip = path.join(media, 'bars.mkv');
    const clipMade = await execa(
      'ffmpeg',
      [
        '-loglevel',
        'error',
        '-f',
        'lavfi',
        '-i',
        'smptebars=size=320x240:rate=10:duration=60',
        '-f',
        'lavfi',
        '-i',
        'aevalsrc=0.5*sin(440*2*PI*t):s=48000:d=60',
        '-c:v',
        'mpeg4',
        '-q:v',
        '2',
        '-c:a',
        'pcm_s16le',
        clip,
      ],
      { reject: false },
    );
    assert.equal(clipMade.exitCode, 0, `ffmpeg made no clip: ${clipMade.stderr}`);
    w.writeCage('player', '[Cage]\nSound=output\n');
    await w.startService();
  });

  after(async () => {
    for (const p of hostPrograms) {
      try {
        process.kill(-p.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await w?.cleanup();
  });

  it('LibreOffice Writer opens a granted document for editing, with no dialog', async () => {
    const r = await w.kagome(['open', '--app', 'libreoffice-writer.desktop', 'office', odt]);
    assert.equal(r.exitCode, 0, `${r.stdout}${r.stderr}`);
    // Its title says read-only when LibreOffice could not lock the document.
    const id = await waitForName(/^letter\.odt - LibreOffice Writer$/, 'the document window');
    // The lock check comes before the document is loaded: any dialog about it is up by now.
    await waitPainted(id, 'the document window');
    await shot('writer-opened');
    assert.deepEqual(
      await visibleNames(),
      ['letter.odt - LibreOffice Writer'],
      'no "Document in Use" or other dialog',
    );
    // Its host window has LibreOffice's icon (the largest of its 48, 32 and 16 pixel ones): its
    // X11 backend sets _NET_WM_ICON only where the cage's xpra server lists it (xpra.ts).
    await waitFor(
      "LibreOffice's icon on its host window",
      async () => String((await x(['xprop', '-id', id, '_NET_WM_ICON'])).stdout).split('\n')[0],
      { timeoutMs: 10000, pollMs: 200, until: (first) => /Icon \(48 x 48\)/.test(first ?? '') },
    );
    // Its lock file reached the host folder under LibreOffice's own name.
    const deadline = Date.now() + 10000;
    while (!fs.existsSync(path.join(dir, '.~lock.letter.odt#')) && Date.now() < deadline)
      await sleep(100);
    assert.match(
      fs.readFileSync(path.join(dir, '.~lock.letter.odt#'), 'utf8'),
      /,kagome-office,/,
      'the lock names the cage it is held in',
    );
  });

  it('saves what is typed into the host file with ctrl+s', async () => {
    const before = fs.statSync(odt);
    const id = await waitForName(/^letter\.odt - LibreOffice Writer$/, 'the document window');
    // No window manager on the test display: focus the window until the cage's Writer has it.
    const deadline = Date.now() + 30000;
    for (;;) {
      await x(['xdotool', 'windowfocus', id]);
      const focused = await inCage('office', 'xdotool getwindowfocus getwindowname', 'focus.out');
      if (/LibreOffice Writer/.test(focused)) break;
      assert.ok(Date.now() < deadline, `Writer never got the keyboard in its cage: ${focused}`);
      await sleep(300);
    }
    await x(['xdotool', 'type', '--delay', '40', `${MARK} `]);
    await x(['xdotool', 'key', 'ctrl+s']);
    const saved = Date.now() + 60000;
    let text = '';
    while (!(text = await odtText(odt).catch(() => '')).includes(MARK) && Date.now() < saved)
      await sleep(500);
    await shot('writer-saved');
    assert.ok(text.includes(MARK), `the host file has the typed text: ${text.slice(-300)}`);
    assert.match(text, /A letter written on the host\./, 'and what it had');
    const after = fs.statSync(odt);
    assert.ok(after.mtimeMs > before.mtimeMs, 'the host file changed');
    // Saved by rename through the portal: the same path, the save's temporary file gone (what
    // stays is the lock: LibreOffice's in the cage, the portal's file for it, kagome's copy).
    assert.deepEqual(
      fs
        .readdirSync(dir)
        .filter((f) => !/^(\.xdp-)?\.~lock\.letter\.odt#/.test(f))
        .sort(),
      ['letter.odt', 'picture.png'],
    );
    assert.deepEqual(
      await visibleNames(),
      ['letter.odt - LibreOffice Writer'],
      'no error or format dialog',
    );
  });

  it("LibreOffice on the host is told the cage's document is in use", async () => {
    const profile = path.join(w.tmp.root, 'lo-host');
    seedProfile(path.join(profile, 'user'));
    const host = spawn(
      'libreoffice',
      [`-env:UserInstallation=file://${profile}`, '--writer', odt],
      { env: w.env, detached: true, stdio: 'ignore' },
    );
    track(host);
    hostPrograms.push(host);
    await waitForName(/^Document in Use$/, "the host's LibreOffice");
    await shot('host-told');
    process.kill(-host.pid!, 'SIGKILL');
    // Killed while asking, it has no lock of its own to leave; the cage's is still there.
    const deadline = Date.now() + 10000;
    while ((await visibleNames()).includes('Document in Use') && Date.now() < deadline)
      await sleep(200);
    assert.match(fs.readFileSync(path.join(dir, '.~lock.letter.odt#'), 'utf8'), /,kagome-office,/);
  });

  it('LibreOffice in a second cage is told the document is in use', async () => {
    const r = await w.kagome(['open', '--app', 'libreoffice-writer.desktop', 'office2', odt]);
    assert.equal(r.exitCode, 0, `${r.stdout}${r.stderr}`);
    await waitForName(/^Document in Use$/, "the second cage's LibreOffice");
    await shot('second-cage-told');
    assert.equal((await w.kagome(['stop', 'office2'])).exitCode, 0);
  });

  it('a stop closes Writer cleanly: no lock left behind, and no recovery at its next start', async () => {
    assert.equal((await w.kagome(['stop', 'office'])).exitCode, 0);
    assert.deepEqual(
      lockFiles(),
      [],
      "neither LibreOffice's lock nor a portal's temporary file is left in the folder",
    );
    const r = await w.kagome(['open', '--app', 'libreoffice-writer.desktop', 'office', odt]);
    assert.equal(r.exitCode, 0, `${r.stdout}${r.stderr}`);
    const id = await waitForName(
      /^(letter\.odt - LibreOffice Writer|.*Document Recovery.*)$/,
      'the document window, again',
    );
    await waitPainted(id, 'the document window');
    await shot('writer-again');
    assert.deepEqual(
      await visibleNames(),
      ['letter.odt - LibreOffice Writer'],
      'no "Document Recovery" dialog',
    );
    assert.equal((await w.kagome(['stop', 'office'])).exitCode, 0);
    assert.deepEqual(lockFiles(), []);
  });

  it("GIMP's window is on the screen and painted", async () => {
    const r = await w.kagome(['open', '--app', 'gimp.desktop', 'paint', png]);
    assert.equal(r.exitCode, 0, `${r.stdout}${r.stderr}`);
    const id = await waitForName(/picture.* – GIMP$/, "GIMP's image window", 180000);
    const g = await geometry(id);
    const s = await screen();
    assert.ok(
      g.x >= 0 && g.y >= 0 && g.x + g.width <= s.width && g.y + g.height <= s.height,
      `GIMP's window ${JSON.stringify(g)} is within the screen ${JSON.stringify(s)}`,
    );
    // Painted: the host shows what GIMP drew in its cage (xpra refreshes losslessly once the
    // window is still), with no strip left blank.
    const cageShot = 'gimp-window.png';
    const hostShot = path.join(w.tmp.root, 'gimp-host.png');
    const cageCut = path.join(w.tmp.root, 'gimp-cage.png');
    const deadline = Date.now() + 60000;
    let differing = Infinity;
    let whiteEdge = 1;
    for (;;) {
      await inCage(
        'paint',
        `id=$(xdotool search --onlyvisible --name ' – GIMP$' | head -1) && import -window "$id" "$HOME/${cageShot}" && echo ok`,
        'gimp-shot.out',
      );
      const full = await shot('gimp');
      // xpra's border in the cage's colour is drawn over the window's outer pixels on the host.
      await x([
        'convert',
        full,
        '-crop',
        `${g.width - 8}x${g.height - 8}+${g.x + 4}+${g.y + 4}`,
        '+repage',
        hostShot,
      ]);
      await x(['convert', w.homeFile('paint', cageShot), '-shave', '4x4', '+repage', cageCut]);
      const cmp = await x(['compare', '-metric', 'AE', '-fuzz', '12%', hostShot, cageCut, 'null:']);
      differing = Number(String(cmp.stderr).trim().split(/\s/)[0]);
      // The share of nearly white pixels in the window's right-most 60 columns.
      const edge = await x([
        'convert',
        hostShot,
        '-gravity',
        'east',
        '-crop',
        `60x${g.height}+0+0`,
        '+repage',
        '-fuzz',
        '4%',
        '-fill',
        'black',
        '+opaque',
        'white',
        '-fill',
        'white',
        '-opaque',
        'white',
        '-format',
        '%[fx:mean]',
        'info:',
      ]);
      whiteEdge = Number(edge.stdout);
      if ((differing < g.width * g.height * 0.02 && whiteEdge < 0.5) || Date.now() > deadline)
        break;
      await sleep(1000);
    }
    assert.ok(
      differing < g.width * g.height * 0.02,
      `the host shows GIMP's window as GIMP drew it (${differing} of ${g.width * g.height} pixels differ)`,
    );
    assert.ok(
      whiteEdge < 0.5,
      `no blank strip at the window's right edge (${Math.round(whiteEdge * 100)}% white)`,
    );
  });

  it('a window whose program gave no position is placed on the screen by the host, not where its program created it', async () => {
    // ImageMagick's display creates its window at (W/2, H*0.8) and leaves the placing to the
    // window manager; xpra 3.1's client put it there, most of it below the screen's edge.
    const r = await w.kagome(['open', '--app', 'display-im6.q16.desktop', 'paint', png]);
    assert.equal(r.exitCode, 0, `${r.stdout}${r.stderr}`);
    const id = await waitForName(/^ImageMagick: picture\.png$/, "display's window");
    // Where the host shows it and where its cage has it agree once the cage's server has heard
    // of the placement (pointer and window then agree); display's own request for a new size,
    // right after mapping, must not have moved it.
    const s = await screen();
    const deadline = Date.now() + 30000;
    let g: Geometry;
    let where = '';
    for (;;) {
      g = await geometry(id);
      where = await inCage(
        'paint',
        `xwininfo -id $(xdotool search --onlyvisible --name '^ImageMagick: picture' | head -1) | grep Absolute`,
        'display-where.out',
      );
      if (
        new RegExp(`X:\\s+${g.x}\\s[\\s\\S]*Y:\\s+${g.y}\\s`).test(`${where}\n`) ||
        Date.now() > deadline
      )
        break;
      await sleep(300);
    }
    await shot('display');
    assert.match(
      `${where}\n`,
      new RegExp(`X:\\s+${g.x}\\s[\\s\\S]*Y:\\s+${g.y}\\s`),
      `the cage has the window where the host shows it ${JSON.stringify(g)}: ${where}`,
    );
    assert.ok(
      g.x >= 0 && g.y >= 0 && g.x + g.width <= s.width && g.y + g.height <= s.height,
      `the window ${JSON.stringify(g)} is within the screen ${JSON.stringify(s)}`,
    );
  });

  it('FeatherPad opens a granted text file in a cold cage, drawn, in one window', async () => {
    // The earlier programs' windows stay open; what FeatherPad shows is what is new.
    for (const s of await shownWindows()) shownBefore.add(s.id);
    const r = await w.kagome([
      'open',
      '--app',
      'featherpad.desktop',
      'pad',
      path.join(texts, 'notes.txt'),
    ]);
    assert.equal(r.exitCode, 0, `${r.stdout}${r.stderr}`);
    const id = await waitForClass('FeatherPad', "FeatherPad's window");
    // In the cage the window is titled with the file, in the folder the document portal gives it.
    const deadline = Date.now() + 60000;
    let title = '';
    while (
      !/^\/run\/user\/\d+\/doc\/\w+\/notes\.txt$/.test(
        (title = (
          await inCage(
            'pad',
            "xdotool search --onlyvisible --class '^featherpad$' getwindowname",
            'title.out',
          )
        ).trim()),
      ) &&
      Date.now() < deadline
    )
      await sleep(500);
    assert.match(
      title,
      /^\/run\/user\/\d+\/doc\/\w+\/notes\.txt$/,
      'FeatherPad loaded the granted file',
    );
    await waitDrawnAsInCage('pad', id, "--class '^featherpad$'", "FeatherPad's window");
    await shot('featherpad-opened');
    const shown = await newWindows();
    assert.deepEqual(
      shown.map((s) => s.id),
      [id],
      `one window and no leftover: ${JSON.stringify(shown)}`,
    );
  });

  // xpra 3.1 read a new window's title before it listened for changes, and FeatherPad sets its
  // file's name right after mapping: the host kept "FeatherPad" (XPRA_SERVER_LAUNCHER).
  it('the host shows the title FeatherPad gave its window in a cold cage', async () => {
    const cage = (
      await inCage(
        'pad',
        "xdotool search --onlyvisible --class '^featherpad$' getwindowname",
        'title.out',
      )
    ).trim();
    const id = await waitForClass('FeatherPad', "FeatherPad's window");
    const deadline = Date.now() + 10000;
    let host = '';
    while (
      (host = String((await x(['xdotool', 'getwindowname', id])).stdout)) !== cage &&
      Date.now() < deadline
    )
      await sleep(300);
    assert.equal(host, cage);
  });

  it('FeatherPad saves what is typed into the host file with ctrl+s', async () => {
    const file = path.join(texts, 'notes.txt');
    const id = await waitForClass('FeatherPad', "FeatherPad's window");
    await focusInCage('pad', id, /\/notes\.txt$/);
    await x(['xdotool', 'type', '--delay', '40', `${MARK} `]);
    await x(['xdotool', 'key', 'ctrl+s']);
    const deadline = Date.now() + 30000;
    let text = '';
    while (!(text = fs.readFileSync(file, 'utf8')).includes(MARK) && Date.now() < deadline)
      await sleep(300);
    await shot('featherpad-saved');
    assert.equal(
      text,
      `${MARK} The notes file, written on the host.\n`,
      'the host file has what was typed, where it was typed',
    );
    assert.deepEqual(
      fs.readdirSync(texts).sort(),
      ['notes.txt', 'other.txt', 'third.txt'],
      'no temporary file left beside it',
    );
    assert.deepEqual(
      (await newWindows()).map((s) => s.id),
      [id],
      'no dialog',
    );
  });

  it('a second file opened while FeatherPad runs reaches it, by kagome open and by xdg-open', async () => {
    const id = await waitForClass('FeatherPad', "FeatherPad's window");
    const r = await w.kagome([
      'open',
      '--app',
      'featherpad.desktop',
      'pad',
      path.join(texts, 'other.txt'),
    ]);
    assert.equal(r.exitCode, 0, `${r.stdout}${r.stderr}`);
    // The running FeatherPad opens it in a tab of its window, and titles the window with it.
    assert.equal(
      await waitForName(/\/other\.txt$/, "FeatherPad's window with the second file"),
      id,
    );
    await shot('featherpad-second');
    // The file's default program is FeatherPad in its cage, through its shadow entry.
    assert.equal((await w.kagome(['app', 'add', 'pad', 'featherpad.desktop'])).exitCode, 0);
    fs.writeFileSync(
      path.join(w.env.XDG_CONFIG_HOME!, 'mimeapps.list'),
      '[Default Applications]\ntext/plain=featherpad.desktop;\n',
    );
    // No pipes: a program xdg-open started on the host (with no shadow to go through) would
    // hold them, and the test would wait for it instead of failing.
    const opened = await execa('xdg-open', [path.join(texts, 'third.txt')], {
      env: w.env,
      extendEnv: false,
      reject: false,
      timeout: 30000,
      stdio: 'ignore',
    });
    assert.equal(opened.exitCode, 0, 'xdg-open succeeded');
    assert.equal(
      await waitForName(/\/third\.txt$/, "FeatherPad's window with the file xdg-open opened"),
      id,
    );
    await shot('featherpad-third');
    assert.match(
      w.programLog('pad', 'featherpad'),
      /starting: \["featherpad","file:\/\/\/run\/user\/\d+\/doc\/\w+\/third\.txt"\]/,
      'through the shadow entry, with the file granted',
    );
  });

  // FeatherPad maps and at once withdraws a hidden window, which xpra 3.1 kept mapped, black,
  // over the editor (XPRA_SERVER_LAUNCHER).
  it('a file opened in the running FeatherPad leaves no window over it', async () => {
    const id = await waitForName(/\/third\.txt$/, "FeatherPad's window");
    const shown = await newWindows();
    await shot('featherpad-leftover');
    assert.deepEqual(
      shown.map((s) => s.id),
      [id],
      `no leftover window: ${JSON.stringify(shown)}`,
    );
    await waitDrawnAsInCage(
      'pad',
      id,
      "--name '/third\\.txt$'",
      "FeatherPad's window with the third file",
      5000,
    );
  });

  it('mpv started from its menu entry in a cold cage shows the picture and plays the sound on the host', async () => {
    assert.equal((await w.kagome(['app', 'add', 'player', 'mpv.desktop'])).exitCode, 0);
    // What a menu or a file manager's "Open With" does: GLib launches the shadow entry.
    const r = await execa('gio', ['launch', path.join(w.userApps, 'mpv.desktop'), clip], {
      env: w.env,
      extendEnv: false,
      reject: false,
      timeout: 30000,
    });
    assert.equal(r.exitCode, 0, `${r.stdout}${r.stderr}`);
    // A cold cage once gave mpv BadMatch on X_SetInputFocus, and no window (its menu entry's
    // pseudo-GUI mode prints nothing, so the window is what tells).
    const id = await waitForName(/^bars\.mkv - mpv$/, "mpv's window");
    // The bars at 75%: yellow, cyan and magenta each fill a seventh of the picture's top.
    const deadline = Date.now() + 60000;
    let shares: number[] = [];
    let file = '';
    for (;;) {
      const g = await geometry(id);
      file = await shot('mpv');
      shares = await Promise.all(
        ['rgb(191,191,0)', 'rgb(0,191,191)', 'rgb(191,0,191)'].map((c) => colourShare(file, g, c)),
      );
      if (shares.every((s) => s > 0.04) || Date.now() > deadline) break;
      await sleep(500);
    }
    assert.ok(
      shares.every((s) => s > 0.04),
      `the host shows the colour bars (yellow, cyan, magenta shares ${shares.map((s) => s.toFixed(3)).join(', ')})\n${w.programLog('player', 'mpv')}`,
    );
    let peak = 0;
    const heard = Date.now() + 30000;
    while (peak <= 0.3 && Date.now() < heard) peak = (await listenToHost(w.pulse!, 2)).peak;
    assert.ok(
      peak > 0.3,
      `the tone reached the host's sound server (peak ${peak.toFixed(3)})\n${w.programLog('player', 'mpv')}`,
    );
  });
});
