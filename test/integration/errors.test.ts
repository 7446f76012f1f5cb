import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import dbus from 'dbus-next';
import { execa } from 'execa';
import { World, REPO, KAGOME } from '../helpers/kagome.js';
import { waitForWindow } from '../helpers/x11.js';
import { waitFor } from '../helpers/wait.js';

// Bad input gets a named error a person can act on, and the service keeps answering.

const L = 'io.kagome.Launcher1';
const C = 'io.kagome.Cages1';

describe('bad input gets named errors and the service keeps answering', () => {
  let w: World;

  before(async () => {
    w = await World.create();
    w.writeCage('good', '[Cage]\n');
    w.writeCage('broken', '[Cage]\nBackend=bubblewrap\nDisplay=wayland\n');
    w.writeCage('missingmount', '[Cage]\nReadOnly=/does/not/exist\n');
    // bwrap cannot make a file inside the cage's /proc: the start fails in bwrap itself.
    w.writeCage('unbuildable', '[Cage]\nReadOnly=/etc/hostname:/proc/kagome-cannot-be-here\n');
    await w.startService();
  });

  after(async () => {
    await w?.cleanup();
  });

  it('an unknown cage is NoSuchCage, naming the file to create', async () => {
    const e = await w.rejection(w.dbus.Launcher1.LaunchCommand('nosuch', ['xeyes'], {}));
    assert.equal(e.type, 'io.kagome.Error.NoSuchCage');
    assert.match(e.text, /kagome cage create nosuch/);
  });

  for (const bad of ['../x', '', 'x'.repeat(65), 'a/b', 'a b']) {
    it(`the cage name ${JSON.stringify(bad.length > 10 ? bad.slice(0, 10) + '…' : bad)} is InvalidArgument`, async () => {
      const { Launcher1, Cages1 } = w.dbus;
      for (const [member, call] of [
        ['LaunchCommand', () => Launcher1.LaunchCommand(bad, ['xeyes'], {})],
        ['Launch', () => Launcher1.Launch(bad, 'x.desktop', [], {})],
        ['Start', () => Cages1.Start(bad)],
        ['Stop', () => Cages1.Stop(bad)],
      ] as const) {
        const e = await w.rejection(call());
        assert.equal(e.type, 'io.kagome.Error.InvalidArgument', `${member}: ${e.text}`);
        assert.match(e.text, /1 to 64 characters/);
      }
    });
  }

  it('wrong D-Bus argument types are InvalidArgument naming the expected signature', async () => {
    // Sent around the typed client on purpose: these signatures are not the contract's.
    const e = await w.rejection(w.sendUnchecked(L, 'LaunchCommand', 'ss', ['good', 'xeyes']));
    assert.equal(e.type, 'io.kagome.Error.InvalidArgument');
    assert.match(e.text, /sasa\{sv\}/);
    const e2 = await w.rejection(w.sendUnchecked(C, 'Start', 'u', [3]));
    assert.equal(e2.type, 'io.kagome.Error.InvalidArgument');
  });

  it('a bad option (unknown key, wrong type, relative cwd) is InvalidArgument', async () => {
    const e = await w.rejection(
      w.dbus.Launcher1.LaunchCommand('good', ['xeyes'], { colour: new dbus.Variant('s', 'red') }),
    );
    assert.equal(e.type, 'io.kagome.Error.InvalidArgument');
    const e2 = await w.rejection(
      w.dbus.Launcher1.LaunchCommand('good', ['xeyes'], { cwd: new dbus.Variant('u', 1) }),
    );
    assert.match(e2.text, /must be of type s/);
    const e3 = await w.rejection(
      w.dbus.Launcher1.LaunchCommand('good', ['xeyes'], { cwd: new dbus.Variant('s', 'rel') }),
    );
    assert.match(e3.text, /absolute/);
    const e4 = await w.rejection(w.dbus.Launcher1.LaunchCommand('good', [], {}));
    assert.equal(e4.type, 'io.kagome.Error.InvalidArgument');
  });

  it('a malformed cage file is InvalidCageFile with file, line, key and what is allowed; it does not hide the others', async () => {
    const e = await w.rejection(w.dbus.Launcher1.LaunchCommand('broken', ['xeyes'], {}));
    assert.equal(e.type, 'io.kagome.Error.InvalidCageFile');
    assert.ok(e.text.includes(`${w.cageFile('broken')}:3: Display:`), e.text);
    assert.match(e.text, /xpra, xephyr/);
    const cages = await w.dbus.Cages1.List();
    assert.equal(cages.broken!.State!.value, 'invalid');
    assert.match(cages.broken!.Error!.value as string, /Display/);
    assert.equal(cages.good!.State!.value, 'stopped');
    const cli = await w.kagome(['cage', 'validate']);
    assert.equal(cli.exitCode, 1);
    assert.match(cli.stdout, /good: ok/);
  });

  it('a mount of a path that does not exist names the key and the path', async () => {
    const e = await w.rejection(w.dbus.Launcher1.LaunchCommand('missingmount', ['xeyes'], {}));
    assert.equal(e.type, 'io.kagome.Error.InvalidCageFile');
    assert.match(e.text, /ReadOnly: \/does\/not\/exist does not exist/);
  });

  it('a cage that fails to start says why: the decisive line of its log is in the error', async () => {
    const e = await w.rejection(w.dbus.Launcher1.LaunchCommand('unbuildable', ['xeyes'], {}));
    assert.equal(e.type, 'io.kagome.Error.BackendFailed');
    // The line bwrap printed, not only "failed to set up".
    assert.match(e.text, /The cage log says: bwrap: .*kagome-cannot-be-here/);
    const log = fs.readFileSync(
      path.join(w.runtimeDir, 'cages', 'unbuildable', 'log', 'cage.log'),
      'utf8',
    );
    const line = /^bwrap: .*kagome-cannot-be-here.*$/m.exec(log)?.[0];
    assert.ok(line, 'the line is in the cage log');
    assert.ok(e.text.includes(line), 'the error quotes the log line whole');
  });

  it('a folder reached through a link into a folder the cage writes is refused at start, not bound', async () => {
    const outer = path.join(w.tmp.root, 'projects');
    fs.mkdirSync(path.join(outer, 'tools'), { recursive: true });
    const link = path.join(w.tmp.root, 'tools-link');
    fs.symlinkSync(path.join(outer, 'tools'), link);
    w.writeCage('nested', `[Cage]\nReadWrite=${outer};\nReadOnly=${link};\n`);
    // Control: as written, the file names two unrelated folders and reads without complaint.
    const info = await w.dbus.Cages1.Get('nested');
    assert.notEqual(info.State?.value, 'invalid');
    const e = await w.rejection(w.dbus.Launcher1.LaunchCommand('nested', ['true'], {}));
    assert.equal(e.type, 'io.kagome.Error.InvalidCageFile');
    assert.match(e.text, /tools lies inside .*projects, which the cage may write/);
  });

  it('a program that does not exist in the cage is NoSuchProgram', async () => {
    const e = await w.rejection(
      w.dbus.Launcher1.LaunchCommand('good', ['definitely-not-installed'], {}),
    );
    assert.equal(e.type, 'io.kagome.Error.NoSuchProgram');
    const e2 = await w.rejection(w.dbus.Launcher1.Launch('good', 'not-installed.desktop', [], {}));
    assert.equal(e2.type, 'io.kagome.Error.NoSuchApp');
    const e3 = await w.rejection(w.dbus.Launcher1.Launch('good', 'not a desktop id', [], {}));
    assert.equal(e3.type, 'io.kagome.Error.InvalidArgument');
  });

  it('after all of that the service still answers and still launches', async () => {
    const cages = await w.dbus.Cages1.List();
    assert.ok('good' in cages);
    await w.launchCommand('good', ['xeyes']);
    await waitForWindow(w.display, { wmClass: 'XEyes' });
  });
});

