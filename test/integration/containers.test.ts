import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { World } from '../helpers/kagome.js';
import { waitForWindow } from '../helpers/x11.js';
import {
  hostDisplayAndBusProbe,
  KEYRING_ATTEMPTS,
  SYSCALL_ATTEMPTS,
  parseAttempts,
} from '../helpers/probes.js';
import { startDockerApi, startPodman, type Engine } from '../helpers/engines.js';
import { startLxd, startLxdRemote } from '../helpers/lxd.js';
import { ensureTestImage } from '../helpers/images.js';
import { waitFor } from '../helpers/wait.js';

// The container backends, each against its real engine: podman, docker (the docker client
// against podman's Docker API), and LXD. Each must do what a bubblewrap cage does: put an X
// program's window on the host, take a second program into the running cage, show a granted
// file that the cage can edit, keep the host's display, bus and home out, survive a restart of
// the service, and name a missing engine or image in an error that says what to do.

const BACKENDS: { backend: 'podman' | 'docker' | 'lxd'; engine: () => Promise<Engine> }[] = [
  { backend: 'podman', engine: startPodman },
  { backend: 'docker', engine: startDockerApi },
  { backend: 'lxd', engine: startLxd },
];

for (const { backend, engine: startEngine } of BACKENDS) {
  describe(`Backend=${backend}`, () => {
    let w: World;
    let engine: Engine;
    const cage = `${backend}-work`;

    const runInCage = async (script: string, args: string[], out: string): Promise<string> => {
      fs.rmSync(w.homeFile(cage, out), { force: true });
      await w.launchCommand(cage, [
        '/bin/sh',
        '-c',
        `{ ${script}; } > "$HOME/${out}.tmp" 2>&1; mv "$HOME/${out}.tmp" "$HOME/${out}"`,
        'sh',
        ...args,
      ]);
      return w.readFileWhenWritten(w.homeFile(cage, out), 30000);
    };

    before(async () => {
      engine = await startEngine();
      await ensureTestImage(backend, engine.env);
      w = await World.create({ documentPortal: true });
      w.writeCage(cage, `[Cage]\nBackend=${backend}\nIdleStop=0\nBorder=#00aa00\n`);
      await w.startService({ env: engine.env });
    });

    after(async () => {
      await w?.cleanup();
      await engine?.stop();
    });

    it('launches xlogo from the image and its window appears on the host display', async () => {
      await w.launchCommand(cage, ['xlogo']);
      const win = await waitForWindow(w.display, { wmClass: 'xlogo' }, { timeoutMs: 60000 });
      assert.ok(win.id);
      const cages = await w.dbus.Cages1.List();
      assert.equal(cages[cage]?.State?.value, 'running');
      assert.equal(cages[cage]?.Backend?.value, backend);
    });

    if (backend === 'docker') {
      // The docker client sends the profile's content; podman 4.3's Docker API, which stands
      // for a Docker engine here, takes it for a file name. A Docker engine takes it.
      it("says in the cage log when the engine cannot take kagome's seccomp profile", async () => {
        await w.launchCommand(cage, ['true']);
        assert.match(
          w.cageLog(cage),
          /cannot take a seccomp profile from its client \(podman's Docker API\); its own default applies/,
        );
      });
    }

    if (backend === 'podman') {
      // podman's and docker's default allows keyctl, perf_event_open, TIOCSTI and the new mount
      // API, so kagome adds its own refusals (the LXD case is below).
      it("refuses what the bubblewrap cages' filter refuses: the keyring, TIOCSTI, perf, the new mount API", async () => {
        const out = parseAttempts(
          await runInCage(
            `python3 -c '${SYSCALL_ATTEMPTS.replace(/'/g, `'\\''`)}'`,
            [],
            'seccomp.out',
          ),
        );
        assert.equal(out.add_key, 'EPERM', JSON.stringify(out));
        assert.equal(out.tiocsti, 'EPERM', JSON.stringify(out));
        assert.equal(out.perf_event_open, 'EPERM', JSON.stringify(out));
        assert.equal(out.fsopen, 'ENOSYS', JSON.stringify(out));
        // Control: with the engine's own default profile, the same calls get through.
        const plain = await execa(
          backend,
          [
            'run',
            '--rm',
            '--pull',
            'never',
            '--cap-drop',
            'all',
            '--entrypoint',
            'python3',
            'kagome/debian12',
            '-c',
            SYSCALL_ATTEMPTS,
          ],
          { env: { ...process.env, ...engine.env }, reject: false },
        );
        const control = parseAttempts(plain.stdout);
        assert.equal(control.tiocsti, 'ok', `${plain.stderr} ${plain.stdout}`);
      });
    }

    if (backend === 'lxd') {
      // An LXD cage's user is the host user's own uid (raw.idmap), and the kernel keyring is per
      // user, not per container; LXD's default policy lets keyctl, perf_event_open and TIOCSTI
      // through, so kagome adds its refusals and masks /proc/keys.
      it("keeps the host user's kernel keyring from the cage, and refuses TIOCSTI and perf", async () => {
        const env = { ...process.env, ...engine.env };
        const name = `kagome-lxd-keyring-${process.pid}`;
        const serial = (
          await execa('keyctl', ['add', 'user', name, 'kagome-host-secret', '@u'])
        ).stdout.trim();
        const keyring = (await execa('keyctl', ['id', '@u'])).stdout.trim();
        const onHost = async () => ({
          linked: (await execa('keyctl', ['rlist', '@u'])).stdout
            .trim()
            .split(/\s+/)
            .includes(serial),
          added:
            (await execa('keyctl', ['search', '@u', 'user', `${name}-added`], { reject: false }))
              .exitCode === 0,
        });
        const control = 'kagome-lxd-keyring-control';
        const quote = (py: string) => `'${py.replace(/'/g, `'\\''`)}'`;
        try {
          const out = parseAttempts(
            await runInCage(
              `python3 -c ${quote(KEYRING_ATTEMPTS)} "$@"`,
              [serial, keyring, `${name}-added`],
              'keyring.out',
            ),
          );
          assert.deepEqual(out, {
            proc_keys: 'unlisted',
            proc_key_users: 'unlisted',
            describe: 'EPERM',
            link: 'EPERM',
            read: 'EPERM',
            add_key: 'EPERM',
            unlink: 'EPERM',
          });
          assert.deepEqual(
            await onHost(),
            { linked: true, added: false },
            "the host key is still in the host user's keyring, and nothing was added",
          );
          assert.equal((await execa('keyctl', ['print', serial])).stdout, 'kagome-host-secret');
          const calls = parseAttempts(
            await runInCage(`python3 -c ${quote(SYSCALL_ATTEMPTS)}`, [], 'seccomp.out'),
          );
          assert.equal(calls.add_key, 'EPERM', JSON.stringify(calls));
          assert.equal(calls.tiocsti, 'EPERM', JSON.stringify(calls));
          assert.equal(calls.perf_event_open, 'EPERM', JSON.stringify(calls));
          assert.equal(calls.fsopen, 'ENOSYS', JSON.stringify(calls));

          // Control: a container of the same image, the same id mapped, with LXD's defaults.
          const uid = process.getuid!();
          const gid = process.getgid!();
          // `lxc init` reads a configuration from its stdin when that is not a terminal.
          await execa(
            'lxc',
            [
              'init',
              'kagome/debian12',
              control,
              '-c',
              'raw.lxc=lxc.init.cmd = /bin/sleep infinity',
              '-c',
              `raw.idmap=uid ${uid} ${uid}\ngid ${gid} ${gid}`,
            ],
            { env, stdin: 'ignore' },
          );
          await execa('lxc', ['start', control], { env });
          const inControl = (py: string, args: string[]) =>
            execa(
              'lxc',
              [
                'exec',
                control,
                '--user',
                String(uid),
                '--group',
                String(gid),
                '--cwd',
                '/',
                '--',
                'python3',
                '-c',
                py,
                ...args,
              ],
              { env, reject: false, stdin: 'ignore' },
            );
          const plainCalls = await inControl(SYSCALL_ATTEMPTS, []);
          const open = parseAttempts(plainCalls.stdout);
          assert.equal(open.tiocsti, 'ok', `${plainCalls.stderr} ${plainCalls.stdout}`);
          assert.equal(open.perf_event_open, 'ok', plainCalls.stdout);
          const plain = await inControl(KEYRING_ATTEMPTS, [serial, keyring, `${name}-added`]);
          assert.deepEqual(
            parseAttempts(plain.stdout),
            {
              proc_keys: 'listed',
              proc_key_users: 'listed',
              describe: 'ok',
              link: 'ok',
              read: 'kagome-host-secret',
              add_key: 'ok',
              unlink: 'ok',
            },
            plain.stderr,
          );
          assert.deepEqual(
            await onHost(),
            { linked: false, added: true },
            "without kagome's settings the host key was unlinked and one added",
          );
        } finally {
          await execa('keyctl', ['unlink', serial, '@u'], { reject: false });
          const added = await execa('keyctl', ['search', '@u', 'user', `${name}-added`], {
            reject: false,
          });
          if (added.exitCode === 0)
            await execa('keyctl', ['unlink', added.stdout.trim(), '@u'], { reject: false });
          await execa('lxc', ['delete', '--force', control], { env, reject: false });
        }
      });
    }

    it('takes a second program into the running cage (one container, not two)', async () => {
      const before = JSON.stringify((w.cageState(cage) as { sandbox: unknown }).sandbox);
      await w.launchCommand(cage, ['xeyes']);
      await waitForWindow(w.display, { wmClass: 'xeyes' }, { timeoutMs: 30000 });
      assert.equal(
        JSON.stringify((w.cageState(cage) as { sandbox: unknown }).sandbox),
        before,
        'the same container',
      );
      // The program is the image's, not the host's: /etc/os-release is Debian's in the image.
      const out = await runInCage(
        'cat /etc/hostname; test -e /usr/bin/xpra && echo image-xpra',
        [],
        'which.out',
      );
      assert.match(out, /image-xpra/);
    });

    it('shows a granted file that the cage can edit, with the host file changed in place', async () => {
      const file = path.join(w.tmp.root, `granted-${backend}.txt`);
      fs.writeFileSync(file, 'original\n');
      const inode = fs.statSync(file).ino;
      const [grants] = await w.dbus.Files1.GrantPaths(cage, [Buffer.from(file)], {
        writable: new (await import('dbus-next')).default.Variant('b', true),
      });
      const inCage = grants[0]![1].toString();
      const out = await runInCage(
        'cat "$1" && echo edited >> "$1" && echo done',
        [inCage],
        'grant.out',
      );
      assert.match(out, /^original\ndone\n$/, out);
      await waitFor('the edit in the host file', () => fs.readFileSync(file, 'utf8'), {
        timeoutMs: 10000,
        pollMs: 50,
        until: (text) => text === 'original\nedited\n',
      });
      assert.equal(fs.statSync(file).ino, inode, 'the host file was edited in place');
    });

    it('keeps the host display, session bus and home out of the cage', async () => {
      await assertIsolated(w, (script) => runInCage(script, [], 'probe.out'));
    });

    it('is re-adopted by a restarted service, which launches into the same container', async () => {
      const sandbox = JSON.stringify((w.cageState(cage) as { sandbox: unknown }).sandbox);
      await w.killService();
      await w.startService({ env: engine.env });
      const out = await runInCage('echo adopted', [], 'adopt.out');
      assert.equal(out, 'adopted\n');
      assert.equal(
        JSON.stringify((w.cageState(cage) as { sandbox: unknown }).sandbox),
        sandbox,
        'the same container',
      );
      assert.match(w.service!.log(), new RegExp(`cage ${cage}: re-adopted`));
    });

    it('stops the cage and leaves no container behind', async () => {
      const sandbox = (w.cageState(cage) as { sandbox: { init: { pid: number } } }).sandbox;
      await w.dbus.Cages1.Stop(cage);
      assert.equal(
        fs.existsSync(`/proc/${sandbox.init.pid}`),
        false,
        "the container's init is gone",
      );
      assert.equal(w.cageState(cage), undefined);
      const { execa } = await import('execa');
      const env = { ...process.env, ...engine.env };
      if (backend === 'lxd') {
        // LXD cages keep their container, stopped, between starts (making one copies the image).
        const listed = await execa('lxc', ['list', '--format', 'csv', '--columns', 'ns'], { env });
        assert.match(String(listed.stdout), new RegExp(`^kagome-${cage},STOPPED$`, 'm'));
      } else {
        const listed = await execa(backend, ['ps', '--all', '--format', '{{.Names}}'], { env });
        assert.doesNotMatch(
          String(listed.stdout),
          new RegExp(`kagome-${cage}`),
          `${backend} still lists the cage's container`,
        );
      }
    });

    it('starts again after a stop, and a program runs in it', async () => {
      const out = await runInCage('echo again', [], 'again.out');
      assert.equal(out, 'again\n');
      await w.dbus.Cages1.Stop(cage);
    });

    it('names a missing image, and how to build it', async () => {
      w.writeCage(`${backend}-noimage`, `[Cage]\nBackend=${backend}\nImage=kagome/no-such-image\n`);
      const err = await w.rejection(w.dbus.Cages1.Start(`${backend}-noimage`));
      assert.equal(err.type, 'io.kagome.Error.NoSuchImage');
      assert.match(err.text, /kagome\/no-such-image/);
      assert.match(err.text, /kagome image build/);
    });

    it('names a missing engine by its Debian package', async () => {
      // The service is started with a PATH where the engine's client cannot be found.
      await w.killService();
      const bin = path.join(w.tmp.root, 'bin-without-engines');
      fs.mkdirSync(bin, { recursive: true });
      for (const p of [
        'bwrap',
        'nsenter',
        'setpriv',
        'xpra',
        'Xvfb',
        'python3',
        'xauth',
        'pactl',
        'xclip',
        'busctl',
      ]) {
        const real = ['/usr/bin', '/bin', '/usr/sbin']
          .map((d) => path.join(d, p))
          .find((f) => fs.existsSync(f));
        if (real) fs.symlinkSync(real, path.join(bin, p));
      }
      await w.startService({ env: { ...engine.env, PATH: bin } });
      const err = await w.rejection(w.dbus.Cages1.Start(cage));
      assert.equal(err.type, 'io.kagome.Error.MissingProgram');
      const pkg = { podman: 'podman', docker: 'docker.io', lxd: 'lxd-client' }[backend];
      assert.match(err.text, new RegExp(`install the Debian package '${pkg}'`));
    });
  });
}

/**
 * The host's X server (its socket file and its abstract socket), session bus and home, probed
 * from inside the cage; the same probe run on the host sees them all, so "closed" means something.
 * The cage has a session bus, its own (lib/bridges/session-bus.ts): the host's names are not on it.
 */
async function assertIsolated(
  w: World,
  runInCage: (script: string) => Promise<string>,
): Promise<void> {
  const secret = path.join(w.env.HOME!, 'host-secret.txt');
  fs.writeFileSync(secret, 'secret');
  const display = w.display.replace(/^:/, '');
  const busPath = w.bus.address.replace(/^unix:path=/, '').replace(/,.*$/, '');
  const listNames =
    'dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus.ListNames';
  const script = [
    ...hostDisplayAndBusProbe(display, busPath),
    `test -e '${secret}' && echo "home open" || echo "home closed"`,
    `test "$DBUS_SESSION_BUS_ADDRESS" = '${w.bus.address}' && echo "bus-env open" || echo "bus-env closed"`,
    `${listNames} >/dev/null 2>&1 && echo "a-bus open" || echo "a-bus closed"`,
    `${listNames} 2>&1 | grep -q '"io.kagome.Kagome"' && echo "host-names open" || echo "host-names closed"`,
  ].join('\n');
  const { execa } = await import('execa');
  const host = String(
    (
      await execa('sh', ['-c', script], {
        env: { ...w.env, DBUS_SESSION_BUS_ADDRESS: w.bus.address },
        reject: false,
      })
    ).stdout,
  );
  assert.match(
    host,
    /x-path open\nx-abstract open\nbus open\nx-client open\nhome open\nbus-env open\na-bus open\nhost-names open/,
  );
  assert.equal(
    await runInCage(script),
    'x-path closed\nx-abstract closed\nbus closed\nx-client closed\nhome closed\nbus-env closed\na-bus open\nhost-names closed\n',
  );
}

// A cage on another machine: a second LXD serving HTTPS on loopback, reached by the service
// only as the lxc remote `far`. Nothing of the cage is on this machine: its home is a volume
// there, its windows come through `lxc exec ... xpra _proxy`, and what it prints is read back
// with `lxc file pull`, since its home is not a folder here.
describe('Backend=lxd with Remote=', () => {
  let w: World;
  let engine: Engine;
  const cage = 'far-work';
  let run: typeof import('execa').execa;

  const runInCage = async (script: string, out: string): Promise<string> => {
    await w.launchCommand(cage, [
      '/bin/sh',
      '-c',
      `{ ${script}; } > "$HOME/${out}.tmp" 2>&1; mv "$HOME/${out}.tmp" "$HOME/${out}"`,
    ]);
    const env = { ...process.env, ...engine.env };
    let refusal = '';
    const pull = async () => {
      const r = await run('lxc', ['file', 'pull', `far:kagome-${cage}${w.env.HOME}/${out}`, '-'], {
        env,
        reject: false,
      });
      if (r.exitCode === 0) return String(r.stdout);
      refusal = String(r.stderr);
      return undefined;
    };
    const text = await waitFor(`${out} in the remote cage`, pull, {
      timeoutMs: 30000,
      pollMs: 200,
      detail: () => `lxc file pull: ${refusal}`,
    });
    return text + (text.endsWith('\n') ? '' : '\n');
  };

  before(async () => {
    run = (await import('execa')).execa;
    engine = await startLxdRemote((local) => ensureTestImage('lxd', local));
    w = await World.create({ documentPortal: true });
    w.writeCage(cage, '[Cage]\nBackend=lxd\nRemote=far\nIdleStop=0\n');
    await w.startService({ env: engine.env });
  });

  after(async () => {
    await w?.cleanup();
    await engine?.stop();
  });

  it('shows the window of a program on the other machine on this display, through lxc exec and xpra _proxy', async () => {
    await w.launchCommand(cage, ['xlogo']);
    await waitForWindow(w.display, { wmClass: 'xlogo' }, { timeoutMs: 60000 });
    const state = w.cageState(cage) as { displayState: { socket: string; remote: boolean } };
    assert.equal(state.displayState.remote, true);
    assert.match(
      fs.readFileSync(state.displayState.socket, 'utf8'),
      /'exec' 'far:kagome-far-work'.*xpra _proxy :100/,
    );
  });

  it('takes a second program into the same remote container', async () => {
    await w.launchCommand(cage, ['xeyes']);
    await waitForWindow(w.display, { wmClass: 'xeyes' }, { timeoutMs: 30000 });
    const out = await runInCage('hostname', 'host.out');
    assert.equal(out, `kagome-${cage}\n`);
  });

  it("keeps this machine's display, session bus and home out of the cage", async () => {
    await assertIsolated(w, (script) => runInCage(script, 'probe.out'));
  });

  it('refuses to grant a file of this machine, saying why, and says once what does not reach the cage', async () => {
    const file = path.join(w.tmp.root, 'local.txt');
    fs.writeFileSync(file, 'x');
    const err = await w.rejection(w.dbus.Files1.GrantPaths(cage, [Buffer.from(file)], {}));
    assert.equal(err.type, 'io.kagome.Error.NotSupported');
    assert.match(err.text, /remote far/);
    assert.match(err.text, /lxc file push/);
    const said = w
      .service!.log()
      .split('\n')
      .filter((l) =>
        /runs on LXD remote far: .*granted files and sound are not carried there/.test(l),
      );
    assert.equal(said.length, 1, w.service!.log());
  });

  it('is re-adopted by a restarted service, which launches into the same container', async () => {
    const keeper = (w.cageState(cage) as { sandbox: { init: { pid: number } } }).sandbox.init.pid;
    await w.killService();
    await w.startService({ env: engine.env });
    assert.equal(await runInCage('echo adopted', 'adopt.out'), 'adopted\n');
    assert.equal(
      (w.cageState(cage) as { sandbox: { init: { pid: number } } }).sandbox.init.pid,
      keeper,
    );
  });

  it('stops: the remote container is stopped, and nothing of it is left running here', async () => {
    const state = w.cageState(cage) as {
      sandbox: { init: { pid: number } };
      displayState: { client: { pid: number } };
    };
    await w.dbus.Cages1.Stop(cage);
    const listed = await run('lxc', ['list', 'far:', '--format', 'csv', '--columns', 'ns'], {
      env: { ...process.env, ...engine.env },
    });
    assert.match(String(listed.stdout), new RegExp(`^kagome-${cage},STOPPED$`, 'm'));
    const gone = () =>
      !fs.existsSync(`/proc/${state.sandbox.init.pid}`) &&
      !fs.existsSync(`/proc/${state.displayState.client.pid}`);
    await waitFor('the keeper and the xpra client to end', gone, { timeoutMs: 10000, pollMs: 50 });
  });
});
