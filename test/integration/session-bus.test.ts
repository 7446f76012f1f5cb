import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { World } from '../helpers/kagome.js';
import { startNotifications } from '../helpers/notifications.js';
import { childrenOf, isAlive, processStartTime, type ProcRef } from '../../lib/runtime/proc.js';

// Each cage's own session bus (SessionBus=private, the default), as the ordinary user with
// real programs: two programs of a cage find each other on it; another cage, and the host's
// bus, are not there; SessionBus=none has no bus (the control); the bus outlives a restart
// of the service and ends with its cage.

const NAME = 'org.example.KagomeBusTest';
const OBJECT = '/org/example/KagomeBusTest';

// Owns NAME and answers Ping with the text it was given, until killed; says "owned" in a file.
const OWNER = String.raw`
import os, sys
from gi.repository import Gio, GLib
text, out = sys.argv[1], sys.argv[2]
node = Gio.DBusNodeInfo.new_for_xml('<node><interface name="${NAME}"><method name="Ping"><arg type="s" direction="out"/></method></interface></node>')
def call(conn, sender, path, iface, method, params, invocation):
    invocation.return_value(GLib.Variant('(s)', (text,)))
def say(what):
    with open(out + '.tmp', 'w') as f:
        f.write(what)
    os.rename(out + '.tmp', out)
def acquired(conn, name):
    conn.register_object('${OBJECT}', node.interfaces[0], call, None, None)
def owned(conn, name):
    say('owned')
def lost(conn, name):
    say('lost')
    sys.exit(1)
Gio.bus_own_name(Gio.BusType.SESSION, '${NAME}', Gio.BusNameOwnerFlags.NONE, acquired, owned, lost)
GLib.MainLoop().run()
`;

const PING = `gdbus call --session --timeout 10 --dest ${NAME} --object-path ${OBJECT} --method ${NAME}.Ping`;
const LIST_NAMES =
  'gdbus call --session --timeout 10 --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus --method org.freedesktop.DBus.ListNames';

interface BusRecord {
  policy: string;
  daemon?: ProcRef;
}

