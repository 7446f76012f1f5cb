import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseCageFile } from '../../lib/cage/config.js';
import { bwrapArgs, enterArgs, hostRootOps } from '../../lib/backends/bubblewrap.js';
import { seccompRules, type SeccompRule } from '../../lib/backends/seccomp.js';
import { cageSpec, identityFiles, type HostFacts, type SandboxSpec } from '../../lib/sandbox.js';

const HOST: HostFacts = {
  uid: 1000,
  gid: 1001,
  user: 'alice',
  home: '/home/alice',
  lang: 'de_DE.UTF-8',
};
const ETC = '/run/user/1000/kagome/cages/web/etc';
const KEEPER = ['/bin/sh', '-c', 'exec sleep infinity'];

function spec(
  cageFile: string,
  host: HostFacts = HOST,
  homesDir = `${host.home}/.local/share/kagome/homes`,
): SandboxSpec {
  const config = parseCageFile(cageFile, '/cfg/web.cage', 'web', { hostHome: host.home, homesDir });
  return cageSpec(config, host);
}

interface Mount {
  flag: string;
  source: string;
  dest: string;
  index: number;
}

/** The bind mounts of a bwrap command line, with their position. */
function binds(args: string[]): Mount[] {
  const out: Mount[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') break;
    if (
      a === '--bind' ||
      a === '--ro-bind' ||
      a === '--ro-bind-try' ||
      a === '--bind-try' ||
      a === '--dev-bind'
    ) {
      out.push({ flag: a, source: args[i + 1]!, dest: args[i + 2]!, index: i });
      i += 2;
    }
  }
  return out;
}

/** Index of a flag followed by the given operands. */
function indexOf(args: string[], ...seq: string[]): number {
  for (let i = 0; i + seq.length <= args.length; i++) {
    if (seq.every((s, j) => args[i + j] === s)) return i;
  }
  return -1;
}

function setenvs(args: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--') break;
    if (args[i] === '--setenv') {
      env[args[i + 1]!] = args[i + 2]!;
      i += 2;
    }
  }
  return env;
}

describe('bwrapArgs namespaces and process', () => {
  for (const network of ['none', 'full'] as const) {
    it(`unshares every namespace, including the network, for Network=${network}`, () => {
      const args = bwrapArgs(spec(`[Cage]\nNetwork=${network}\n`), ETC, KEEPER, { infoFd: 3 });
      for (const flag of [
        '--unshare-user',
        '--unshare-ipc',
        '--unshare-pid',
        '--unshare-uts',
        '--unshare-net',
      ]) {
        assert.ok(args.includes(flag), `${flag} in ${args.join(' ')}`);
      }
      assert.ok(!args.includes('--share-net'));
      assert.ok(!args.includes('--unshare-all'), 'explicit flags only');
      assert.ok(args.includes('--new-session'));
      assert.ok(args.includes('--clearenv'));
      assert.ok(
        args.indexOf('--clearenv') < args.indexOf('--setenv'),
        '--clearenv before any --setenv',
      );
    });
  }

  it('sets the hostname and the info fd, and the block fd only when given', () => {
    const s = spec('[Cage]\n');
    const without = bwrapArgs(s, ETC, KEEPER, { infoFd: 3 });
    assert.notEqual(indexOf(without, '--hostname', 'kagome-web'), -1);
    assert.notEqual(indexOf(without, '--info-fd', '3'), -1);
    assert.ok(!without.includes('--block-fd'));
    const withBlock = bwrapArgs(s, ETC, KEEPER, { infoFd: 7, blockFd: 4 });
    assert.notEqual(indexOf(withBlock, '--info-fd', '7'), -1);
    assert.notEqual(indexOf(withBlock, '--block-fd', '4'), -1);
  });

  it('ends with the working directory and the keeper after --', () => {
    const args = bwrapArgs(spec('[Cage]\n'), ETC, KEEPER, { infoFd: 3 });
    assert.deepEqual(args.slice(-(KEEPER.length + 3)), ['--chdir', '/home/alice', '--', ...KEEPER]);
  });
});