describe('a missing program names its Debian package', () => {
  let w: World;
  before(async () => {
    w = await World.create();
    w.writeCage('good', '[Cage]\n');
    // A PATH with everything but bwrap.
    const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-nobwrap-'));
    for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
      let entries: string[] = [];
      try {
        entries = fs.readdirSync(dir);
      } catch {
        continue;
      }
      for (const name of entries) {
        if (name === 'bwrap' || fs.existsSync(path.join(bin, name))) continue;
        try {
          fs.symlinkSync(path.join(dir, name), path.join(bin, name));
        } catch {
          /* ignore */
        }
      }
    }
    w.env.PATH = bin;
    await w.startService();
  });
  after(async () => {
    await w?.cleanup();
  });

  it('without bwrap, a launch is MissingProgram naming the bubblewrap package', async () => {
    const e = await w.rejection(w.dbus.Launcher1.LaunchCommand('good', ['xeyes'], {}));
    assert.equal(e.type, 'io.kagome.Error.MissingProgram');
    assert.match(e.text, /apt-get install bubblewrap/);
  });
});

describe('the service as root', () => {
  let w: World;
  before(async () => {
    w = await World.create();
    w.writeCage('good', '[Cage]\n');
  });
  after(async () => {
    await w?.cleanup();
  });

  it('refuses to start, saying why and what to do, and owns no name', async () => {
    // uid 0 in a user namespace is what the service sees when started as root; the suite runs
    // as an ordinary user, so this is the root it can be.
    const asRoot = await execa(
      'unshare',
      ['--user', '--map-root-user', process.execPath, KAGOME, 'daemon'],
      { env: w.env, extendEnv: false, reject: false, timeout: 20000 },
    );
    assert.notEqual(asRoot.exitCode, 0);
    assert.match(asRoot.stderr, /does not run as root/);
    assert.match(asRoot.stderr, /\/proc\/sys/);
    assert.match(asRoot.stderr, /as your own user/);
    assert.equal(await w.nameHasOwner(), false);
  });

  it('control: the same command as the ordinary user starts and owns the name', async () => {
    assert.notEqual(
      process.getuid?.(),
      0,
      'the suite runs the product as an ordinary user (test/as-user)',
    );
    await w.startService();
    assert.equal(await w.nameHasOwner(), true);
  });
});

