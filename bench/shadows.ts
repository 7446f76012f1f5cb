// Shadow entries at scale: 1,000 generated desktop entries, each with translations, actions
// and MIME types, all put in a cage. Measures
//   - indexing them (DesktopIndex.scan, what finding installed programs costs), against
//     update-desktop-database reading the same folder, as a baseline in the same invocation;
//   - checking all 1,000 shadows against their originals (AppShadows.sync with nothing to
//     change), what the service does when it starts;
//   - an original changed on disk until its shadow is rewritten, through the real service
//     and its watcher;
//   - the idle service with the watcher on all of this: CPU time and wake-ups (context
//     switches of all its threads) over a quiet period.
// Prints figures; never fails on them.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { World } from '../test/helpers/kagome.js';
import { waitFor } from '../test/helpers/wait.js';
import { DesktopIndex } from '../xdg/desktop-index.js';
import { AppShadows } from '../lib/desktop/app-shadows.js';
import { isShadow } from '../lib/desktop/shadow.js';
import { KAGOME_OPEN } from '../lib/apps.js';
import { type Figure, median, positiveInt, figureTable, stats, newFigure } from './figures.js';

const RUNS = positiveInt(process.env.BENCH_RUNS, 7);
const ENTRIES = positiveInt(process.env.BENCH_ENTRIES, 1000);
const IDLE_SECONDS = positiveInt(process.env.BENCH_IDLE_SECONDS, 10);
const LOCALES = [
  'de',
  'fr',
  'es',
  'it',
  'pt_BR',
  'ru',
  'ja',
  'zh_CN',
  'sr@latin',
  'pl',
  'nl',
  'sv',
  'fi',
  'cs',
  'tr',
  'uk',
  'ko',
  'ar',
  'he',
  'el',
];

const figures: Figure[] = [];
const figure = newFigure(figures);

function entryText(i: number, version = 1): string {
  const names = LOCALES.map(
    (l) => `Name[${l}]=Programm ${i} (${l})\nComment[${l}]=Kommentar ${i} ${l}`,
  ).join('\n');
  return `[Desktop Entry]
Type=Application
Version=1.5
Name=Program ${i}
${names}
Comment=Generated entry ${i}, version ${version}
Exec=bench-program-${i} --open %U
Icon=bench-${i}
Categories=Utility;
MimeType=application/x-bench-${i};text/x-bench-${i};
Keywords=bench;generated;
Actions=new-window;private;

[Desktop Action new-window]
Name=New Window
Exec=bench-program-${i} --new-window

[Desktop Action private]
Name=Private Window
Exec=bench-program-${i} --private %u
`;
}

const idOf = (i: number): string => `org.kagome.Bench${String(i).padStart(4, '0')}.desktop`;

async function time<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const v = await fn();
  return [performance.now() - t0, v];
}

/** CPU ms (user+system) and context switches of every thread of a process. */
function processActivity(pid: number): { cpuMs: number; switches: number } {
  const tick = 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuMs = (Number(fields[11]) + Number(fields[12])) * tick;
  let switches = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    const status = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
    for (const m of status.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)$/gm))
      switches += Number(m[1]);
  }
  return { cpuMs, switches };
}

