import { execFileSync } from 'node:child_process';
import { CHDIR_INSIDE } from '../../lib/backends/container.js';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KagomeError } from '../../lib/errors.js';
import { execPrefix, mountArgs, runArgs, runFailure, type OciRecord } from '../../lib/backends/oci.js';
import { hostIdOf, instanceBody, instanceName, remotePlan } from '../../lib/backends/lxd.js';
import type { SandboxSpec } from '../../lib/sandbox.js';

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

describe('OCI run arguments', () => {
  const args = runArgs('docker', spec(), USER, 'kagome-web', ids);
  const after = (flag: string): string[] => args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : []));

  it('drops every capability, forbids new privileges, and keeps the root read-only', () => {
    assert.deepEqual(after('--cap-drop'), ['all']);
    assert.deepEqual(after('--security-opt'), ['no-new-privileges']);
    assert.ok(args.includes('--read-only'));
    assert.ok(args.includes('--init'), 'a reaping pid 1');
  });

  it('never shares the host network namespace: none, or the engine default (its own namespace)', () => {
    assert.deepEqual(after('--network'), ['none']);
    const full = runArgs('podman', spec({ network: 'full' }), USER, 'kagome-web', ids);
    assert.equal(full.includes('--network'), false);
    assert.equal(full.some((a) => /host/.test(a) && !a.includes('hostname')), false);
  });

  it('never pulls, runs as the user, and replaces the image\'s user list', () => {
    assert.deepEqual(after('--pull'), ['never']);
    assert.deepEqual(after('--user'), ['1000:1000']);
    assert.ok(after('--mount').includes('type=bind,source=/run/k/etc/passwd,destination=/etc/passwd,readonly=true'));
  });

  it('mounts exactly the spec\'s folders, read-only where the spec says so', () => {
    assert.deepEqual(after('--mount').slice(2), [
      'type=bind,source=/home/alice/.local/share/kagome/homes/web,destination=/home/alice',
      'type=bind,source=/srv/photos,destination=/srv/photos,readonly=true',
    ]);
    assert.ok(after('--tmpfs').includes('/run/user/1000:rw,nosuid,nodev,mode=0700'));
  });

  it('rootless podman keeps the user\'s id; root and docker do not remap', () => {
    assert.deepEqual(runArgs('podman', spec(), USER, 'k', ids).filter((a) => a === 'keep-id'), ['keep-id']);
    assert.equal(runArgs('podman', spec(), { uid: 0, gid: 0 }, 'k', ids).includes('keep-id'), false);
    assert.equal(args.includes('keep-id'), false);
  });

  it('ends with the entrypoint override, the image and sleep', () => {
    assert.deepEqual(args.slice(-4), ['--entrypoint', 'sleep', 'kagome/debian12', 'infinity']);
  });

  it('refuses a path the mount syntax cannot carry, by name', () => {
    assert.throws(() => mountArgs('podman', [{ op: 'bind', source: '/srv/a,b', dest: '/x' }]), (e: unknown) => e instanceof KagomeError && e.errorName === 'NotSupported' && /"\/srv\/a,b"/.test(e.message));
  });

  it('execs as the user in /, with only the given environment (the folder is chosen inside)', () => {
    const r = { container: 'kagome-web' } as OciRecord;
    assert.deepEqual(execPrefix(r, { argv: ['x'], env: { A: '1' }, cwd: '/home/alice', logFd: 2 }, USER), ['exec', '--user', '1000:1000', '--workdir', '/', '--env', 'A=1', 'kagome-web']);
    assert.equal(execPrefix(r, { argv: ['x'], env: {}, cwd: '/', logFd: 2, pipes: true }, USER)[1], '--interactive');
  });

  it('chooses the folder inside the container: the one asked, else the fallback, else /', () => {
    const pwd = (cwd: string, fallback: string) => execFileSync('/bin/sh', ['-c', CHDIR_INSIDE, 'kagome-cd', cwd, fallback, '/bin/sh', '-c', 'pwd'], { encoding: 'utf8' }).trim();
    assert.equal(pwd('/usr', '/tmp'), '/usr');
    assert.equal(pwd('/does/not/exist', '/tmp'), '/tmp');
    assert.equal(pwd('/does/not/exist', '/nor/this'), '/');
    assert.equal(pwd('-n', '/tmp'), '/tmp', 'a folder named like an option is a folder');
  });

  it('turns the engines\' missing-image texts into NoSuchImage with the command that builds it', () => {
    for (const text of ['Error: kagome/debian12: image not known', 'Unable to find image \'kagome/debian12:latest\' locally', 'Error response from daemon: No such image: kagome/debian12']) {
      const e = runFailure('docker', spec(), new KagomeError('BackendFailed', text));
      assert.equal(e.errorName, 'NoSuchImage');
      assert.match(e.message, /kagome image build --engine docker/);
    }
    assert.equal(runFailure('podman', spec(), new KagomeError('BackendFailed', 'Error: something else')).errorName, 'BackendFailed');
  });
});

