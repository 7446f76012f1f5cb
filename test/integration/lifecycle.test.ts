import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import dbus from 'dbus-next';
import { execa } from 'execa';
import { World, KAGOME } from '../helpers/kagome.js';
import { waitForWindow, countWindows } from '../helpers/x11.js';
import { waitFor } from '../helpers/wait.js';
import { childrenOf } from '../../lib/runtime/proc.js';

// The life of a cage: many launches at once start it once; it survives the service being
// killed; a restarted service finds it and launches into it; stop leaves nothing behind.

function nsOf(pid: number): string | undefined {
  try {
    return fs.readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return undefined;
  }
}

function processesInNamespace(ns: string, comm: string): number[] {
  return fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .map(Number)
    .filter((pid) => {
      try {
        return nsOf(pid) === ns && fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === comm;
      } catch {
        return false;
      }
    });
}

/** The process's name, '' once it is gone. */
function comm(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

function pids(): number[] {
  return fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .map(Number);
}

/**
 * kagome-enter processes in the cage's cgroups that have not entered it yet (still in the
 * host's mount namespace): the one waiting for the cage's next launch (waiting-entry.ts).
 */
function waitingEntries(cage: string): number[] {
  const hostMounts = fs.readlinkSync('/proc/self/ns/mnt');
  return pids().filter((pid) => {
    try {
      return (
        comm(pid) === 'kagome-enter' &&
        fs.readlinkSync(`/proc/${pid}/ns/mnt`) === hostMounts &&
        inCageCgroups(pid, cage)
      );
    } catch {
      return false;
    }
  });
}

/** Is the process in the memory and pids cgroups kagome made for the cage? */
function inCageCgroups(pid: number, cage: string): boolean {
  const lines = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  return ['memory', 'pids'].every((c) =>
    new RegExp(`^\\d+:${c}:.*/kagome-${cage}$`, 'm').test(lines),
  );
}

/** bwrap's outer processes (one per sandbox; the second bwrap process is the cage's pid 1). */
function bwrapProcessesFor(hostname: string): number {
  const hostNs = nsOf(process.pid);
  return fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        const args = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
        return args[0]?.endsWith('bwrap') && args.includes(hostname) && nsOf(Number(p)) === hostNs;
      } catch {
        return false;
      }
    }).length;
}

