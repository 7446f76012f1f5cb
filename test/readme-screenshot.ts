// `npm run screenshot`: the picture in the README, made the way a person would see it. A host
// display (Xvfb with openbox), the real service, and real programs each in a default cage of
// its own with its own border colour, launched through the service; then the whole screen.
// Writes docs/programs-in-cages.png (or the path given as the first argument).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { World, REPO } from './helpers/kagome.js';
import { waitFor } from './helpers/wait.js';

interface Shot {
  cage: string;
  border: string;
  argv: string[];
  wmClass: string;
  /** where its window goes on the 1600x1000 screen: x, y, width, height */
  place: [number, number, number, number];
}

const SHOTS: Shot[] = [
  {
    cage: 'web',
    border: '#e01b24',
    argv: ['firefox-esr', '--new-instance', '--width=900', '--height=600', 'about:support'],
    wmClass: 'firefox-esr',
    place: [0, 0, 800, 560],
  },
  {
    cage: 'office',
    border: '#2ec27e',
    argv: ['libreoffice', '--writer', '--norestore'],
    wmClass: 'libreoffice-writer',
    place: [800, 0, 800, 560],
  },
  {
    cage: 'notes',
    border: '#3584e4',
    argv: ['mousepad'],
    wmClass: 'Mousepad',
    place: [0, 580, 540, 420],
  },
  {
    cage: 'qt',
    border: '#f6d32d',
    argv: ['featherpad'],
    wmClass: 'FeatherPad',
    place: [545, 580, 520, 420],
  },
  {
    cage: 'shell',
    border: '#9141ac',
    argv: [
      'xterm',
      '-geometry',
      '80x20',
      '-e',
      'sh',
      '-c',
      'id; echo; ls -la ~; echo; cat /proc/self/status | grep -E "^(Seccomp|NoNewPrivs|CapEff)"; exec sh',
    ],
    wmClass: 'XTerm',
    place: [1070, 580, 530, 420],
  },
];

const UNMAXIMIZE = [
  'import sys',
  'from Xlib import display, X',
  'from Xlib.protocol import event',
  'd = display.Display()',
  'root = d.screen().root',
  'w = d.create_resource_object("window", int(sys.argv[1]))',
  'state = d.intern_atom("_NET_WM_STATE")',
  'ev = event.ClientMessage(window=w, client_type=state, data=(32, [0, d.intern_atom("_NET_WM_STATE_MAXIMIZED_VERT"), d.intern_atom("_NET_WM_STATE_MAXIMIZED_HORZ"), 1, 0]))',
  'root.send_event(ev, event_mask=X.SubstructureRedirectMask | X.SubstructureNotifyMask)',
  'd.sync()',
].join('\n');

async function shown(display: string, wmClass: string): Promise<boolean> {
  const r = await execa('xdotool', ['search', '--onlyvisible', '--class', `^${wmClass}$`], {
    env: { DISPLAY: display },
    reject: false,
  });
  return r.exitCode === 0 && String(r.stdout).trim() !== '';
}

async function main(): Promise<void> {
  const out = path.resolve(process.argv[2] ?? path.join(REPO, 'docs', 'programs-in-cages.png'));
  const w = await World.create({ xvfb: { width: 1600, height: 1000 } });
  const wm = spawn('openbox', [], { env: w.env, stdio: 'ignore' });
  try {
    await w.startService();
    const installed = (p: string) =>
      (process.env.PATH ?? '/usr/bin:/bin').split(':').some((d) => fs.existsSync(path.join(d, p)));
    const shots = SHOTS.filter((s) => installed(s.argv[0]!));
    for (const s of shots) {
      w.writeCage(s.cage, `[Cage]\nBorder=${s.border}\nDescription=${s.argv[0]}\n`);
      await w.launchCommand(s.cage, s.argv);
      await waitFor(`a window of ${s.argv[0]}`, () => shown(w.display, s.wmClass), {
        timeoutMs: 90_000,
        pollMs: 200,
        detail: () => `its log:\n${w.programLog(s.cage, path.basename(s.argv[0]!))}`,
      });
    }
    // Let the programs finish drawing (a browser's first page, LibreOffice's toolbars), close
    // LibreOffice's tip of the day, then lay the windows out side by side.
    await sleep(6000);
    const xdotool = (args: string[]) =>
      execa('xdotool', args, { env: { DISPLAY: w.display }, reject: false });
    const tip = await xdotool(['search', '--onlyvisible', '--name', '^Tip of the Day']);
    for (const id of String(tip.stdout).split('\n').filter(Boolean))
      await xdotool(['windowactivate', '--sync', id, 'key', 'Escape']);
    for (const s of shots) {
      const found = await xdotool(['search', '--onlyvisible', '--class', `^${s.wmClass}$`]);
      const id = String(found.stdout).split('\n').filter(Boolean)[0];
      if (!id) continue;
      const [x, y, width, height] = s.place;
      // A window that opened maximized (LibreOffice on a large screen) keeps its size until
      // the window manager is asked to unmaximize it.
      await execa('/usr/bin/python3', ['-c', UNMAXIMIZE, id], {
        env: { DISPLAY: w.display },
        reject: false,
      });
      await xdotool(['windowsize', id, String(width), String(height)]);
      await xdotool(['windowmove', id, String(x), String(y)]);
    }
    await sleep(3000);
    fs.mkdirSync(path.dirname(out), { recursive: true });
    await execa('import', ['-window', 'root', out], { env: w.env, extendEnv: false });
    process.stdout.write(
      `screenshot: ${out} (${shots.map((s) => `${s.argv[0]} in cage ${s.cage}`).join(', ')})\n`,
    );
  } finally {
    wm.kill();
    await w.cleanup();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
