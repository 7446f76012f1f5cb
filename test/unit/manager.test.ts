import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sinon from 'sinon';
import { KagomeError } from '../../lib/errors.js';
import { CageManager, checkArgv, type CageStateName } from '../../lib/cage/manager.js';
import { CageStore } from '../../lib/cage/store.js';
import { cageRuntimePaths, type Paths } from '../../lib/runtime/paths.js';
import { silentLogger, type Logger } from '../../lib/log.js';
import { checkRecord, F } from '../../lib/runtime/record-check.js';
import type {
  Backend,
  ExecHandle,
  ExecRequest,
  SandboxRecord,
} from '../../lib/backends/backend.js';
import type { CageDisplay, DisplayRecord } from '../../lib/display/display.js';
import type { SandboxSpec } from '../../lib/sandbox.js';

// Pids far above any pid_max: /proc has no entry for them, so nothing real is ever touched.
const FAKE_PID_BASE = 90_000_000;

interface FakeBackend extends Backend {
  checkHost: sinon.SinonStub<[SandboxSpec], void>;
  start: sinon.SinonStub<[SandboxSpec, { logFd: number; etcDir: string }], Promise<SandboxRecord>>;
  resolveProgram: sinon.SinonStub<[SandboxRecord, string, string], Promise<string | undefined>>;
  exec: sinon.SinonStub<[SandboxRecord, ExecRequest], Promise<ExecHandle>>;
  hostPathOf: sinon.SinonStub<[SandboxRecord, string], string | undefined>;
  isAlive: sinon.SinonStub<[SandboxRecord], boolean>;
  stop: sinon.SinonStub<[SandboxRecord], Promise<void>>;
}

interface FakeDisplay extends CageDisplay {
  checkHost: sinon.SinonStub<[], void>;
  prepare: sinon.SinonStub;
  contribute: sinon.SinonStub;
  start: sinon.SinonStub;
  isAlive: sinon.SinonStub;
  readopt: sinon.SinonStub;
  stop: sinon.SinonStub<[DisplayRecord], Promise<void>>;
}

interface Exit {
  resolve: (code: number) => void;
}

function fakeBackend(exits: Exit[]): FakeBackend {
  let sandboxes = 0;
  let pids = 0;
  return {
    kind: 'fake',
    fileGrants: () => 'portal',
    checkHost: sinon.stub(),
    // A little real delay, so that concurrent launches really overlap the start.
    start: sinon
      .stub<[SandboxSpec, { logFd: number; etcDir: string }], Promise<SandboxRecord>>()
      .callsFake(() => new Promise((r) => setTimeout(() => r({ sandbox: ++sandboxes }), 20))),
    resolveProgram: sinon
      .stub<[SandboxRecord, string, string], Promise<string | undefined>>()
      .callsFake(async (_r, program) =>
        program === 'missing'
          ? undefined
          : program.startsWith('/')
            ? program
            : `/usr/bin/${program}`,
      ),
    exec: sinon.stub<[SandboxRecord, ExecRequest], Promise<ExecHandle>>().callsFake(async () => {
      let resolve!: (code: number) => void;
      const exited = new Promise<number>((r) => (resolve = r));
      exits.push({ resolve });
      return { pid: FAKE_PID_BASE + ++pids, exited };
    }),
    hostPathOf: sinon.stub<[SandboxRecord, string], string | undefined>().returns(undefined),
    isAlive: sinon.stub<[SandboxRecord], boolean>().returns(true),
    checkRecord: (v) => checkRecord("the fake sandbox's", v, { sandbox: F.number }),
    stop: sinon.stub<[SandboxRecord], Promise<void>>().resolves(),
  };
}

function fakeDisplay(): FakeDisplay {
  return {
    kind: 'fake-display',
    checkHost: sinon.stub(),
    prepare: sinon.stub().resolves({ prepared: true }),
    contribute: sinon.stub().returns({ env: { DISPLAY: ':100' } }),
    start: sinon.stub().resolves({ display: 'started' }),
    isAlive: sinon.stub().returns(true),
    readopt: sinon.stub().callsFake(async (_ctx: unknown, r: DisplayRecord) => r),
    checkRecord: (v) => checkRecord("the fake display's", v, { display: F.string }),
    stop: sinon.stub<[DisplayRecord], Promise<void>>().resolves(),
  };
}