describe('cage lifecycle', () => {
  let w: World;
  const states: [string, string][] = [];
  let listener: ReturnType<typeof dbus.sessionBus>;

  before(async () => {
    w = await World.create();
    w.writeCage('busy', '[Cage]\n');
    w.writeCage('survivor', '[Cage]\n');
    w.writeCage('sleepy', '[Cage]\nIdleStop=1\n');
    listener = dbus.sessionBus({ busAddress: w.bus.address });
    await listener.call(
      new dbus.Message({
        destination: 'org.freedesktop.DBus',
        path: '/org/freedesktop/DBus',
        interface: 'org.freedesktop.DBus',
        member: 'AddMatch',
        signature: 's',
        body: ["type='signal',interface='io.kagome.Cages1',member='StateChanged'"],
      }),
    );
    listener.on('message', (m: InstanceType<typeof dbus.Message>) => {
      if (m.member === 'StateChanged') states.push([m.body[0] as string, m.body[1] as string]);
    });
    await w.startService();
  });

  after(async () => {
    listener?.disconnect();
    await w?.cleanup();
  });

  it('20 simultaneous launches into a stopped cage start it once and run 20 programs', async () => {
    const launches = Array.from({ length: 20 }, (_, i) =>
      w.launchCommand('busy', ['sleep', String(300 + i)]),
    );
    const paths = await Promise.all(launches);
    assert.equal(new Set(paths).size, 20);
    assert.equal(
      states.filter(([c, s]) => c === 'busy' && s === 'starting').length,
      1,
      JSON.stringify(states),
    );
    assert.equal(bwrapProcessesFor('kagome-busy'), 1);
    const state = w.cageState('busy') as { sandbox: { pidNamespace: string } };
    // The reply comes once each program is on its way into the cage; give the last ones a moment to exec.
    const sleeps = () => processesInNamespace(state.sandbox.pidNamespace, 'sleep').length;
    await waitFor('21 sleeps in the cage', sleeps, {
      timeoutMs: 5000,
      pollMs: 20,
      until: (n) => n >= 21,
    });
    assert.equal(sleeps(), 20 + 1 /* the cage's keeper */);
    const programs = await w.dbus.Cages1.ListPrograms('busy');
    assert.equal(programs.length, 20);
  });

  // Joining a cgroup costs a launch 12-16 ms of kernel waiting (waiting-entry.ts): the
  // kagome-enter that carries a launch joined the cage's cgroups before it was asked.
  it('a launch is carried by a kagome-enter that was already waiting in the cage cgroups', async () => {
    await w.dbus.Cages1.Start('busy'); // running already after the test above
    const [waiting] = await waitFor(
      'a kagome-enter waiting in the cgroups of cage busy',
      () => waitingEntries('busy'),
      { until: (l) => l.length === 1, timeoutMs: 5000 },
    );
    const program = await w.launchCommand('busy', ['sleep', '301']);
    const programs = await w.dbus.Cages1.ListPrograms('busy');
    const carrier = programs.find(([p]) => p === program)?.[2];
    assert.equal(carrier, waiting, 'the launch was carried by the kagome-enter that waited');
    const [sleeper] = await waitFor('the program under its carrier', () => childrenOf(waiting!), {
      until: (l) => l.length === 1,
      timeoutMs: 5000,
    });
    assert.equal(comm(sleeper!), 'sleep');
    assert.ok(inCageCgroups(sleeper!, 'busy'), 'the program is in the cage cgroups');
    assert.notEqual(nsOf(sleeper!), nsOf(process.pid), 'the program is in the cage');
    await waitFor('the next one waiting', () => waitingEntries('busy'), {
      until: (l) => l.length === 1 && l[0] !== waiting,
      timeoutMs: 5000,
    });
  });

  it('no process in the cage, nor the host window client, holds any socket of the service (its bus connection)', async () => {
    const sockets = (pid: number) => {
      const out = new Set<string>();
      for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
        try {
          const l = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
          if (l.startsWith('socket:')) out.add(l);
        } catch {
          /* closed meanwhile */
        }
      }
      return out;
    };
    const service = sockets(w.service!.child.pid!);
    assert.ok(service.size > 0, 'the service has no sockets at all?');
    const state = w.cageState('busy') as {
      sandbox: { pidNamespace: string; bwrap: { pid: number } };
      displayState: { client: { pid: number } };
    };
    const inCage = fs
      .readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .map(Number)
      .filter((p) => nsOf(p) === state.sandbox.pidNamespace);
    assert.ok(inCage.length >= 21);
    for (const pid of [...inCage, state.sandbox.bwrap.pid, state.displayState.client.pid]) {
      let theirs: Set<string>;
      try {
        theirs = sockets(pid);
      } catch {
        continue;
      }
      const shared = [...theirs].filter((s) => service.has(s));
      assert.deepEqual(
        shared,
        [],
        `process ${pid} (${fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ')}) holds the service's sockets`,
      );
    }
  });

  it('the service, every process of the cage, the helpers carrying programs and the host window client run as the ordinary user with no capabilities', async () => {
    const uid = process.getuid!();
    // The suite must never drift back to running the product as root (test/as-user).
    assert.notEqual(
      uid,
      0,
      'the integration suite runs as root: run npm test, which runs it as an ordinary account',
    );
    const status = (pid: number) => fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (text: string, name: string) =>
      new RegExp(`^${name}:\\s+(.*)$`, 'm').exec(text)?.[1]?.trim().split(/\s+/) ?? [];
    const state = w.cageState('busy') as {
      sandbox: { pidNamespace: string; bwrap: { pid: number } };
      displayState: { client: { pid: number } };
    };
    // The client's own sandbox holds bwrap's capabilities until it has exec'd xpra.
    await waitFor('the host client to exec xpra', () => comm(state.displayState.client.pid), {
      timeoutMs: 10000,
      pollMs: 20,
      until: (c) => c === 'xpra',
    });
    const all = fs
      .readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .map(Number);
    const inCage = all.filter((p) => nsOf(p) === state.sandbox.pidNamespace);
    const carriers = all.filter((p) => {
      try {
        return fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'kagome-enter';
      } catch {
        return false;
      }
    });
    assert.ok(
      inCage.length >= 21 && carriers.length >= 20,
      `${inCage.length} cage processes, ${carriers.length} kagome-enter`,
    );
    const checked: string[] = [];
    for (const pid of [
      w.service!.child.pid!,
      state.sandbox.bwrap.pid,
      state.displayState.client.pid,
      ...carriers,
      ...inCage,
    ]) {
      let text: string;
      try {
        text = status(pid);
      } catch {
        continue; // ended meanwhile
      }
      const name = field(text, 'Name').join(' ');
      assert.deepEqual(
        field(text, 'Uid'),
        [String(uid), String(uid), String(uid), String(uid)],
        `${name} (${pid}) runs as uid ${uid}`,
      );
      for (const set of ['CapEff', 'CapPrm', 'CapAmb'])
        assert.equal(field(text, set)[0], '0000000000000000', `${name} (${pid}) has ${set}`);
      checked.push(name);
    }
    assert.ok(
      checked.includes('xpra') && checked.includes('bwrap') && checked.includes('sleep'),
      checked.join(' '),
    );
  });

  it('the host xpra client is confined: no home, no session bus, no network, nothing of the host but the display and the cage socket', async () => {
    const state = w.cageState('busy') as { displayState: { client: { pid: number } } };
    const client = state.displayState.client.pid;
    const service = w.service!.child.pid!;
    // bwrap reports the client's pid before it has set the sandbox up and exec'd xpra.
    await waitFor('the host client to exec xpra', () => comm(client), {
      timeoutMs: 10000,
      pollMs: 20,
      until: (c) => c === 'xpra',
    });
    const secret = `${w.env.HOME}/client-must-not-see.txt`;
    fs.writeFileSync(secret, 'host file');
    const sees = (pid: number, p: string) => fs.existsSync(`/proc/${pid}/root${p}`);
    const environ = (pid: number) => fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    // Control: the service, an unconfined host process of the same user, sees all of it.
    assert.ok(sees(service, secret));
    assert.ok(environ(service).some((e) => e.startsWith('DBUS_SESSION_BUS_ADDRESS=')));
    assert.equal(
      fs.readFileSync(`/proc/${client}/comm`, 'utf8').trim(),
      'xpra',
      fs.readFileSync(`/proc/${client}/cmdline`, 'utf8').replace(/\0/g, ' ') +
        ' children: ' +
        fs.readFileSync(`/proc/${client}/task/${client}/children`, 'utf8'),
    );
    assert.equal(sees(client, secret), false, 'the client sees the host home');
    const busSocket = w.bus.address.replace(/^unix:path=/, '').replace(/,.*$/, '');
    const stateFile = `${w.runtimeDir}/cages/busy/state.json`;
    assert.ok(sees(service, busSocket) && sees(service, stateFile));
    assert.equal(sees(client, busSocket), false, 'the client sees the session bus socket');
    assert.equal(sees(client, stateFile), false, "the client sees the service's runtime files");
    assert.ok(
      !environ(client).some((e) => /^(DBUS_SESSION_BUS_ADDRESS|XDG_RUNTIME_DIR)=/.test(e)),
      environ(client).join(' '),
    );
    assert.notEqual(
      fs.readlinkSync(`/proc/${client}/ns/net`),
      fs.readlinkSync(`/proc/${service}/ns/net`),
      'the client has a network of its own (none)',
    );
    assert.ok(
      sees(client, `/tmp/.X11-unix/X${w.display.replace(/^:/, '')}`),
      'the client has the host display socket',
    );
  });

  it('stop ends every process of the cage and its window client, and forgets its state', async () => {
    const state = w.cageState('busy') as {
      sandbox: { pidNamespace: string; init: { pid: number } };
      displayState: { client: { pid: number } };
    };
    const [waiting] = waitingEntries('busy');
    assert.ok(waiting, 'a kagome-enter waits for the next launch');
    await w.dbus.Cages1.Stop('busy');
    assert.equal(processesInNamespace(state.sandbox.pidNamespace, 'sleep').length, 0);
    assert.equal(alive(waiting), false, 'the kagome-enter waiting for a launch is still there');
    assert.equal(alive(state.sandbox.init.pid), false, 'the cage is still running');
    assert.equal(alive(state.displayState.client.pid), false, 'the xpra client is still running');
    assert.equal(w.cageState('busy'), undefined);
    const props = await w.dbus.Cages1.Get('busy');
    assert.equal(props.State!.value, 'stopped');
  });

  it('kill -9 of the service leaves the window; the restarted service lists the cage and launches into it', async () => {
    await w.launchCommand('survivor', ['xeyes']);
    await waitForWindow(w.display, { wmClass: 'XEyes' });
    const before = w.cageState('survivor') as { sandbox: { init: { pid: number } } };
    const [waiting] = await waitFor('a kagome-enter waiting', () => waitingEntries('survivor'), {
      until: (l) => l.length === 1,
      timeoutMs: 5000,
    });
    await w.killService();
    // Its input was the dead service's pipe: it ends with it, whatever the cage does.
    await waitFor('the waiting kagome-enter to end with the service', () => alive(waiting!), {
      until: (a) => !a,
      timeoutMs: 5000,
    });
    // A sleep, not a wait: nothing happens when all is well, and a restarted service would
    // bring a lost client back, so the window must be counted now, after a moment to go.
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(
      await countWindows(w.display, 'XEyes'),
      1,
      'the window went away with the service',
    );
    await w.startService();
    const cages = await w.dbus.Cages1.List();
    assert.equal(cages.survivor!.State!.value, 'running');
    assert.equal(
      cages.survivor!.Programs!.value,
      1,
      'the program started before the restart is still counted',
    );
    await w.launchCommand('survivor', ['xlogo']);
    await waitForWindow(w.display, { wmClass: 'XLogo' });
    const after = w.cageState('survivor') as { sandbox: { init: { pid: number } } };
    assert.equal(
      after.sandbox.init.pid,
      before.sandbox.init.pid,
      'the second program went into the same cage',
    );
    assert.equal(await countWindows(w.display, 'XEyes'), 1);
  });

  it('a cage with IdleStop stops by itself after its last program exits', async () => {
    await w.launchCommand('sleepy', ['true']);
    const stopped = () => states.some(([c, s]) => c === 'sleepy' && s === 'stopped');
    await waitFor("sleepy's StateChanged to stopped", stopped, {
      timeoutMs: 15000,
      pollMs: 50,
      detail: () => JSON.stringify(states),
    });
    assert.ok(stopped(), JSON.stringify(states));
    assert.equal(w.cageState('sleepy'), undefined);
  });
});

