import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CLIENT_XPRA_DIR,
  clientSandboxArgs,
  displaySocket,
  writeClientEtc,
} from '../../lib/display/client-sandbox.js';

const pairs = (args: string[], flag: string): string[][] =>
  args.flatMap((a, i) => (a === flag ? [[args[i + 1]!, args[i + 2]!]] : []));

describe("the host xpra client's sandbox", () => {
  const cookie = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-xauth-')), 'Xauthority');
  fs.writeFileSync(cookie, 'cookie');
  const etcDir = '/run/user/1000/kagome/cages/web/client-etc';
  const args = clientSandboxArgs(
    {
      display: ':7',
      xauthority: cookie,
      xpraDir: '/run/user/1000/kagome/cages/web/xpra',
      lang: 'de_DE.UTF-8',
      etcDir,
    },
    ['/usr/bin/xpra', 'attach', 'socket:/x'],
    3,
  )!;

  it('gives it the display socket, its cookie and the cage folder, and no home or runtime folder of the host', () => {
    const etc = ['passwd', 'group', 'machine-id'].filter((f) => fs.existsSync(`/etc/${f}`));
    assert.ok(etc.includes('passwd') && etc.includes('group'));
    assert.deepEqual(pairs(args, '--ro-bind'), [
      ['/usr', '/usr'],
      ['/etc', '/etc'],
      ...etc.map((f) => [`${etcDir}/${f}`, `/etc/${f}`]),
      ['/tmp/.X11-unix/X7', '/tmp/.X11-unix/X7'],
      [cookie, '/home/client/.Xauthority'],
    ]);
    // At the path the cage knows it by: the client's command line, which it tells the server, names no host path.
    assert.deepEqual(pairs(args, '--bind'), [
      ['/run/user/1000/kagome/cages/web/xpra', '/run/kagome/xpra'],
    ]);
    assert.equal(CLIENT_XPRA_DIR, '/run/kagome/xpra');
    for (const a of args)
      assert.ok(!a.startsWith(os.homedir() + '/') || a === cookie, `nothing of the home: ${a}`);
  });

  it('gives it no network, no session bus and only the environment it needs', () => {
    assert.ok(
      args.includes('--unshare-all') &&
        args.includes('--unshare-user') &&
        args.includes('--clearenv') &&
        args.includes('--new-session'),
    );
    // The host's own name, which GDK writes in WM_CLIENT_MACHINE: another one made window managers call every window remote.
    assert.ok(!args.includes('--hostname'));
    assert.ok(!args.includes('--share-net'));
    const env = Object.fromEntries(
      args.flatMap((a, i) => (a === '--setenv' ? [[args[i + 1]!, args[i + 2]!]] : [])),
    );
    assert.deepEqual(env, {
      DISPLAY: ':7',
      HOME: '/home/client',
      PATH: '/usr/bin:/bin',
      LANG: 'de_DE.UTF-8',
      XAUTHORITY: '/home/client/.Xauthority',
    });
    assert.deepEqual(args.slice(-4), ['--', '/usr/bin/xpra', 'attach', 'socket:/x']);
  });

  it('is not made for a display that is not a local socket (TCP), nor for a missing cookie', () => {
    assert.equal(displaySocket('localhost:10.0'), undefined);
    assert.equal(displaySocket(':0.1'), '/tmp/.X11-unix/X0');
    assert.equal(
      clientSandboxArgs(
        { display: 'host:3', xauthority: undefined, xpraDir: '/x', lang: undefined, etcDir: '/e' },
        ['xpra'],
        3,
      ),
      undefined,
    );
    const noCookie = clientSandboxArgs(
      {
        display: ':1',
        xauthority: '/does/not/exist',
        xpraDir: '/x',
        lang: undefined,
        etcDir: '/e',
      },
      ['xpra'],
      3,
    )!;
    assert.ok(!noCookie.includes('XAUTHORITY'));
  });

  it('gives it an /etc that names only the user, without a real name, and a machine id of its own', () => {
    const dir = path.join(
      fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-client-etc-')),
      'client-etc',
    );
    writeClientEtc(dir, { name: 'alice', uid: 1000, gid: 1000 });
    const first = fs.readFileSync(path.join(dir, 'machine-id'), 'utf8');
    assert.equal(
      fs.readFileSync(path.join(dir, 'passwd'), 'utf8'),
      'alice:x:1000:1000:alice:/home/client:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n',
    );
    assert.equal(
      fs.readFileSync(path.join(dir, 'group'), 'utf8'),
      'alice:x:1000:\nnogroup:x:65534:\n',
    );
    assert.ok(!fs.existsSync(path.join(dir, 'hostname')));
    assert.match(first, /^[0-9a-f]{32}\n$/);
    writeClientEtc(dir, { name: 'alice', uid: 1000, gid: 1000 });
    assert.notEqual(
      fs.readFileSync(path.join(dir, 'machine-id'), 'utf8'),
      first,
      'a new machine id at every start',
    );
    if (fs.existsSync('/etc/machine-id'))
      assert.notEqual(first, fs.readFileSync('/etc/machine-id', 'utf8'));
    fs.rmSync(path.dirname(dir), { recursive: true, force: true });
  });
});