async function main(): Promise<void> {
  const started = performance.now();
  const w = await World.create({ systemData: true });
  try {
    w.writeCage('bench', '[Cage]\n');
    for (let i = 0; i < ENTRIES; i++)
      fs.writeFileSync(path.join(w.systemApps, idOf(i)), entryText(i));
    const dataHome = w.env.XDG_DATA_HOME!;
    const shadowOptions = {
      dataHome,
      dataDirs: [path.dirname(w.systemApps)],
      launcher: KAGOME_OPEN,
      nameFormat: async () => '{name} [{cage}]',
      // One refresh at the end instead of one per add: this is setup, not a figure.
      updateDatabase: async () => undefined,
      programExists: async () => true,
    };
    const shadows = new AppShadows(shadowOptions);
    for (let i = 0; i < ENTRIES; i++) await shadows.add('bench', idOf(i));
    process.stderr.write(`${ENTRIES} entries and shadows written\n`);

    const scan = figure(
      'index',
      `index ${ENTRIES} entries (DesktopIndex.scan)`,
      'ms',
      'new DesktopIndex({dataDirs:[system]}).scan()',
      500,
    );
    const baseline = figure(
      'baseline',
      `update-desktop-database on the same ${ENTRIES} (baseline)`,
      'ms',
      'update-desktop-database -q SYSTEM/applications',
    );
    const ratio = figure('ratio', 'index / baseline', 'x', 'per run, paired');
    const check = figure(
      'startup_check',
      `index + check of ${ENTRIES} shadows against their originals, cold (what the service does at start)`,
      'ms',
      'a new AppShadows(...).sync(): lists every shadow, scans every applications folder once, re-renders each shadow and compares',
      500,
    );
    const fresh = (): AppShadows =>
      new AppShadows({ ...shadowOptions, updateDatabase: async () => undefined });
    for (let run = 0; run < RUNS; run++) {
      const [tScan, result] = await time(() =>
        new DesktopIndex({
          dataDirs: [path.dirname(w.systemApps)],
          programExists: async () => true,
        }).scan({ skip: isShadow }),
      );
      if (result.entries.size !== ENTRIES)
        throw new Error(`indexed ${result.entries.size} entries, expected ${ENTRIES}`);
      const [tBase] = await time(async () =>
        execFileSync('update-desktop-database', ['-q', w.systemApps]),
      );
      const [tCheck, report] = await time(() => fresh().sync());
      const changed =
        report.updated.length +
        report.dormant.length +
        report.revived.length +
        report.problems.length;
      if (changed) throw new Error(`sync changed ${changed} shadows; nothing should have changed`);
      scan.samples.push(tScan);
      baseline.samples.push(tBase);
      ratio.samples.push(tScan / tBase);
      check.samples.push(tCheck);
    }

    const service = await w.startService();
    const pid = service.child.pid!;
    await waitForLog(w, 'keeping menu entries in sync: watching');
    const follow = figure(
      'follow',
      'original changed on disk → shadow rewritten (service + watcher)',
      'ms',
      'write SYSTEM/applications/ID; poll the shadow every 2 ms',
      1000,
    );
    for (let run = 0; run < RUNS; run++) {
      const i = run % ENTRIES;
      const shadowFile = path.join(dataHome, 'applications', idOf(i));
      const marker = `version ${run + 2}`;
      await sleep(300);
      const t0 = performance.now();
      fs.writeFileSync(path.join(w.systemApps, idOf(i)), entryText(i, run + 2));
      await waitFor(
        `${shadowFile} rewritten`,
        () => fs.readFileSync(shadowFile, 'utf8').includes(marker),
        { timeoutMs: 10_000, pollMs: 2 },
      );
      follow.samples.push(performance.now() - t0);
    }

    const cpu = figure(
      'idle_cpu',
      `idle service, CPU time per second (watching ${ENTRIES} entries)`,
      'ms',
      `/proc/PID/stat utime+stime over ${IDLE_SECONDS} s`,
    );
    const wake = figure(
      'idle_wakeups',
      'idle service, wake-ups per second (all threads)',
      '/s',
      `sum of /proc/PID/task/*/status context switches over ${IDLE_SECONDS} s`,
      0.5,
    );
    await sleep(2000);
    for (let run = 0; run < Math.min(RUNS, 3); run++) {
      const a = processActivity(pid);
      await sleep(IDLE_SECONDS * 1000);
      const b = processActivity(pid);
      cpu.samples.push((b.cpuMs - a.cpuMs) / IDLE_SECONDS);
      wake.samples.push((b.switches - a.switches) / IDLE_SECONDS);
    }

    const out = [
      `kagome shadow-entry benchmark — ${ENTRIES} entries, ${RUNS} runs per figure (medians), ${new Date().toISOString()}`,
      `command: BENCH_RUNS=${RUNS} BENCH_ENTRIES=${ENTRIES} node dist/bench/shadows.js`,
      `host: ${os.cpus().length} CPUs, ${os.type()} ${os.release()}, node ${process.version}; load average ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}; took ${((performance.now() - started) / 1000).toFixed(0)} s`,
      '',
      ...figureTable(figures),
      '',
      'how each figure was taken:',
      ...figures.map((f) => `  ${f.key}: ${f.command}`),
      `  (ratio of the medians: ${(median(scan.samples) / median(baseline.samples)).toFixed(2)} x)`,
    ];
    process.stdout.write(out.join('\n') + '\n');
    process.stdout.write(
      JSON.stringify(
        {
          entries: ENTRIES,
          runs: RUNS,
          figures: figures.map((f) => ({
            key: f.key,
            unit: f.unit,
            ...stats(f),
            target: f.target ?? null,
            samples: f.samples,
          })),
        },
        null,
        2,
      ) + '\n',
    );
  } finally {
    await w.cleanup();
  }
}

async function waitForLog(w: World, text: string): Promise<void> {
  await waitFor(
    `the service to log ${JSON.stringify(text)}`,
    () => w.service!.log().includes(text),
    { timeoutMs: 30_000, pollMs: 20 },
  );
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(
      `bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
    );
    process.exit(1);
  },
);