describe('bwrapArgs filesystem', () => {
  it('binds /usr and /etc read-only and replaces the user list', () => {
    const args = bwrapArgs(spec('[Cage]\n'), ETC, KEEPER, { infoFd: 3 });
    const b = binds(args);
    const usr = b.find((m) => m.dest === '/usr');
    assert.deepEqual(usr && [usr.flag, usr.source], ['--ro-bind', '/usr']);
    const etc = b.find((m) => m.dest === '/etc')!;
    assert.equal(etc.flag, '--ro-bind');
    for (const f of ['passwd', 'group', 'hostname']) {
      const m = b.find((x) => x.dest === `/etc/${f}`);
      assert.ok(m, `/etc/${f} is replaced`);
      assert.equal(m.flag, '--ro-bind');
      assert.equal(m.source, `${ETC}/${f}`);
      assert.ok(m.index > etc.index, `/etc/${f} is mounted over /etc, not under it`);
    }
    assert.ok(
      !b.some(
        (m) =>
          m.flag !== '--ro-bind' &&
          m.flag !== '--ro-bind-try' &&
          (m.dest === '/usr' || m.dest.startsWith('/etc')),
      ),
    );
  });

  it('never binds the host home, the host X sockets or the host session bus', () => {
    const saved = { ...process.env };
    process.env.DBUS_SESSION_BUS_ADDRESS = 'unix:path=/run/user/1000/bus';
    process.env.XDG_RUNTIME_DIR = '/run/user/1000';
    process.env.DISPLAY = ':0';
    try {
      for (const network of ['none', 'full'] as const) {
        const args = bwrapArgs(
          spec(`[Cage]\nNetwork=${network}\nReadWrite=~/Projects\nReadOnly=/srv/photos\n`),
          ETC,
          KEEPER,
          { infoFd: 3 },
        );
        for (const m of binds(args)) {
          assert.notEqual(m.source, '/home/alice', 'the host home is never a bind source');
          assert.notEqual(m.source, '/home/alice/', 'the host home is never a bind source');
          assert.notEqual(m.source, '/', 'the host root is never bound');
        }
        for (const a of args) {
          assert.ok(!a.includes('/tmp/.X11-unix'), `no X socket: ${a}`);
          assert.ok(!a.includes('/run/user/1000/bus'), `no session bus: ${a}`);
        }
      }
    } finally {
      for (const k of ['DBUS_SESSION_BUS_ADDRESS', 'XDG_RUNTIME_DIR', 'DISPLAY']) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    }
  });

  it('binds the cage home read-write at the host home path', () => {
    const args = bwrapArgs(spec('[Cage]\n'), ETC, KEEPER, { infoFd: 3 });
    const home = binds(args).filter((m) => m.dest === '/home/alice');
    assert.equal(home.length, 1);
    assert.deepEqual(
      [home[0]!.flag, home[0]!.source],
      ['--bind', '/home/alice/.local/share/kagome/homes/web'],
    );
  });

  it('mounts the home and the shared folders after the tmpfs /tmp (a home under /tmp stays visible)', () => {
    const host: HostFacts = { ...HOST, home: '/tmp/test-home' };
    const s = spec('[Cage]\nReadWrite=/tmp/shared\nReadOnly=/tmp/ro\n', host, '/tmp/kagome-homes');
    const args = bwrapArgs(s, ETC, KEEPER, { infoFd: 3 });
    const tmp = indexOf(args, '--tmpfs', '/tmp');
    assert.notEqual(tmp, -1);
    const run = indexOf(args, '--tmpfs', '/run');
    assert.notEqual(run, -1);
    const home = indexOf(args, '--bind', '/tmp/kagome-homes/web', '/tmp/test-home');
    assert.ok(home > tmp, `home bind (${home}) after --tmpfs /tmp (${tmp})`);
    assert.ok(indexOf(args, '--bind', '/tmp/shared', '/tmp/shared') > tmp);
    assert.ok(indexOf(args, '--ro-bind', '/tmp/ro', '/tmp/ro') > tmp);
    // the runtime dir is created inside the tmpfs /run, so after it
    const runtime = indexOf(args, '--perms', '0700', '--dir', '/run/user/1000');
    assert.ok(runtime > run, `runtime dir (${runtime}) after --tmpfs /run (${run})`);
  });

  it('uses --ro-bind for ReadOnly and --bind for ReadWrite, in file order', () => {
    const args = bwrapArgs(
      spec('[Cage]\nReadOnly=/srv/photos;/opt/tools:/tools\nReadWrite=~/Projects/site:~/site\n'),
      ETC,
      KEEPER,
      {
        infoFd: 3,
      },
    );
    const ro1 = indexOf(args, '--ro-bind', '/srv/photos', '/srv/photos');
    const ro2 = indexOf(args, '--ro-bind', '/opt/tools', '/tools');
    const rw = indexOf(args, '--bind', '/home/alice/Projects/site', '/home/alice/site');
    const home = indexOf(
      args,
      '--bind',
      '/home/alice/.local/share/kagome/homes/web',
      '/home/alice',
    );
    assert.ok(ro1 > 0 && ro2 > ro1 && rw > ro2, `${ro1} ${ro2} ${rw}`);
    assert.ok(
      home < rw,
      'a folder shared into the home is mounted over the cage home, not hidden by it',
    );
    assert.equal(indexOf(args, '--bind', '/srv/photos', '/srv/photos'), -1);
    assert.equal(indexOf(args, '--ro-bind', '/home/alice/Projects/site', '/home/alice/site'), -1);
  });

  it('overrides resolv.conf only for Network=full, after /etc', () => {
    const none = bwrapArgs(spec('[Cage]\n'), ETC, KEEPER, { infoFd: 3 });
    assert.ok(!none.includes('/etc/resolv.conf'));
    const full = bwrapArgs(spec('[Cage]\nNetwork=full\n'), ETC, KEEPER, { infoFd: 3, blockFd: 4 });
    const resolv = indexOf(full, '--ro-bind', `${ETC}/resolv.conf`, '/etc/resolv.conf');
    assert.ok(resolv > indexOf(full, '--ro-bind', '/etc', '/etc'));
  });

  it('hostRootOps adds resolv.conf only with a network (full or internet)', () => {
    const none = hostRootOps(ETC, 'none');
    const full = hostRootOps(ETC, 'full');
    assert.deepEqual(hostRootOps(ETC, 'internet'), full);
    assert.equal(full.length, none.length + 1);
    assert.deepEqual(full.at(-1), {
      op: 'ro-bind',
      source: `${ETC}/resolv.conf`,
      dest: '/etc/resolv.conf',
    });
    assert.ok(!none.some((o) => 'dest' in o && o.dest === '/etc/resolv.conf'));
    assert.ok(none.some((o) => o.op === 'tmpfs' && o.dest === '/tmp'));
    assert.ok(none.some((o) => o.op === 'proc' && o.dest === '/proc'));
    assert.ok(none.some((o) => o.op === 'dev' && o.dest === '/dev'));
    assert.ok(
      !none.some(
        (o) =>
          (o.op === 'bind' || o.op === 'ro-bind') &&
          (o.source === '/home' || o.source === '/tmp' || o.source === '/run'),
      ),
    );
  });

  it('marks optional host files with --ro-bind-try', () => {
    const args = bwrapArgs(spec('[Cage]\n'), ETC, KEEPER, { infoFd: 3 });
    assert.notEqual(
      indexOf(args, '--ro-bind-try', '/var/cache/fontconfig', '/var/cache/fontconfig'),
      -1,
    );
    assert.equal(indexOf(args, '--ro-bind', '/var/cache/fontconfig', '/var/cache/fontconfig'), -1);
  });
});