describe('D-Bus activation', () => {
  let w: World;
  let servicesDir: string;
  before(async () => {
    servicesDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-services-'));
    // The real activation file from packaging/, with its Exec pointing at this checkout.
    const template = fs.readFileSync(
      path.join(REPO, 'packaging', 'dbus', 'io.kagome.Kagome.service.in'),
      'utf8',
    );
    fs.writeFileSync(
      path.join(servicesDir, 'io.kagome.Kagome.service'),
      template.replace(/@bindir@/g, path.join(REPO, 'bin')).replace(/^SystemdService=.*$/m, ''),
    );
    w = await World.create({ servicesDirs: [servicesDir] });
    w.writeCage('good', '[Cage]\n');
  });
  after(async () => {
    // The activated service is the bus's child; stopping the bus ends its connection and it exits.
    await w?.cleanup();
    fs.rmSync(servicesDir, { recursive: true, force: true });
  });

  it('a call to the stopped service starts it, and the service ends with its bus', async () => {
    assert.equal(await w.nameHasOwner(), false);
    const cages = await w.dbus.Cages1.List();
    assert.ok('good' in cages);
    assert.equal(await w.nameHasOwner(), true);
    const [pid] = (await w.callRaw(
      'org.freedesktop.DBus',
      '/org/freedesktop/DBus',
      'org.freedesktop.DBus',
      'GetConnectionUnixProcessID',
      's',
      ['io.kagome.Kagome'],
    )) as [number];
    assert.ok(fs.existsSync(`/proc/${pid}`));
    // A session that ends takes its bus with it: a service left behind would serve nobody.
    await w.bus.stop();
    await waitFor(
      `the activated service (pid ${pid}) to exit`,
      () => !fs.existsSync(`/proc/${pid}`),
      { timeoutMs: 5000, pollMs: 20 },
    );
    assert.equal(
      fs.existsSync(`/proc/${pid}`),
      false,
      `the activated service (pid ${pid}) exited when its bus went away`,
    );
  });
});
