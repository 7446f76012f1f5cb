import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { requireProgram } from '../lib/requirements.js';

// `npm run demo`: a demo cage launching real X programs through the real service, the way a
// menu click would (kagome-open → D-Bus → cage → xpra window): xeyes directly, then xclock from
// its desktop entry, put in the cage with `kagome app add` and started by GLib (`gio launch`)
// from the shadow entry, as a menu does. Ends with a screenshot.
// It brings its own session bus and a private kagome configuration so it never touches the
// user's cages; without a DISPLAY it brings an Xvfb screen too.

const repo = path.resolve(fileURLToPath(new URL('../..', import.meta.url)));
const children: ChildProcess[] = [];
let demoRoot = '';

function log(msg: string): void {
  process.stdout.write(`demo: ${msg}\n`);
}

function readLine(child: ChildProcess, fd: number, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const s = child.stdio[fd] as NodeJS.ReadableStream;
    s.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.includes('\n')) resolve(text.split('\n')[0]!.trim());
    });
    child.once('exit', (code) => reject(new Error(`${what} exited (${code}) before it was ready`)));
  });
}

async function waitForWindow(display: string, wmClass: string, timeoutMs = 30000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const r = await execa('xdotool', ['search', '--onlyvisible', '--class', wmClass], {
      env: { DISPLAY: display },
      reject: false,
    });
    if (r.exitCode === 0 && String(r.stdout).trim()) return;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`no ${wmClass} window appeared on ${display} within ${timeoutMs / 1000} s`);
}

