import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dbus from 'dbus-next';
import { execa } from 'execa';
import { KAGOME } from '../helpers/kagome.js';
import { startSessionBus, type SessionBus } from '../helpers/dbus-session.js';
import { waitFor } from '../helpers/wait.js';

// The CLI whose session bus goes away during a call: dbus-next leaves the call pending, and
// the CLI ended with Node's exit code 13 (an unsettled top-level await) and nothing on stderr,
// as one CI run saw for `kagome grant`. It must say what happened and exit 1.

describe('the CLI when its session bus goes away during a call', () => {
  let bus: SessionBus;
  let holder: ReturnType<typeof dbus.sessionBus>;
  let calls = 0;

  before(async () => {
    bus = await startSessionBus();
    holder = dbus.sessionBus({ busAddress: bus.address });
    holder.on('error', () => undefined);
    await holder.requestName('io.kagome.Kagome', dbus.NameFlag.DO_NOT_QUEUE);
    // Takes every call to the service's name and answers none.
    holder.addMethodHandler((m: InstanceType<typeof dbus.Message>) => {
      if (m.interface !== 'io.kagome.Cages1') return false;
      calls++;
      return true;
    });
  });

  after(async () => {
    holder?.disconnect();
    await bus?.stop();
  });

  it('says it lost the bus and exits 1', async () => {
    const cli = execa(KAGOME, ['list'], {
      env: { ...bus.env, PATH: process.env.PATH ?? '/usr/bin:/bin' },
      extendEnv: false,
      reject: false,
    });
    await waitFor('the call to reach the service', () => calls, {
      timeoutMs: 20000,
      pollMs: 20,
      until: (n) => n > 0,
    });
    await bus.stop();
    const r = await cli;
    assert.equal(r.exitCode, 1, `exit ${r.exitCode}, stderr: ${r.stderr}`);
    assert.match(r.stderr, /cannot reach the kagome service.*closed the connection/);
  });
});
