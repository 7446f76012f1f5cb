import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KagomeError } from '../../lib/errors.js';
import { addContributions, type SandboxSpec } from '../../lib/sandbox.js';
import { XpraDisplay } from '../../lib/display/xpra.js';
import { XephyrDisplay } from '../../lib/display/xephyr.js';
import { SoundBridge } from '../../lib/bridges/sound.js';
import { ClipboardBridge } from '../../lib/bridges/clipboard.js';
import { silentLogger } from '../../lib/log.js';
import type { BridgeContext } from '../../lib/bridges/bridge.js';

// A display's and the bridges' mounts and environment are returned by their contribute() and
// added to the cage's spec in one place (addContributions), in one order: the display's, then
// the bridges'. Two parts setting the same variable is refused, naming both.

function spec(): SandboxSpec {
  return {
    name: 'web',
    hostname: 'kagome-web',
    network: 'none',
    ops: [{ op: 'dir', dest: '/run/user/1000' }],
    env: { HOME: '/home/alice', DISPLAY: ':7', GDK_SCALE: '3' },
    cwd: '/home/alice',
    runtimeDir: '/run/user/1000',
  };
}

describe('addContributions', () => {
  it('appends mounts in the order given and sets every variable, over the cage file', () => {
    const s = spec();
    addContributions(s, [
      {
        from: 'the xpra display',
        contribution: { ops: [{ op: 'bind', source: '/a', dest: '/x' }], env: { DISPLAY: ':100' } },
      },
      { from: 'the clipboard bridge', contribution: {} },
      {
        from: 'the sound bridge',
        contribution: {
          ops: [{ op: 'ro-bind', source: '/b', dest: '/y' }],
          env: { PULSE_SERVER: 'unix:/y/native' },
        },
      },
    ]);
    assert.deepEqual(
      s.ops.map((o) => o.dest),
      ['/run/user/1000', '/x', '/y'],
    );
    assert.equal(s.env.DISPLAY, ':100', "the display's DISPLAY, not the cage file's");
    assert.equal(s.env.PULSE_SERVER, 'unix:/y/native');
    assert.equal(s.env.HOME, '/home/alice');
  });

  it('refuses two parts setting the same variable, naming both, and adds nothing', () => {
    const s = spec();
    const before = structuredClone(s);
    assert.throws(
      () =>
        addContributions(s, [
          { from: 'the xpra display', contribution: { env: { DISPLAY: ':100' } } },
          {
            from: 'the sound bridge',
            contribution: { ops: [{ op: 'dir', dest: '/z' }], env: { DISPLAY: ':5' } },
          },
        ]),
      (e: unknown) =>
        e instanceof KagomeError &&
        /the xpra display and the sound bridge both set DISPLAY/.test(e.message),
    );
    assert.deepEqual(s, before);
  });
});

describe("parts' contribute() returns what they add and leaves the cage's spec alone", () => {
  const ctx = (): BridgeContext =>
    ({
      config: { name: 'web' },
      spec: spec(),
      rt: { dir: '/nonexistent/web', xpraDir: '/nonexistent/web/xpra' },
      hostDisplay: ':0',
      hostEnv: {},
      logFd: 2,
      log: silentLogger,
    }) as unknown as BridgeContext;

  it('xpra: its folder, DISPLAY, XAUTHORITY, and the scale the cage file did not set', () => {
    const c = ctx();
    const added = new XpraDisplay().contribute(c, {
      server: { pid: 1, start: '1' },
      socket: '/s',
      scaleEnv: { GDK_SCALE: '2', QT_SCALE_FACTOR: '2' },
    });
    assert.deepEqual(c.spec, spec());
    assert.deepEqual(added.env, {
      DISPLAY: ':100',
      XAUTHORITY: '/home/alice/.Xauthority',
      QT_SCALE_FACTOR: '2',
    });
    assert.deepEqual(added.ops, [
      { op: 'bind', source: '/nonexistent/web/xpra', dest: '/run/kagome/xpra' },
    ]);
  });

  it("xephyr: the nested server's socket and cookie", () => {
    const c = ctx();
    const added = new XephyrDisplay().contribute(c, {
      server: { pid: 1, start: '1' },
      number: 12,
      authFile: '/auth',
    });
    assert.deepEqual(c.spec, spec());
    assert.deepEqual(added.env, { DISPLAY: ':0', XAUTHORITY: '/run/user/1000/Xauthority' });
    assert.equal(added.ops?.length, 2);
  });

  it('sound and clipboard', () => {
    const c = ctx();
    const sound = new SoundBridge({}).contribute(c, { policy: 'output', listen: '/l' });
    assert.deepEqual(c.spec, spec());
    assert.deepEqual(sound.env, {
      PULSE_CLIENTCONFIG: '/run/user/1000/pulse/client.conf',
      PULSE_SERVER: 'unix:/run/user/1000/pulse/native',
    });
    assert.deepEqual(new ClipboardBridge({}, silentLogger).contribute(), {});
  });
});
