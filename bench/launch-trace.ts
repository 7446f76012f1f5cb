// Where a warm launch's time goes: the same program started on the host display and in a warm
// cage, with the moments in between read off both X servers. A watcher on each display's root
// (python3-xlib, SubstructureNotify) and a one-line wrapper that records the moment before it
// execs the program write CLOCK_MONOTONIC times, which the bench's own clock shares, so one
// launch splits into:
//
//   call → exec          the D-Bus call, the service, kagome-enter (host: spawn)
//   exec → create        the program's own start until it creates its first window
//   create → shown       host: until the window manager has mapped its frame (bench:programs'
//                        moment)
//   create → host window cage: until the program asks for its map, xpra (the cage's window
//                        manager) tells its client and the client creates the host window
//   host window → shown  cage: the host's window manager mapping that window
//   shown → drawn        both: until the top rows of the program's window on the host hold
//                        more than one colour (its first frame of pixels; in the cage, what the
//                        cage's server sent and the client drew). The watcher polls them with
//                        GetImage every 2 ms (one 40-row strip), on both sides alike.
//
//   npm run bench:trace        (BENCH_RUNS=5, BENCH_PROGRAMS=xterm,featherpad,mousepad)

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { World } from '../test/helpers/kagome.js';
import { waitFor } from '../test/helpers/wait.js';
import { pidsInNamespace } from '../lib/runtime/proc.js';
import { type Figure, figureTable, newFigure, positiveInt } from './figures.js';
import { cleanupGuard } from './cleanup.js';
import { windowShown } from './host-probes.js';

const RUNS = positiveInt(process.env.BENCH_RUNS, 5);
const PYTHON = '/usr/bin/python3';

const PROGRAMS: Record<string, { argv: string[]; wmClass: string }> = {
  xterm: { argv: ['xterm'], wmClass: 'XTerm' },
  featherpad: { argv: ['featherpad'], wmClass: 'FeatherPad' },
  mousepad: { argv: ['mousepad'], wmClass: 'Mousepad' },
};

const ROOT_WATCHER = `
import sys, time
from Xlib import X, display
out = open(sys.argv[1], 'a', buffering=1)
tag = sys.argv[2]
d = display.Display()
root = d.screen().root
root.change_attributes(event_mask=X.SubstructureNotifyMask)
d.sync()
now = lambda: time.clock_gettime(time.CLOCK_MONOTONIC)
out.write(f"{now():.6f} {tag} ready -\\n")
names = {X.CreateNotify: 'create', X.MapNotify: 'map'}
def drawn(win, cls):
    # Until the window's top rows hold more than one colour: its first frame of pixels.
    end = now() + 5
    while now() < end:
        try: g = win.get_geometry()
        except Exception: return
        try:
            data = win.get_image(0, 0, g.width, min(g.height, 40), X.ZPixmap, 0xffffffff).data
            if len(data) >= 8 and data.count(data[:4]) * 4 != len(data):
                out.write(f"{now():.6f} {tag} drawn {cls}\\n")
                return
        except Exception: pass
        time.sleep(0.002)
while True:
    e = d.next_event()
    t = now()
    n = names.get(e.type)
    if not n: continue
    cls = '-'
    found = None
    if n == 'map':
        # A window manager's frame has no class: the program's window is inside it.
        todo = [(e.window, 0)]
        while todo and cls == '-':
            win, depth = todo.pop(0)
            try:
                c = win.get_wm_class()
                if c: cls, found = c[1], win
                elif depth < 3: todo += [(k, depth + 1) for k in win.query_tree().children]
            except Exception: pass
    out.write(f"{t:.6f} {tag} {n} {cls}\\n")
    if found is not None and tag == 'host': drawn(found, cls)
`;

const EXEC_WRAPPER = `
import os, sys, time
with open(sys.argv[1], 'a') as f: f.write(f"{time.clock_gettime(time.CLOCK_MONOTONIC):.6f} {sys.argv[2]} exec -\\n")
os.execvp(sys.argv[3], sys.argv[3:])
`;

interface Event {
  t: number;
  tag: string;
  what: string;
  cls: string;
}

