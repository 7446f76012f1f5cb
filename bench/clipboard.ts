// Clipboard bridge: from a copy on the host (xclip -i started) to the text being pasteable in
// the cage, for an xpra cage (the cage's X server is inside it) and a Xephyr cage (nested X
// server on the host), both with Clipboard=to-cage. A paste loop runs inside each cage (xclip -o
// every 5 ms, writing what it sees to a file when it changes); the baseline is the same loop on
// the host's own display, which measures copy + polling with no bridge at all.
// Prints figures; never fails on them.

import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { World } from '../test/helpers/kagome.js';
import { waitFor } from '../test/helpers/wait.js';
import { type Figure, figureTable, positiveInt, stats, newFigure } from './figures.js';

const RUNS = positiveInt(process.env.BENCH_RUNS, 9);
const figures: Figure[] = [];
const figure = newFigure(figures);

const LOOP =
  'last=; while :; do v=$(xclip -selection clipboard -o 2>/dev/null); if [ "$v" != "$last" ]; then printf %s "$v" > "$SEEN.tmp" && mv "$SEEN.tmp" "$SEEN"; last=$v; fi; sleep 0.005; done';

async function seenAfterCopy(w: World, seenFile: string, mark: string): Promise<number> {
  const t0 = performance.now();
  await execa('xclip', ['-selection', 'clipboard', '-i'], {
    env: w.env,
    input: mark,
    stdout: 'ignore',
    stderr: 'ignore',
  });
  const seen = () => {
    try {
      return fs.readFileSync(seenFile, 'utf8') === mark;
    } catch {
      return false; // not yet
    }
  };
  await waitFor(`${mark} in ${seenFile}`, seen, {
    timeoutMs: t0 + 10_000 - performance.now(),
    pollMs: 1,
  });
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const w = await World.create();
  const hostLoop: { kill(): void }[] = [];
  try {
    w.writeCage('clip-xpra', '[Cage]\nClipboard=to-cage\nSound=none\n');
    w.writeCage('clip-xephyr', '[Cage]\nDisplay=xephyr\nClipboard=to-cage\nSound=none\n');
    await w.startService();
    const seen: Record<string, string> = {};
    for (const cage of ['clip-xpra', 'clip-xephyr']) {
      seen[cage] = w.homeFile(cage, 'seen');
      await w.launchCommand(cage, ['sh', '-c', `SEEN="$HOME/seen"; ${LOOP}`]);
    }
    const hostSeen = path.join(w.tmp.root, 'host-seen');
    const loop = spawn('sh', ['-c', LOOP], { env: { ...w.env, SEEN: hostSeen }, stdio: 'ignore' });
    hostLoop.push(loop);
    const f = {
      base: figure(
        'host',
        'baseline: copy → pasteable on the host itself (polling floor)',
        'ms',
        'node dist/bench/clipboard.js',
      ),
      xpra: figure(
        'xpra',
        'xpra cage: host copy → pasteable in the cage',
        'ms',
        'node dist/bench/clipboard.js',
      ),
      xephyr: figure(
        'xephyr',
        'Xephyr cage: host copy → pasteable in the cage',
        'ms',
        'node dist/bench/clipboard.js',
      ),
    };
    await sleep(500);
    for (let i = -1; i < RUNS; i++) {
      // -1 is a warm-up, not recorded. Each kind gets its own mark, one at a time.
      for (const [key, file] of [
        ['base', hostSeen],
        ['xpra', seen['clip-xpra']!],
        ['xephyr', seen['clip-xephyr']!],
      ] as const) {
        const ms = await seenAfterCopy(w, file, `mark ${key} ${i} ${Date.now()}`);
        if (i >= 0) f[key].samples.push(ms);
        await sleep(50);
      }
    }
    console.log(`clipboard bridge, ${RUNS} runs after a warm-up (medians)\n`);
    for (const line of figureTable(figures)) console.log(line);
    const b = stats(f.base)?.median ?? NaN;
    console.log(
      `\nratio to the host baseline: xpra ${((stats(f.xpra)?.median ?? NaN) / b).toFixed(2)}×, Xephyr ${((stats(f.xephyr)?.median ?? NaN) / b).toFixed(2)}×`,
    );
  } finally {
    for (const l of hostLoop) l.kill();
    await w.cleanup();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