describe('bwrapArgs environment', () => {
  let saved: string | undefined;
  beforeEach(() => {
    saved = process.env.DBUS_SESSION_BUS_ADDRESS;
    process.env.DBUS_SESSION_BUS_ADDRESS = 'unix:path=/run/user/1000/bus';
  });
  afterEach(() => {
    if (saved === undefined) delete process.env.DBUS_SESSION_BUS_ADDRESS;
    else process.env.DBUS_SESSION_BUS_ADDRESS = saved;
  });

  it('sets exactly the spec environment and nothing from the service', () => {
    const s = spec('[Cage]\nEnvironment=EDITOR=vi;LANG=C.UTF-8\n');
    const env = setenvs(bwrapArgs(s, ETC, KEEPER, { infoFd: 3 }));
    assert.deepEqual(env, s.env);
    assert.equal(env.DBUS_SESSION_BUS_ADDRESS, undefined);
    assert.equal(env.HOME, '/home/alice');
    assert.equal(env.USER, 'alice');
    assert.equal(env.XDG_RUNTIME_DIR, '/run/user/1000');
    assert.equal(env.KAGOME_CAGE, 'web');
    assert.equal(env.EDITOR, 'vi');
    assert.equal(env.LANG, 'C.UTF-8', 'the cage file overrides the host language');
    assert.equal(env.NO_AT_BRIDGE, '1');
  });

  it('takes LANG from the host when the cage does not set it', () => {
    assert.equal(spec('[Cage]\n').env.LANG, 'de_DE.UTF-8');
    assert.equal(spec('[Cage]\n', { ...HOST, lang: undefined }).env.LANG, 'C.UTF-8');
  });
});