function readEvents(...files: string[]): Event[] {
  const events: Event[] = [];
  for (const f of files) {
    if (!fs.existsSync(f)) continue;
    for (const line of fs.readFileSync(f, 'utf8').split('\n')) {
      const [t, tag, what, cls] = line.split(' ');
      if (t && tag && what) events.push({ t: Number(t) * 1000, tag, what, cls: cls ?? '-' });
    }
  }
  return events.sort((a, b) => a.t - b.t);
}

function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

function first(what: string, events: Event[], after: number, pred: (e: Event) => boolean): Event {
  const e = events.find((x) => x.t >= after && pred(x));
  if (!e) {
    const seen = events
      .filter((x) => x.t >= after - 1000)
      .map((x) => `${x.t.toFixed(1)} ${x.tag} ${x.what} ${x.cls}`);
    throw new Error(`no ${what} recorded after ${after.toFixed(1)}; seen:\n${seen.join('\n')}`);
  }
  return e;
}

/** Until the host's watcher saw the window drawn; a window it never sees drawn has no sample. */
async function untilDrawn(trace: string, cls: string, after: number): Promise<void> {
  const seen = () =>
    readEvents(trace).some((e) => e.t >= after && e.what === 'drawn' && e.cls === cls);
  await waitFor(`${cls} drawn`, seen, { timeoutMs: 6000, pollMs: 10 }).catch(() => undefined);
}

