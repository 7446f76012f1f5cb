import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { CageManager } from '../../lib/cage/manager.js';
import { CageStore } from '../../lib/cage/store.js';
import { silentLogger } from '../../lib/log.js';
import { SessionBusBridge, sessionBusAddress } from '../../lib/bridges/session-bus.js';
import type {
  Backend,
  ExecHandle,
  ExecRequest,
  SandboxRecord,
} from '../../lib/backends/backend.js';
import type { CageDisplay, DisplayRecord } from '../../lib/display/display.js';
import { notStarted } from '../../lib/bridges/bridge.js';
import type { BridgeRecord, CageBridge, SandboxHandle } from '../../lib/bridges/bridge.js';
import type { SandboxSpec } from '../../lib/sandbox.js';

// Pids far above any pid_max: nothing real is ever signalled.
const FAKE_PID = 90_000_001;

describe('sessionBusAddress', () => {
  it('names $XDG_RUNTIME_DIR/bus, escaped as D-Bus addresses are', () => {
    assert.equal(sessionBusAddress('/run/user/1000'), 'unix:path=/run/user/1000/bus');
    assert.equal(sessionBusAddress('/run/a b,c=d'), 'unix:path=/run/a%20b%2cc%3dd/bus');
  });
});

describe('the session bus in a cage', () => {
  let root: string;
  let order: string[];
  let displayFails: boolean;
  let manager: CageManager;
  let early: { started: BridgeRecord[]; stopped: BridgeRecord[] };

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-session-bus-'));
    const paths = {
      cagesDir: path.join(root, 'cages'),
      homesDir: path.join(root, 'homes'),
      runtimeDir: path.join(root, 'run'),
      persistentGrantsDir: path.join(root, 'grants'),
      hostHome: path.join(root, 'home'),
    };
    fs.mkdirSync(paths.cagesDir, { recursive: true });
    order = [];
    displayFails = false;
    early = { started: [], stopped: [] };
    const backend: Backend = {
      kind: 'fake',
      fileGrants: () => 'portal',
      checkHost: () => undefined,
      start: async (spec: SandboxSpec) => {
        order.push(`sandbox ${spec.env.DBUS_SESSION_BUS_ADDRESS ?? 'no-bus'}`);
        return { sandbox: 1 };
      },
      resolveProgram: async (_r, p) => `/usr/bin/${p}`,
      exec: async (): Promise<ExecHandle> => ({
        pid: FAKE_PID,
        exited: new Promise(() => undefined),
      }),
      hostPathOf: () => undefined,
      isAlive: () => true,
      checkRecord: (v) => v as SandboxRecord,
      stop: async () => undefined,
    };
    const display: CageDisplay = {
      kind: 'fake-display',
      checkHost: () => undefined,
      prepare: async () => ({}),
      contribute: () => ({}),
      start: async () => {
        order.push('display started');
        if (displayFails) throw new Error('no display');
        return {};
      },
      isAlive: () => true,
      checkRecord: (v: unknown) => v as DisplayRecord,
      readopt: async (_c, r) => r,
      stop: async () => undefined,
    } as CageDisplay;
    // Stands for a part that needs only the sandbox, as the session bus does.
    const needsNoDisplay: CageBridge = {
      kind: 'session-bus',
      policyOf: () => 'private',
      prepare: async () => ({ prepared: true }),
      checkRecord: (v) => v as BridgeRecord,
      contribute: () => ({}),
      startWithSandbox: async (_ctx, cage: SandboxHandle, record) => {
        order.push(`bus started in sandbox ${JSON.stringify(cage.sandbox)}`);
        const r = { ...record, daemon: 'running' };
        early.started.push(r);
        return r;
      },
      start: async (_ctx, _cage, record) => record,
      readopt: async (_ctx, _cage, record) => record,
      stop: async (record) => void early.stopped.push(record),
      status: () => ({ policy: 'private', state: 'up', problem: '' }),
    };
    manager = new CageManager({
      paths,
      store: new CageStore(paths.cagesDir, { hostHome: paths.hostHome, homesDir: paths.homesDir }),
      host: { uid: 1000, gid: 1000, user: 'alice', home: paths.hostHome, lang: undefined },
      hostEnv: { DISPLAY: ':0' },
      backends: { bubblewrap: backend },
      displays: { xpra: display, xephyr: display },
      log: silentLogger,
      bridges: [needsNoDisplay],
    });
    fs.writeFileSync(path.join(paths.cagesDir, 'web.cage'), '[Cage]\n');
  });

  afterEach(() => {
    manager.release();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('a part that needs no display starts once the sandbox runs, alongside the display', async () => {
    await manager.start('web');
    assert.deepEqual(order.slice(0, 1), ['sandbox no-bus']);
    assert.deepEqual(
      new Set(order.slice(1)),
      new Set(['bus started in sandbox {"sandbox":1}', 'display started']),
    );
    assert.equal(early.started.length, 1);
    await manager.stop('web');
    assert.deepEqual(early.stopped, early.started, 'the record it started with is the one stopped');
  });

  it('what started alongside a display that failed is stopped with the cage', async () => {
    displayFails = true;
    await assert.rejects(manager.start('web'));
    assert.equal(early.started.length, 1);
    assert.deepEqual(early.stopped, early.started);
  });
});

