import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import dbus from 'dbus-next';
import { execa } from 'execa';
import { World, KAGOME, KAGOME_OPEN } from '../helpers/kagome.js';

// A program's working directory is chosen inside its cage, however it is launched. Programs
// used to be entered with `nsenter --wd=DIR`, which opened DIR on the host before entering:
// the program then worked in the host's real directory, read the host's files there with
// relative names and walked the host's tree with `..`. kagome-enter now looks DIR up inside
// the cage (falling back to the cage's home, then /).
//
// Each way in (the CLI, both D-Bus launch methods, kagome-open, `gio launch` of a shadow
// entry, xdg-open of a file whose default application is shadowed) runs the same probe with a
// host directory as its working directory: the host's home (which the cage has at the same
// path, as its own private home) and a host folder the cage does not have at all. Both hold a
// secret.txt. Every test first runs the probe on the host, in the same directory, and checks
// that there it does see the secret and the host's root: the probe can tell a leak.

const CAGE = 'walls';
const ENTRY = 'kagome-workdir-probe.desktop';
const SECRET = 'host-only secret 5e1f0c2a';

// POSIX sh. $1 names the output (a file's path is reduced to its name, so an Exec line's %f
// works too); it is written to a temp name and renamed, so a file that exists is complete.
// `cd -P` and `pwd -P`: the shell's logical PWD would hide where the process really is.
const PROBE = [
  'out="$HOME/probe-${1##*/}.out"',
  '{',
  '  printf "pwd=%s\\n" "$(pwd -P 2>&1)"',
  '  printf "root=%s\\n" "$(stat -c %d:%i /)"',
  '  printf "up=%s\\n" "$(cd -P ../../../../../../../../../../../.. && stat -c %d:%i .)"',
  '  if s=$(cat ./secret.txt 2>/dev/null); then printf "read=yes %s\\n" "$s"; else printf "read=no\\n"; fi',
  '} >"$out.tmp" && mv "$out.tmp" "$out"',
  '',
].join('\n');

interface ProbeResult {
  pwd: string;
  root: string;
  up: string;
  read: string;
  text: string;
}

function parseProbe(text: string): ProbeResult {
  const field = (k: string): string => {
    const m = new RegExp(`^${k}=(.*)$`, 'm').exec(text);
    assert.ok(m, `the probe's output has no ${k}= line:\n${text}`);
    return m[1]!;
  };
  return { pwd: field('pwd'), root: field('root'), up: field('up'), read: field('read'), text };
}

function devIno(p: string): string {
  const st = fs.statSync(p, { bigint: true });
  return `${st.dev}:${st.ino}`;
}

type Place = 'home' | 'outside';