// kagome's own python in a cage (xpra's server, the window closer, the display settings) runs
// in the cage's home, which belongs to the cage: `python3 -c` would import a module found there
// before python's own, and a typing.py left by a person learning python (or planted) broke the
// display. They run isolated (-I).
describe("python modules in a cage's home", () => {
  let w: World;
  const modules = ['typing', 'socket', 'random', 'json', 'struct', 'gi'];

  before(async () => {
    w = await World.create();
    w.writeCage('planted', '[Cage]\n');
    fs.mkdirSync(w.homeFile('planted', ''), { recursive: true });
    for (const m of modules)
      fs.writeFileSync(
        w.homeFile('planted', `${m}.py`),
        `open(__file__ + '.imported', 'w').close()\nraise SystemExit('planted ${m} imported')\n`,
      );
    await w.startService();
  });

  after(async () => {
    await w?.cleanup();
  });

  it("reach none of kagome's programs in the cage: the display works, a stop closes windows", async () => {
    await w.launchCommand('planted', ['xlogo']);
    await waitForWindow(w.display, { wmClass: 'XLogo' });
    await w.dbus.Cages1.Stop('planted');
    const imported = modules.filter((m) =>
      fs.existsSync(w.homeFile('planted', `${m}.py.imported`)),
    );
    assert.deepEqual(imported, [], 'modules imported from the cage home');
  });
});

