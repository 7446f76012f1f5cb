// What SessionBus=portal costs (issue 19): a cold cage start with the portal bus against one
// with the cage's private bus alone (the default), the memory of its host-side proxy and its
// relay in the cage, and the time from a caged program's OpenURI call to the window of the
// program it starts in another, warm cage, against launching that program there directly.
// One private world (session bus, Xvfb, the real xdg-desktop-portal and the service), as the
// ordinary user; runs alternate so the machine's drift falls on both sides.
//
//   npm run bench:portals        (BENCH_RUNS=5)
//
// The "browser" in the target cage is xlogo (a desktop entry for http and https): what is timed
// is kagome's path from the call to a window, not a browser's own start.

import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { World } from '../test/helpers/kagome.js';
import { startDesktopPortal, type DesktopPortal } from '../test/helpers/desktop-portal.js';
import { waitFor } from '../test/helpers/wait.js';
import { pidsInNamespace } from '../lib/runtime/proc.js';
import { type Figure, printReport, newFigure, positiveInt } from './figures.js';
import { cleanupGuard } from './cleanup.js';
import { processTree, pssMiB, windowShown } from './host-probes.js';

const RUNS = positiveInt(process.env.BENCH_RUNS, 5);
const BROWSER_ID = 'org.kagome.BenchBrowser.desktop';
const browserEntry = `[Desktop Entry]
Type=Application
Name=Bench Browser
Exec=xlogo -name kagomelink
MimeType=x-scheme-handler/http;x-scheme-handler/https;
`;
const DEFAULTS = `[Default Applications]\nx-scheme-handler/http=${BROWSER_ID};\nx-scheme-handler/https=${BROWSER_ID};\n`;

// Opens argv[1] through the OpenURI portal; writes CLOCK_MONOTONIC just before the call.
const OPEN_LINK = String.raw`
import sys, time
from gi.repository import Gio, GLib
bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
proxy = Gio.DBusProxy.new_sync(bus, Gio.DBusProxyFlags.DO_NOT_LOAD_PROPERTIES | Gio.DBusProxyFlags.DO_NOT_CONNECT_SIGNALS, None,
    'org.freedesktop.portal.Desktop', '/org/freedesktop/portal/desktop', 'org.freedesktop.portal.OpenURI', None)
with open(sys.argv[2], 'w') as f: f.write('%.6f' % time.clock_gettime(time.CLOCK_MONOTONIC))
proxy.call_sync('OpenURI', GLib.Variant('(ssa{sv})', ('', sys.argv[1], {})), Gio.DBusCallFlags.NONE, -1, None)
`;

const monotonicMs = () => Number(process.hrtime.bigint()) / 1e6;

function killIn(w: World, cage: string, comm: string): void {
  const ns = (w.cageState(cage) as { sandbox?: { pidNamespace?: string } }).sandbox?.pidNamespace;
  for (const pid of ns ? pidsInNamespace(ns) : []) {
    try {
      if (fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === comm) process.kill(pid);
    } catch {
      /* gone */
    }
  }
}