describe('checkArgv', () => {
  it('refuses empty, NUL-containing and non-string commands', () => {
    for (const bad of [[], [''], ['a\0b'], ['ok', 'x\0'], [1], ['a', 2], 'ls', undefined, null]) {
      assert.throws(
        () => checkArgv(bad),
        (e: unknown) => e instanceof KagomeError && e.errorName === 'InvalidArgument',
        `should refuse ${JSON.stringify(bad)}`,
      );
    }
  });

  it('accepts a normal command, also with empty later arguments', () => {
    assert.doesNotThrow(() => checkArgv(['ls']));
    assert.doesNotThrow(() => checkArgv(['printf', '', '--', '-x']));
  });
});

describe('CageManager', () => {
  let root: string;
  let paths: Paths;
  let backend: FakeBackend;
  let display: FakeDisplay;
  let manager: CageManager;
  let exits: Exit[];
  let events: [string, CageStateName, string][];

  const writeCage = (name: string, text: string) =>
    fs.writeFileSync(path.join(paths.cagesDir, `${name}.cage`), text);

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-manager-'));
    paths = {
      cagesDir: path.join(root, 'config', 'cages'),
      homesDir: path.join(root, 'data', 'homes'),
      runtimeDir: path.join(root, 'run', 'kagome'),
      persistentGrantsDir: path.join(root, 'data', 'kagome', 'grants'),
      hostHome: path.join(root, 'home'),
    };
    fs.mkdirSync(paths.cagesDir, { recursive: true });
    fs.mkdirSync(paths.hostHome, { recursive: true });
    writeCage('web', '[Cage]\n');
    exits = [];
    backend = fakeBackend(exits);
    display = fakeDisplay();
    manager = new CageManager({
      paths,
      store: new CageStore(paths.cagesDir, { hostHome: paths.hostHome, homesDir: paths.homesDir }),
      host: { uid: 1000, gid: 1000, user: 'alice', home: paths.hostHome, lang: undefined },
      hostEnv: { DISPLAY: ':0' },
      backends: { bubblewrap: backend },
      displays: { xpra: display, xephyr: display },
      log: silentLogger,
    });
    events = [];
    manager.on('state', (name, state, message) => events.push([name, state, message]));
  });

  afterEach(async () => {
    // launchCommand saves the state in the background: those writes land before the removal.
    await manager.flush();
    manager.release();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('starts a cage once for 20 concurrent launches', async () => {
    const infos = await Promise.all(
      Array.from({ length: 20 }, (_, i) => manager.launchCommand('web', ['prog', String(i)])),
    );
    assert.equal(backend.start.callCount, 1);
    assert.equal(display.prepare.callCount, 1);
    assert.equal(display.start.callCount, 1);
    assert.equal(backend.exec.callCount, 20);
    assert.equal(new Set(infos.map((p) => p.id)).size, 20, 'every program has its own id');
    assert.deepEqual(
      infos.map((p) => p.argv[1]),
      Array.from({ length: 20 }, (_, i) => String(i)),
    );
    assert.deepEqual(
      events.map((e) => e[1]),
      ['starting', 'running'],
    );
    // every program runs in the one sandbox that was started
    for (const call of backend.exec.getCalls()) assert.deepEqual(call.args[0], { sandbox: 1 });
    assert.equal(manager.programs('web').length, 20);
    assert.equal((await manager.get('web')).state, 'running');
  });

  it('gives the backend the cage spec and runs programs with its environment', async () => {
    await manager.launchCommand('web', ['prog'], { startupId: 'tok-1' });
    const [spec, io] = backend.start.firstCall.args;
    assert.equal(spec.name, 'web');
    assert.equal(spec.env.DISPLAY, ':100', 'the display contributed before the sandbox started');
    assert.equal(io.etcDir, cageRuntimePaths(paths, 'web').etcDir);
    const req = backend.exec.firstCall.args[1];
    assert.deepEqual(req.argv, ['prog']);
    assert.equal(req.env.DESKTOP_STARTUP_ID, 'tok-1');
    assert.equal(req.env.XDG_ACTIVATION_TOKEN, 'tok-1');
    assert.equal(req.env.KAGOME_CAGE, 'web');
    assert.equal(req.cwd, paths.hostHome, 'an unknown cwd falls back to the home');
    assert.ok(
      fs.statSync(path.join(paths.homesDir, 'web')).isDirectory(),
      'the cage home is created',
    );
    const state = JSON.parse(fs.readFileSync(cageRuntimePaths(paths, 'web').state, 'utf8'));
    assert.equal(state.name, 'web');
    assert.deepEqual(state.sandbox, { sandbox: 1 });
    assert.deepEqual(state.displayState, { display: 'started' });
  });

  it('rejects every waiting launch when the start fails, and tries again on the next launch', async () => {
    backend.start.onFirstCall().rejects(new Error('bwrap: No permissions to create new namespace'));
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, () => manager.launchCommand('web', ['prog'])),
    );
    assert.equal(backend.start.callCount, 1);
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      const e = (r as PromiseRejectedResult).reason;
      assert.ok(e instanceof KagomeError, String(e));
      assert.equal(e.errorName, 'BackendFailed');
      assert.match(e.message, /No permissions to create new namespace/);
    }
    assert.equal(backend.exec.callCount, 0);
    assert.equal(display.stop.callCount, 1, 'the prepared display is cleaned up');
    assert.deepEqual(display.stop.firstCall.args[0], { prepared: true });
    assert.equal(fs.existsSync(cageRuntimePaths(paths, 'web').state), false);
    assert.deepEqual(
      events.map((e) => e[1]),
      ['starting', 'stopped'],
    );
    assert.match(events[1]![2], /No permissions/);

    const info = await manager.launchCommand('web', ['prog']);
    assert.equal(backend.start.callCount, 2);
    assert.equal(backend.exec.callCount, 1);
    assert.equal(info.cage, 'web');
  });

  it('passes a KagomeError from the backend on unchanged', async () => {
    backend.start
      .onFirstCall()
      .rejects(new KagomeError('MissingProgram', 'bwrap is not installed'));
    await assert.rejects(
      manager.launchCommand('web', ['prog']),
      (e: unknown) => e instanceof KagomeError && e.errorName === 'MissingProgram',
    );
  });

  it('stops the sandbox when the display fails to start', async () => {
    display.start.rejects(new KagomeError('DisplayFailed', 'xpra did not start'));
    await assert.rejects(
      manager.launchCommand('web', ['prog']),
      (e: unknown) => e instanceof KagomeError && e.errorName === 'DisplayFailed',
    );
    assert.equal(backend.stop.callCount, 1);
    assert.deepEqual(backend.stop.firstCall.args[0], { sandbox: 1 });
  });

  it('refuses a program the cage does not have, without running anything', async () => {
    await assert.rejects(
      manager.launchCommand('web', ['missing', '--flag']),
      (e: unknown) =>
        e instanceof KagomeError &&
        e.errorName === 'NoSuchProgram' &&
        e.message.includes('"missing"') &&
        e.message.includes('"web"'),
    );
    assert.equal(backend.exec.callCount, 0);
    assert.equal(backend.resolveProgram.callCount, 1);
    assert.equal(backend.resolveProgram.firstCall.args[1], 'missing');
    assert.equal(backend.resolveProgram.firstCall.args[2], '/usr/local/bin:/usr/bin:/bin');
  });

  it('refuses bad arguments before starting anything', async () => {
    for (const argv of [[], [''], ['a\0b'], [1 as unknown as string]]) {
      await assert.rejects(
        manager.launchCommand('web', argv),
        (e: unknown) => e instanceof KagomeError && e.errorName === 'InvalidArgument',
      );
    }
    await assert.rejects(
      manager.launchCommand('../web', ['prog']),
      (e: unknown) => e instanceof KagomeError && e.errorName === 'InvalidArgument',
    );
    assert.equal(backend.start.callCount, 0);
  });

  it('reports a cage without a file as NoSuchCage', async () => {
    await assert.rejects(
      manager.launchCommand('nope', ['prog']),
      (e: unknown) => e instanceof KagomeError && e.errorName === 'NoSuchCage',
    );
    await assert.rejects(
      manager.stop('nope'),
      (e: unknown) => e instanceof KagomeError && e.errorName === 'NoSuchCage',
    );
    assert.equal(backend.start.callCount, 0);
  });

  it('stops display and sandbox and reports starting, running, stopping, stopped', async () => {
    await manager.launchCommand('web', ['prog']);
    const state = cageRuntimePaths(paths, 'web').state;
    assert.ok(fs.existsSync(state));
    await manager.stop('web');
    assert.equal(display.stop.callCount, 1);
    assert.deepEqual(display.stop.firstCall.args[0], { display: 'started' });
    assert.equal(backend.stop.callCount, 1);
    assert.deepEqual(backend.stop.firstCall.args[0], { sandbox: 1 });
    assert.ok(display.stop.calledBefore(backend.stop), 'the host client goes before the sandbox');
    assert.deepEqual(events, [
      ['web', 'starting', ''],
      ['web', 'running', ''],
      ['web', 'stopping', ''],
      ['web', 'stopped', ''],
    ]);
    assert.equal(fs.existsSync(state), false, 'the state file is removed');
    assert.equal((await manager.get('web')).state, 'stopped');
    assert.deepEqual(manager.programs('web'), []);

    // stopping a stopped cage does nothing; launching starts it again
    await manager.stop('web');
    assert.equal(backend.stop.callCount, 1);
    await manager.launchCommand('web', ['prog']);
    assert.equal(backend.start.callCount, 2);
  });

  it('still stops the sandbox when the display fails to stop', async () => {
    await manager.launchCommand('web', ['prog']);
    display.stop.rejects(new Error('xpra client stuck'));
    await manager.stop('web');
    assert.equal(backend.stop.callCount, 1);
    assert.equal(events.at(-1)![1], 'stopped');
  });

  it('keeps a cage that could not be stopped listed and in its state file, so a stop can be tried again', async () => {
    await manager.launchCommand('web', ['prog']);
    const state = cageRuntimePaths(paths, 'web').state;
    backend.stop.rejects(new KagomeError('BackendFailed', 'bwrap would not die'));
    await assert.rejects(manager.stop('web'), /bwrap would not die/);
    assert.equal((await manager.get('web')).state, 'running');
    assert.ok(fs.existsSync(state), 'the state file of a cage still running was removed');
    backend.stop.resolves();
    await manager.stop('web');
    assert.equal((await manager.get('web')).state, 'stopped');
    assert.equal(fs.existsSync(state), false);
  });

  it('finishes a stop whose backend failed when the sandbox has ended anyway', async () => {
    await manager.launchCommand('web', ['prog']);
    backend.stop.callsFake(async () => {
      backend.isAlive.returns(false);
      throw new Error('already gone');
    });
    await manager.stop('web');
    assert.equal((await manager.get('web')).state, 'stopped');
    assert.equal(fs.existsSync(cageRuntimePaths(paths, 'web').state), false);
    assert.equal(events.at(-1)![1], 'stopped');
  });

  it('shares one stop between concurrent stop calls', async () => {
    await manager.launchCommand('web', ['prog']);
    await Promise.all([manager.stop('web'), manager.stop('web'), manager.stop('web')]);
    assert.equal(backend.stop.callCount, 1);
    assert.equal(display.stop.callCount, 1);
  });

  it('restarts a cage that died on its own at the next launch', async () => {
    await manager.launchCommand('web', ['prog']);
    backend.isAlive.callsFake((r) => r.sandbox !== 1);
    await manager.launchCommand('web', ['prog']);
    assert.equal(backend.stop.callCount, 1, 'the dead sandbox is cleaned up');
    assert.equal(backend.start.callCount, 2);
    assert.deepEqual(backend.exec.secondCall.args[0], { sandbox: 2 });
    assert.deepEqual(
      events.map((e) => e[1]),
      ['starting', 'running', 'stopping', 'stopped', 'starting', 'running'],
    );
    assert.match(events[2]![2], /stopped unexpectedly/);
  });

  it('tracks program exits', async () => {
    const exited: number[] = [];
    manager.on('program', (p, ev) => {
      if (ev === 'exited') exited.push(p.exitCode!);
    });
    const a = await manager.launchCommand('web', ['a']);
    await manager.launchCommand('web', ['b']);
    assert.equal(manager.programs('web').length, 2);
    exits[0]!.resolve(3);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(exited, [3]);
    assert.deepEqual(
      manager.programs('web').map((p) => p.argv[0]),
      ['b'],
    );
    assert.equal(a.exitCode, 3);
    assert.equal((await manager.get('web')).programs, 1);
  });

  it('stops an idle cage after IdleStop seconds once its last program has exited', async () => {
    writeCage('web', '[Cage]\nIdleStop=1\n');
    await manager.launchCommand('web', ['a']);
    const stopped = new Promise<void>((resolve, reject) => {
      const guard = setTimeout(
        () => reject(new Error('the idle cage was not stopped within 4 s')),
        4000,
      );
      manager.on('state', (_n, s) => {
        if (s === 'stopped') {
          clearTimeout(guard);
          resolve();
        }
      });
    });
    const t0 = Date.now();
    exits[0]!.resolve(0);
    await stopped;
    assert.ok(Date.now() - t0 >= 900, 'not before the idle time');
    assert.equal(backend.stop.callCount, 1);
  });

  describe('adoption by a restarted service', () => {
    const restarted = (errors: string[]): CageManager => {
      const log: Logger = { ...silentLogger, error: (m: string) => errors.push(m) };
      return new CageManager({
        paths,
        store: new CageStore(paths.cagesDir, {
          hostHome: paths.hostHome,
          homesDir: paths.homesDir,
        }),
        host: { uid: 1000, gid: 1000, user: 'alice', home: paths.hostHome, lang: undefined },
        hostEnv: { DISPLAY: ':0' },
        backends: { bubblewrap: backend },
        displays: { xpra: display, xephyr: display },
        log,
      });
    };
    const damage = (file: string, part: 'sandbox' | 'displayState', value: unknown) => {
      const state = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
      state[part] = value;
      fs.writeFileSync(file, JSON.stringify(state));
    };

    it("takes over a running cage whose records are its parts' own", async () => {
      await manager.launchCommand('web', ['prog']);
      await manager.flush();
      manager.release();
      const errors: string[] = [];
      const again = restarted(errors);
      try {
        assert.deepEqual(await again.adoptAll(), ['web']);
        assert.deepEqual(errors, []);
        assert.equal((await again.get('web')).state, 'running');
      } finally {
        await again.flush();
        again.release();
      }
    });

    for (const [part, value, field] of [
      ['sandbox', { sandbox: 'one' }, "the fake sandbox's record's sandbox is not a whole number"],
      ['sandbox', {}, "the fake sandbox's record's sandbox is not a whole number"],
      ['displayState', { display: 7 }, "the fake display's record's display is not a string"],
    ] as const) {
      it(`refuses by name a ${part} record of the wrong shape (${JSON.stringify(value)}), as an unusable state file`, async () => {
        await manager.launchCommand('web', ['prog']);
        await manager.flush();
        manager.release();
        const file = cageRuntimePaths(paths, 'web').state;
        damage(file, part, value);
        const errors: string[] = [];
        const again = restarted(errors);
        const aliveChecks = backend.isAlive.callCount;
        try {
          assert.deepEqual(await again.adoptAll(), []);
          assert.equal(errors.length, 1, errors.join('\n'));
          assert.match(errors[0]!, /^cage web: its state file .* cannot be used: /);
          assert.ok(errors[0]!.includes(field), errors[0]);
          // Not touched: neither asked whether it lives nor stopped; the file is kept.
          assert.equal(backend.isAlive.callCount, aliveChecks);
          assert.equal(backend.stop.callCount, 0);
          assert.ok(fs.existsSync(file));
          assert.equal((await again.get('web')).state, 'stopped');
        } finally {
          again.release();
        }
      });
    }
  });

  it('cleans a dead cage up once when several launches find it dead at the same time', async () => {
    await manager.launchCommand('web', ['prog']);
    backend.isAlive.callsFake((r) => r.sandbox !== 1);
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, () => manager.launchCommand('web', ['prog'])),
    );
    const failed = results
      .filter((r) => r.status === 'rejected')
      .map((r) => String((r as PromiseRejectedResult).reason));
    assert.deepEqual(failed, []);
    assert.equal(backend.stop.callCount, 1, `backend.stop called ${backend.stop.callCount} times`);
    assert.equal(events.filter((e) => e[1] === 'stopped').length, 1);
  });
});
