import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { execa } from 'execa';
import { World } from '../helpers/kagome.js';
import { track } from '../helpers/daemons.js';

// Real desktop programs in default cages, as the ordinary user, on documents granted through the
// real document portal: LibreOffice Writer edits and saves a granted document in place, and a
// second LibreOffice (another cage's, the host's) is told the document is in use; a stop lets
// it end cleanly, so its next start offers no recovery; GIMP's window is on the screen and
// painted; a window is placed on the screen by the host, not where its program created it.
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
  const hostPrograms: ChildProcess[] = [];

  const x = (args: string[]) => execa(args[0]!, args.slice(1), { env: w.env, extendEnv: false, reject: false });
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
      if (Date.now() > deadline) throw new Error(`${what}: no window named ${match} appeared; the screen shows: ${JSON.stringify(await visibleNames())}`);
      await sleep(250);
    }
  };
  const geometry = async (id: string): Promise<Geometry> => {
    const r = await x(['xwininfo', '-id', id]);
    const n = (label: string) => Number(new RegExp(`${label}:\\s+(-?\\d+)`).exec(String(r.stdout))?.[1]);
    return { x: n('Absolute upper-left X'), y: n('Absolute upper-left Y'), width: n('Width'), height: n('Height') };
  };
  const screen = async (): Promise<{ width: number; height: number }> => {
    const r = await x(['xwininfo', '-root']);
    const n = (label: string) => Number(new RegExp(`${label}:\\s+(\\d+)`).exec(String(r.stdout))?.[1]);
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
    await w.launchCommand(cage, ['/bin/sh', '-c', `{ ${script}; } > "$HOME/${out}.tmp" 2>&1; mv "$HOME/${out}.tmp" "$HOME/${out}"`]);
    return w.readFileWhenWritten(w.homeFile(cage, out), 30000);
  };
  const odtText = async (file: string): Promise<string> =>
    String((await execa('/usr/bin/python3', ['-c', 'import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).read("content.xml").decode())', file])).stdout);
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
      const r = await x(['convert', full, '-crop', `${g.width}x${g.height}+${g.x}+${g.y}`, '+repage', '-fuzz', '2%', '-fill', 'white', '+opaque', 'black', '-negate', '-format', '%[fx:mean]', 'info:']);
      const black = Number(r.stdout);
      const here = JSON.stringify(g);
      if (black < 0.5 && drawnAt === here) return;
      drawnAt = black < 0.5 ? here : '';
      assert.ok(Date.now() < deadline, `${what} was never drawn on the host (${Math.round(black * 100)}% black)`);
      await sleep(300);
    }
  };
  const lockFiles = () => fs.readdirSync(dir).filter((f) => f.startsWith('.~lock.') || f.startsWith('.xdp-'));

  before(async () => {
    for (const program of ['libreoffice', 'gimp', 'display-im6.q16']) {
      const found = await execa('sh', ['-c', `command -v ${program}`], { reject: false });
      assert.equal(found.exitCode, 0, `${program} is not installed: packaging/install-deps installs it for this test`);
    }
    w = await World.create({ documentPortal: true });
    dir = path.join(w.tmp.root, 'documents');
    fs.mkdirSync(dir);
    // A real Writer document, made by LibreOffice itself from text.
    fs.writeFileSync(path.join(dir, 'letter.txt'), 'A letter written on the host.\n');
    const made = await execa('libreoffice', [`-env:UserInstallation=file://${w.tmp.root}/lo-convert`, '--headless', '--convert-to', 'odt', '--outdir', dir, path.join(dir, 'letter.txt')], {
      env: w.env,
      extendEnv: false,
      reject: false,
      timeout: 120000,
    });
    odt = path.join(dir, 'letter.odt');
    assert.ok(fs.existsSync(odt), `libreoffice --convert-to odt made no document: ${made.stdout}${made.stderr}`);
    fs.rmSync(path.join(dir, 'letter.txt'));
    png = path.join(dir, 'picture.png');
    await execa('convert', ['-size', '320x240', 'gradient:#2050c0-#c03020', png]);
    for (const cage of ['office', 'office2', 'paint']) {
      w.writeCage(cage, '[Cage]\n');
      seedProfile(w.homeFile(cage, '.config/libreoffice/4/user'));
    }
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
    assert.deepEqual(await visibleNames(), ['letter.odt - LibreOffice Writer'], 'no "Document in Use" or other dialog');
    // Its lock file reached the host folder under LibreOffice's own name.
    const deadline = Date.now() + 10000;
    while (!fs.existsSync(path.join(dir, '.~lock.letter.odt#')) && Date.now() < deadline) await sleep(100);
    assert.match(fs.readFileSync(path.join(dir, '.~lock.letter.odt#'), 'utf8'), /,kagome-office,/, 'the lock names the cage it is held in');
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
    while (!(text = await odtText(odt).catch(() => '')).includes(MARK) && Date.now() < saved) await sleep(500);
    await shot('writer-saved');
    assert.ok(text.includes(MARK), `the host file has the typed text: ${text.slice(-300)}`);
    assert.match(text, /A letter written on the host\./, 'and what it had');
    const after = fs.statSync(odt);
    assert.ok(after.mtimeMs > before.mtimeMs, 'the host file changed');
    // Saved by rename through the portal: the same path, the save's temporary file gone (what
    // stays is the lock: LibreOffice's in the cage, the portal's file for it, kagome's copy).
    assert.deepEqual(fs.readdirSync(dir).filter((f) => !/^(\.xdp-)?\.~lock\.letter\.odt#/.test(f)).sort(), ['letter.odt', 'picture.png']);
    assert.deepEqual(await visibleNames(), ['letter.odt - LibreOffice Writer'], 'no error or format dialog');
  });

  it("LibreOffice on the host is told the cage's document is in use", async () => {
    const profile = path.join(w.tmp.root, 'lo-host');
    seedProfile(path.join(profile, 'user'));
    const host = spawn('libreoffice', [`-env:UserInstallation=file://${profile}`, '--writer', odt], { env: w.env, detached: true, stdio: 'ignore' });
    track(host);
    hostPrograms.push(host);
    await waitForName(/^Document in Use$/, "the host's LibreOffice");
    await shot('host-told');
    process.kill(-host.pid!, 'SIGKILL');
    // Killed while asking, it has no lock of its own to leave; the cage's is still there.
    const deadline = Date.now() + 10000;
    while ((await visibleNames()).includes('Document in Use') && Date.now() < deadline) await sleep(200);
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
    assert.deepEqual(lockFiles(), [], "neither LibreOffice's lock nor a portal's temporary file is left in the folder");
    const r = await w.kagome(['open', '--app', 'libreoffice-writer.desktop', 'office', odt]);
    assert.equal(r.exitCode, 0, `${r.stdout}${r.stderr}`);
    const id = await waitForName(/^(letter\.odt - LibreOffice Writer|.*Document Recovery.*)$/, 'the document window, again');
    await waitPainted(id, 'the document window');
    await shot('writer-again');
    assert.deepEqual(await visibleNames(), ['letter.odt - LibreOffice Writer'], 'no "Document Recovery" dialog');
    assert.equal((await w.kagome(['stop', 'office'])).exitCode, 0);
    assert.deepEqual(lockFiles(), []);
  });

  it("GIMP's window is on the screen and painted", async () => {
    const r = await w.kagome(['open', '--app', 'gimp.desktop', 'paint', png]);
    assert.equal(r.exitCode, 0, `${r.stdout}${r.stderr}`);
    const id = await waitForName(/picture.* – GIMP$/, "GIMP's image window", 180000);
    const g = await geometry(id);
    const s = await screen();
    assert.ok(g.x >= 0 && g.y >= 0 && g.x + g.width <= s.width && g.y + g.height <= s.height, `GIMP's window ${JSON.stringify(g)} is within the screen ${JSON.stringify(s)}`);
    // Painted: the host shows what GIMP drew in its cage (xpra refreshes losslessly once the
    // window is still), with no strip left blank.
    const cageShot = 'gimp-window.png';
    const hostShot = path.join(w.tmp.root, 'gimp-host.png');
    const cageCut = path.join(w.tmp.root, 'gimp-cage.png');
    const deadline = Date.now() + 60000;
    let differing = Infinity;
    let whiteEdge = 1;
    for (;;) {
      await inCage('paint', `id=$(xdotool search --onlyvisible --name ' – GIMP$' | head -1) && import -window "$id" "$HOME/${cageShot}" && echo ok`, 'gimp-shot.out');
      const full = await shot('gimp');
      // xpra's border in the cage's colour is drawn over the window's outer pixels on the host.
      await x(['convert', full, '-crop', `${g.width - 8}x${g.height - 8}+${g.x + 4}+${g.y + 4}`, '+repage', hostShot]);
      await x(['convert', w.homeFile('paint', cageShot), '-shave', '4x4', '+repage', cageCut]);
      const cmp = await x(['compare', '-metric', 'AE', '-fuzz', '12%', hostShot, cageCut, 'null:']);
      differing = Number(String(cmp.stderr).trim().split(/\s/)[0]);
      // The share of nearly white pixels in the window's right-most 60 columns.
      const edge = await x(['convert', hostShot, '-gravity', 'east', '-crop', `60x${g.height}+0+0`, '+repage', '-fuzz', '4%', '-fill', 'black', '+opaque', 'white', '-fill', 'white', '-opaque', 'white', '-format', '%[fx:mean]', 'info:']);
      whiteEdge = Number(edge.stdout);
      if ((differing < g.width * g.height * 0.02 && whiteEdge < 0.5) || Date.now() > deadline) break;
      await sleep(1000);
    }
    assert.ok(differing < g.width * g.height * 0.02, `the host shows GIMP's window as GIMP drew it (${differing} of ${g.width * g.height} pixels differ)`);
    assert.ok(whiteEdge < 0.5, `no blank strip at the window's right edge (${Math.round(whiteEdge * 100)}% white)`);
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
      where = await inCage('paint', `xwininfo -id $(xdotool search --onlyvisible --name '^ImageMagick: picture' | head -1) | grep Absolute`, 'display-where.out');
      if (new RegExp(`X:\\s+${g.x}\\s[\\s\\S]*Y:\\s+${g.y}\\s`).test(`${where}\n`) || Date.now() > deadline) break;
      await sleep(300);
    }
    await shot('display');
    assert.match(`${where}\n`, new RegExp(`X:\\s+${g.x}\\s[\\s\\S]*Y:\\s+${g.y}\\s`), `the cage has the window where the host shows it ${JSON.stringify(g)}: ${where}`);
    assert.ok(g.x >= 0 && g.y >= 0 && g.x + g.width <= s.width && g.y + g.height <= s.height, `the window ${JSON.stringify(g)} is within the screen ${JSON.stringify(s)}`);
  });
});