async function main(): Promise<void> {
  const figures: Figure[] = [];
  const figure = newFigure(figures);
  const w = await World.create({ documentPortal: true, systemData: true });
  let portal: DesktopPortal | undefined;
  const { cleanupOnce, disarm } = cleanupGuard(
    async () => {
      await w.cleanup();
      await portal?.stop();
    },
    20 * 60_000,
    (m) => console.error(m),
  );
  try {
    w.writeCage('web', '[Cage]\n');
    fs.mkdirSync(w.homeFile('web', '.config'), { recursive: true });
    fs.mkdirSync(w.homeFile('web', '.local/share/applications'), { recursive: true });
    fs.writeFileSync(w.homeFile('web', `.local/share/applications/${BROWSER_ID}`), browserEntry);
    fs.writeFileSync(w.homeFile('web', '.config/mimeapps.list'), DEFAULTS);
    w.writeCage('private', '[Cage]\nSessionBus=private\n');
    w.writeCage(
      'news',
      '[Cage]\nSessionBus=portal\nOpenLinks=cage:web\nOpenLinksLimit=none\nNotifications=none\n',
    );
    portal = await startDesktopPortal(w.env);
    await w.startService();

    const fPrivate = figure('start_private', 'cold start, SessionBus=private', 'ms', 'Start');
    const fPortal = figure('start_portal', 'cold start, SessionBus=portal', 'ms', 'Start');
    const fCost = figure('start_cost', "the portal bus's cost on a cold start", 'ms', 'per pair');
    const fProxy = figure(
      'proxy_pss',
      'host side: xdg-dbus-proxy and its bwrap (PSS)',
      'MiB',
      'Pss over the tree',
    );
    const fRelay = figure('relay_pss', 'in the cage: the relay (PSS)', 'MiB', 'Pss');
    const fCagePrivate = figure('cage_private_pss', 'cage PSS, private bus', 'MiB', 'namespace');
    const fCagePortal = figure('cage_portal_pss', 'cage PSS, portal bus', 'MiB', 'namespace');
    for (let i = 0; i < RUNS; i++) {
      for (const [cage, f] of [
        ['private', fPrivate],
        ['news', fPortal],
      ] as const) {
        await w.dbus.Cages1.Stop(cage);
        const t0 = performance.now();
        await w.dbus.Cages1.Start(cage);
        f.samples.push(performance.now() - t0);
      }
      fCost.samples.push(fPortal.samples.at(-1)! - fPrivate.samples.at(-1)!);
      await sleep(2000);
      const state = (c: string) =>
        w.cageState(c) as {
          sandbox?: { pidNamespace?: string };
          bridges?: Record<string, { proxy?: { pid: number }; relay?: { pid: number } }>;
        };
      const bus = state('news').bridges?.['session-bus'];
      if (bus?.proxy) {
        // The proxy runs under its own bwrap: count that bwrap and all under it.
        const parent = Number(
          /^PPid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${bus.proxy.pid}/status`, 'utf8'))?.[1],
        );
        fProxy.samples.push(pssMiB(processTree(parent)));
      }
      if (bus?.relay) fRelay.samples.push(pssMiB(processTree(bus.relay.pid)));
      for (const [c, f] of [
        ['private', fCagePrivate],
        ['news', fCagePortal],
      ] as const) {
        const ns = state(c).sandbox?.pidNamespace;
        if (ns) f.samples.push(pssMiB(pidsInNamespace(ns)));
      }
    }

    const fDirect = figure(
      'direct_window',
      'web: LaunchCommand xlogo → its window',
      'ms',
      'warm cage',
    );
    const fLink = figure(
      'link_window',
      'news → web: OpenURI call → the window',
      'ms',
      'warm cages',
    );
    const fOver = figure('link_over', 'the link path over a direct launch', 'ms', 'per pair');
    await w.dbus.Cages1.Start('web');
    const stamp = w.homeFile('news', 'called');
    const run = async (start: () => Promise<number>): Promise<number> => {
      const t0 = await start();
      await waitFor('the window', () => windowShown(w.display, 'kagomelink', 'classname'), {
        timeoutMs: 60_000,
        pollMs: 10,
      });
      const ms = monotonicMs() - t0;
      killIn(w, 'web', 'xlogo');
      await waitFor(
        'it to go',
        async () => !(await windowShown(w.display, 'kagomelink', 'classname')),
        { timeoutMs: 20_000 },
      );
      await sleep(300);
      return ms;
    };
    for (let i = -1; i < RUNS; i++) {
      const direct = await run(async () => {
        const t0 = monotonicMs();
        await w.launchCommand('web', ['xlogo', '-name', 'kagomelink']);
        return t0;
      });
      const link = await run(async () => {
        fs.rmSync(stamp, { force: true });
        await w.launchCommand('news', [
          'python3',
          '-c',
          OPEN_LINK,
          `https://example.org/${i}`,
          path.join(w.env.HOME!, 'called'),
        ]);
        const text = await waitFor(
          'the call',
          () => {
            try {
              return fs.readFileSync(stamp, 'utf8') || undefined;
            } catch {
              return undefined;
            }
          },
          {
            timeoutMs: 30_000,
            pollMs: 5,
          },
        ).catch(() => '');
        return Number(text) * 1000;
      });
      if (i < 0) continue; // the first pair warms both paths
      fDirect.samples.push(direct);
      fLink.samples.push(link);
      fOver.samples.push(link - direct);
    }
  } finally {
    disarm();
    await cleanupOnce();
  }
  printReport(
    `SessionBus=portal — ${RUNS} runs each (medians), ${new Date().toISOString()}`,
    figures,
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
