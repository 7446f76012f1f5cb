import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CHDIR_INSIDE, containerIdOf } from '../../lib/backends/container.js';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KagomeError } from '../../lib/errors.js';
import {
  cageUser,
  dockerIsRootless,
  execPrefix,
  mountArgs,
  runArgs,
  runFailure,
  type OciRecord,
} from '../../lib/backends/oci.js';
import {
  TERM_INSIDE,
  hostIdOf,
  instanceBody,
  instanceName,
  localDirs,
  makeDirsArgv,
  remotePlan,
} from '../../lib/backends/lxd.js';
import { identityFiles, type SandboxSpec } from '../../lib/sandbox.js';

// The command lines and API bodies the container backends hand their engines, built without
// an engine: what a cage can see is decided here (the integration tests prove it from inside).

const spec = (over: Partial<SandboxSpec> = {}): SandboxSpec => ({
  name: 'web',
  hostname: 'kagome-web',
  network: 'none',
  image: 'kagome/debian12',
  ops: [
    { op: 'dir', dest: '/run/user/1000', mode: 0o700 },
    { op: 'bind', source: '/home/alice/.local/share/kagome/homes/web', dest: '/home/alice' },
    { op: 'ro-bind', source: '/srv/photos', dest: '/srv/photos' },
  ],
  env: { HOME: '/home/alice', PATH: '/usr/bin:/bin' },
  cwd: '/home/alice',
  runtimeDir: '/run/user/1000',
  ...over,
});
const ids = { passwd: '/run/k/etc/passwd', group: '/run/k/etc/group' };
const USER = { uid: 1000, gid: 1000 };
// A rootful Docker engine: ids are the host's.
const ROOTFUL_DOCKER = cageUser('docker', USER, false);
const ROOTLESS_PODMAN = cageUser('podman', USER, false);