async function main(): Promise<void> {
  for (const [prog, why] of [
    ['bwrap', 'for the cage'],
    ['xpra', 'for the cage display'],
    ['Xvfb', 'for the display inside the cage'],
    ['dbus-daemon', 'for the demo session bus'],
    ['xdotool', 'to see the window appear'],
    ['import', 'for the screenshot (imagemagick)'],
    ['gio', 'to start the menu entry as a desktop does'],
  ] as const)
    requireProgram(prog, why);

  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-demo-'));
  demoRoot = root;
  const dirs = Object.fromEntries(
    ['config', 'data', 'runtime', 'system'].map((d) => [d, path.join(root, d)]),
  );
  for (const d of Object.values(dirs)) fs.mkdirSync(d!, { mode: 0o700 });
  // An "installed" program: x11-apps ships no desktop entries, so the demo brings one.
  fs.mkdirSync(path.join(dirs.system!, 'applications'));
  fs.writeFileSync(
    path.join(dirs.system!, 'applications', 'org.kagome.DemoClock.desktop'),
    '[Desktop Entry]\nType=Application\nName=Clock\nName[de]=Uhr\nExec=xclock -geometry 200x200+400+100\nIcon=clock\nCategories=Utility;\n',
  );
  fs.writeFileSync(
    path.join(dirs.system!, 'applications', 'org.kagome.DemoNote.desktop'),
    '[Desktop Entry]\nType=Application\nName=Note viewer\nExec=xmessage -geometry +100+400 -file %f\nMimeType=text/plain;\n',
  );
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    XDG_CONFIG_HOME: dirs.config!,
    XDG_DATA_HOME: dirs.data!,
    XDG_RUNTIME_DIR: dirs.runtime!,
    XDG_DATA_DIRS: `${dirs.system}:/usr/share`,
  };

  let display = process.env.DISPLAY ?? '';
  if (!display) {
    const xvfb = spawn(
      'Xvfb',
      ['-displayfd', '3', '-nolisten', 'tcp', '-screen', '0', '1280x800x24'],
      { stdio: ['ignore', 'ignore', 'ignore', 'pipe'] },
    );
    children.push(xvfb);
    display = `:${await readLine(xvfb, 3, 'Xvfb')}`;
    log(`no DISPLAY: started Xvfb on ${display}`);
  }
  env.DISPLAY = display;

  // D-Bus activation: the session bus's standard service folders include XDG_DATA_HOME's.
  const services = path.join(dirs.data!, 'dbus-1', 'services');
  fs.mkdirSync(services, { recursive: true });
  const activation = fs.readFileSync(
    path.join(repo, 'packaging', 'dbus', 'io.kagome.Kagome.service.in'),
    'utf8',
  );
  fs.writeFileSync(
    path.join(services, 'io.kagome.Kagome.service'),
    activation.replace(/@bindir@/g, path.join(repo, 'bin')).replace(/^SystemdService=.*\n/m, ''),
  );

  const bus = spawn('dbus-daemon', ['--session', '--nofork', '--print-address=3'], {
    env,
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
  });
  children.push(bus);
  env.DBUS_SESSION_BUS_ADDRESS = await readLine(bus, 3, 'dbus-daemon');
  log(`private session bus: ${env.DBUS_SESSION_BUS_ADDRESS}`);

  const kagome = path.join(repo, 'bin', 'kagome');
  const created = await execa(
    process.execPath,
    [kagome, 'cage', 'create', 'demo', '--description', 'kagome demo', '--border', '#e5a50a'],
    { env },
  );
  log(String(created.stdout).trim());

  const t0 = performance.now();
  // The launcher a shadow entry's Exec line calls. The service is not running: the bus starts
  // it on this first call (D-Bus activation), as on a desktop, and it ends with the bus.
  await execa(path.join(repo, 'bin', 'kagome-open'), ['--cage', 'demo', '--', 'xeyes'], {
    env,
    stdio: 'inherit',
  });
  await waitForWindow(display, 'XEyes');
  log(
    `xeyes is on ${display}, in cage "demo", ${Math.round(performance.now() - t0)} ms after the launch (cold: the cage and its display started)`,
  );
  const added = await execa(
    process.execPath,
    [kagome, 'app', 'add', 'demo', 'org.kagome.DemoClock.desktop'],
    { env },
  );
  log(String(added.stdout).trim());
  const shadow = path.join(dirs.data!, 'applications', 'org.kagome.DemoClock.desktop');
  log(`its menu entry now runs: ${fs.readFileSync(shadow, 'utf8').match(/^Exec=(.*)$/m)?.[1]}`);
  const t1 = performance.now();
  await execa('gio', ['launch', shadow], { env, stdio: 'inherit' });
  await waitForWindow(display, 'XClock');
  log(
    `xclock, started from its menu entry by gio launch, joined it ${Math.round(performance.now() - t1)} ms later (warm)`,
  );
  // A host file given to the cage: only it is visible there, through the document portal.
  const note = path.join(root, 'a note for the cage.txt');
  fs.writeFileSync(
    note,
    'This file was granted to cage "demo" through the document portal.\nNothing else of the host is visible in it.\n',
  );
  const t2 = performance.now();
  await execa(
    process.execPath,
    [kagome, 'open', 'demo', '--read-only', '--app', 'org.kagome.DemoNote.desktop', note],
    { env, stdio: 'inherit' },
  );
  await waitForWindow(display, 'Xmessage');
  const grants = await execa(process.execPath, [kagome, 'grants', 'demo'], { env });
  log(
    `"${path.basename(note)}" opened in the cage with xmessage ${Math.round(performance.now() - t2)} ms after kagome open; grants:\n${String(grants.stdout)}`,
  );
  const list = await execa(process.execPath, [kagome, 'list'], { env });
  log(`kagome list:\n${String(list.stdout)}`);

  await new Promise((r) => setTimeout(r, 500));
  const shot = path.resolve(process.env.KAGOME_DEMO_SCREENSHOT ?? 'kagome-demo.png');
  await execa('import', ['-window', 'root', shot], { env });
  await execa(process.execPath, [kagome, 'stop', 'demo'], { env });
  log(`Screenshot: ${shot}`);
}

// In reverse order, each gone before the next: the service must not see its bus vanish.
async function cleanup(): Promise<void> {
  for (const c of children.reverse()) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
  }
  // The document portal (started by D-Bus activation) mounts on the demo's runtime folder;
  // it ends with the bus, but its mount must be gone before the folder is removed.
  const doc = demoRoot ? path.join(demoRoot, 'runtime', 'doc') : '';
  if (
    doc &&
    fs
      .readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .some((l) => l.split(' ')[4] === doc)
  ) {
    await execa('fusermount3', ['-u', '-z', doc], { reject: false });
  }
  if (demoRoot) fs.rmSync(demoRoot, { recursive: true, force: true });
}

main()
  .then(cleanup)
  .catch(async (e: unknown) => {
    process.stderr.write(`demo failed: ${(e as Error).message}\n`);
    await cleanup();
    process.exitCode = 1;
  });
