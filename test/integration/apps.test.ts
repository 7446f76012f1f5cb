import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { World } from '../helpers/kagome.js';
import { waitForWindow } from '../helpers/x11.js';
import { startNotifications } from '../helpers/notifications.js';
import { waitFor } from '../helpers/wait.js';

// Programs put in a cage must start in it however the desktop starts them: GLib's launcher
// (`gio launch`, what menus and docks use), xdg-open of a file whose default application is
// the program, and desktop actions. The shadows must follow their originals as they change
// on disk, and bad entries must never produce a shadow.

const EYES = 'org.kagome.TestEyes.desktop';
const VIEWER = 'kagome-test-viewer.desktop';

const EYES_ENTRY = `[Desktop Entry]
Type=Application
Name=Test Eyes
Name[de]=Testaugen
Comment=Looks at you
Exec=xeyes
DBusActivatable=true
StartupNotify=true
Icon=xeyes
`;

const viewerEntry = (name: string): string => `[Desktop Entry]
Type=Application
Name=${name}
Exec=xmessage -file %f
MimeType=text/plain;
Actions=logo;

[Desktop Action logo]
Name=Logo
Exec=xlogo
`;

type Program = [string, string[], number];

describe('programs in cages: shadow entries launched by the desktop', () => {
  let w: World;
  let notifications: Awaited<ReturnType<typeof startNotifications>>;
  let docs: string;
  let userAppsBefore: string[];

  const shadow = (id: string): string => path.join(w.userApps, id);
  const programs = (cage: string): Promise<Program[]> => w.dbus.Cages1.ListPrograms(cage);
  const waitForProgram = (cage: string, argv: string[]) =>
    waitFor(
      `${argv.join(' ')} in cage ${cage}`,
      async () => (await programs(cage)).find((p) => JSON.stringify(p[1]) === JSON.stringify(argv)),
      { timeoutMs: 30000, pollMs: 25 },
    );
  const waitForLog = (text: string) =>
    waitFor(
      `service log line with ${JSON.stringify(text)}`,
      () => w.service!.log().includes(text),
      { timeoutMs: 10000, pollMs: 25 },
    );
  const listApps = async (): Promise<
    { cage: string; entryId: string; state: string; path: string }[]
  > => {
    const r = await w.kagome(['app', 'list', '--json']);
    assert.equal(r.exitCode, 0, String(r.stderr));
    return JSON.parse(String(r.stdout));
  };

  before(async () => {
    w = await World.create({ systemData: true, documentPortal: true });
    notifications = await startNotifications(w.bus.address);
    docs = path.join(w.tmp.root, 'docs');
    fs.mkdirSync(docs);
    fs.writeFileSync(path.join(docs, 'note.txt'), 'a note for the viewer\n');
    w.writeCage('work', '[Cage]\nIdleStop=0\n');
    w.writeCage('other', '[Cage]\n');
    fs.writeFileSync(path.join(w.systemApps, EYES), EYES_ENTRY);
    fs.writeFileSync(path.join(w.systemApps, VIEWER), viewerEntry('Test Viewer'));
    // A symbolic link loop in an applications folder: neither the index nor the watcher may
    // follow it forever.
    fs.symlinkSync('.', path.join(w.systemApps, 'loop'));
    fs.writeFileSync(
      path.join(w.env.XDG_CONFIG_HOME!, 'mimeapps.list'),
      `[Default Applications]\ntext/plain=${VIEWER};\n`,
    );
    await w.startService();
    userAppsBefore = fs.readdirSync(w.userApps).sort();
  });

  after(async () => {
    notifications?.stop();
    await w?.cleanup();
  });

  it('`kagome app add` writes a shadow with the same ID that desktop-file-validate accepts', async () => {
    for (const id of [EYES, VIEWER]) {
      const r = await w.kagome(['app', 'add', 'work', id]);
      assert.equal(r.exitCode, 0, String(r.stderr));
      const v = await execa('desktop-file-validate', [shadow(id)], { reject: false });
      assert.equal(v.exitCode, 0, `${v.stdout}${v.stderr}`);
    }
    const text = fs.readFileSync(shadow(EYES), 'utf8');
    assert.match(
      text,
      /^Exec=\S*kagome-open --cage work --entry org\.kagome\.TestEyes\.desktop --$/m,
    );
    assert.doesNotMatch(text, /DBusActivatable/);
    assert.match(text, /^Name=Test Eyes \[work\]$/m);
    assert.match(text, /^Name\[de\]=Testaugen \[work\]$/m);
    assert.match(text, /^StartupWMClass=xeyes$/m);
    assert.match(text, /^X-Kagome-Cage=work$/m);
    assert.match(
      fs.readFileSync(shadow(VIEWER), 'utf8'),
      /^Exec=\S*kagome-open --cage work --entry kagome-test-viewer\.desktop -- %f$/m,
    );
  });

  it('`gio launch` of the shadow starts the program in the cage, with its window on the host', async () => {
    const r = await execa('gio', ['launch', shadow(EYES)], {
      env: w.env,
      reject: false,
      timeout: 20000,
    });
    assert.equal(r.exitCode, 0, String(r.stderr));
    await waitForProgram('work', ['xeyes']);
    const win = await waitForWindow(w.display, { wmClass: 'XEyes' });
    assert.deepEqual(win.wmClass, ['xeyes', 'XEyes']);
  });

  it('launching by desktop ID, as menus and docks do, cannot bypass the cage through D-Bus activation', async () => {
    // The original is DBusActivatable: GLib would ask the session bus to activate the app
    // (outside any cage) instead of running Exec. The shadow must have that key removed.
    const script =
      "import sys, gi\ngi.require_version('Gio', '2.0')\nfrom gi.repository import Gio\ninfo = Gio.DesktopAppInfo.new(sys.argv[1])\nprint(info.get_filename())\ninfo.launch([], None)\n";
    const before = (await programs('work')).filter((p) => p[1][0] === 'xeyes').length;
    const r = await execa('/usr/bin/python3', ['-c', script, EYES], {
      env: w.env,
      reject: false,
      timeout: 20000,
    });
    assert.equal(r.exitCode, 0, String(r.stderr));
    assert.equal(String(r.stdout).trim(), shadow(EYES), 'GLib resolves the ID to the shadow');
    const xeyes = async () => (await programs('work')).filter((p) => p[1][0] === 'xeyes').length;
    await waitFor('a second xeyes in the cage', xeyes, {
      timeoutMs: 30000,
      pollMs: 25,
      until: (n) => n > before,
    });
  });

  it('xdg-open of a file whose default application is shadowed opens it in the cage', async () => {
    const note = path.join(docs, 'note.txt');
    const r = await execa('xdg-open', [note], { env: w.env, reject: false, timeout: 20000 });
    assert.equal(r.exitCode, 0, `${r.stdout}${r.stderr}`);
    // The file is granted to the cage (no ReadOnly= mount needed) and passed as the cage sees it.
    const p = await waitFor(
      'xmessage -file <granted note.txt> in cage work',
      async () =>
        (await programs('work')).find(
          (x) =>
            x[1][0] === 'xmessage' &&
            /^\/run\/user\/\d+\/doc\/[^/]+\/note\.txt$/.test(x[1][2] ?? ''),
        ),
      { timeoutMs: 30000, pollMs: 25 },
    );
    assert.equal(p[1][1], '-file');
    const grants = await w.dbus.Files1.ListGrants('work');
    assert.ok(
      grants.some((g) => g[2].toString() === note && g[1].toString() === p[1][2]),
      'the program got the granted copy of the file',
    );
    await waitForWindow(w.display, { wmClass: 'Xmessage' });
  });

  it('a desktop action of the shadow, launched by GLib, runs in the cage', async () => {
    const script =
      "import sys, gi\ngi.require_version('Gio', '2.0')\nfrom gi.repository import Gio\nGio.DesktopAppInfo.new_from_filename(sys.argv[1]).launch_action(sys.argv[2], None)\n";
    const r = await execa('/usr/bin/python3', ['-c', script, shadow(VIEWER), 'logo'], {
      env: w.env,
      reject: false,
      timeout: 20000,
    });
    assert.equal(r.exitCode, 0, String(r.stderr));
    await waitForProgram('work', ['xlogo']);
    await waitForWindow(w.display, { wmClass: 'XLogo' });
  });

  it('a second cage gets its own entry; removing the first hands the ID over to it', async () => {
    const r = await w.kagome(['app', 'add', 'other', VIEWER]);
    assert.equal(r.exitCode, 0, String(r.stderr));
    const second = shadow(`kagome-other-${VIEWER}`);
    assert.match(fs.readFileSync(second, 'utf8'), /^Name=Test Viewer \[other\]$/m);
    assert.equal((await execa('desktop-file-validate', [second], { reject: false })).exitCode, 0);
    assert.equal((await w.kagome(['app', 'remove', 'work', VIEWER])).exitCode, 0);
    assert.match(fs.readFileSync(shadow(VIEWER), 'utf8'), /--cage other --entry/);
    assert.ok(!fs.existsSync(second));
    assert.equal((await w.kagome(['app', 'add', 'work', VIEWER])).exitCode, 0);
    assert.equal((await w.kagome(['app', 'remove', 'other', VIEWER])).exitCode, 0);
    assert.match(fs.readFileSync(shadow(VIEWER), 'utf8'), /--cage work --entry/);
  });

  it('an original changed on disk (a package upgrade) is followed by its shadow', async () => {
    fs.writeFileSync(path.join(w.systemApps, VIEWER), viewerEntry('Test Viewer Two'));
    await waitFor(
      'the regenerated shadow',
      () => /^Name=Test Viewer Two \[work\]$/m.test(fs.readFileSync(shadow(VIEWER), 'utf8')),
      { timeoutMs: 10000, pollMs: 25 },
    );
    assert.equal(
      (await execa('desktop-file-validate', [shadow(VIEWER)], { reject: false })).exitCode,
      0,
    );
  });

  it('an original that disappears takes its shadow out of the menus, and back when it returns', async () => {
    const original = path.join(w.systemApps, VIEWER);
    fs.rmSync(original);
    await waitFor('the shadow to go', () => !fs.existsSync(shadow(VIEWER)), {
      timeoutMs: 10000,
      pollMs: 25,
    });
    assert.deepEqual(
      (await listApps()).filter((a) => a.entryId === VIEWER).map((a) => a.state),
      ['dormant'],
    );
    fs.writeFileSync(original, viewerEntry('Test Viewer Three'));
    await waitFor(
      'the shadow to return',
      () =>
        fs.existsSync(shadow(VIEWER)) &&
        /Three \[work\]/.test(fs.readFileSync(shadow(VIEWER), 'utf8')),
      { timeoutMs: 10000, pollMs: 25 },
    );
    assert.match(
      fs.readFileSync(shadow(VIEWER), 'utf8'),
      /^Exec=\S*kagome-open --cage work --entry kagome-test-viewer\.desktop -- %f$/m,
    );
  });

  it('a shadow edited by hand is not overwritten, and the user is told', async () => {
    fs.appendFileSync(shadow(EYES), '# my own note\n');
    fs.writeFileSync(
      path.join(w.systemApps, EYES),
      EYES_ENTRY.replace('Looks at you', 'Looks at you, updated'),
    );
    await waitForLog(`${shadow(EYES)} was edited by hand`);
    const text = fs.readFileSync(shadow(EYES), 'utf8');
    assert.match(text, /# my own note/);
    assert.doesNotMatch(text, /updated/);
    const n = await waitFor(
      'a notification',
      () => notifications.server.calls.find((c) => c.body.includes(shadow(EYES))),
      { timeoutMs: 5000, pollMs: 25 },
    );
    assert.match(n.body, /kagome app add --force work org\.kagome\.TestEyes\.desktop/);
    assert.deepEqual(
      (await listApps()).filter((a) => a.entryId === EYES).map((a) => a.state),
      ['edited'],
    );
    // --force takes the update after all.
    assert.equal((await w.kagome(['app', 'add', '--force', 'work', EYES])).exitCode, 0);
    assert.match(fs.readFileSync(shadow(EYES), 'utf8'), /updated/);
  });

  it('a shadow replaced by an entry that bypasses the cage is reported', async () => {
    fs.writeFileSync(shadow(EYES), EYES_ENTRY);
    await waitForLog(`${shadow(EYES)} was replaced by an entry that does not go through a cage`);
    await waitFor(
      'a notification',
      () => notifications.server.calls.find((c) => c.summary === 'A caged program lost its cage'),
      { timeoutMs: 5000, pollMs: 25 },
    );
    // Added again, the program would take this file for the user's own entry: remove it first.
    fs.rmSync(shadow(EYES));
    assert.equal((await w.kagome(['app', 'add', 'work', EYES])).exitCode, 0);
  });

  it('editing a cage file takes effect without a restart: AppName renames its entries, IdleStop stops the running cage', async () => {
    w.writeCage('work', `[Cage]\nReadOnly=${docs}\nIdleStop=0\nAppName={name} (in {cage})\n`);
    await waitFor(
      'the renamed shadow',
      () => /^Name=Test Eyes \(in work\)$/m.test(fs.readFileSync(shadow(EYES), 'utf8')),
      { timeoutMs: 10000, pollMs: 25 },
    );
    await w.dbus.Cages1.Start('other');
    w.writeCage('other', '[Cage]\nIdleStop=1\n');
    const state = async () => String((await w.dbus.Cages1.Get('other')).State?.value);
    await waitFor('cage other to stop when idle', state, {
      timeoutMs: 20000,
      pollMs: 25,
      until: (s) => s === 'stopped',
    });
    await waitForLog('cage other: settings reloaded (IdleStop=1)');
  });

  it('bad entries are refused with the reason and never produce a shadow', async () => {
    const bad: Record<string, string | Buffer> = {
      'bad-utf8.desktop': Buffer.concat([
        Buffer.from('[Desktop Entry]\nType=Application\nName='),
        Buffer.from([0xff, 0xfe]),
        Buffer.from('\nExec=xeyes\n'),
      ]),
      'no-exec.desktop': '[Desktop Entry]\nType=Application\nName=No Exec\n',
      'bad-quotes.desktop':
        '[Desktop Entry]\nType=Application\nName=Quotes\nExec=xeyes "unbalanced\n',
      'huge.desktop':
        '[Desktop Entry]\nType=Application\nName=Huge\nExec=xeyes\n' +
        Array.from({ length: 40000 }, (_, i) => `X-Key-${i}=${'v'.repeat(16)}\n`).join(''),
    };
    const reasons: Record<string, RegExp> = {
      'bad-utf8.desktop': /bad-utf8\.desktop:3: invalid UTF-8/,
      'no-exec.desktop': /no Exec key/,
      'bad-quotes.desktop': /bad-quotes\.desktop:4: Exec: invalid Exec line/,
      'huge.desktop': /larger than 256 KiB/,
    };
    assert.ok(Buffer.byteLength(bad['huge.desktop']!) > 1_000_000);
    for (const [id, content] of Object.entries(bad)) {
      fs.writeFileSync(path.join(w.systemApps, id), content);
      const r = await w.kagome(['app', 'add', 'work', id]);
      assert.equal(r.exitCode, 1, `${id}: ${r.stdout}`);
      assert.match(String(r.stderr), reasons[id]!, id);
      assert.ok(!fs.existsSync(shadow(id)), `no shadow for ${id}`);
    }
    // The service saw all of these appear and is still serving.
    await w.dbus.Cages1.List();
  });

  it('an original that turns bad is never shadowed with a broken Exec', async () => {
    const original = path.join(w.systemApps, VIEWER);
    fs.writeFileSync(
      original,
      viewerEntry('Test Viewer').replace('Exec=xmessage -file %f', 'Exec=xmessage "-file %f'),
    );
    await waitForLog(`${shadow(VIEWER)} was not updated`);
    assert.match(
      fs.readFileSync(shadow(VIEWER), 'utf8'),
      /^Exec=\S*kagome-open --cage work --entry kagome-test-viewer\.desktop -- %f$/m,
    );
    fs.writeFileSync(original, Buffer.from([0x5b, 0xff, 0x5d]));
    await waitFor('the shadow to go', () => !fs.existsSync(shadow(VIEWER)), {
      timeoutMs: 10000,
      pollMs: 25,
    });
    await waitForLog('invalid UTF-8');
    fs.writeFileSync(original, viewerEntry('Test Viewer'));
    await waitFor('the shadow to return', () => fs.existsSync(shadow(VIEWER)), {
      timeoutMs: 10000,
      pollMs: 25,
    });
  });

  it('removing every program leaves the applications folder exactly as it was', async () => {
    for (const id of [EYES, VIEWER]) {
      const r = await w.kagome(['app', 'remove', 'work', id]);
      assert.equal(r.exitCode, 0, String(r.stderr));
    }
    assert.deepEqual(fs.readdirSync(w.userApps).sort(), userAppsBefore);
    assert.deepEqual(await listApps(), []);
  });
});

describe('a user entry displaced by a shadow', () => {
  let w: World;
  before(async () => {
    w = await World.create({ systemData: true });
    w.writeCage('work', '[Cage]\n');
  });
  after(async () => w?.cleanup());

  it('is kept aside while the program is caged and put back byte for byte on removal', async () => {
    fs.mkdirSync(w.userApps, { recursive: true });
    const mine =
      '# my own launcher\n[Desktop Entry]\nType=Application\nName=My Eyes\nExec=xeyes -fg red\n';
    fs.writeFileSync(path.join(w.userApps, 'my-eyes.desktop'), mine);
    const add = await w.kagome(['app', 'add', 'work', 'my-eyes.desktop']);
    assert.equal(add.exitCode, 0, String(add.stderr));
    const text = fs.readFileSync(path.join(w.userApps, 'my-eyes.desktop'), 'utf8');
    assert.match(text, /^Name=My Eyes \[work\]$/m);
    assert.match(text, /^X-Kagome-Source=.*\/kagome\/originals\/applications\/my-eyes\.desktop$/m);
    const remove = await w.kagome(['app', 'remove', 'work', 'my-eyes.desktop']);
    assert.equal(remove.exitCode, 0, String(remove.stderr));
    assert.equal(fs.readFileSync(path.join(w.userApps, 'my-eyes.desktop'), 'utf8'), mine);
  });
});