describe('cageSpec', () => {
  it('describes the cage from its config', () => {
    const s = spec('[Cage]\nNetwork=full\n');
    assert.equal(s.name, 'web');
    assert.equal(s.hostname, 'kagome-web');
    assert.equal(s.network, 'full');
    assert.equal(s.cwd, '/home/alice');
    assert.equal(s.runtimeDir, '/run/user/1000');
    assert.deepEqual(s.ops.slice(0, 2), [
      { op: 'dir', dest: '/run/user/1000', mode: 0o700 },
      { op: 'bind', source: '/home/alice/.local/share/kagome/homes/web', dest: '/home/alice' },
    ]);
  });

  it('keeps the hostname within 63 characters', () => {
    const name = 'n'.repeat(64);
    const config = parseCageFile('[Cage]\n', '/cfg/x.cage', name, {
      hostHome: HOST.home,
      homesDir: '/h',
    });
    assert.equal(cageSpec(config, HOST).hostname.length, 63);
  });
});

describe('enterArgs', () => {
  it('names the cage by pid and start time, the wished and fallback directories, then the program', () => {
    const argv = ['firefox', '--new-window', 'https://example.org'];
    const args = enterArgs({ pid: 4242, start: '987' }, '/home/alice/site', '/home/alice', argv);
    assert.deepEqual(args, ['4242', '987', '/home/alice/site', '/home/alice', '--', ...argv]);
  });

  it('keeps an argv with leading dashes after --', () => {
    const argv = ['--help', '-x', '--', '--outer-userns'];
    const args = enterArgs({ pid: 7, start: '1' }, '/', '/', argv);
    assert.deepEqual(args.slice(-argv.length), argv);
    assert.equal(args[args.length - argv.length - 1], '--');
    assert.notEqual(
      args[0],
      '--outer-userns',
      "the program can never turn into the helper's own option",
    );
  });
});

describe('identityFiles', () => {
  it('lists only the user and nobody', () => {
    const { passwd, group } = identityFiles(HOST);
    assert.deepEqual(passwd.split('\n'), [
      'alice:x:1000:1001:alice:/home/alice:/bin/sh',
      'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
      '',
    ]);
    assert.deepEqual(group.split('\n'), ['alice:x:1001:', 'nogroup:x:65534:', '']);
    assert.ok(!/^root:/m.test(passwd));
    assert.ok(!/^root:/m.test(group));
  });

  it('does not list nobody twice when the user is nobody', () => {
    const { passwd, group } = identityFiles({ ...HOST, user: 'nobody', uid: 65534, gid: 65534 });
    assert.equal(passwd.trim().split('\n').length, 1);
    assert.equal(group.trim().split('\n').length, 1);
    assert.match(passwd, /^nobody:x:65534:65534:/);
  });
});

