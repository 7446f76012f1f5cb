// bin/kagome-open against a recording stand-in for the kagome service on a private
// bus, through each transport it can use. The arguments are what a file manager passes
// for files a stranger named, so the only acceptable result is byte-for-byte equality.
//
// The helpers under test/helpers get a small test each at the end, since every other
// integration test trusts them.

import assert from 'node:assert/strict';
import { pathBytesToFileUri } from '../../xdg/exec.js';
import {
  access,
  chmod,
  copyFile,
  lstat,
  mkdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import dbus from 'dbus-next';
import type { MessageBus, Variant } from 'dbus-next';
import { execa, type ResultPromise } from 'execa';
import { startSessionBus, type SessionBus } from '../helpers/dbus-session.js';
import { makeTempEnv, type TempEnv } from '../helpers/tmpenv.js';
import { startXvfb, type Xvfb } from '../helpers/xvfb.js';
import {
  countWindows,
  parseXpropStrings,
  screenshot,
  waitForWindow,
  windowProperty,
} from '../helpers/x11.js';
import { BUS_NAME, LAUNCHER_IFACE, OBJECT_PATH, memberTable } from '../../dbus/contract.js';

const KAGOME_OPEN = fileURLToPath(new URL('../../../bin/kagome-open', import.meta.url));
const TMPENV_JS = new URL('../helpers/tmpenv.js', import.meta.url).href;
const LAUNCH_PATH = '/io/kagome/Kagome/launch/1';
const FAIL_CAGE = 'fail';
// Multi-line, quoted, non-ASCII, and containing busctl's own "Call failed: " prefix, so
// the error relay cannot get away with reading just one line or the first marker.
const FAIL_MESSAGE = `No cage named 'fail' ("fail" é).\nCall failed: this line is part of the message\nSee: kagome list`;

interface Call {
  method: 'Launch' | 'LaunchCommand';
  cage: string;
  desktopId?: string;
  args: string[];
  options: Record<string, { signature: string; value: unknown }>;
}

function plainOptions(options: Record<string, Variant>): Call['options'] {
  const out: Call['options'] = {};
  for (const [k, v] of Object.entries(options)) out[k] = { signature: v.signature, value: v.value };
  return out;
}

class FakeLauncher extends dbus.interface.Interface {
  readonly calls: Call[] = [];

  constructor() {
    super(LAUNCHER_IFACE);
  }

  Launch(
    cage: string,
    desktopId: string,
    uris: string[],
    options: Record<string, Variant>,
  ): string {
    if (cage === FAIL_CAGE) throw new dbus.DBusError('io.kagome.Error.NoSuchCage', FAIL_MESSAGE);
    this.calls.push({
      method: 'Launch',
      cage,
      desktopId,
      args: uris,
      options: plainOptions(options),
    });
    return LAUNCH_PATH;
  }

  LaunchCommand(cage: string, argv: string[], options: Record<string, Variant>): string {
    if (cage === FAIL_CAGE) throw new dbus.DBusError('io.kagome.Error.NoSuchCage', FAIL_MESSAGE);
    this.calls.push({ method: 'LaunchCommand', cage, args: argv, options: plainOptions(options) });
    return LAUNCH_PATH;
  }
}
// The real service's member table: kagome-open must be understood by exactly that.
FakeLauncher.configureMembers(memberTable(LAUNCHER_IFACE));

async function toolPath(name: string): Promise<string> {
  const r = await execa('sh', ['-c', 'command -v "$1"', 'sh', name], { reject: false });
  if (r.exitCode !== 0 || !r.stdout.startsWith('/')) throw new Error(`${name} is not installed`);
  return r.stdout.trim();
}

/** A directory holding symlinks to just `tools`, to use as the whole PATH. */
async function pathWith(root: string, name: string, tools: string[]): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir);
  for (const t of tools) await symlink(await toolPath(t), join(dir, t));
  return dir;
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

