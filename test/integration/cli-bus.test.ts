import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dbus from 'dbus-next';
import { execa } from 'execa';
import { KAGOME } from '../helpers/kagome.js';
import fs from 'node:fs';
import { startSessionBus, type SessionBus } from '../helpers/dbus-session.js';
import { waitFor } from '../helpers/wait.js';
import { connectSessionBus } from '../../lib/bus.js';

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

// A file sent on a new connection right behind its authentication was lost now and then: dbus-
// daemon reads the authentication's last line and what follows it in one read that takes no
// descriptors, then drops the connection for a message short of the file it declares, and the
// caller waits forever (4 in 40 connections here; two CI runs hung or failed in `kagome grant`).
// connectSessionBus resolves once the bus has answered Hello.
describe('a new session bus connection that sends a file at once', () => {
  let bus: SessionBus;
  let holder: ReturnType<typeof dbus.sessionBus>;

  before(async () => {
    bus = await startSessionBus();
    holder = dbus.sessionBus({ busAddress: bus.address, negotiateUnixFd: true } as {
      busAddress: string;
    });
    holder.on('error', () => undefined);
    await holder.requestName('io.kagome.Test.Take', dbus.NameFlag.DO_NOT_QUEUE);
    holder.addMethodHandler((m: InstanceType<typeof dbus.Message>) => {
      if (m.member !== 'Take') return false;
      const fds = (m as { unixFds?: number[] }).unixFds ?? [];
      for (const fd of fds) fs.closeSync(fd);
      holder.send(dbus.Message.newMethodReturn(m, 'u', [fds.length]));
      return true;
    });
  });

  after(async () => {
    holder?.disconnect();
    await bus?.stop();
  });

  it('has it delivered, every time', async () => {
    const fd = fs.openSync('/etc/hostname', 'r');
    const lost: number[] = [];
    try {
      for (let i = 0; i < 60; i++) {
        const c = await connectSessionBus({ DBUS_SESSION_BUS_ADDRESS: bus.address });
        let dropped = false;
        c.on('error', () => (dropped = true));
        const reply = c.call(
          new dbus.Message({
            destination: 'io.kagome.Test.Take',
            path: '/',
            interface: 'io.kagome.Test',
            member: 'Take',
            signature: 'h',
            body: [fd],
          }),
        );
        // A dropped connection leaves the call pending: its loss is what is waited for then.
        const got = await waitFor(
          `connection ${i}'s answer`,
          async () => {
            if (dropped) return 'dropped';
            return Promise.race([reply, new Promise((r) => setTimeout(() => r(undefined), 50))]);
          },
          { timeoutMs: 10000, until: (v) => v !== undefined },
        );
        if (got === 'dropped') lost.push(i);
        c.disconnect();
      }
    } finally {
      fs.closeSync(fd);
    }
    assert.deepEqual(lost, [], 'connections dropped with their file');
  });
});