describe('OCI run arguments', () => {
  const args = runArgs('docker', spec(), ROOTFUL_DOCKER, 'kagome-web', ids);
  const after = (flag: string): string[] =>
    args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : []));

  it('drops every capability, forbids new privileges, and keeps the root read-only', () => {
    assert.deepEqual(after('--cap-drop'), ['all']);
    assert.deepEqual(after('--security-opt'), ['no-new-privileges']);
    assert.ok(args.includes('--read-only'));
    assert.ok(args.includes('--init'), 'a reaping pid 1');
  });

  it('never shares the host network namespace: none, or the engine default (its own namespace)', () => {
    assert.deepEqual(after('--network'), ['none']);
    const full = runArgs('podman', spec({ network: 'full' }), ROOTLESS_PODMAN, 'kagome-web', ids);
    assert.equal(full.includes('--network'), false);
    assert.equal(
      full.some((a) => /host/.test(a) && !a.includes('hostname')),
      false,
    );
  });

  it("never pulls, runs as the user, and replaces the image's user list", () => {
    assert.deepEqual(after('--pull'), ['never']);
    assert.deepEqual(after('--user'), ['1000:1000']);
    assert.ok(
      after('--mount').includes(
        'type=bind,source=/run/k/etc/passwd,destination=/etc/passwd,readonly=true',
      ),
    );
  });

  it("mounts exactly the spec's folders, read-only where the spec says so", () => {
    assert.deepEqual(after('--mount').slice(2), [
      'type=bind,source=/home/alice/.local/share/kagome/homes/web,destination=/home/alice',
      'type=bind,source=/srv/photos,destination=/srv/photos,readonly=true',
    ]);
    // The runtime folder is the cage user's (Docker's tmpfs uid=/gid=), else 0700 shuts it out.
    assert.ok(
      after('--tmpfs').includes('/run/user/1000:rw,nosuid,nodev,mode=0700,uid=1000,gid=1000'),
    );
  });

  it("rootless podman keeps the user's id; root and docker do not remap", () => {
    assert.deepEqual(
      runArgs('podman', spec(), ROOTLESS_PODMAN, 'k', ids).filter((a) => a === 'keep-id'),
      ['keep-id'],
    );
    assert.equal(
      runArgs('podman', spec(), cageUser('podman', { uid: 0, gid: 0 }, false), 'k', ids).includes(
        'keep-id',
      ),
      false,
    );
    assert.equal(args.includes('keep-id'), false);
  });

  it("chooses as the cage's user the container id the engine maps to the host user", () => {
    assert.deepEqual(cageUser('podman', USER, false), { uid: 1000, gid: 1000, keepId: true });
    assert.deepEqual(cageUser('podman', { uid: 0, gid: 0 }, false), {
      uid: 0,
      gid: 0,
      keepId: false,
    });
    assert.deepEqual(cageUser('docker', USER, false), { uid: 1000, gid: 1000, keepId: false });
    // A rootless Docker engine maps its root to the user, and has no keep-id.
    assert.deepEqual(cageUser('docker', USER, true), { uid: 0, gid: 0, keepId: false });
  });

  it("knows a rootless Docker engine by what it says, or by storage that is the user's", () => {
    assert.equal(
      dockerIsRootless(
        ['name=seccomp,profile=builtin', 'name=rootless', 'name=cgroupns'],
        undefined,
        1000,
      ),
      true,
    );
    // podman 4.3's Docker API does not say it, but its storage is the user's.
    assert.equal(dockerIsRootless(['name=seccomp,profile=default'], 1000, 1000), true);
    assert.equal(
      dockerIsRootless(['name=seccomp,profile=default'], 0, 1000),
      false,
      "/var/lib/docker is root's",
    );
    assert.equal(
      dockerIsRootless(['name=userns'], undefined, 1000),
      false,
      'userns-remap is rootful',
    );
    assert.equal(dockerIsRootless(null, undefined, 1000), false);
    assert.equal(dockerIsRootless([], 0, 0), false);
  });

  it("runs a rootless Docker engine's cage as container root, as unprivileged as every other", () => {
    const a = runArgs('docker', spec(), cageUser('docker', USER, true), 'k', ids);
    const of = (flag: string): string[] => a.flatMap((x, i) => (x === flag ? [a[i + 1]!] : []));
    assert.deepEqual(of('--user'), ['0:0']);
    assert.equal(a.includes('--userns'), false);
    assert.deepEqual(of('--cap-drop'), ['all']);
    assert.deepEqual(of('--security-opt'), ['no-new-privileges']);
    assert.ok(a.includes('--read-only'));
    // The engine's tmpfs is container root's already, which is the cage's user here.
    assert.ok(of('--tmpfs').includes('/run/user/1000:rw,nosuid,nodev,mode=0700'));
    // Its user list names the user with the ids it has inside.
    assert.match(
      identityFiles({ uid: 0, gid: 0, user: 'alice', home: '/home/alice', lang: undefined }).passwd,
      /^alice:x:0:0:alice:\/home\/alice:\/bin\/sh\n/,
    );
  });

  it("gives rootless podman's runtime folder to the user with podman's own U", () => {
    const a = runArgs('podman', spec(), ROOTLESS_PODMAN, 'k', ids);
    assert.ok(a.includes('/run/user/1000:rw,nosuid,nodev,mode=0700,U'), a.join(' '));
    assert.ok(
      runArgs('podman', spec(), cageUser('podman', { uid: 0, gid: 0 }, false), 'k', ids).includes(
        '/run/user/1000:rw,nosuid,nodev,mode=0700',
      ),
    );
  });

  it("reads which container id a host id is from the kernel's map", () => {
    // rootless engine without keep-id, as the host reads /proc/PID/uid_map
    assert.equal(
      containerIdOf('         0       1000          1\n         1     100000      65536\n', 1000),
      0,
    );
    assert.equal(
      containerIdOf('         0       1000          1\n         1     100000      65536\n', 100004),
      5,
    );
    // keep-id
    assert.equal(containerIdOf('0 100000 1000\n1000 1000 1\n1001 101000 64535\n', 1000), 1000);
    // the initial namespace (rootful, no remapping)
    assert.equal(containerIdOf('         0          0 4294967295\n', 1000), 1000);
    // userns-remap: the user is not in the container at all
    assert.equal(containerIdOf('0 231072 65536\n', 1000), undefined);
    assert.equal(containerIdOf('', 1000), undefined);
  });

  it('ends with the entrypoint override, the image and sleep', () => {
    assert.deepEqual(args.slice(-4), ['--entrypoint', 'sleep', 'kagome/debian12', 'infinity']);
  });

  it('refuses a path the mount syntax cannot carry, by name', () => {
    assert.throws(
      () => mountArgs('podman', [{ op: 'bind', source: '/srv/a,b', dest: '/x' }], USER),
      (e: unknown) =>
        e instanceof KagomeError &&
        e.errorName === 'NotSupported' &&
        /"\/srv\/a,b"/.test(e.message),
    );
  });

  it('execs as the user in /, with only the given environment (the folder is chosen inside)', () => {
    const r = { container: 'kagome-web' } as OciRecord;
    assert.deepEqual(
      execPrefix(r, { argv: ['x'], env: { A: '1' }, cwd: '/home/alice', logFd: 2 }, USER),
      ['exec', '--user', '1000:1000', '--workdir', '/', '--env', 'A=1', 'kagome-web'],
    );
    assert.equal(
      execPrefix(r, { argv: ['x'], env: {}, cwd: '/', logFd: 2, pipes: true }, USER)[1],
      '--interactive',
    );
    // as the user the container was started with (container root on a rootless Docker engine)
    const rootless = { container: 'kagome-web', user: { uid: 0, gid: 0 } } as OciRecord;
    assert.deepEqual(
      execPrefix(rootless, { argv: ['x'], env: {}, cwd: '/', logFd: 2 }, USER).slice(0, 3),
      ['exec', '--user', '0:0'],
    );
  });

  it('chooses the folder inside the container: the one asked, else the fallback, else /', () => {
    const pwd = (cwd: string, fallback: string) =>
      execFileSync(
        '/bin/sh',
        ['-c', CHDIR_INSIDE, 'kagome-cd', cwd, fallback, '/bin/sh', '-c', 'pwd'],
        { encoding: 'utf8' },
      ).trim();
    assert.equal(pwd('/usr', '/tmp'), '/usr');
    assert.equal(pwd('/does/not/exist', '/tmp'), '/tmp');
    assert.equal(pwd('/does/not/exist', '/nor/this'), '/');
    assert.equal(pwd('-n', '/tmp'), '/tmp', 'a folder named like an option is a folder');
  });

  it("turns the engines' missing-image texts into NoSuchImage with the command that builds it", () => {
    for (const text of [
      'Error: kagome/debian12: image not known',
      "Unable to find image 'kagome/debian12:latest' locally",
      'Error response from daemon: No such image: kagome/debian12',
    ]) {
      const e = runFailure('docker', spec(), new KagomeError('BackendFailed', text));
      assert.equal(e.errorName, 'NoSuchImage');
      assert.match(e.message, /kagome image build --engine docker/);
    }
    assert.equal(
      runFailure('podman', spec(), new KagomeError('BackendFailed', 'Error: something else'))
        .errorName,
      'BackendFailed',
    );
  });
});