describe('kagome-open', () => {
  let tmp: TempEnv;
  let bus: SessionBus;
  let conn: MessageBus;
  let fake: FakeLauncher;
  let workdir: string;
  let nasty: string[];
  let sentinels: string[];
  let tmpPwnedExisted: boolean;
  const paths: Record<'busctl' | 'gdbus' | 'none', string> = { busctl: '', gdbus: '', none: '' };
  // absolute, because the PATH each run gets holds only the tools under test
  const shells: Record<'dash' | 'bash', string> = { dash: '', bash: '' };

  before(async () => {
    tmp = await makeTempEnv('kagome-open-test-');
    bus = await startSessionBus();
    conn = dbus.sessionBus({ busAddress: bus.address });
    fake = new FakeLauncher();
    const reply = await conn.requestName(BUS_NAME, dbus.NameFlag.DO_NOT_QUEUE);
    assert.equal(reply, dbus.RequestNameReply.PRIMARY_OWNER);
    conn.export(OBJECT_PATH, fake);

    // The working directory is reported as the cwd option, so its name is nasty too.
    workdir = join(tmp.root, `work dir 'sq' "dq" é\n\tx`);
    await mkdir(workdir);

    shells.dash = await toolPath('dash');
    shells.bash = await toolPath('bash');
    const helpers = ['sed', 'awk', 'iconv', 'od'];
    paths.busctl = await pathWith(tmp.root, 'path-busctl', ['busctl', ...helpers]);
    paths.gdbus = await pathWith(tmp.root, 'path-gdbus', ['gdbus', ...helpers]);
    paths.none = await pathWith(tmp.root, 'path-none', helpers);

    sentinels = [join(tmp.root, 'pwned-dollar'), join(tmp.root, 'pwned-backtick')];
    tmpPwnedExisted = await exists('/tmp/pwned');
    nasty = [
      'with space',
      "single'quote",
      'double"quote',
      'both \' and " quotes',
      'new\nline',
      'tab\there',
      '-x',
      '--help',
      '--',
      '-',
      '--cage',
      `$(touch ${sentinels[0]})`,
      `\`touch ${sentinels[1]}\``,
      '$(touch /tmp/pwned)',
      '$HOME ${HOME}',
      '%f',
      '%%',
      '%s %d %n',
      '*',
      '.*',
      '',
      'back\\slash',
      '\\',
      '\\\\',
      "\\'",
      '\\n',
      'a\\u00e9\\x41\\101',
      'unicode é 日本語 🦀 \u200b',
      '\n',
      'trailing newline\n',
      '\n\nleading newlines',
      ' leading and trailing spaces ',
      'carriage\rreturn',
      'controls \x01\x1b[31m\x7f',
      '; rm -rf / ; | & > < ( ) { } [ ] ! ~ #',
      "'",
      '"',
      '@as []',
      "<'variant'>",
      'file:///tmp/a%20b?q=1&r=2#frag',
      'x'.repeat(10_000),
    ];
  });

  after(async () => {
    conn?.disconnect();
    await bus?.stop();
    await tmp?.cleanup();
  });

  type Transport = 'busctl' | 'gdbus';

  /** With --entry, kagome-open sends files as file:// URIs (relative to its cwd); URIs and '' pass as they are. */
  const asUri = (a: string): string =>
    a === '' || /^[A-Za-z][A-Za-z0-9+.-]*:/.test(a)
      ? a
      : pathBytesToFileUri(Buffer.from(a.startsWith('/') ? a : `${workdir}/${a}`));

  async function kagomeOpen(
    transport: Transport | 'none',
    args: string[],
    opts: { env?: Record<string, string>; shell?: 'dash' | 'bash'; script?: string } = {},
  ) {
    return execa(shells[opts.shell ?? 'dash'], [opts.script ?? KAGOME_OPEN, ...args], {
      cwd: workdir,
      extendEnv: false,
      env: {
        PATH: paths[transport],
        LANG: 'C.UTF-8',
        DBUS_SESSION_BUS_ADDRESS: bus.address,
        ...opts.env,
      },
      reject: false,
      stripFinalNewline: false,
    });
  }

  function takeCalls(): Call[] {
    return fake.calls.splice(0);
  }

  async function assertNoSideEffects(): Promise<void> {
    for (const s of sentinels)
      assert.equal(await exists(s), false, `${s} was created: an argument got evaluated`);
    if (!tmpPwnedExisted) assert.equal(await exists('/tmp/pwned'), false, '/tmp/pwned was created');
  }

  for (const transport of ['busctl', 'gdbus'] as const) {
    describe(`via ${transport}`, () => {
      for (const shell of ['dash', 'bash'] as const) {
        it(`Launch (under ${shell}): every URI arrives byte for byte, options carry cwd, action, startup-id`, async () => {
          takeCalls();
          const r = await kagomeOpen(
            transport,
            [
              '--cage',
              'web',
              '--entry',
              'org.example.Browser.desktop',
              '--action',
              'new-window',
              '--',
              ...nasty,
            ],
            { shell, env: { DESKTOP_STARTUP_ID: 'id \'with\' "quotes"_TIME1' } },
          );
          assert.equal(r.stderr, '');
          assert.equal(r.stdout, '');
          assert.equal(r.exitCode, 0);
          assert.deepEqual(takeCalls(), [
            {
              method: 'Launch',
              cage: 'web',
              desktopId: 'org.example.Browser.desktop',
              args: nasty.map(asUri),
              options: {
                cwd: { signature: 's', value: workdir },
                action: { signature: 's', value: 'new-window' },
                'startup-id': { signature: 's', value: 'id \'with\' "quotes"_TIME1' },
              },
            },
          ]);
          await assertNoSideEffects();
        });
      }

      it('LaunchCommand: argv arrives byte for byte, options carry only cwd', async () => {
        takeCalls();
        const argv = ['some-program', ...nasty];
        const r = await kagomeOpen(transport, ['--cage', 'dev', '--', ...argv]);
        assert.equal(r.stderr, '');
        assert.equal(r.exitCode, 0);
        assert.deepEqual(takeCalls(), [
          {
            method: 'LaunchCommand',
            cage: 'dev',
            args: argv,
            options: { cwd: { signature: 's', value: workdir } },
          },
        ]);
        await assertNoSideEffects();
      });

      it('Launch without ARGs sends an empty list; XDG_ACTIVATION_TOKEN becomes startup-id', async () => {
        takeCalls();
        const r = await kagomeOpen(
          transport,
          ['--cage', 'web', '--entry', 'org.example.Browser.desktop'],
          {
            env: { XDG_ACTIVATION_TOKEN: 'wayland-token-1', DESKTOP_STARTUP_ID: 'x11-id' },
          },
        );
        assert.equal(r.stderr, '');
        assert.equal(r.exitCode, 0);
        assert.deepEqual(takeCalls(), [
          {
            method: 'Launch',
            cage: 'web',
            desktopId: 'org.example.Browser.desktop',
            args: [],
            options: {
              cwd: { signature: 's', value: workdir },
              'startup-id': { signature: 's', value: 'wayland-token-1' },
            },
          },
        ]);
      });

      it('without -- the first non-option ARG still ends option parsing', async () => {
        takeCalls();
        const r = await kagomeOpen(transport, [
          '--cage',
          'web',
          '--entry',
          'a.desktop',
          'file:///x',
          '--help',
          '-x',
        ]);
        assert.equal(r.stderr, '');
        assert.equal(r.exitCode, 0);
        assert.deepEqual(takeCalls()[0]?.args, ['file:///x', asUri('--help'), asUri('-x')]);
      });

      it('keeps non-ASCII arguments intact in the C locale', async () => {
        takeCalls();
        const args = ['é 日本語 🦀', 'ü\n'];
        const r = await kagomeOpen(
          transport,
          ['--cage', 'web', '--entry', 'a.desktop', '--', ...args],
          {
            env: { LANG: 'C', LC_ALL: 'C' },
          },
        );
        assert.equal(r.stderr, '');
        assert.equal(r.exitCode, 0);
        assert.deepEqual(takeCalls()[0]?.args, args.map(asUri));
      });

      it('a D-Bus error is printed as "kagome-open: <name>: <message>" with exit status 1', async () => {
        takeCalls();
        for (const args of [
          ['--cage', FAIL_CAGE, '--entry', 'a.desktop', '--', 'x'],
          ['--cage', FAIL_CAGE, '--', 'prog'],
        ]) {
          const r = await kagomeOpen(transport, args);
          assert.equal(r.stderr, `kagome-open: io.kagome.Error.NoSuchCage: ${FAIL_MESSAGE}\n`);
          assert.equal(r.stdout, '');
          assert.equal(r.exitCode, 1);
        }
        assert.deepEqual(takeCalls(), []);
      });

      it('reports a missing service by its D-Bus error name', async () => {
        const other = await startSessionBus();
        try {
          const r = await kagomeOpen(transport, ['--cage', 'web', '--', 'prog'], {
            env: { DBUS_SESSION_BUS_ADDRESS: other.address },
          });
          assert.equal(r.exitCode, 1);
          assert.match(
            r.stderr,
            /^kagome-open: org\.freedesktop\.DBus\.Error\.ServiceUnknown: .*io\.kagome\.Kagome/,
          );
        } finally {
          await other.stop();
        }
      });

      it('sends a file name that is not UTF-8 as a percent-encoded URI, and refuses such a command argument', async () => {
        takeCalls();
        const run = (args: string) =>
          execa(
            shells.dash,
            [
              '-c',
              `exec "$1" "$0" --cage web ${args} -- ok "$(printf "bad\\377byte")"`,
              KAGOME_OPEN,
              shells.dash,
            ],
            {
              cwd: workdir,
              extendEnv: false,
              env: { PATH: paths[transport], DBUS_SESSION_BUS_ADDRESS: bus.address },
              reject: false,
            },
          );
        const entry = await run('--entry a.desktop');
        assert.equal(entry.exitCode, 0, entry.stderr);
        const bytes = Buffer.concat([
          Buffer.from(workdir + '/bad'),
          Buffer.from([0xff]),
          Buffer.from('byte'),
        ]);
        assert.deepEqual(takeCalls()[0]?.args, [asUri('ok'), pathBytesToFileUri(bytes)]);
        assert.match(pathBytesToFileUri(bytes), /bad%FFbyte$/);
        const command = await run('');
        assert.equal(command.exitCode, 1);
        assert.match(command.stderr, /^kagome-open: .*not valid UTF-8/);
        assert.deepEqual(takeCalls(), []);
      });
    });
  }

  it('busctl really needs the -- that kagome-open puts before its arguments', async () => {
    takeCalls();
    const env = { PATH: paths.busctl, DBUS_SESSION_BUS_ADDRESS: bus.address };
    const call = [
      'call',
      BUS_NAME,
      OBJECT_PATH,
      LAUNCHER_IFACE,
      'LaunchCommand',
      memberTable(LAUNCHER_IFACE).methods.LaunchCommand!.inSignature,
    ];
    // Without it, getopt permutes a file named "-x" (or "--help") into an option.
    const bare = await execa('busctl', ['--user', ...call, 'dev', '1', '-x', '0'], {
      env,
      extendEnv: false,
      reject: false,
    });
    assert.notEqual(bare.exitCode, 0);
    assert.match(bare.stderr, /invalid option/);
    assert.deepEqual(takeCalls(), []);
    const guarded = await execa('busctl', ['--user', '--', ...call, 'dev', '1', '-x', '0'], {
      env,
      extendEnv: false,
      reject: false,
    });
    assert.equal(guarded.exitCode, 0, guarded.stderr);
    assert.deepEqual(takeCalls()[0]?.args, ['-x']);
  });

  it('falls back to the kagome CLI next to it when neither busctl nor gdbus exists', async () => {
    const dir = join(tmp.root, 'cli-bin');
    await mkdir(dir);
    const script = join(dir, 'kagome-open');
    await copyFile(KAGOME_OPEN, script);
    await chmod(script, 0o755);
    const record = join(tmp.root, 'cli-argv.json');
    await writeFile(
      join(dir, 'kagome'),
      `#!${process.execPath}\n` +
        `require('fs').writeFileSync(process.env.KAGOME_FAKE_OUT, JSON.stringify({ argv: process.argv.slice(2), ` +
        `startup: process.env.DESKTOP_STARTUP_ID ?? null }));\n`,
      { mode: 0o755 },
    );
    const env = { KAGOME_FAKE_OUT: record, DESKTOP_STARTUP_ID: 'sid' };

    const withEntry = await kagomeOpen(
      'none',
      ['--cage', 'web', '--entry', 'a.desktop', '--action', 'new', '--', ...nasty],
      {
        script,
        env,
      },
    );
    assert.equal(withEntry.stderr, '');
    assert.equal(withEntry.exitCode, 0);
    assert.deepEqual(JSON.parse(await readFile(record, 'utf8')), {
      argv: [
        'launch',
        'web',
        '--entry',
        'a.desktop',
        '--action',
        'new',
        '--cwd',
        workdir,
        '--',
        ...nasty.map(asUri),
      ],
      startup: 'sid',
    });

    const command = await kagomeOpen('none', ['--cage', 'dev', '--', 'prog', '-x'], {
      script,
      env,
    });
    assert.equal(command.exitCode, 0, command.stderr);
    assert.deepEqual(JSON.parse(await readFile(record, 'utf8')).argv, [
      'launch',
      'dev',
      '--cwd',
      workdir,
      '--',
      'prog',
      '-x',
    ]);
    await assertNoSideEffects();

    await rm(join(dir, 'kagome'));
    const missing = await kagomeOpen('none', ['--cage', 'dev', '--', 'prog'], { script });
    assert.equal(missing.exitCode, 1);
    assert.match(missing.stderr, /^kagome-open: neither busctl nor gdbus .*kagome CLI/);
  });

  it('usage errors exit 2 with a usage message and call nothing', async () => {
    takeCalls();
    for (const args of [
      [],
      ['--', 'prog'],
      ['--cage'],
      ['--cage', ''],
      ['--cage', 'web'],
      ['--cage', 'web', '--action', 'new', '--', 'x'],
      ['--cage', 'web', '--entry', '', '--', 'x'],
      ['--cage', 'web', '--entyr', 'a.desktop', '--', 'x'],
      ['--cage', 'web', '--cage', 'dev', '--', 'x'],
      ['-x', '--cage', 'web', '--', 'x'],
    ]) {
      const r = await kagomeOpen('busctl', args);
      assert.equal(r.exitCode, 2, `exit status for ${JSON.stringify(args)}`);
      assert.match(
        r.stderr,
        /^kagome-open: .*\nusage: kagome-open --cage CAGE/,
        `stderr for ${JSON.stringify(args)}`,
      );
    }
    assert.deepEqual(takeCalls(), []);
    const help = await kagomeOpen('busctl', ['--help']);
    assert.equal(help.exitCode, 0);
    assert.match(help.stdout, /^usage: kagome-open/);
  });

  it('accepts --opt=value spellings', async () => {
    takeCalls();
    const r = await kagomeOpen('busctl', [
      '--cage=web',
      '--entry=a.desktop',
      '--action=new',
      '--',
      'x',
    ]);
    assert.equal(r.exitCode, 0, r.stderr);
    const [call] = takeCalls();
    assert.equal(call?.cage, 'web');
    assert.equal(call?.desktopId, 'a.desktop');
    assert.deepEqual(call?.options.action, { signature: 's', value: 'new' });
  });
});