describe('LXD instance', () => {
  it('reads host ids from LXD\'s map instead of assuming one', () => {
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

  it('is kept between starts and unprivileged, with the spec\'s mounts as disk devices and nics masked for Network=none', () => {
    const body = instanceBody(spec(), USER, 'kagome-web', { identity: ids }, ['eth0']) as { ephemeral: boolean; config: Record<string, string>; devices: Record<string, Record<string, string>> };
    assert.equal(body.ephemeral, false, 'kept: making a container copies the whole image');
    assert.equal(body.config['security.privileged'], 'false');
    assert.equal(body.config['raw.lxc'], 'lxc.init.cmd = /bin/sleep infinity');
    assert.deepEqual(body.devices.eth0, { type: 'none' });
    const disks = Object.values(body.devices).filter((d) => d.type === 'disk');
    assert.deepEqual(disks.map((d) => [d.source, d.path, d.readonly]), [
      ['/run/k/etc/passwd', '/etc/passwd', 'true'],
      ['/run/k/etc/group', '/etc/group', 'true'],
      ['/home/alice/.local/share/kagome/homes/web', '/home/alice', 'false'],
      ['/srv/photos', '/srv/photos', 'true'],
    ]);
    assert.equal((instanceBody(spec({ network: 'full' }), USER, 'k', { identity: ids }, ['eth0']) as { devices: Record<string, unknown> }).devices.eth0, undefined);
  });

  it('maps a normal user\'s own id to itself, and never maps host root', () => {
    assert.equal((instanceBody(spec(), USER, 'k', { identity: ids }, []) as { config: Record<string, string> }).config['raw.idmap'], 'uid 1000 1000\ngid 1000 1000');
    assert.equal((instanceBody(spec(), { uid: 0, gid: 0 }, 'k', { identity: ids }, []) as { config: Record<string, string> }).config['raw.idmap'], undefined);
  });

  describe('on a remote LXD', () => {
    const remote = (ops: SandboxSpec['ops']) => spec({ remote: 'far', ops: [...spec().ops, ...ops] });
    const vol = { pool: 'default', name: 'kagome-web-home' };

    it('keeps the home in a volume there, makes the xpra and runtime folders inside, and leaves out kagome\'s bridges\' folders', () => {
      const s2 = spec({ remote: 'far', ops: [
        { op: 'dir', dest: '/run/user/1000', mode: 0o700 },
        { op: 'bind', source: '/home/alice/.local/share/kagome/homes/web', dest: '/home/alice' },
        { op: 'bind', source: '/run/user/1000/kagome/cages/web/xpra', dest: '/run/kagome/xpra' },
        { op: 'bind', source: '/run/user/1000/kagome/files/web', dest: '/run/user/1000/doc' },
        { op: 'ro-bind', source: '/run/user/1000/kagome/cages/web/pulse', dest: '/run/user/1000/pulse' },
      ] });
      const plan = remotePlan(s2, '/home/alice', vol);
      assert.deepEqual(plan.devices, { 'kagome-home': { type: 'disk', pool: 'default', source: 'kagome-web-home', path: '/home/alice' } });
      assert.deepEqual(plan.dirs, [{ path: '/run/user/1000', mode: 0o700 }, { path: '/run/kagome/xpra', mode: 0o700 }]);
      assert.deepEqual(plan.leftOut, ['/run/user/1000/doc', '/run/user/1000/pulse']);
      const body = instanceBody(s2, USER, 'k', { remote: plan }, []) as { config: Record<string, string>; devices: Record<string, unknown> };
      assert.equal(body.config['raw.idmap'], undefined, 'ids of this machine mean nothing there');
      assert.equal(Object.values(body.devices).some((d) => (d as Record<string, string>).source?.startsWith('/')), false, 'no path of this machine');
    });

    it('refuses a folder of this machine (ReadOnly=) and a Xephyr display, by name', () => {
      assert.throws(() => remotePlan(remote([]), '/home/alice', vol), (e: unknown) => e instanceof KagomeError && e.errorName === 'NotSupported' && /\/srv\/photos/.test(e.message) && /remote far/.test(e.message));
      const xephyr = spec({ remote: 'far', ops: [{ op: 'bind', source: '/tmp/.X11-unix/X5', dest: '/tmp/.X11-unix/X0' }] });
      assert.throws(() => remotePlan(xephyr, '/home/alice', vol), /Display=xephyr/);
    });
  });
});