describe('Network=full as an ordinary user', () => {
  let w: World;
  before(async () => {
    w = await World.create();
    w.writeCage('net', '[Cage]\nNetwork=full\n');
    await w.startService();
  });
  after(async () => {
    await w?.cleanup();
  });

  // slirp4netns used to join /proc/PID/ns/user, which races bwrap's inner user namespace:
  // 2 starts in 8 failed. It now runs in the namespace that owns the cage's network.
  it('starts 20 times in a row, each time with its user-mode network up', async () => {
    for (let i = 0; i < 20; i++) {
      await w.dbus.Cages1.Start('net');
      const state = w.cageState('net') as {
        sandbox: { slirp?: { pid: number }; init: { pid: number } };
      };
      assert.ok(
        state.sandbox.slirp && alive(state.sandbox.slirp.pid),
        `start ${i + 1}: slirp4netns is running`,
      );
      const dev = fs.readFileSync(`/proc/${state.sandbox.init.pid}/net/dev`, 'utf8');
      assert.match(dev, /tap0:/, `start ${i + 1}: the cage has its tap device`);
      await w.dbus.Cages1.Stop('net');
      const slirp = state.sandbox.slirp.pid;
      await waitFor(`stop ${i + 1}: slirp4netns to end`, () => !alive(slirp), {
        timeoutMs: 3000,
        pollMs: 20,
      });
      assert.equal(alive(state.sandbox.slirp.pid), false, `stop ${i + 1}: slirp4netns ended`);
    }
  });
});

