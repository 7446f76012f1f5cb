// Launch to window for each backend, cold (the cage is started by the launch) and warm (a
// second program into the running cage), against bubblewrap in the same run. Prints figures,
// never fails on them.
//
// One world, one service, every engine at once (podman with its own storage, the docker
// client against podman's Docker API, a private LXD): each round launches into every backend
// in turn, so the machine's drift hits all of them alike, and the ratios are per round.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { World } from '../test/helpers/kagome.js';
import { waitFor } from '../test/helpers/wait.js';
import { startDockerApi, startPodman, type Engine } from '../test/helpers/engines.js';
import { startLxd } from '../test/helpers/lxd.js';
import { ensureTestImage } from '../test/helpers/images.js';
import { type Figure, median, positiveInt, figureTable, newFigure } from './figures.js';
import { cleanupGuard } from './cleanup.js';

const execFileP = promisify(execFile);
const RUNS = positiveInt(process.env.BENCH_RUNS, 5);
const WATCHDOG_MS = Number(process.env.BENCH_WATCHDOG_MS ?? 15 * 60_000);
const BACKENDS = ['bubblewrap', 'podman', 'docker', 'lxd'] as const;
type Kind = (typeof BACKENDS)[number];

const figures: Figure[] = [];
const figure = newFigure(figures);

async function windowShown(display: string, instance: string): Promise<boolean> {
  try {
    const r = await execFileP(
      'xdotool',
      ['search', '--onlyvisible', '--classname', `^${instance}$`],
      { env: { DISPLAY: display } },
    );
    return r.stdout.trim() !== '';
  } catch {
    return false;
  }
}

async function launchToWindow(w: World, cage: string, instance: string): Promise<number> {
  const t0 = performance.now();
  await w.launchCommand(cage, ['xlogo', '-name', instance]);
  await waitFor(
    `a window for ${instance} in cage ${cage}`,
    () => windowShown(w.display, instance),
    { timeoutMs: 60_000, pollMs: 5 },
  );
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const engines: Engine[] = [];
  let w: World | undefined;
  const { cleanupOnce, disarm } = cleanupGuard(
    async () => {
      await w?.cleanup();
      for (const e of engines.reverse()) await e.stop().catch(() => undefined);
    },
    WATCHDOG_MS,
    (m) => console.error(m),
  );
  try {
    const podman = await startPodman();
    engines.push(podman);
    const docker = await startDockerApi();
    engines.push(docker);
    const lxd = await startLxd();
    engines.push(lxd);
    await ensureTestImage('podman', podman.env);
    await ensureTestImage('lxd', lxd.env);
    w = await World.create();
    for (const b of BACKENDS)
      w.writeCage(`bench-${b}`, `[Cage]\nBackend=${b}\nNetwork=none\nIdleStop=0\n`);
    await w.startService({ env: { ...podman.env, ...docker.env, ...lxd.env } });

    const cold: Record<Kind, Figure> = Object.fromEntries(
      BACKENDS.map((b) => [
        b,
        figure(`cold.${b}`, `cold launch to window, ${b}`, 'ms', 'npm run bench:containers'),
      ]),
    ) as Record<Kind, Figure>;
    const warm: Record<Kind, Figure> = Object.fromEntries(
      BACKENDS.map((b) => [
        b,
        figure(`warm.${b}`, `warm launch to window, ${b}`, 'ms', 'npm run bench:containers'),
      ]),
    ) as Record<Kind, Figure>;
    const coldRatio = Object.fromEntries(
      BACKENDS.slice(1).map((b) => [
        b,
        figure(`cold.ratio.${b}`, `cold ${b} / bubblewrap`, 'x', 'npm run bench:containers'),
      ]),
    ) as Record<Kind, Figure>;
    const warmRatio = Object.fromEntries(
      BACKENDS.slice(1).map((b) => [
        b,
        figure(`warm.ratio.${b}`, `warm ${b} / bubblewrap`, 'x', 'npm run bench:containers'),
      ]),
    ) as Record<Kind, Figure>;

    // One unmeasured round: first use of an engine warms caches (its binaries, the image's layers).
    for (const b of BACKENDS) {
      await launchToWindow(w, `bench-${b}`, `warmup${b}`);
      await w.dbus.Cages1.Stop(`bench-${b}`);
    }
    for (let i = 0; i < RUNS; i++) {
      const round: Partial<Record<Kind, { cold: number; warm: number }>> = {};
      for (const b of BACKENDS) {
        const cage = `bench-${b}`;
        const c = await launchToWindow(w, cage, `cold${b}${i}`);
        const h = await launchToWindow(w, cage, `warm${b}${i}`);
        round[b] = { cold: c, warm: h };
        cold[b].samples.push(c);
        warm[b].samples.push(h);
        await w.dbus.Cages1.Stop(cage);
        await new Promise((r) => setTimeout(r, 300));
      }
      for (const b of BACKENDS.slice(1)) {
        coldRatio[b].samples.push(round[b]!.cold / round.bubblewrap!.cold);
        warmRatio[b].samples.push(round[b]!.warm / round.bubblewrap!.warm);
      }
      console.error(
        `round ${i + 1}/${RUNS}: ` +
          BACKENDS.map(
            (b) => `${b} ${round[b]!.cold.toFixed(0)}/${round[b]!.warm.toFixed(0)} ms`,
          ).join(', '),
      );
    }
    console.log(
      `Launch to window by backend (${RUNS} rounds, medians; cold = the launch starts the cage):`,
    );
    for (const line of figureTable(figures)) console.log(line);
    console.log(
      `bubblewrap cold ${median(cold.bubblewrap.samples).toFixed(0)} ms is the baseline of each ratio.`,
    );
  } finally {
    disarm();
    await cleanupOnce();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
