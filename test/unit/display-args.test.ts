import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_SCREEN,
  XPRA_DISPLAY,
  XPRA_SERVER_LAUNCHER,
  xpraClientArgv,
  xpraServerArgv,
} from '../../lib/display/xpra.js';
import { newCookie, xauthorityEntry } from '../../lib/display/xauth.js';

const SOCKET = '/run/user/1000/kagome/cages/web/xpra/xpra.sock';

/** Every `--name=value` option for one name. */
const option = (argv: string[], name: string): string[] =>
  argv.filter((a) => a.startsWith(`--${name}=`));

describe('xpra command lines', () => {
  const server = xpraServerArgv();
  const client = xpraClientArgv(SOCKET, '#3465a4');
  const clientNoBorder = xpraClientArgv(SOCKET, undefined);

  for (const [label, argv] of [
    ['server', server],
    ['client', client],
    ['client without border', clientNoBorder],
  ] as const) {
    it(`turns every data channel off on the ${label}`, () => {
      for (const name of ['clipboard', 'file-transfer', 'open-url', 'open-files']) {
        assert.deepEqual(option(argv, name), [`--${name}=no`], `${name} on the ${label}`);
      }
      for (const name of ['printing', 'notifications', 'webcam', 'pulseaudio', 'mdns']) {
        assert.deepEqual(option(argv, name), [`--${name}=no`], `${name} on the ${label}`);
      }
    });
  }

  it('has a tray only with TrayIcons=, the client told the cage and its colour first', () => {
    for (const argv of [server, client, clientNoBorder])
      assert.deepEqual(option(argv, 'system-tray'), ['--system-tray=no']);
    assert.deepEqual(option(xpraServerArgv(undefined, undefined, true), 'system-tray'), [
      '--system-tray=yes',
    ]);
    const tray = xpraClientArgv(SOCKET, '#3465a4', false, 'web');
    assert.deepEqual(option(tray, 'system-tray'), ['--system-tray=yes']);
    // Taken off by XPRA_CLIENT_LAUNCHER before xpra reads its arguments.
    assert.deepEqual(tray.slice(0, 3), [
      '--kagome-tray=web',
      '--kagome-tray-colour=#3465a4',
      'attach',
    ]);
    assert.equal(xpraClientArgv(SOCKET, undefined, false, 'web')[1], 'attach');
  });

  it('starts the server on the fixed display with socket activation', () => {
    // Isolated (-I): a module planted in the cage's home, the server's working directory,
    // must not replace one of python's own.
    assert.deepEqual(server.slice(0, 3), ['python3', '-I', '-c']);
    assert.equal(server[4], '/run/kagome/xpra/xpra.sock');
    // xpra's own entry point, with kagome's changes to its window manager (XPRA_SERVER_LAUNCHER).
    assert.deepEqual(server.slice(5, 11), [
      'python3',
      '-I',
      '-c',
      XPRA_SERVER_LAUNCHER,
      'start',
      XPRA_DISPLAY,
    ]);
    assert.deepEqual(option(server, 'bind'), ['--bind=none']);
    assert.deepEqual(option(server, 'daemon'), ['--daemon=no']);
    assert.deepEqual(option(server, 'start-new-commands'), ['--start-new-commands=no']);
  });

  it("sizes the server's Xvfb from the given screen", () => {
    const [xvfb] = option(xpraServerArgv('1920x1080'), 'xvfb');
    assert.ok(xvfb, 'an --xvfb option');
    assert.match(xvfb, /-screen 0 1920x1080x24\+32 /);
    assert.match(xvfb, /-nolisten tcp/);
    assert.match(option(server, 'xvfb')[0]!, new RegExp(`-screen 0 ${DEFAULT_SCREEN}x24`));
  });

  it('attaches the client to the socket and keeps the title', () => {
    assert.deepEqual(client.slice(0, 2), ['attach', `socket:${SOCKET}`]);
    assert.deepEqual(option(client, 'title'), ['--title=@title@']);
    assert.deepEqual(option(clientNoBorder, 'title'), ['--title=@title@']);
  });

  it("keeps the client's log lines from the server, which is the cage's", () => {
    for (const argv of [client, xpraClientArgv(SOCKET, undefined, true)])
      assert.deepEqual(option(argv, 'remote-logging'), ['--remote-logging=no']);
  });

  it("has the client watch none of the host's settings, which the server ignores", () => {
    // Its watch costs an XSync per event of the host display (see xpraClientArgv).
    for (const argv of [client, clientNoBorder, xpraClientArgv(SOCKET, undefined, true)])
      assert.deepEqual(option(argv, 'xsettings'), ['--xsettings=no']);
    assert.deepEqual(option(server, 'xsettings'), ['--xsettings=no']);
  });

  it('draws the border in the cage colour, or none when undefined', () => {
    assert.deepEqual(option(client, 'border'), ['--border=#3465a4,3']);
    assert.deepEqual(option(xpraClientArgv(SOCKET, 'red'), 'border'), ['--border=red,3']);
    assert.deepEqual(option(clientNoBorder, 'border'), ['--border=no']);
  });
});

describe('Xauthority entry', () => {
  it('has the FamilyWild layout with an empty address and display number', () => {
    const cookie = Buffer.from([...Array(16).keys()].map((i) => i * 16 + 1));
    const entry = xauthorityEntry(cookie);
    const name = Buffer.from('MIT-MAGIC-COOKIE-1');
    assert.equal(entry.length, 2 + 2 + 2 + 2 + name.length + 2 + 16);
    let at = 0;
    const u16 = () => {
      const v = entry.readUInt16BE(at);
      at += 2;
      return v;
    };
    assert.equal(u16(), 0xffff, 'family');
    assert.equal(u16(), 0, 'address length');
    assert.equal(u16(), 0, 'number length');
    assert.equal(u16(), 18, 'name length');
    assert.equal(entry.subarray(at, at + 18).toString('latin1'), 'MIT-MAGIC-COOKIE-1');
    at += 18;
    assert.equal(u16(), 16, 'data length');
    assert.deepEqual(entry.subarray(at), cookie);
  });

  it('makes 16 random bytes that differ each time', () => {
    const a = newCookie();
    const b = newCookie();
    assert.ok(Buffer.isBuffer(a));
    assert.equal(a.length, 16);
    assert.equal(b.length, 16);
    assert.notDeepEqual(a, b);
    assert.notDeepEqual(a, Buffer.alloc(16));
    assert.deepEqual(xauthorityEntry(a).subarray(-16), a);
  });
});
