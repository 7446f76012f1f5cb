import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { World, KAGOME, REPO } from '../helpers/kagome.js';

// `kagome setup` for a kagome run from its tree: the files it writes, checked one by one, a
// second run that changes nothing, a file of the person's that it will not overwrite nor
// remove, and the activation file doing its job on a real bus.

describe('kagome setup', () => {
  let home: string;
  const env = () => ({
    HOME: home,
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    XDG_RUNTIME_DIR: path.join(home, 'run'),
  });
  const run = (args: string[]) =>
    execa(process.execPath, [KAGOME, ...args], { env: env(), extendEnv: false, reject: false });
  const activation = () =>
    path.join(home, '.local', 'share', 'dbus-1', 'services', 'io.kagome.Kagome.service');
  const unit = () => path.join(home, '.config', 'systemd', 'user', 'kagome.service');

  before(() => {
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-setup-'));
    fs.mkdirSync(path.join(home, 'run'), { mode: 0o700 });
  });
  after(() => fs.rmSync(home, { recursive: true, force: true }));

  it("writes the activation file and the user unit with this tree's paths, and a second run changes nothing", async () => {
    const r = await run(['setup']);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /^written: .*io\.kagome\.Kagome\.service \(D-Bus activation\)$/m);
    assert.match(r.stdout, /no systemd user manager runs here/);
    const dbusFile = fs.readFileSync(activation(), 'utf8');
    assert.match(dbusFile, new RegExp(`^Exec=${path.join(REPO, 'bin', 'kagome')} daemon$`, 'm'));
    assert.match(dbusFile, /^Name=io\.kagome\.Kagome$/m);
    const unitFile = fs.readFileSync(unit(), 'utf8');
    assert.match(
      unitFile,
      new RegExp(`^ExecStart=${path.join(REPO, 'bin', 'kagome')} daemon$`, 'm'),
    );
    assert.match(unitFile, /^KillMode=process$/m);
    assert.doesNotMatch(dbusFile + unitFile, /@bindir@|@docdir@/);
    const mtimes = [activation(), unit()].map((f) => fs.statSync(f).mtimeMs);
    const again = await run(['setup']);
    assert.equal(again.exitCode, 0, again.stderr);
    assert.equal(again.stdout.match(/^unchanged: /gm)?.length, 2, again.stdout);
    assert.deepEqual(
      [activation(), unit()].map((f) => fs.statSync(f).mtimeMs),
      mtimes,
    );
  });

  it("--remove takes away exactly what setup wrote; a file of the person's is neither overwritten nor removed", async () => {
    const neighbour = path.join(path.dirname(activation()), 'org.example.Other.service');
    fs.writeFileSync(neighbour, '[D-BUS Service]\nName=org.example.Other\nExec=/bin/true\n');
    const r = await run(['setup', '--remove']);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(fs.existsSync(activation()), false);
    assert.equal(fs.existsSync(unit()), false);
    assert.equal(fs.existsSync(neighbour), true, 'another service file in the same folder stays');
    // A unit the person wrote: setup refuses to replace it, and --remove keeps it.
    fs.mkdirSync(path.dirname(unit()), { recursive: true });
    fs.writeFileSync(unit(), '[Service]\nExecStart=/opt/my/kagome daemon\n');
    const refused = await run(['setup']);
    assert.equal(refused.exitCode, 1);
    assert.match(
      refused.stderr,
      /kagome\.service exists and was not written by kagome setup; move it away/,
    );
    assert.equal(fs.readFileSync(unit(), 'utf8'), '[Service]\nExecStart=/opt/my/kagome daemon\n');
    const kept = await run(['setup', '--remove']);
    assert.match(kept.stdout, /^kept \(not written by kagome setup\): .*kagome\.service/m);
    assert.equal(fs.existsSync(unit()), true);
  });
});

describe('the activation file kagome setup writes', () => {
  let w: World;
  let dataHome: string;
  before(async () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-setup-bus-'));
    dataHome = path.join(home, 'data');
    const r = await execa(process.execPath, [KAGOME, 'setup'], {
      env: {
        HOME: home,
        XDG_DATA_HOME: dataHome,
        XDG_CONFIG_HOME: path.join(home, 'config'),
        PATH: process.env.PATH ?? '/usr/bin:/bin',
      },
      extendEnv: false,
      reject: false,
    });
    assert.equal(r.exitCode, 0, r.stderr);
    // The bus reads it where a session bus reads the person's: $XDG_DATA_HOME/dbus-1/services.
    w = await World.create({ servicesDirs: [path.join(dataHome, 'dbus-1', 'services')] });
    w.writeCage('good', '[Cage]\n');
  });
  after(async () => {
    await w?.cleanup();
    fs.rmSync(path.dirname(dataHome), { recursive: true, force: true });
  });

  it('starts the service at the first call', async () => {
    assert.equal(await w.nameHasOwner(), false);
    const cages = await w.dbus.Cages1.List();
    assert.ok('good' in cages);
    assert.equal(await w.nameHasOwner(), true);
  });
});

describe('kagome doctor', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-doctor-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const doctor = (PATH: string) =>
    execa(process.execPath, [KAGOME, 'doctor'], {
      env: { HOME: dir, PATH, DISPLAY: ':0', DBUS_SESSION_BUS_ADDRESS: 'unix:path=/nonexistent' },
      extendEnv: false,
      reject: false,
    });

  it('names each missing program by its Debian package, and a python3 on PATH that is not the system one', async () => {
    // A PATH with everything the real one has but Xvfb, and a python3 shim in front, as pyenv makes.
    const bin = path.join(dir, 'bin');
    fs.mkdirSync(bin);
    for (const d of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
      for (const name of fs.existsSync(d) ? fs.readdirSync(d) : []) {
        if (name === 'Xvfb' || fs.existsSync(path.join(bin, name))) continue;
        fs.symlinkSync(path.join(d, name), path.join(bin, name));
      }
    }
    const shims = path.join(dir, 'shims');
    fs.mkdirSync(shims);
    fs.writeFileSync(path.join(shims, 'python3'), '#!/bin/sh\nexec /usr/bin/python3 "$@"\n', {
      mode: 0o755,
    });
    const r = await doctor(`${shims}:${bin}`);
    assert.equal(r.exitCode, 1, r.stdout + r.stderr);
    assert.match(
      r.stdout,
      /^MISSING Xvfb, which is each xpra cage's own X server, is not installed\n\s+→ sudo apt-get install xvfb$/m,
    );
    assert.match(
      r.stdout,
      new RegExp(
        `^warning python3 on PATH is ${shims}/python3, not the system's /usr/bin/python3`,
        'm',
      ),
    );
    // Control: with the real PATH, Xvfb is found and python3 is the system's.
    const control = await doctor(process.env.PATH ?? '/usr/bin:/bin');
    assert.match(control.stdout, /^ok\s+Xvfb, which is each xpra cage's own X server: \S*Xvfb$/m);
    assert.doesNotMatch(control.stdout, /python3 on PATH is/);
  });
});