describe('SessionBusBridge', () => {
  const ctx = (sessionBus: 'private' | 'none') => {
    const spec = {
      env: {} as Record<string, string>,
      runtimeDir: '/run/user/1000',
      ops: [],
    } as unknown as SandboxSpec;
    return {
      config: { name: 'web', sessionBus },
      spec,
      rt: { dir: fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-bus-rt-')) },
      log: silentLogger,
    } as unknown as Parameters<SessionBusBridge['prepare']>[0];
  };

  it('gives every program of a cage with a private bus its fixed address, and none to SessionBus=none', async () => {
    const bridge = new SessionBusBridge();
    const on = ctx('private');
    const added = bridge.contribute(on, await bridge.prepare(on));
    assert.deepEqual(added.env, { DBUS_SESSION_BUS_ADDRESS: 'unix:path=/run/user/1000/bus' });
    // Its daemon's configuration, the service's file, seen read-only in the cage.
    assert.deepEqual(added.ops, [
      {
        op: 'ro-bind',
        source: path.join(on.rt.dir, 'session-bus'),
        dest: '/run/kagome/session-bus',
      },
    ]);
    assert.ok(fs.existsSync(path.join(on.rt.dir, 'session-bus', 'session.conf')));
    const off = ctx('none');
    const record = await bridge.prepare(off);
    assert.deepEqual(bridge.contribute(off, record), {});
    assert.deepEqual(bridge.status(record), { policy: 'none', state: 'off', problem: '' });
  });

  it('starts nothing for SessionBus=none, and reports a daemon that is not running as down', async () => {
    const bridge = new SessionBusBridge();
    const off = ctx('none');
    const exec = () => {
      throw new Error('nothing may run');
    };
    const handle = {
      backend: { exec },
      sandbox: {},
      env: {},
      cwd: '/',
      logFd: 2,
    } as unknown as SandboxHandle;
    assert.deepEqual(await bridge.startWithSandbox(off, handle, await bridge.prepare(off)), {
      policy: 'none',
    });
    assert.equal(
      bridge.status({ policy: 'private', daemon: { pid: FAKE_PID, start: '1' } }).state,
      'down',
    );
    // A cage started by a kagome without session buses has no record (the engine hands the
    // bridge a down one, bridge-set.ts): it has no bus.
    assert.equal(bridge.status(notStarted()).state, 'off');
  });

  it("runs the cage's own dbus-daemon at the fixed address through the backend's exec, and names a missing one", async () => {
    const bridge = new SessionBusBridge();
    const on = ctx('private');
    const requests: ExecRequest[] = [];
    const exec = async (_r: unknown, req: ExecRequest): Promise<ExecHandle> => {
      requests.push(req);
      // What sh says when the cage has no dbus-daemon.
      return {
        pid: FAKE_PID,
        exited: Promise.resolve(127),
        stdin: new PassThrough(),
        stdout: new PassThrough(),
      };
    };
    const handle = {
      backend: { exec },
      sandbox: {},
      env: { DBUS_SESSION_BUS_ADDRESS: 'unix:path=/run/user/1000/bus' },
      cwd: '/home/alice',
      logFd: 2,
    } as unknown as SandboxHandle;
    const record = await bridge.startWithSandbox(on, handle, await bridge.prepare(on));
    assert.equal(requests.length, 1);
    const [req] = requests;
    assert.deepEqual(req!.argv.slice(0, 2), ['/bin/sh', '-c']);
    assert.match(String(req!.argv[2]), /exec dbus-daemon "\$c" --nofork .*--address="\$1"/);
    assert.match(String(req!.argv[2]), /c="--config-file=\$2"/);
    assert.equal(req!.argv[4], 'unix:path=/run/user/1000/bus');
    assert.equal(req!.argv[5], '/run/kagome/session-bus/session.conf');
    assert.equal(req!.pipes, true);
    assert.equal(req!.env, handle.env);
    assert.equal(bridge.status(record).state, 'down');
    assert.match(
      bridge.status(record).problem,
      /dbus-daemon is not installed in the cage: install the Debian package 'dbus-daemon'/,
    );
  });
});