describe('LXD instance', () => {
  it("reads host ids from LXD's map instead of assuming one", () => {
    const map = [
      { Isuid: true, Isgid: false, Hostid: 1000000, Nsid: 0, Maprange: 1000 },
      { Isuid: true, Isgid: false, Hostid: 1000, Nsid: 1000, Maprange: 1 },
      { Isuid: false, Isgid: true, Hostid: 2000000, Nsid: 0, Maprange: 65536 },
    ];
    assert.equal(hostIdOf(map, 0, 'uid'), 1000000);
    assert.equal(hostIdOf(map, 999, 'uid'), 1000999);
    assert.equal(hostIdOf(map, 1000, 'uid'), 1000);
    assert.equal(hostIdOf(map, 5, 'gid'), 2000005);
    assert.equal(hostIdOf(map, 70000, 'gid'), undefined);
  });

  it('names instances as LXD allows', () => {
    assert.equal(instanceName('web_2'), 'kagome-web-2');
    assert.ok(instanceName('x'.repeat(64)).length <= 63);
  });

  it("is kept between starts and unprivileged, with the spec's mounts as disk devices and nics masked for Network=none", () => {
    const body = instanceBody(spec(), USER, 'kagome-web', { identity: ids }, ['eth0']) as {
      ephemeral: boolean;
      config: Record<string, string>;
      devices: Record<string, Record<string, string>>;
    };
    assert.equal(body.ephemeral, false, 'kept: making a container copies the whole image');
    assert.equal(body.config['security.privileged'], 'false');
    assert.equal(body.config['raw.lxc'], 'lxc.init.cmd = /bin/sleep infinity');
    assert.deepEqual(body.devices.eth0, { type: 'none' });
    const disks = Object.values(body.devices).filter((d) => d.type === 'disk');
    assert.deepEqual(
      disks.map((d) => [d.source, d.path, d.readonly]),
      [
        ['/dev/null', '/proc/keys', 'true'],
        ['/dev/null', '/proc/key-users', 'true'],
        ['/run/k/etc/passwd', '/etc/passwd', 'true'],
        ['/run/k/etc/group', '/etc/group', 'true'],
        ['/home/alice/.local/share/kagome/homes/web', '/home/alice', 'false'],
        ['/srv/photos', '/srv/photos', 'true'],
      ],
    );
    assert.equal(
      (
        instanceBody(spec({ network: 'full' }), USER, 'k', { identity: ids }, ['eth0']) as {
          devices: Record<string, unknown>;
        }
      ).devices.eth0,
      undefined,
    );
  });

  it("keeps the host user's kernel keyring out: kagome's refusals after LXD's own, each with its errno", () => {
    const body = instanceBody(spec(), USER, 'k', { identity: ids }, []) as {
      config: Record<string, string>;
    };
    const lines = body.config['security.syscalls.deny']!.split('\n');
    assert.equal(lines[0], '[all]', 'every architecture, whatever section LXD wrote last');
    for (const s of ['add_key', 'keyctl', 'request_key', 'perf_event_open'])
      assert.ok(lines.includes(`${s} errno 1`), s);
    assert.ok(lines.includes('fsopen errno 38'));
    assert.ok(
      lines.includes('ioctl errno 1 [1,21522,SCMP_CMP_MASKED_EQ,4294967295]'),
      'TIOCSTI, on the low 32 bits',
    );
    // A line without an action takes the denylist's default action, kill.
    assert.deepEqual(
      lines.slice(1).filter((l) => !/^[a-z0-9_]+ errno \d+( \[[^\]]+\])?$/.test(l)),
      [],
    );
    assert.equal(body.config['raw.seccomp'], undefined, "it would replace LXD's own policy");
  });

  it("maps a normal user's own id to itself, and never maps host root", () => {
    assert.equal(
      (instanceBody(spec(), USER, 'k', { identity: ids }, []) as { config: Record<string, string> })
        .config['raw.idmap'],
      'uid 1000 1000\ngid 1000 1000',
    );
    assert.equal(
      (
        instanceBody(spec(), { uid: 0, gid: 0 }, 'k', { identity: ids }, []) as {
          config: Record<string, string>;
        }
      ).config['raw.idmap'],
      undefined,
    );
  });

  it("makes the spec's own folders inside, as the container's root, for the cage's user", () => {
    assert.deepEqual(localDirs(spec()), [{ path: '/run/user/1000', mode: 0o700 }]);
    // The script as `lxc exec` runs it, here against a temp folder and this process's own ids.
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-dirs-'));
    try {
      const odd = path.join(root, "-a b'c", 'd');
      const kept = path.join(root, 'kept');
      fs.mkdirSync(kept, { mode: 0o777 });
      fs.chmodSync(kept, 0o777);
      const argv = makeDirsArgv(
        [
          { path: odd, mode: 0o700 },
          { path: kept, mode: 0o750 },
        ],
        process.getuid!(),
        process.getgid!(),
      );
      assert.equal(
        argv.slice(0, 2).join(' '),
        '/bin/sh -c',
        'paths are arguments, never script text',
      );
      assert.equal(
        argv.slice(3).some((a) => a.includes(odd) && a !== odd),
        false,
      );
      execFileSync(argv[0]!, argv.slice(1));
      assert.equal(fs.statSync(odd).mode & 0o7777, 0o700);
      assert.equal(
        fs.statSync(kept).mode & 0o7777,
        0o750,
        'a folder already there gets the mode too',
      );
      assert.equal(fs.statSync(odd).uid, process.getuid!());
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it("stops programs inside with a script sh accepts, signalling only as the cage's user", () => {
    // Not run here: as this test's user it would signal every process of that user.
    execFileSync('/bin/sh', ['-n', '-c', TERM_INSIDE]);
    assert.match(TERM_INSIDE, /^kill -TERM -1 /);
    assert.match(
      TERM_INSIDE,
      /"\$st" != Z/,
      'zombies (pid 1 is sleep, which reaps none) are not waited for',
    );
  });

  describe('on a remote LXD', () => {
    const remote = (ops: SandboxSpec['ops']) =>
      spec({ remote: 'far', ops: [...spec().ops, ...ops] });
    const vol = { pool: 'default', name: 'kagome-web-home' };

    it("keeps the home in a volume there, makes the xpra and runtime folders inside, and leaves out kagome's bridges' folders", () => {
      const s2 = spec({
        remote: 'far',
        ops: [
          { op: 'dir', dest: '/run/user/1000', mode: 0o700 },
          { op: 'bind', source: '/home/alice/.local/share/kagome/homes/web', dest: '/home/alice' },
          { op: 'bind', source: '/run/user/1000/kagome/cages/web/xpra', dest: '/run/kagome/xpra' },
          { op: 'bind', source: '/run/user/1000/kagome/files/web', dest: '/run/user/1000/doc' },
          {
            op: 'ro-bind',
            source: '/run/user/1000/kagome/cages/web/pulse',
            dest: '/run/user/1000/pulse',
          },
        ],
      });
      const plan = remotePlan(s2, '/home/alice', vol);
      assert.deepEqual(plan.devices, {
        'kagome-home': {
          type: 'disk',
          pool: 'default',
          source: 'kagome-web-home',
          path: '/home/alice',
        },
      });
      assert.deepEqual(plan.dirs, [
        { path: '/run/user/1000', mode: 0o700 },
        { path: '/run/kagome/xpra', mode: 0o700 },
      ]);
      assert.deepEqual(plan.leftOut, ['/run/user/1000/doc', '/run/user/1000/pulse']);
      const body = instanceBody(s2, USER, 'k', { remote: plan }, []) as {
        config: Record<string, string>;
        devices: Record<string, unknown>;
      };
      assert.equal(body.config['raw.idmap'], undefined, 'ids of this machine mean nothing there');
      const sources = Object.values(body.devices).map(
        (d) => (d as Record<string, string>).source ?? '',
      );
      assert.equal(
        sources.some((s) => s.startsWith('/') && s !== '/dev/null'),
        false,
        'no path of this machine',
      );
      assert.equal(
        (body.devices['kagome-proc-keys'] as Record<string, string>).path,
        '/proc/keys',
        "that machine's /dev/null over its /proc/keys",
      );
    });

    it('refuses a folder of this machine (ReadOnly=) and a Xephyr display, by name', () => {
      assert.throws(
        () => remotePlan(remote([]), '/home/alice', vol),
        (e: unknown) =>
          e instanceof KagomeError &&
          e.errorName === 'NotSupported' &&
          /\/srv\/photos/.test(e.message) &&
          /remote far/.test(e.message),
      );
      const xephyr = spec({
        remote: 'far',
        ops: [{ op: 'bind', source: '/tmp/.X11-unix/X5', dest: '/tmp/.X11-unix/X0' }],
      });
      assert.throws(() => remotePlan(xephyr, '/home/alice', vol), /Display=xephyr/);
    });
  });
});
