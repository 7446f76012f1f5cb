import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatBytes, ownHierarchies, systemdScopeArgv } from '../../lib/runtime/cgroup.js';

// Read off this project's CI machine (cgroup v1 with a unified hierarchy beside it) and a
// Debian 12 desktop (cgroup v2 only, under systemd's user manager).
const HYBRID_MOUNTS = [
  '30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '34 30 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '38 30 0:34 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids',
  '39 30 0:35 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
  '41 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
].join('\n');
const HYBRID_CGROUP = [
  '8:pids:/kagome-test.7',
  '4:memory:/process_api/cdb0/kagome-test.7',
  '3:cpu,cpuacct:/',
  '0::/',
].join('\n');

describe('cgroups', () => {
  it("finds the service's own folder in each hierarchy, v1 by controller and v2 as unified", () => {
    const h = ownHierarchies(HYBRID_CGROUP, HYBRID_MOUNTS);
    assert.deepEqual(h, [
      { controllers: ['pids'], dir: '/sys/fs/cgroup/pids/kagome-test.7' },
      { controllers: ['memory'], dir: '/sys/fs/cgroup/memory/process_api/cdb0/kagome-test.7' },
      { controllers: ['cpu', 'cpuacct'], dir: '/sys/fs/cgroup/cpu,cpuacct' },
      { controllers: ['*'], dir: '/sys/fs/cgroup/unified' },
    ]);
  });

  it('reads a cgroup v2 desktop, and a mount that shows only a sub-tree', () => {
    const mounts =
      '35 24 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot';
    const cg = '0::/user.slice/user-1000.slice/user@1000.service/app.slice/kagome.service';
    assert.deepEqual(ownHierarchies(cg, mounts), [
      {
        controllers: ['*'],
        dir: '/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/kagome.service',
      },
    ]);
    const sub = '35 24 0:30 /user.slice /mnt/cg rw - cgroup2 cgroup2 rw';
    assert.deepEqual(ownHierarchies('0::/user.slice/x', sub), [
      { controllers: ['*'], dir: '/mnt/cg/x' },
    ]);
    assert.deepEqual(
      ownHierarchies('0::/system.slice/x', sub),
      [],
      'a cgroup outside what is mounted is not guessed at',
    );
  });

  it('starts bwrap in a transient systemd scope with the limits, infinity for none', () => {
    const argv = systemdScopeArgv(
      '/usr/bin/systemd-run',
      'web',
      { memoryMax: 1 << 30, tasksMax: 0 },
      ['bwrap', '--x'],
    );
    assert.deepEqual(argv.slice(0, 5), [
      '/usr/bin/systemd-run',
      '--user',
      '--scope',
      '--quiet',
      '--collect',
    ]);
    assert.match(argv[5]!, /^--unit=kagome-web-[0-9a-z]+\.scope$/);
    assert.deepEqual(argv.slice(6), [
      '-p',
      'MemoryMax=1073741824',
      '-p',
      'TasksMax=infinity',
      '--',
      'bwrap',
      '--x',
    ]);
  });

  it('prints sizes as people read them', () => {
    assert.equal(formatBytes(480 * 1024 * 1024), '480 MiB');
    assert.equal(formatBytes(1.5 * 1024 ** 3), '1.5 GiB');
  });
});