describe('the seccomp filter in the command lines', () => {
  it('bwrap reads the filter from the descriptor it is given', () => {
    const args = bwrapArgs(
      cageSpec(
        parseCageFile('[Cage]\n', '/cfg/x.cage', 'x', { hostHome: HOST.home, homesDir: '/h' }),
        HOST,
      ),
      '/etc-dir',
      ['k'],
      { infoFd: 3, seccompFd: 6 },
    );
    assert.notEqual(indexOf(args, '--seccomp', '6'), -1);
    assert.ok(
      args.indexOf('--seccomp') < args.indexOf('--'),
      'an option of bwrap, not of the program',
    );
  });

  it("kagome-enter sets the cage's task limit on every program it carries in", () => {
    const args = enterArgs({ pid: 9, start: '5' }, '/w', '/h', ['prog'], '/f.bpf', 64);
    assert.deepEqual(args.slice(0, 6), ['--seccomp', '/f.bpf', '--nproc', '64', '9', '5']);
    assert.ok(
      !enterArgs({ pid: 9, start: '5' }, '/w', '/h', ['prog'], '/f.bpf').includes('--nproc'),
    );
  });

  it('kagome-enter gets the same filter file before everything else', () => {
    const args = enterArgs(
      { pid: 9, start: '5' },
      '/w',
      '/h',
      ['prog'],
      '/run/user/1/kagome/cache/seccomp-x.bpf',
    );
    assert.deepEqual(args.slice(0, 2), ['--seccomp', '/run/user/1/kagome/cache/seccomp-x.bpf']);
    assert.deepEqual(args.slice(2), ['9', '5', '/w', '/h', '--', 'prog']);
  });

  it("hides the kernel keyring's listings behind an empty file, after /proc is mounted", () => {
    const ops = hostRootOps('/etc-dir', 'none');
    const proc = ops.findIndex((o) => o.op === 'proc');
    for (const f of ['/proc/keys', '/proc/key-users']) {
      const i = ops.findIndex((o) => o.op === 'ro-bind' && o.dest === f);
      assert.ok(i > proc, `${f} is covered after /proc`);
      assert.deepEqual(ops[i], { op: 'ro-bind', source: '/etc-dir/empty', dest: f });
    }
  });
});

describe('seccompRules', () => {
  const find = (rules: SeccompRule[], syscall: string) =>
    rules.filter((r) => r.syscall === syscall);

  it('blocks what flatpak blocks: the keyring, dmesg, perf, NUMA, the mount family', () => {
    const rules = seccompRules({ nestedSandbox: true });
    for (const s of [
      'add_key',
      'keyctl',
      'request_key',
      'syslog',
      'uselib',
      'acct',
      'modify_ldt',
      'quotactl',
      'perf_event_open',
      'move_pages',
      'mbind',
      'mount',
      'umount2',
      'pivot_root',
    ]) {
      assert.deepEqual(
        find(rules, s).map((r) => r.errno),
        ['EPERM'],
        s,
      );
    }
    for (const s of [
      'clone3',
      'open_tree',
      'move_mount',
      'fsopen',
      'fsconfig',
      'fsmount',
      'fspick',
      'mount_setattr',
    ])
      assert.deepEqual(
        find(rules, s).map((r) => r.errno),
        ['ENOSYS'],
        s,
      );
    assert.equal(
      find(rules, 'chroot').length,
      0,
      "browsers' sandboxes chroot their content processes",
    );
  });

  it('refuses TIOCSTI and TIOCLINUX by the low 32 bits of the request', () => {
    const ioctl = find(seccompRules({ nestedSandbox: true }), 'ioctl');
    assert.deepEqual(
      ioctl.map((r) => r.args),
      [
        [{ index: 1, op: 'MASKED_EQ', mask: 0xffffffff, value: 0x5412 }],
        [{ index: 1, op: 'MASKED_EQ', mask: 0xffffffff, value: 0x541c }],
      ],
    );
  });

  it('allows only unix, inet, inet6 and netlink sockets', () => {
    const socket = find(seccompRules({ nestedSandbox: true }), 'socket');
    const refused = socket.filter((r) => r.args![0]!.op === 'EQ').map((r) => r.args![0]!.value);
    for (const allowed of [0, 1, 2, 10, 16])
      assert.ok(!refused.includes(allowed), `family ${allowed}`);
    for (const other of [3, 4, 5, 9, 11, 15]) assert.ok(refused.includes(other), `family ${other}`);
    assert.deepEqual(socket.at(-1)!.args, [{ index: 0, op: 'GE', value: 17 }]);
    assert.ok(socket.every((r) => r.errno === 'EAFNOSUPPORT'));
  });

  it('leaves user namespaces to the cage unless NestedSandbox=false', () => {
    assert.equal(find(seccompRules({ nestedSandbox: true }), 'unshare').length, 0);
    const off = seccompRules({ nestedSandbox: false });
    for (const s of ['unshare', 'clone'])
      assert.deepEqual(find(off, s)[0]!.args, [
        { index: 0, op: 'MASKED_EQ', mask: 0x10000000, value: 0x10000000 },
      ]);
  });
});
