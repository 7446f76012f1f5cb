import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BubblewrapBackend } from '../../lib/backends/bubblewrap.js';
import { OciBackend } from '../../lib/backends/oci.js';
import { LxdBackend } from '../../lib/backends/lxd.js';
import { XephyrDisplay } from '../../lib/display/xephyr.js';
import { XpraDisplay } from '../../lib/display/xpra.js';
import { SoundBridge } from '../../lib/bridges/sound.js';
import { ClipboardBridge } from '../../lib/bridges/clipboard.js';
import { SessionBusBridge } from '../../lib/bridges/session-bus.js';
import { silentLogger } from '../../lib/log.js';

// Each part's record, read back from a state file, is checked by the part itself before it is
// trusted as its type (adoption.ts refuses the state file with the reason): a good record of
// each kind passes unchanged, a wrong field is named with the part it belongs to.

const host = { uid: 1000, gid: 1000, user: 'alice', home: '/home/alice', lang: undefined };
const proc = (pid: number) => ({ pid, start: String(pid * 10) });

interface Part {
  checkRecord(v: unknown): unknown;
}

/** a good record, then bad ones with the words the refusal must contain */
const cases: [string, Part, Record<string, unknown>, [unknown, string][]][] = [
  [
    'bubblewrap',
    new BubblewrapBackend(host, {}, silentLogger),
    {
      bwrap: proc(10),
      init: proc(11),
      pidNamespace: 'pid:[4026532]',
      tasksMax: 4096,
      cgroup: { how: 'cgroup v1', made: ['/sys/fs/cgroup/pids/kagome-web'], procs: [] },
    },
    [
      [
        { bwrap: proc(10), pidNamespace: 'x' },
        "the bubblewrap sandbox's record's init is not a process",
      ],
      [
        { bwrap: proc(10), init: { pid: -1, start: '1' }, pidNamespace: 'x' },
        'init is not a process',
      ],
      [
        { bwrap: proc(10), init: proc(11), pidNamespace: 'x', tasksMax: '4096' },
        'tasksMax is not a whole number',
      ],
      [
        {
          bwrap: proc(10),
          init: proc(11),
          pidNamespace: 'x',
          cgroup: { how: 'v3', made: [], procs: [] },
        },
        "the bubblewrap sandbox's record's cgroup is not a cgroup",
      ],
      ['bwrap', "the bubblewrap sandbox's record is not an object"],
    ],
  ],
  [
    'podman',
    new OciBackend('podman', host, {}),
    {
      container: 'kagome-web',
      init: proc(20),
      pidNamespace: 'pid:[1]',
      rootVisible: true,
      engine: 'podman',
      user: { uid: 1000, gid: 1000 },
    },
    [
      [
        { container: 'c', init: proc(20), pidNamespace: 'p', rootVisible: 'yes', engine: 'podman' },
        "the podman sandbox's record's rootVisible is not true or false",
      ],
      [
        { container: 'c', init: proc(20), pidNamespace: 'p', rootVisible: true, engine: 'rkt' },
        'engine is not one of podman, docker',
      ],
    ],
  ],
  [
    'lxd',
    new LxdBackend(host, {}, silentLogger),
    {
      container: 'kagome-web',
      init: proc(30),
      pidNamespace: 'pid:[1]',
      rootVisible: false,
      remote: 'local',
      user: { uid: 1000, gid: 1000, hostUid: 1001000, hostGid: 1001000 },
    },
    [
      [
        { container: 'c', init: proc(30), pidNamespace: 'p', rootVisible: false, remote: 'local' },
        "the lxd sandbox's record's user is not a user",
      ],
      [
        { init: proc(30), pidNamespace: 'p', rootVisible: false, remote: 'local', user: {} },
        'container is not a string',
      ],
    ],
  ],
  [
    'xephyr',
    new XephyrDisplay(),
    {
      server: proc(40),
      number: 12,
      authFile: '/run/x/auth',
      wm: proc(41),
      scaleEnv: { GDK_SCALE: '2' },
    },
    [
      [
        { server: proc(40), number: '12', authFile: '/a' },
        "the xephyr display's record's number is not a whole number",
      ],
      [
        { server: proc(40), number: 12, authFile: '/a', scaleEnv: { GDK_SCALE: 2 } },
        'scaleEnv is not a map of strings',
      ],
    ],
  ],
  [
    'xpra',
    new XpraDisplay(),
    { server: proc(50), client: proc(51), socket: '/run/kagome/web/xpra/sock' },
    [
      [{ client: proc(51), socket: '/s' }, "the xpra display's record's server is not a process"],
      [{ server: proc(50), socket: '/s', remote: 'no' }, 'remote is not true or false'],
    ],
  ],
  [
    'sound',
    new SoundBridge({}),
    {
      policy: 'output',
      listen: '/run/p/native',
      upstream: '/run/u',
      module: { index: 3, socket: '/m' },
    },
    [
      [{ policy: 'loud' }, "the sound bridge's record's policy is not one of none, output, duplex"],
      [{ policy: 'output', module: { index: 'three', socket: '/m' } }, 'module is not a module'],
      // down, but what it kept of its fields is still checked
      [
        { down: 'no sound server', listen: 5 },
        "the sound bridge's record's listen is not a string",
      ],
      [{ policy: 'output', down: true }, "the sound bridge's record's down is not a string"],
    ],
  ],
  [
    'clipboard',
    new ClipboardBridge({}, silentLogger),
    { direction: 'both', cage: 'web' },
    [
      [
        { direction: 'sideways', cage: 'web' },
        "the clipboard bridge's record's direction is not one of",
      ],
      [{ direction: 'both' }, "the clipboard bridge's record's cage is not a string"],
    ],
  ],
  [
    'session-bus',
    new SessionBusBridge({}),
    {
      policy: 'portal',
      daemon: proc(60),
      proxy: proc(61),
      relay: proc(62),
      portalDir: '/p',
      docBind: { source: '/a', dest: '/b' },
    },
    [
      [{ policy: 'portal', proxy: 61 }, "the session-bus bridge's record's proxy is not a process"],
      [{ daemon: proc(60) }, "the session-bus bridge's record's policy is not one of"],
      [{ down: 'no bus', docBind: { source: '/a' } }, 'docBind is not a bind'],
    ],
  ],
];

describe('each part checks its own record read back from a state file', () => {
  for (const [kind, part, good, bad] of cases) {
    it(`${kind}: takes its own record, refuses a wrong field by name`, () => {
      assert.deepEqual(part.checkRecord(good), good);
      for (const [record, words] of bad) {
        const got = part.checkRecord(record);
        assert.equal(typeof got, 'string', `${JSON.stringify(record)} was taken`);
        assert.ok((got as string).includes(words), `"${String(got)}" does not say "${words}"`);
      }
    });
  }

  it('bridges take a down record with none of their fields', () => {
    for (const bridge of [
      new SoundBridge({}),
      new ClipboardBridge({}, silentLogger),
      new SessionBusBridge({}),
    ])
      assert.deepEqual(bridge.checkRecord({ down: 'why' }), { down: 'why' });
  });
});