describe('a cage has a task limit', () => {
  let w: World;
  before(async () => {
    w = await World.create();
    w.writeCage('bounded', '[Cage]\nTasksMax=64\n');
    w.writeCage('unbounded', '[Cage]\nTasksMax=infinity\n');
    await w.startService();
  });
  after(async () => {
    await w?.cleanup();
  });

  /** Starts 150 sleepers in the cage and says how many processes the cage then has. */
  async function forks(cage: string): Promise<number> {
    // One process that forks: at the limit a shell would give up, python counts the refusals.
    const script = [
      'import os, time',
      'started = refused = 0',
      'for i in range(150):',
      '    try:',
      '        if os.fork() == 0:',
      '            time.sleep(120); os._exit(0)',
      '        started += 1',
      '    except OSError:',
      '        refused += 1',
      'open(os.environ["HOME"] + "/forks.done", "w").write("%d %d" % (started, refused))',
    ].join('\n');
    await w.launchCommand(cage, ['python3', '-c', script]);
    await w.readFileWhenWritten(w.homeFile(cage, 'forks.done'), 30000);
    const state = w.cageState(cage) as { sandbox: { pidNamespace: string } };
    return fs
      .readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p) && nsOf(Number(p)) === state.sandbox.pidNamespace).length;
  }

  it('control: without a limit, 150 forks in a cage all run', async () => {
    assert.ok((await forks('unbounded')) >= 150);
  });

  it('with TasksMax=64, the cage holds at most 64 tasks whatever it forks, and the host goes on', async () => {
    const inCage = await forks('bounded');
    assert.ok(inCage <= 64, `${inCage} processes in the cage`);
    assert.ok(inCage >= 10, `the cage could still start programs (${inCage})`);
    // The person's other processes are not counted against it: the service still launches.
    await w.launchCommand('unbounded', ['true']);
  });
});

// Where the machine delegates a cgroup (test/as-user makes one, as a systemd user manager
// would), the kernel holds a cage to MemoryMax=: a runaway program is killed inside its cage
// and the desktop, the service and the cage itself go on.
describe('a cage has a memory limit', () => {
  let w: World;
  const delegated = Boolean(process.env.KAGOME_TEST_CGROUP);
  before(async () => {
    w = await World.create();
    // Its xpra server and X server need about 200 MB; 480 MB leaves the program under 300.
    w.writeCage('small', '[Cage]\nMemoryMax=480M\n');
    w.writeCage('large', '[Cage]\nMemoryMax=infinity\n');
    await w.startService();
  });
  after(async () => {
    await w?.cleanup();
  });

  /** Runs a program that fills 1 GiB in the cage; its exit status (137: killed). */
  async function fillGiB(cage: string): Promise<number> {
    const fill = 'b = bytearray(1 << 30)\nfor i in range(0, len(b), 4096): b[i] = 1';
    await w.launchCommand(cage, [
      'sh',
      '-c',
      `python3 -c "$1"; echo $? > "$HOME/fill.done"`,
      'fill',
      fill,
    ]);
    return Number((await w.readFileWhenWritten(w.homeFile(cage, 'fill.done'), 60000)).trim());
  }

  it(
    'control: without a limit, 1 GiB is filled',
    {
      skip:
        !delegated && !process.env.CI && 'no delegated cgroup (run through test/as-user as root)',
    },
    async () => {
      assert.equal(await fillGiB('large'), 0);
    },
  );

  it(
    'with MemoryMax=480M, a program that fills 1 GiB is killed in its cage, which goes on',
    {
      skip:
        !delegated && !process.env.CI && 'no delegated cgroup (run through test/as-user as root)',
    },
    async () => {
      assert.ok(
        delegated,
        'CI runs the tests through test/as-user, which delegates a cgroup: it did not',
      );
      assert.equal(await fillGiB('small'), 137);
      // The programs carried in are in the cage's cgroup, not the service's.
      const state = w.cageState('small') as {
        sandbox: { init: { pid: number }; cgroup?: { procs: string[] } };
      };
      assert.ok(state.sandbox.cgroup, 'the state names the cage cgroup');
      assert.match(
        fs.readFileSync(`/proc/${state.sandbox.init.pid}/cgroup`, 'utf8'),
        /:memory:.*\/kagome-small$/m,
      );
      fs.rmSync(w.homeFile('small', 'fill.done'));
      await w.launchCommand('small', ['sh', '-c', 'cat /proc/self/cgroup > "$HOME/cg.txt"']);
      assert.match(
        await w.readFileWhenWritten(w.homeFile('small', 'cg.txt')),
        /:memory:\/$/m,
        'a launched program sees the cage cgroup as its root',
      );
      const r = await execa(process.execPath, [KAGOME, 'cage', 'show', 'small'], {
        env: w.env,
        extendEnv: false,
        reject: false,
      });
      assert.match(
        r.stdout,
        /^memory: at most 480 MiB \(held through a cgroup v1\)$/m,
        r.stdout + r.stderr,
      );
    },
  );
});

