import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { execa } from 'execa';
import { World } from '../helpers/kagome.js';
import { startXvfb, type Xvfb } from '../helpers/xvfb.js';
import { stopChild, track } from '../helpers/daemons.js';
import { waitForWindow } from '../helpers/x11.js';
import { waitFor } from '../helpers/wait.js';
import { XPRA_CLIENT_LAUNCHER, xpraClientArgv } from '../../lib/display/xpra.js';
import {
  CLIENT_XPRA_DIR,
  clientSandboxArgs,
  writeClientEtc,
} from '../../lib/display/client-sandbox.js';

// What a program in a cage learns of the host through the cage's xpra server. The server keeps
// the host client's hello and shows it to anyone who reaches its socket (`xpra info`), and the
// program runs as the server's user, in the server's cage: it can always reach it, or read the
// server's memory, or replace it. So what counts is what the host client sends.

/** Set on the host display and in the client's environment, so a leak has something to show. */
const WORKSPACE = 'kagome-secret-workspace';
const DESKTOP = 'KagomeTestDesktop';
const IN_CAGE_SOCKET = 'socket:/run/kagome/xpra/xpra.sock';

interface HostMarks {
  hostname: string;
  /** host folders whose path the cage has no business knowing */
  paths: string[];
  realName: string | undefined;
  machineId: string | undefined;
  /** xpra's own user id, made from the machine id, uid and home */
  userUuid?: string;
}