describe('each cage has a session bus of its own', () => {
  let w: World;
  let notifications: { stop(): void } | undefined;

  const run = (cage: string, script: string) => w.runShell(cage, script);
  const busRecord = (cage: string): BusRecord | undefined =>
    (w.cageState(cage) as { bridges?: Record<string, BusRecord> } | undefined)?.bridges?.[
      'session-bus'
    ];
  const cageProps = async (cage: string): Promise<Record<string, unknown>> => {
    const props = await w.dbus.Cages1.Get(cage);
    return Object.fromEntries(Object.entries(props).map(([k, v]) => [k, v.value as unknown]));
  };
  const hostNames = async (): Promise<string[]> =>
    (
      await w.callRaw(
        'org.freedesktop.DBus',
        '/org/freedesktop/DBus',
        'org.freedesktop.DBus',
        'ListNames',
        '',
        [],
      )
    )[0] as string[];

  before(async () => {
    w = await World.create();
    w.writeCage('one', '[Cage]\n');
    w.writeCage('two', '[Cage]\n');
    w.writeCage('nobus', '[Cage]\nSessionBus=none\n');
    await w.startService();
    // The host's test bus has names a cage must never see: the service's and a notification server's.
    notifications = await startNotifications(w.bus.address);
    await w.launchCommand('one', [
      'python3',
      '-c',
      OWNER,
      'pong from one',
      `${w.env.HOME}/owner.out`,
    ]);
    assert.equal(
      await w.readFileWhenWritten(w.homeFile('one', 'owner.out'), 30000),
      'owned',
      w.programLog('one', 'python3'),
    );
  });

  after(async () => {
    notifications?.stop();
    await w?.cleanup();
  });

  it('programs in a cage find each other over its bus, at the fixed address', async () => {
    assert.equal(await run('one', PING), "('pong from one',)\n");
    const env = await run(
      'one',
      'echo "$DBUS_SESSION_BUS_ADDRESS"; test -S "$XDG_RUNTIME_DIR/bus" && echo socket',
    );
    assert.equal(env, `unix:path=/run/user/${process.getuid!()}/bus\nsocket\n`);
    const props = await cageProps('one');
    assert.equal(props.SessionBus, 'private');
    assert.equal(props.SessionBusState, 'up');
    assert.ok(isAlive(busRecord('one')?.daemon), JSON.stringify(busRecord('one')));
  });

  it("a second cage sees neither the first cage's names nor the host's", async () => {
    // Control: the host's bus has the names, so their absence below means something.
    const onHost = await hostNames();
    for (const name of ['io.kagome.Kagome', 'org.freedesktop.Notifications'])
      assert.ok(onHost.includes(name), `${name} on the host bus: ${onHost.join(' ')}`);
    assert.ok(!onHost.includes(NAME), "the cage's name is not on the host's bus");

    const inOne = await run('one', LIST_NAMES);
    assert.match(inOne, new RegExp(`'${NAME.replace(/\./g, '\\.')}'`));
    const inTwo = await run('two', `${LIST_NAMES}; echo "$DBUS_SESSION_BUS_ADDRESS"`);
    assert.match(inTwo, /^\(\['org\.freedesktop\.DBus'/, inTwo);
    // The same address in each cage, a different bus behind it.
    assert.match(inTwo, new RegExp(`unix:path=/run/user/${process.getuid!()}/bus\n$`));
    for (const text of [inOne, inTwo]) {
      for (const name of [NAME, 'io.kagome.Kagome', 'org.freedesktop.Notifications']) {
        if (text === inOne && name === NAME) continue;
        assert.ok(!text.includes(`'${name}'`), `${name} is listed in a cage: ${text}`);
      }
    }
    assert.match(await run('two', PING), /ServiceUnknown/);
  });

  it('SessionBus=none gives no bus at all', async () => {
    const out = await run(
      'nobus',
      `echo "address=$DBUS_SESSION_BUS_ADDRESS"; test -e "$XDG_RUNTIME_DIR/bus" && echo socket; ${LIST_NAMES} >/dev/null 2>&1 && echo connected || echo no-bus`,
    );
    assert.equal(out, 'address=\nno-bus\n');
    const props = await cageProps('nobus');
    assert.equal(props.SessionBus, 'none');
    assert.equal(props.SessionBusState, 'off');
    assert.equal(busRecord('nobus')?.daemon, undefined);
  });

  it('the bus outlives a restart of the service: same daemon, same address, the same names', async () => {
    const before = busRecord('one')?.daemon;
    assert.ok(before && isAlive(before));
    const address = await run('one', 'echo "$DBUS_SESSION_BUS_ADDRESS"');
    await w.killService();
    assert.ok(isAlive(before), 'the daemon lives on without the service');
    await w.startService();
    assert.deepEqual(busRecord('one')?.daemon, before);
    assert.equal(await run('one', 'echo "$DBUS_SESSION_BUS_ADDRESS"'), address);
    // The owner started before the restart answers a program started after it.
    assert.equal(await run('one', PING), "('pong from one',)\n");
    assert.equal((await cageProps('one')).SessionBusState, 'up');
  });

  it('the daemon ends with its cage', async () => {
    const carrier = busRecord('one')?.daemon;
    assert.ok(carrier && isAlive(carrier));
    // dbus-daemon itself, the child of the process that carried it in.
    const daemons = childrenOf(carrier.pid).map((pid) => ({
      pid,
      start: processStartTime(pid) ?? '',
    }));
    assert.equal(daemons.length, 1, `one child of the carrier: ${JSON.stringify(daemons)}`);
    await w.dbus.Cages1.Stop('one');
    assert.equal(isAlive(carrier), false);
    assert.equal(isAlive(daemons[0]), false, 'dbus-daemon is gone');
    assert.equal((await cageProps('one')).SessionBusState, 'off');
  });
});