describe('the working directory of a program in a cage is inside the cage, however it is launched', () => {
  let w: World;
  let outside: string;
  let cageRoot: string;
  let hostRoot: string;
  let probeInCage: string;

  const dirOf = (place: Place): string => (place === 'home' ? w.env.HOME! : outside);
  const diagnostics = (): string =>
    `\n--- service log ---\n${w.service?.log() ?? ''}\n--- cage log ---\n${w.cageLog(CAGE)}`;

  /** The probe run on the host in `dir`: it must see the leak the cage must not have. */
  async function control(place: Place, tag: string): Promise<void> {
    const dir = dirOf(place);
    const r = await execa('sh', ['-c', PROBE, 'probe', `host-${tag}`], {
      cwd: dir,
      env: w.env,
      extendEnv: false,
      reject: false,
    });
    assert.equal(r.exitCode, 0, `the probe failed on the host: ${r.stderr}`);
    const host = parseProbe(
      fs.readFileSync(path.join(w.env.HOME!, `probe-host-${tag}.out`), 'utf8'),
    );
    assert.equal(host.pwd, dir, 'on the host the probe works in the host directory');
    assert.equal(host.read, `yes ${SECRET}`, `on the host ./secret.txt is readable from ${dir}`);
    assert.equal(host.up, hostRoot, 'on the host `..` leads to the host root');
    assert.notEqual(host.up, cageRoot, "the host root is not the cage's root");
  }

  /**
   * For the host's home and a host-only folder: the control on the host, then `launch` with
   * that folder as the working directory, and the probe's findings in the cage.
   * `launch` returns the name the probe was given (a tag or a file name).
   */
  async function probeEachPlace(
    way: string,
    launch: (dir: string, tag: string) => Promise<string>,
  ): Promise<void> {
    for (const place of ['home', 'outside'] as const) {
      const tag = `${way}-${place}`;
      await control(place, tag);
      const name = await launch(dirOf(place), tag);
      const outFile = w.homeFile(CAGE, `probe-${name}.out`);
      let text: string;
      try {
        text = await w.readFileWhenWritten(outFile, 20000);
      } catch (e) {
        throw new Error(`${(e as Error).message}${diagnostics()}`);
      }
      const caged = parseProbe(text);
      const where = `${way}, working directory ${dirOf(place)}`;
      assert.doesNotMatch(text, new RegExp(SECRET), `${where}: the host's secret reached the cage`);
      assert.equal(caged.read, 'no', `${where}: ./secret.txt was readable in the cage`);
      assert.equal(caged.root, cageRoot, `${where}: the probe ran in the cage`);
      assert.equal(
        caged.up,
        cageRoot,
        `${where}: \`..\` from the working directory left the cage's root`,
      );
      assert.notEqual(caged.up, hostRoot, `${where}: \`..\` reached the host's root`);
      // The host's home is the cage's own home there; a folder the cage lacks falls back to it.
      assert.equal(caged.pwd, w.env.HOME, `${where}: the working directory`);
    }
  }

  /** A file for the entry's %f: the probe takes its name as its tag. */
  function fileToOpen(dir: string, tag: string): string {
    const name = `${tag}.txt`;
    fs.writeFileSync(path.join(dir, name), 'a file to open\n');
    return name;
  }

  before(async () => {
    w = await World.create({ systemData: true, documentPortal: true });
    outside = path.join(w.tmp.root, 'outside');
    fs.mkdirSync(outside);
    for (const dir of [w.env.HOME!, outside]) {
      const secret = path.join(dir, 'secret.txt');
      fs.writeFileSync(secret, `${SECRET}\n`, { mode: 0o600 });
      fs.chmodSync(secret, 0o600);
    }
    w.writeCage(CAGE, '[Cage]\nNetwork=none\nSound=none\nIdleStop=0\n');
    // In the cage, its home is at the host home's path.
    probeInCage = path.join(w.env.HOME!, 'probe.sh');
    fs.writeFileSync(
      path.join(w.systemApps, ENTRY),
      `[Desktop Entry]\nType=Application\nName=Workdir Probe\nExec=sh ${probeInCage} %f\nMimeType=text/plain;\n`,
    );
    fs.writeFileSync(
      path.join(w.env.XDG_CONFIG_HOME!, 'mimeapps.list'),
      `[Default Applications]\ntext/plain=${ENTRY};\n`,
    );
    await w.startService();
    await w.dbus.Cages1.Start(CAGE);
    const init = (w.cageState(CAGE) as { sandbox: { init: { pid: number } } }).sandbox.init.pid;
    cageRoot = devIno(`/proc/${init}/root/`);
    hostRoot = devIno('/');
    assert.notEqual(cageRoot, hostRoot);
    fs.writeFileSync(w.homeFile(CAGE, 'probe.sh'), PROBE);
    const add = await w.kagome(['app', 'add', CAGE, ENTRY]);
    assert.equal(add.exitCode, 0, String(add.stderr));
  });

  after(async () => {
    await w?.cleanup();
  });

  it('`kagome launch CAGE --cwd DIR -- PROGRAM`', async () => {
    await probeEachPlace('cli', async (dir, tag) => {
      const r = await w.kagome([
        'launch',
        CAGE,
        '--cwd',
        dir,
        '--',
        'sh',
        '-c',
        PROBE,
        'probe',
        tag,
      ]);
      assert.equal(r.exitCode, 0, `${r.stderr}${diagnostics()}`);
      return tag;
    });
  });

  it('D-Bus LaunchCommand with the cwd option', async () => {
    await probeEachPlace('launch-command', async (dir, tag) => {
      await w.dbus.Launcher1.LaunchCommand(CAGE, ['sh', '-c', PROBE, 'probe', tag], {
        cwd: new dbus.Variant('s', dir),
      });
      return tag;
    });
  });

  it('D-Bus Launch of a desktop entry with the cwd option (and a file named relative to it)', async () => {
    await probeEachPlace('launch', async (dir, tag) => {
      const name = fileToOpen(dir, tag);
      await w.dbus.Launcher1.Launch(CAGE, ENTRY, [name], { cwd: new dbus.Variant('s', dir) });
      return name;
    });
  });

  it('kagome-open from a shell working in the host directory', async () => {
    await probeEachPlace('kagome-open', async (dir, tag) => {
      const r = await execa(
        'sh',
        [
          '-c',
          'cd -- "$1" && shift && exec "$@"',
          'sh',
          dir,
          KAGOME_OPEN,
          '--cage',
          CAGE,
          '--',
          'sh',
          '-c',
          PROBE,
          'probe',
          tag,
        ],
        {
          env: w.env,
          extendEnv: false,
          reject: false,
        },
      );
      assert.equal(r.exitCode, 0, `${r.stderr}${diagnostics()}`);
      return tag;
    });
  });

  it('`gio launch` of the shadow entry made by `kagome app add`', async () => {
    const shadow = path.join(w.userApps, ENTRY);
    assert.match(
      fs.readFileSync(shadow, 'utf8'),
      /^Exec=\S*kagome-open --cage walls --entry kagome-workdir-probe\.desktop -- %f$/m,
    );
    await probeEachPlace('gio', async (dir, tag) => {
      const name = fileToOpen(dir, tag);
      const r = await execa('gio', ['launch', shadow, path.join(dir, name)], {
        cwd: dir,
        env: w.env,
        extendEnv: false,
        reject: false,
        timeout: 20000,
      });
      assert.equal(r.exitCode, 0, `${r.stdout}${r.stderr}${diagnostics()}`);
      return name;
    });
  });

  it('xdg-open of a file whose default application is the shadow entry', async () => {
    await probeEachPlace('xdg-open', async (dir, tag) => {
      const name = fileToOpen(dir, tag);
      // Named relative to the working directory, as typed in a terminal.
      const r = await execa('xdg-open', [name], {
        cwd: dir,
        env: w.env,
        extendEnv: false,
        reject: false,
        timeout: 20000,
      });
      assert.equal(r.exitCode, 0, `${r.stdout}${r.stderr}${diagnostics()}`);
      return name;
    });
  });

  it('the CLI without --cwd uses its own working directory, still looked up inside the cage', async () => {
    await probeEachPlace('cli-implicit', async (dir, tag) => {
      const r = await execa(
        process.execPath,
        [KAGOME, 'launch', CAGE, '--', 'sh', '-c', PROBE, 'probe', tag],
        { cwd: dir, env: w.env, extendEnv: false, reject: false, timeout: 60000 },
      );
      assert.equal(r.exitCode, 0, `${r.stderr}${diagnostics()}`);
      return tag;
    });
  });
});