describe('test helpers', () => {
  describe('makeTempEnv', () => {
    it('creates the XDG tree with a private runtime dir and removes it again', async () => {
      const t = await makeTempEnv('kagome-tmpenv-test-');
      try {
        assert.equal(t.env.XDG_DATA_DIRS, '/usr/local/share:/usr/share');
        for (const [key, sub] of [
          ['HOME', 'home'],
          ['XDG_CONFIG_HOME', 'config'],
          ['XDG_DATA_HOME', 'data'],
          ['XDG_STATE_HOME', 'state'],
          ['XDG_CACHE_HOME', 'cache'],
          ['XDG_RUNTIME_DIR', 'runtime'],
        ] as const) {
          assert.equal(t.env[key], join(t.root, sub));
          assert.ok((await stat(t.env[key])).isDirectory(), key);
        }
        assert.equal((await stat(t.env.XDG_RUNTIME_DIR)).mode & 0o777, 0o700);
      } finally {
        await t.cleanup();
      }
      await assert.rejects(access(t.root), { code: 'ENOENT' });
      await t.cleanup(); // twice is fine
    });

    it('cleanup copes with read-only directories (checked as an unprivileged user)', async () => {
      // root ignores permission bits, so only a non-root run can show the chmod matters
      const asNobody = process.getuid?.() === 0;
      const code = `
        import { makeTempEnv } from ${JSON.stringify(TMPENV_JS)};
        import { mkdir, writeFile, chmod, access } from 'node:fs/promises';
        const t = await makeTempEnv('kagome-tmpenv-ro-');
        console.log(t.root);
        await mkdir(t.root + '/home/ro/sub', { recursive: true });
        await writeFile(t.root + '/home/ro/sub/f', 'x');
        await chmod(t.root + '/home/ro/sub/f', 0o444);
        await chmod(t.root + '/home/ro/sub', 0o555);
        await chmod(t.root + '/home/ro', 0o500);
        await chmod(t.root + '/home', 0o500);
        await t.cleanup();
        try { await access(t.root); console.log('left behind'); } catch { console.log('removed'); }
      `;
      const r = await execa(process.execPath, ['--input-type=module', '-e', code], {
        reject: false,
        env: { TMPDIR: '/tmp' },
        ...(asNobody ? { uid: 65534, gid: 65534 } : {}),
      });
      const [root] = r.stdout.split('\n');
      if (root?.startsWith('/tmp/kagome-tmpenv-ro-')) {
        await execa('chmod', ['-R', 'u+w', root], { reject: false });
        await rm(root, { recursive: true, force: true });
      }
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.stdout.split('\n')[1], 'removed');
    });
  });

  describe('startSessionBus', () => {
    let tmp: TempEnv;
    before(async () => {
      tmp = await makeTempEnv('kagome-bus-test-');
    });
    after(async () => {
      await tmp?.cleanup();
    });

    it('activates services from servicesDirs with the given environment, and stop() ends the daemon', async () => {
      const services = join(tmp.root, 'services');
      await mkdir(services);
      const out = join(tmp.root, 'activated.env');
      await writeFile(
        join(services, 'io.kagome.Test.Activated.service'),
        `[D-BUS Service]\nName=io.kagome.Test.Activated\nExec=/bin/sh -c 'env > ${out}; exit 3'\n`,
      );
      const bus = await startSessionBus({
        servicesDirs: [services],
        env: { KAGOME_TEST_MARK: 'marked' },
      });
      try {
        assert.match(bus.address, /^unix:path=/);
        assert.equal(bus.env.DBUS_SESSION_BUS_ADDRESS, bus.address);
        assert.equal(bus.env.KAGOME_TEST_MARK, 'marked');
        // The service writes its environment and exits non-zero without taking its
        // name, which dbus-daemon reports at once. (Exiting 0 would make it wait the
        // full 25 s activation timeout, in case the service had daemonized.)
        const started = await execa(
          'busctl',
          [
            '--user',
            'call',
            'org.freedesktop.DBus',
            '/org/freedesktop/DBus',
            'org.freedesktop.DBus',
            'StartServiceByName',
            'su',
            'io.kagome.Test.Activated',
            '0',
          ],
          { env: { DBUS_SESSION_BUS_ADDRESS: bus.address }, reject: false },
        );
        assert.match(started.stderr, /io\.kagome\.Test\.Activated exited with status 3/, bus.log());
        const text = await readFile(out, 'utf8');
        const lines = text.split('\n');
        assert.ok(
          lines.includes('KAGOME_TEST_MARK=marked'),
          `activated service env:\n${text}\ndaemon log:\n${bus.log()}`,
        );
        assert.ok(
          lines.includes(`DBUS_SESSION_BUS_ADDRESS=${bus.address}`),
          `activated service env:\n${text}`,
        );
      } finally {
        await bus.stop();
      }
      assert.throws(() => process.kill(bus.pid, 0), { code: 'ESRCH' });
      await bus.stop(); // twice is fine
    });
  });

  describe('startXvfb and the x11 helpers', () => {
    let xvfb: Xvfb;
    let tmp: TempEnv;
    const clients: ResultPromise[] = [];

    before(async () => {
      tmp = await makeTempEnv('kagome-x11-test-');
      xvfb = await startXvfb({ width: 800, height: 600 });
    });
    after(async () => {
      for (const c of clients) {
        c.kill();
        await c.catch(() => undefined);
      }
      await xvfb?.stop();
      await tmp?.cleanup();
    });

    it('serves the requested screen on the display it reports', async () => {
      assert.match(xvfb.display, /^:\d+$/);
      const info = await execa('xdpyinfo', { env: { DISPLAY: xvfb.display } });
      assert.match(info.stdout, /dimensions:\s+800x600 pixels/);
      const root = await execa('xwininfo', ['-root'], { env: { DISPLAY: xvfb.display } });
      assert.match(root.stdout, /Width: 800/);
      assert.match(root.stdout, /Height: 600/);
    });

    it('waitForWindow finds xeyes by either WM_CLASS part; countWindows and windowProperty agree', async () => {
      assert.equal(await countWindows(xvfb.display, 'XEyes'), 0);
      const xeyes = execa('xeyes', { env: { DISPLAY: xvfb.display }, reject: false });
      clients.push(xeyes);
      const byClass = await waitForWindow(
        xvfb.display,
        { wmClass: 'XEyes' },
        { timeoutMs: 10_000 },
      );
      assert.deepEqual(byClass.wmClass, ['xeyes', 'XEyes']);
      assert.equal(byClass.name, 'xeyes');
      assert.match(byClass.id, /^0x[0-9a-f]+$/);
      const byInstance = await waitForWindow(
        xvfb.display,
        { wmClass: 'xeyes', name: 'xeyes' },
        { timeoutMs: 2000 },
      );
      assert.equal(byInstance.id, byClass.id);
      assert.equal(await countWindows(xvfb.display, 'XEyes'), 1);
      // xdotool matches case-insensitively; the helper must not
      assert.equal(await countWindows(xvfb.display, 'XEYES'), 0);
      assert.equal(await windowProperty(xvfb.display, byClass.id, 'WM_CLASS'), '"xeyes", "XEyes"');
      assert.match(
        await windowProperty(xvfb.display, byClass.id, 'WM_NORMAL_HINTS'),
        /program specified size: 150 by 100/,
      );
      await assert.rejects(
        windowProperty(xvfb.display, byClass.id, '_NET_WM_PID'),
        /has no _NET_WM_PID property/,
      );
    });

    it('waitForWindow times out naming the windows that do exist', async () => {
      const started = Date.now();
      await assert.rejects(
        waitForWindow(xvfb.display, { wmClass: 'NoSuchProgram' }, { timeoutMs: 700, pollMs: 100 }),
        (err: Error) => {
          assert.match(
            err.message,
            /a visible window with WM_CLASS "NoSuchProgram" on :\d+: not within/,
          );
          assert.match(err.message, /within 0.7 s/);
          assert.match(err.message, /"xeyes": \("xeyes" "XEyes"\)/);
          return true;
        },
      );
      assert.ok(Date.now() - started >= 700);
    });

    it('screenshot writes an image of the root window', async () => {
      const file = join(tmp.root, 'shot.png');
      await screenshot(xvfb.display, file);
      const png = await readFile(file);
      assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      const size = await execa('identify', ['-format', '%wx%h', file]);
      assert.equal(size.stdout, '800x600');
    });

    it('parseXpropStrings undoes xprop escapes', () => {
      assert.deepEqual(parseXpropStrings('"a\\"b", "c\\\\d", "\\303\\251", "x\\ny"'), [
        'a"b',
        'c\\d',
        'é',
        'x\ny',
      ]);
    });

    it('stop() ends Xvfb', async () => {
      const x = await startXvfb({ width: 320, height: 200 });
      await x.stop();
      assert.throws(() => process.kill(x.pid, 0), { code: 'ESRCH' });
      const r = await execa('xdpyinfo', { env: { DISPLAY: x.display }, reject: false });
      assert.notEqual(r.exitCode, 0);
    });
  });
});
