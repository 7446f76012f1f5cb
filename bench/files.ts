// Files into cages: what a grant costs on the launch path. Measures, against the real
// document portal and a running bubblewrap cage,
//   - one file granted and opened with an app (Files1.GrantPaths with "app"): from the call
//     to the program running in the cage (it writes a marker the benchmark waits for), and
//     to the D-Bus reply; baseline: the same program launched without a file
//     (Launcher1.LaunchCommand), alternating with it in the same invocation;
//   - 100 files in one call, by path (GrantPaths) and by descriptor (GrantFiles): time, and
//     per-file cost.
// Prints figures; never fails on them.

import fs from 'node:fs';
import path from 'node:path';
import dbus from 'dbus-next';
import { World } from '../test/helpers/kagome.js';
import { waitFor } from '../test/helpers/wait.js';
import { kagomeClient } from '../dbus/client.js';
import { connectSessionBus } from '../lib/bus.js';
import { type Figure, figureTable, positiveInt, stats, newFigure } from './figures.js';

const RUNS = positiveInt(process.env.BENCH_RUNS, 9);
const MANY = positiveInt(process.env.BENCH_FILES, 100);
const CAGE = 'bench';
const APP = 'org.kagome.BenchOpen.desktop';
const O_PATH = 0o10000000;
const FDS_PER_CALL = 16;

const figures: Figure[] = [];
const figure = newFigure(figures);

async function main(): Promise<void> {
  const w = await World.create({ systemData: true, documentPortal: true });
  try {
    w.writeCage(CAGE, '[Cage]\nIdleStop=0\n');
    const marker = w.homeFile(CAGE, 'opened');
    fs.mkdirSync(path.dirname(marker), { recursive: true });
    fs.writeFileSync(w.homeFile(CAGE, 'open.sh'), ': > "$HOME/opened"\n');
    fs.writeFileSync(
      path.join(w.systemApps, APP),
      `[Desktop Entry]\nType=Application\nName=Bench Open\nExec=/bin/sh ${w.env.HOME}/open.sh %F\n`,
    );
    await w.startService();
    await w.dbus.Cages1.Start(CAGE);
    const dir = path.join(w.tmp.root, 'files');
    fs.mkdirSync(dir);

    const openOne = figure(
      'grant-open',
      'grant 1 file + open it in a running cage: call → program running',
      'ms',
      'Files1.GrantPaths(cage, [file], {app})',
      50,
    );
    const openReply = figure(
      'grant-open-reply',
      "grant 1 file + open it: call → D-Bus reply (program exec'd)",
      'ms',
      'Files1.GrantPaths(cage, [file], {app})',
      50,
    );
    const launchOnly = figure(
      'launch-only',
      'baseline: the same program without a file: call → running',
      'ms',
      'Launcher1.LaunchCommand(cage, [sh, open.sh])',
    );
    const ratio = figure(
      'grant-open-ratio',
      'grant + open / launch without a file',
      'x',
      'ratio of the medians',
    );
    for (let i = 0; i < RUNS + 1; i++) {
      const f = path.join(dir, `one-${i}.txt`);
      fs.writeFileSync(f, `file ${i}\n`);
      fs.rmSync(marker, { force: true });
      let t0 = performance.now();
      await w.dbus.Files1.GrantPaths(CAGE, [Buffer.from(f)], { app: new dbus.Variant('s', APP) });
      const reply = performance.now() - t0;
      await waitFor('the marker file', () => fs.existsSync(marker), {
        timeoutMs: 20_000,
        pollMs: 1,
      });
      const running = performance.now() - t0;
      fs.rmSync(marker, { force: true });
      t0 = performance.now();
      await w.launchCommand(CAGE, ['/bin/sh', `${w.env.HOME}/open.sh`]);
      await waitFor('the marker file', () => fs.existsSync(marker), {
        timeoutMs: 20_000,
        pollMs: 1,
      });
      const base = performance.now() - t0;
      if (i === 0) continue; // warm-up: the first call pays for loading code paths
      openOne.samples.push(running);
      openReply.samples.push(reply);
      launchOnly.samples.push(base);
    }
    ratio.samples.push(stats(openOne)!.median / stats(launchOnly)!.median);

    const manyPaths = figure(
      'grant-100-paths',
      `${MANY} files granted in one call, by path`,
      'ms',
      `Files1.GrantPaths(cage, ${MANY} paths, {})`,
    );
    const perPath = figure('grant-per-file-path', 'per file, by path', 'ms', `the above / ${MANY}`);
    // A D-Bus message carries at most 16 descriptors on dbus-daemon (max_message_unix_fds):
    // a caller passes many files in calls of 16.
    const manyFds = figure(
      'grant-100-fds',
      `${MANY} files granted by descriptor, in calls of ${FDS_PER_CALL}`,
      'ms',
      `Files1.GrantFiles(cage, ${FDS_PER_CALL} O_PATH fds, {}) × ${Math.ceil(MANY / FDS_PER_CALL)}`,
    );
    const perFd = figure(
      'grant-per-file-fd',
      'per file, by descriptor',
      'ms',
      `the above / ${MANY}`,
    );
    const client = await connectSessionBus({ DBUS_SESSION_BUS_ADDRESS: w.bus.address });
    client.on('error', () => undefined);
    const byFdClient = kagomeClient(client);
    try {
      for (let r = 0; r < Math.max(3, Math.ceil(RUNS / 2)); r++) {
        const files = Array.from({ length: MANY }, (_, i) => {
          const f = path.join(dir, `many-${r}-${i}.txt`);
          fs.writeFileSync(f, `${r} ${i}\n`);
          return f;
        });
        let t0 = performance.now();
        await w.dbus.Files1.GrantPaths(
          CAGE,
          files.map((f) => Buffer.from(f)),
          {},
        );
        const byPath = performance.now() - t0;
        // Other files than the ones just granted: a file granted again only reuses its document.
        const fdFiles = files.map((f) => f + '.b');
        for (const f of fdFiles) fs.writeFileSync(f, 'b\n');
        const fds2 = fdFiles.map((f) => fs.openSync(f, O_PATH));
        t0 = performance.now();
        for (let k = 0; k < fds2.length; k += FDS_PER_CALL) {
          await byFdClient.Files1.GrantFiles(CAGE, fds2.slice(k, k + FDS_PER_CALL), {});
        }
        const byFd = performance.now() - t0;
        fds2.forEach((fd) => fs.closeSync(fd));
        manyPaths.samples.push(byPath);
        perPath.samples.push(byPath / MANY);
        manyFds.samples.push(byFd);
        perFd.samples.push(byFd / MANY);
      }
    } finally {
      client.disconnect();
    }

    const out = [
      `kagome file grants: ${RUNS} runs (after one warm-up), ${MANY} files per bulk call, document portal, bubblewrap cage running`,
      '',
      ...figureTable(figures),
      '',
      'Commands: ' + figures.map((f) => `${f.key}: ${f.command}`).join('; '),
    ];
    process.stdout.write(out.join('\n') + '\n');
    process.stdout.write(
      JSON.stringify(
        {
          runs: RUNS,
          files: MANY,
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
  } catch (e) {
    process.stderr.write(`service log:\n${w.service?.log().slice(-3000) ?? ''}\n`);
    throw e;
  } finally {
    await w.cleanup();
  }
}

await main();
