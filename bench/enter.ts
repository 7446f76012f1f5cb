// Entering a running bubblewrap cage: kagome-enter alone, with and without the cage's seccomp
// filter and limits (its task rlimit, and its cgroup where one is delegated), against spawning
// the same program on the host. Each sample is the mean of a batch of
// runs of `/bin/true` (one run is too short to time alone); batches of the three kinds
// alternate, so machine noise falls on all of them alike. Run as the user the product runs as
// (`npm run bench:enter` goes through test/as-user when started as root).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { enterHelper } from '../lib/backends/enter-helper.js';
import { readBwrapInfo } from '../lib/backends/bwrap-info.js';
import { seccompProgram, seccompRules } from '../lib/backends/seccomp.js';
import { procRef } from '../lib/runtime/proc.js';
import {
  limitsSupport,
  makeCgroupV1,
  removeCgroup,
  type CageCgroup,
} from '../lib/runtime/cgroup.js';
import { type Figure, printReport, newFigure, positiveInt } from './figures.js';

const RUNS = positiveInt(process.env.BENCH_RUNS, 5);
const BATCH = 100;

function timeBatch(program: string, args: string[]): number {
  const t0 = performance.now();
  for (let i = 0; i < BATCH; i++) {
    const r = spawnSync(program, args, { stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`${program} ${args.join(' ')} exited ${r.status}`);
  }
  return (performance.now() - t0) / BATCH;
}

async function main(): Promise<void> {
  const figures: Figure[] = [];
  const figure = newFigure(figures);
  const fHost = figure('host_spawn', 'spawn /bin/true on the host', 'ms', 'spawnSync("/bin/true")');
  const fEnter = figure(
    'enter',
    'kagome-enter → /bin/true in a running cage',
    'ms',
    'kagome-enter PID START / / -- /bin/true',
  );
  const fFilter = figure(
    'enter_seccomp',
    'the same with the cage seccomp filter',
    'ms',
    'kagome-enter --seccomp FILE PID START / / -- /bin/true',
  );
  const fCost = figure(
    'seccomp_cost',
    "the filter's cost per launch",
    'ms',
    'enter_seccomp − enter, per pair of batches',
    1,
  );
  const fLimits = figure(
    'enter_limits',
    'the same with the filter and the cage limits',
    'ms',
    'kagome-enter --cgroup F... --seccomp FILE --nproc 4096 PID START / / -- /bin/true',
  );
  const fLimitsCost = figure(
    'limits_cost',
    "the limits' cost per launch",
    'ms',
    'enter_limits − enter_seccomp, per pair of batches',
    1,
  );

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-bench-enter-'));
  const filter = seccompProgram(dir, seccompRules({ nestedSandbox: true }));
  const support = limitsSupport();
  let cgroup: CageCgroup | undefined;
  if (support.how === 'cgroup v1')
    cgroup = makeCgroupV1(support, `bench-${process.pid}`, { memoryMax: 1 << 30, tasksMax: 4096 });
  else
    console.log(
      `no delegated cgroup (${support.how === 'none' ? support.why : support.how}): the limits are the task rlimit alone`,
    );
  const limitArgs = [
    ...(cgroup?.procs ?? []).flatMap((f) => ['--cgroup', f]),
    '--seccomp',
    filter,
    '--nproc',
    '4096',
  ];
  const bwrap = spawn(
    'bwrap',
    [
      '--unshare-all',
      '--unshare-user',
      '--dev',
      '/dev',
      '--proc',
      '/proc',
      '--ro-bind',
      '/usr',
      '/usr',
      '--symlink',
      'usr/bin',
      '/bin',
      '--symlink',
      'usr/lib',
      '/lib',
      '--symlink',
      'usr/lib64',
      '/lib64',
      '--tmpfs',
      '/tmp',
      '--info-fd',
      '3',
      '--',
      '/bin/sleep',
      '600',
    ],
    { stdio: ['ignore', 'inherit', 'inherit', 'pipe'] },
  );
  try {
    const init = procRef(await readBwrapInfo(bwrap.stdio[3] as NodeJS.ReadableStream));
    const helper = enterHelper();
    const target = [String(init.pid), init.start, '/', '/', '--', '/bin/true'];
    timeBatch(helper, target); // warm the page cache
    for (let i = 0; i < RUNS; i++) {
      fHost.samples.push(timeBatch('/bin/true', []));
      const plain = timeBatch(helper, target);
      const filtered = timeBatch(helper, ['--seccomp', filter, ...target]);
      fEnter.samples.push(plain);
      fFilter.samples.push(filtered);
      fCost.samples.push(filtered - plain);
      const limited = timeBatch(helper, [...limitArgs, ...target]);
      fLimits.samples.push(limited);
      fLimitsCost.samples.push(limited - filtered);
    }
  } finally {
    bwrap.kill('SIGKILL');
    await removeCgroup(cgroup);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  printReport(
    `kagome-enter benchmark — ${RUNS} samples of ${BATCH} runs each (medians), ${new Date().toISOString()}`,
    figures,
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