async function main(): Promise<void> {
  const wanted = (process.env.BENCH_PROGRAMS ?? 'xterm,featherpad,mousepad').split(',');
  const figures: Figure[] = [];
  const figure = newFigure(figures);
  const w = await World.create();
  const { cleanupOnce, disarm } = cleanupGuard(
    () => w.cleanup(),
    20 * 60_000,
    (m) => console.error(m),
  );
  const children: ChildProcess[] = [];
  try {
    children.push(spawn('openbox', [], { env: w.env, stdio: 'ignore', detached: true }));
    await sleep(500);
    await w.startService();
    const cage = 'trace';
    w.writeCage(cage, '[Cage]\nNetwork=none\n');
    await w.dbus.Cages1.Start(cage);
    const home = w.env.HOME!;
    fs.writeFileSync(w.homeFile(cage, 'root-watcher.py'), ROOT_WATCHER);
    fs.writeFileSync(w.homeFile(cage, 'exec-wrapper.py'), EXEC_WRAPPER);
    const cageTrace = w.homeFile(cage, 'trace.txt');
    const hostTrace = path.join(w.runtimeDir, 'host-trace.txt');
    const hostWrapper = path.join(w.runtimeDir, 'exec-wrapper.py');
    fs.writeFileSync(hostWrapper, EXEC_WRAPPER);
    fs.writeFileSync(path.join(w.runtimeDir, 'root-watcher.py'), ROOT_WATCHER);
    await w.launchCommand(cage, [
      PYTHON,
      path.join(home, 'root-watcher.py'),
      path.join(home, 'trace.txt'),
      'cage',
    ]);
    children.push(
      spawn(PYTHON, [path.join(w.runtimeDir, 'root-watcher.py'), hostTrace, 'host'], {
        env: w.env,
        stdio: 'inherit',
      }),
    );
    await waitFor(
      'both root watchers',
      () => {
        const tags = readEvents(cageTrace, hostTrace).filter((e) => e.what === 'ready');
        return tags.length === 2;
      },
      { timeoutMs: 20_000 },
    );
    const state = w.cageState(cage) as { sandbox?: { pidNamespace?: string } };
    for (const key of wanted) {
      const p = PROGRAMS[key];
      if (!p) throw new Error(`no program ${key}: one of ${Object.keys(PROGRAMS).join(', ')}`);
      const f = (k: string, name: string) => figure(`${key}_${k}`, `${key}: ${name}`, 'ms', '');
      const h = {
        exec: f('host_exec', 'host, call → exec'),
        create: f('host_create', 'host, exec → create'),
        map: f('host_map', 'host, create → shown'),
        total: f('host_total', 'host, call → shown'),
        drawn: f('host_drawn', 'host, shown → drawn'),
        drawnTotal: f('host_drawn_total', 'host, call → drawn'),
      };
      const c = {
        exec: f('cage_exec', 'cage, call → exec'),
        create: f('cage_create', 'cage, exec → create'),
        client: f('cage_client', 'cage, create → host window'),
        shown: f('cage_shown', 'cage, host window → shown'),
        total: f('cage_total', 'cage, call → shown'),
        drawn: f('cage_drawn', 'cage, shown → drawn'),
        drawnTotal: f('cage_drawn_total', 'cage, call → drawn'),
      };
      for (let i = -1; i < RUNS; i++) {
        // Host.
        let t0 = monotonicMs();
        const child = spawn(PYTHON, [hostWrapper, hostTrace, 'host', ...p.argv], {
          env: { ...w.env, PATH: process.env.PATH ?? '/usr/bin:/bin' },
          stdio: 'ignore',
        });
        await waitFor(`${key} on the host`, () => windowShown(w.display, p.wmClass), {
          timeoutMs: 60_000,
          pollMs: 10,
        });
        await untilDrawn(hostTrace, p.wmClass, t0);
        child.kill('SIGTERM');
        await waitFor('it to go', async () => !(await windowShown(w.display, p.wmClass)), {
          timeoutMs: 20_000,
        });
        await sleep(300);
        if (i >= 0) {
          const ev = readEvents(hostTrace);
          const exec = first('exec', ev, t0, (e) => e.what === 'exec');
          const create = first('create', ev, exec.t, (e) => e.what === 'create');
          const map = first('map', ev, create.t, (e) => e.what === 'map');
          h.exec.samples.push(exec.t - t0);
          h.create.samples.push(create.t - exec.t);
          h.map.samples.push(map.t - create.t);
          h.total.samples.push(map.t - t0);
          const drawn = ev.find((e) => e.t >= map.t && e.what === 'drawn' && e.cls === map.cls);
          if (drawn) {
            h.drawn.samples.push(drawn.t - map.t);
            h.drawnTotal.samples.push(drawn.t - t0);
          }
        }
        // Warm cage.
        t0 = monotonicMs();
        await w.launchCommand(cage, [
          PYTHON,
          path.join(home, 'exec-wrapper.py'),
          path.join(home, 'trace.txt'),
          'cage',
          ...p.argv,
        ]);
        await waitFor(`${key} in the cage`, () => windowShown(w.display, p.wmClass), {
          timeoutMs: 60_000,
          pollMs: 10,
        });
        await untilDrawn(hostTrace, p.wmClass, t0);
        for (const pid of pidsInNamespace(state.sandbox!.pidNamespace!)) {
          try {
            const comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
            if (p.argv[0]!.startsWith(comm)) process.kill(pid, 'SIGTERM');
          } catch {
            /* gone */
          }
        }
        await waitFor('it to go', async () => !(await windowShown(w.display, p.wmClass)), {
          timeoutMs: 20_000,
        });
        await sleep(300);
        if (i >= 0) {
          const ev = readEvents(cageTrace, hostTrace);
          const exec = first('exec', ev, t0, (e) => e.tag === 'cage' && e.what === 'exec');
          const create = first(
            'create',
            ev,
            exec.t,
            (e) => e.tag === 'cage' && e.what === 'create',
          );
          // xpra maps the window in the cage only once the client has shown it on the host, so
          // the cage's own map comes last and is not a step here.
          const hostCreate = first(
            'hostCreate',
            ev,
            create.t,
            (e) => e.tag === 'host' && e.what === 'create',
          );
          const hostMap = first(
            'hostMap',
            ev,
            hostCreate.t,
            (e) => e.tag === 'host' && e.what === 'map',
          );
          c.exec.samples.push(exec.t - t0);
          c.create.samples.push(create.t - exec.t);
          c.client.samples.push(hostCreate.t - create.t);
          c.shown.samples.push(hostMap.t - hostCreate.t);
          c.total.samples.push(hostMap.t - t0);
          const drawn = ev.find(
            (e) =>
              e.t >= hostMap.t && e.tag === 'host' && e.what === 'drawn' && e.cls === hostMap.cls,
          );
          if (drawn) {
            c.drawn.samples.push(drawn.t - hostMap.t);
            c.drawnTotal.samples.push(drawn.t - t0);
          }
        }
      }
    }
  } finally {
    for (const ch of children) ch.kill();
    disarm();
    await cleanupOnce();
  }
  console.log(
    `where a warm launch goes — ${RUNS} runs each (medians), ${new Date().toISOString()}`,
  );
  for (const line of figureTable(figures)) console.log(line);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