// A stop closes programs as a logout does: their windows are asked to close, then SIGTERM,
// then what is left is killed with the cage. Three programs, one for each step.
describe('stopping a cage closes its programs as a logout does', () => {
  let w: World;
  before(async () => {
    w = await World.create();
    w.writeCage('closing', '[Cage]\n');
    w.writeCage('closing-xephyr', '[Cage]\nDisplay=xephyr\n');
    await w.startService();
  });
  after(async () => {
    await w?.cleanup();
  });

  const PROGRAM = [
    'import os, signal, sys',
    'from Xlib import X, display',
    'mode = sys.argv[1]',
    'def mark(what):',
    '    open(os.path.join(os.environ["HOME"], mode + ".status"), "w").write(what)',
    'if mode == "ignores-close": signal.signal(signal.SIGTERM, lambda *a: (mark("SIGTERM"), os._exit(0)))',
    'if mode == "stubborn": signal.signal(signal.SIGTERM, signal.SIG_IGN)',
    'd = display.Display()',
    's = d.screen()',
    'DELETE = d.intern_atom("WM_DELETE_WINDOW")',
    'w = s.root.create_window(0, 0, 200, 100, 0, s.root_depth)',
    'w.set_wm_name("closing-" + mode)',
    'w.set_wm_protocols([DELETE])',
    'w.map()',
    'd.sync()',
    'mark("mapped")',
    'while True:',
    '    e = d.next_event()',
    '    if e.type == X.ClientMessage and e.data[1][0] == DELETE and mode == "closes":',
    '        mark("WM_DELETE_WINDOW")',
    '        sys.exit(0)',
  ].join('\n');

  for (const cage of ['closing', 'closing-xephyr']) {
    it(`asks windows to close, then sends SIGTERM, then kills what is left (${cage === 'closing' ? 'xpra' : 'Xephyr'})`, async () => {
      const modes = ['closes', 'ignores-close', 'stubborn'];
      for (const mode of modes) await w.launchCommand(cage, ['python3', '-c', PROGRAM, mode]);
      for (const mode of modes)
        assert.equal(
          await w.readFileWhenWritten(w.homeFile(cage, `${mode}.status`), 30000),
          'mapped',
        );
      await w.dbus.Cages1.Stop(cage);
      const status = (mode: string) => fs.readFileSync(w.homeFile(cage, `${mode}.status`), 'utf8');
      assert.equal(status('closes'), 'WM_DELETE_WINDOW', 'the window was asked to close');
      assert.equal(
        status('ignores-close'),
        'SIGTERM',
        'a program that keeps its window open gets SIGTERM',
      );
      assert.equal(status('stubborn'), 'mapped', 'one that ignores both is killed');
      assert.match(
        w.service!.log(),
        new RegExp(`cage ${cage}: programs still running after SIGTERM are killed with the cage`),
      );
      assert.equal(w.cageState(cage), undefined, 'the cage stopped');
    });
  }
});