function hostMarks(paths: string[]): HostMarks {
  const uid = process.getuid!();
  const entry = fs
    .readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .map((l) => l.split(':'))
    .find((f) => f[2] === String(uid));
  // GECOS: the real name is its first comma-separated field; the test account may have none.
  const realName = entry?.[4]?.split(',')[0]?.trim();
  let machineId: string | undefined;
  try {
    machineId = fs.readFileSync('/etc/machine-id', 'utf8').trim() || undefined;
  } catch {
    machineId = undefined;
  }
  return {
    hostname: os.hostname(),
    paths,
    realName: realName && realName !== os.userInfo().username ? realName : undefined,
    machineId,
  };
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Which marks of the host appear in text (xpra info output, or a hello as JSON). */
function hostTraces(text: string, m: HostMarks): string[] {
  const found: string[] = [];
  // The hostname may be short ("vm"): only as a whole value, the way xpra prints one.
  if (new RegExp(`(^|[\\s='"(,\\[])${escape(m.hostname)}($|[\\s'",)\\]])`, 'm').test(text))
    found.push(`hostname ${m.hostname}`);
  for (const p of m.paths) if (text.includes(p)) found.push(`host path ${p}`);
  if (m.realName && text.includes(m.realName)) found.push(`real name ${m.realName}`);
  if (m.machineId && text.includes(m.machineId)) found.push('machine id');
  if (m.userUuid && text.includes(m.userUuid)) found.push("xpra's user id");
  if (text.includes(WORKSPACE)) found.push('workspace names');
  if (text.includes(DESKTOP)) found.push('window manager');
  return found;
}

/**
 * A workspace name on the host display, as a desktop environment sets it. Xvfb forgets its root
 * properties when its last client leaves, so a client stays connected until `stop`.
 */
async function nameWorkspace(display: string): Promise<ChildProcess> {
  const env = { DISPLAY: display, LANG: 'C.UTF-8' };
  const holder = spawn('xprop', ['-root', '-spy', '_NET_DESKTOP_NAMES'], { env, stdio: 'ignore' });
  track(holder);
  await execa(
    'xprop',
    ['-root', '-f', '_NET_NUMBER_OF_DESKTOPS', '32c', '-set', '_NET_NUMBER_OF_DESKTOPS', '1'],
    { env },
  );
  await execa(
    'xprop',
    ['-root', '-f', '_NET_DESKTOP_NAMES', '8u', '-set', '_NET_DESKTOP_NAMES', WORKSPACE],
    { env },
  );
  const { stdout } = await execa('xprop', ['-root', '_NET_DESKTOP_NAMES'], { env });
  assert.ok(stdout.includes(WORKSPACE), `the host display keeps its workspace name: ${stdout}`);
  return holder;
}

/** xpra's own client, not kagome's: no sandbox, nothing left out of its hello. */
function plainClient(socket: string, env: Record<string, string>): ChildProcess {
  const child = spawn(
    'xpra',
    [
      'attach',
      `socket:${socket}`,
      '--opengl=no',
      '--pulseaudio=no',
      '--speaker=disabled',
      '--microphone=disabled',
      '--mdns=no',
      '--notifications=no',
      '--tray=no',
      '--clipboard=no',
      '--webcam=no',
      '--printing=no',
      '--file-transfer=no',
      '-d',
      'none',
    ],
    { env: { ...env, XDG_CURRENT_DESKTOP: DESKTOP }, stdio: 'ignore' },
  );
  track(child);
  return child;
}

describe('xpra info from inside a cage', () => {
  let w: World;
  let marks: HostMarks;
  const plain: ChildProcess[] = [];

  before(async () => {
    w = await World.create();
    plain.push(await nameWorkspace(w.display));
    w.writeCage('probed', '[Cage]\n');
    w.writeCage('control', '[Cage]\n');
    // Were the client to take the service's environment, its hello would name this desktop.
    await w.startService({ env: { XDG_CURRENT_DESKTOP: DESKTOP } });
    marks = hostMarks([w.runtimeDir]);
  });

  after(async () => {
    for (const c of plain) await stopChild(c);
    await w?.cleanup();
  });

  let runs = 0;
  async function infoFromInside(cage: string): Promise<string> {
    const name = `xpra-info-${++runs}`;
    await w.launchCommand(cage, [
      'sh',
      '-c',
      `xpra info ${IN_CAGE_SOCKET} > "$HOME/${name}.tmp" 2>&1; mv "$HOME/${name}.tmp" "$HOME/${name}"`,
    ]);
    return w.readFileWhenWritten(w.homeFile(cage, name), 60000);
  }

  it("shows the host client's screen (needed to draw) and nothing of the host: hostname, paths, real name, machine id, workspaces, window manager", async () => {
    await w.launchCommand('probed', ['xeyes']);
    await waitForWindow(w.display, { wmClass: 'XEyes' });
    const info = await infoFromInside('probed');
    assert.match(
      info,
      /^client\.desktop_size=\(1280, 800\)$/m,
      `the host client is attached: ${info.slice(0, 2000)}`,
    );
    assert.deepEqual(
      hostTraces(info, marks),
      [],
      info
        .split('\n')
        .filter((l) => hostTraces(l, marks).length > 0)
        .join('\n'),
    );
    // The workspaces keep their number, under plain names.
    assert.match(info, /^client\.desktop_names=\('Desktop 1',\)$/m);
  });

  it('keys typed on the host still reach a window in the cage (the hello keeps the keyboard)', async () => {
    // A window that records what is typed into it, up to Return; it says when the first key arrives.
    const probe = [
      'import os',
      'from Xlib import X, XK, display',
      'd = display.Display()',
      's = d.screen()',
      'w = s.root.create_window(0, 0, 300, 100, 0, s.root_depth, background_pixel=s.white_pixel, event_mask=X.KeyPressMask)',
      'w.set_wm_name("kagome-keys")',
      'w.map()',
      'd.flush()',
      'home, typed = os.environ["HOME"], ""',
      'while True:',
      '    e = d.next_event()',
      '    if e.type != X.KeyPress:',
      '        continue',
      '    open(home + "/keys-seen", "w").close()',
      '    keysym = d.keycode_to_keysym(e.detail, 1 if e.state & X.ShiftMask else 0)',
      '    if keysym == XK.XK_Return:',
      '        break',
      '    typed += XK.keysym_to_string(keysym) or ""',
      'open(home + "/typed.tmp", "w").write(typed)',
      'os.rename(home + "/typed.tmp", home + "/typed")',
    ].join('\n');
    await w.launchCommand('probed', ['/usr/bin/python3', '-c', probe]);
    const win = await waitForWindow(w.display, { name: 'kagome-keys' });
    const xdotool = (args: string[]) => execa('xdotool', args, { env: { DISPLAY: w.display } });
    // No window manager on the test display: focus the window as one would, until the cage's window has it.
    const focused = async () => {
      if (fs.existsSync(w.homeFile('probed', 'keys-seen'))) return true;
      await xdotool(['windowfocus', win.id]);
      await xdotool(['type', 'x']);
      return false;
    };
    await waitFor("the cage's window to see keys", focused, { timeoutMs: 30000, pollMs: 100 });
    await xdotool(['type', 'Kagome']);
    await xdotool(['key', 'Return']);
    const typed = await w.readFileWhenWritten(w.homeFile('probed', 'typed'), 30000);
    assert.match(typed, /^x*Kagome$/);
  });

  it("control: the same probe finds the host in what an unconfined xpra client without kagome's launcher sends", async () => {
    await w.launchCommand('control', ['xlogo']);
    await waitForWindow(w.display, { wmClass: 'XLogo' });
    // It takes the cage's display over from kagome's client.
    plain.push(
      plainClient(path.join(w.runtimeDir, 'cages', 'control', 'xpra', 'xpra.sock'), w.env),
    );
    const info = await waitFor(
      "the plain client's info inside the cage",
      () => infoFromInside('control'),
      { timeoutMs: 60000, pollMs: 0, until: (i) => i.includes(marks.paths[0]!) },
    );
    const traces = hostTraces(info, marks);
    for (const t of [
      `hostname ${marks.hostname}`,
      `host path ${w.runtimeDir}`,
      'workspace names',
      'window manager',
    ])
      assert.ok(traces.includes(t), `${t} in ${JSON.stringify(traces)}`);
  });
});

/** Records the first packet a client sends (its hello), as JSON, and exits. */
const FAKE_SERVER = [
  'import json, os, socket, sys',
  'from xpra.net.header import unpack_header',
  'from xpra.net.packet_encoding import decode',
  'from xpra.net.compression import decompress',
  'path, out = sys.argv[1], sys.argv[2]',
  'listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)',
  'listener.bind(path)',
  'listener.listen(1)',
  'conn = listener.accept()[0]',
  'def read(n):',
  '    data = b""',
  '    while len(data) < n:',
  '        chunk = conn.recv(n - len(data))',
  '        if not chunk:',
  '            raise SystemExit("the client hung up before its hello")',
  '        data += chunk',
  '    return data',
  'while True:',
  '    _, flags, level, index, size = unpack_header(read(8))',
  '    payload = read(size)',
  '    if index == 0:',
  '        break',
  'packet = decode(decompress(payload, level) if level else payload, flags)',
  'def plain(v):',
  '    if isinstance(v, bytes):',
  '        return v.decode("latin1")',
  '    if isinstance(v, dict):',
  '        return {plain(k): plain(x) for k, x in v.items()}',
  '    if isinstance(v, (list, tuple)):',
  '        return [plain(x) for x in v]',
  '    return v',
  'with open(out + ".tmp", "w") as f:',
  '    json.dump({"type": plain(packet[0]), "caps": plain(packet[1])}, f)',
  'os.rename(out + ".tmp", out)',
].join('\n');

/** Keys of the hello that say who and where the host is. */
const HOST_KEYS = [
  'hostname',
  'username',
  'name',
  'argv',
  'machine_id',
  'display',
  'wm_name',
  'server_uuid',
  'icc',
  'display-icc',
];
const HOST_PREFIXES = ['platform.', 'build.', 'theme.', 'sound.pulseaudio', 'sound.device'];

describe("the hello of kagome's host xpra client, as a server the cage controls receives it", () => {
  let x: Xvfb;
  let dir: string;
  let marks: HostMarks;
  let hostEnv: Record<string, string>;
  let control: Record<string, unknown>;
  let holder: ChildProcess | undefined;

  before(async () => {
    x = await startXvfb();
    holder = await nameWorkspace(x.display);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-hello-'));
    marks = hostMarks([dir]);
    hostEnv = {
      PATH: '/usr/bin:/bin',
      HOME: os.homedir(),
      LANG: 'C.UTF-8',
      USER: os.userInfo().username,
      DISPLAY: x.display,
    };
  });

  after(async () => {
    if (holder) await stopChild(holder);
    await x?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  let runs = 0;
  /** Starts a fake server in a folder of its own, then the client `start` makes for that folder. */
  async function helloOf(
    start: (xpraDir: string) => ChildProcess,
  ): Promise<Record<string, unknown>> {
    const xpraDir = path.join(dir, `xpra-${++runs}`);
    fs.mkdirSync(xpraDir, { mode: 0o700 });
    const socket = path.join(xpraDir, 'xpra.sock');
    const out = path.join(dir, `hello-${runs}.json`);
    const server = spawn('/usr/bin/python3', ['-c', FAKE_SERVER, socket, out], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    track(server);
    let serverErr = '';
    server.stderr!.on('data', (d: Buffer) => (serverErr += d.toString()));
    const started = Date.now();
    // The server exits once it has recorded the hello: an exit before the file is there is a failure.
    const unlessEnded = (file: string) => () => {
      if (fs.existsSync(file)) return true;
      if (server.exitCode !== null)
        throw new Error(`the fake server exited (${server.exitCode}): ${serverErr}`);
      return false;
    };
    await waitFor('the fake server to listen', unlessEnded(socket), {
      timeoutMs: 30000,
      pollMs: 20,
      detail: () => serverErr,
    });
    assert.ok(fs.existsSync(socket), `the fake server did not listen: ${serverErr}`);
    const client = start(xpraDir);
    track(client);
    try {
      await waitFor('a hello recorded', unlessEnded(out), {
        timeoutMs: started + 60000 - Date.now(),
        pollMs: 20,
        detail: () => serverErr,
      });
      assert.ok(fs.existsSync(out), `no hello recorded: ${serverErr}`);
      const packet = JSON.parse(fs.readFileSync(out, 'utf8')) as {
        type: string;
        caps: Record<string, unknown>;
      };
      assert.equal(packet.type, 'hello');
      return packet.caps;
    } finally {
      await stopChild(client);
      await stopChild(server);
    }
  }

  const hostKeys = (caps: Record<string, unknown>) =>
    Object.keys(caps).filter(
      (k) => HOST_KEYS.includes(k) || HOST_PREFIXES.some((p) => k.startsWith(p)),
    );

  it("control: xpra's own client, unconfined, tells the host's name, user, real name, machine id, paths, window manager and workspaces", async () => {
    control = await helloOf((xpraDir) => plainClient(path.join(xpraDir, 'xpra.sock'), hostEnv));
    assert.equal(control.hostname, os.hostname());
    assert.equal(control.username, os.userInfo().username);
    assert.ok('name' in control, 'the real name (GECOS) field');
    if (marks.machineId) assert.equal(control.machine_id, marks.machineId);
    assert.equal(control.wm_name, DESKTOP);
    assert.ok(String(control['platform.release']).length > 0);
    marks.userUuid = String(control.uuid);
    const traces = hostTraces(JSON.stringify(control), marks);
    for (const t of [
      `hostname ${marks.hostname}`,
      `host path ${dir}`,
      'workspace names',
      'window manager',
      "xpra's user id",
    ])
      assert.ok(traces.includes(t), `${t} in ${JSON.stringify(traces)}`);
  });

  it("kagome's launcher, unconfined (a remote cage's client), leaves all of it out and keeps the screen and keyboard", async () => {
    assert.ok(control, 'the control ran');
    const caps = await helloOf((xpraDir) =>
      spawn(
        '/usr/bin/python3',
        ['-c', XPRA_CLIENT_LAUNCHER, ...xpraClientArgv(path.join(xpraDir, 'xpra.sock'), '#ff0000')],
        { env: { ...hostEnv, XDG_CURRENT_DESKTOP: DESKTOP }, stdio: 'ignore' },
      ),
    );
    assert.deepEqual(hostKeys(caps), []);
    assert.deepEqual(hostTraces(JSON.stringify(caps), marks), []);
    assert.deepEqual(caps['desktop.names'], ['Desktop 1']);
    assert.deepEqual(caps.desktop_size, control.desktop_size);
    assert.deepEqual(caps.screen_sizes, control.screen_sizes);
    assert.equal(caps.xkbmap_layout, control.xkbmap_layout);
    assert.ok(Array.isArray(caps.xkbmap_keycodes) && caps.xkbmap_keycodes.length > 0);
    assert.equal(caps.platform, 'linux');
  });

  it("kagome's launcher in its sandbox, started as the service starts it, leaves all of it out too", async () => {
    assert.ok(control, 'the control ran');
    const caps = await helloOf((xpraDir) => {
      const etcDir = path.join(path.dirname(xpraDir), `${path.basename(xpraDir)}-etc`);
      writeClientEtc(etcDir, {
        name: os.userInfo().username,
        uid: process.getuid!(),
        gid: process.getgid!(),
      });
      const argv = [
        '/usr/bin/python3',
        '-c',
        XPRA_CLIENT_LAUNCHER,
        ...xpraClientArgv(path.posix.join(CLIENT_XPRA_DIR, 'xpra.sock'), '#ff0000'),
      ];
      const args = clientSandboxArgs(
        { display: x.display, xauthority: undefined, xpraDir, lang: 'C.UTF-8', etcDir },
        argv,
        3,
      )!;
      return spawn('bwrap', args, { env: {}, stdio: ['ignore', 'ignore', 'ignore', 'pipe'] });
    });
    assert.deepEqual(hostKeys(caps), []);
    assert.deepEqual(hostTraces(JSON.stringify(caps), marks), []);
    assert.deepEqual(caps.screen_sizes, control.screen_sizes);
  });
});
