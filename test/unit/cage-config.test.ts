import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FileError, KagomeError } from '../../lib/errors.js';
import {
  defaultBorder,
  formatCageFile,
  parseCageFile,
  type CageConfig,
} from '../../lib/cage/config.js';
import { checkCageName } from '../../lib/cage/name.js';

const FILE = '/cfg/kagome/cages/web.cage';
const CTX = {
  hostHome: '/home/alice',
  homesDir: '/home/alice/.local/share/kagome/homes',
  totalMemory: 8 * 1024 ** 3,
};

const parse = (text: string, name = 'web'): CageConfig => parseCageFile(text, FILE, name, CTX);

function parseError(text: string): FileError {
  try {
    parse(text);
  } catch (e) {
    assert.ok(e instanceof FileError, `expected a FileError, got ${String(e)}`);
    assert.equal(e.errorName, 'InvalidCageFile');
    assert.equal(e.file, FILE);
    assert.ok(e.message.includes(FILE), `message names the file: ${e.message}`);
    return e;
  }
  assert.fail(`expected ${JSON.stringify(text)} to be refused`);
}

/** The error must point at the line (1-based) and key, and say what is allowed. */
function assertRefused(text: string, line: number, key: string, ...mentions: string[]): FileError {
  const e = parseError(text);
  assert.equal(e.line, line);
  assert.equal(e.key, key);
  assert.ok(
    e.message.startsWith(`${FILE}:${line}: ${key}:`),
    `place and key in ${JSON.stringify(e.message)}`,
  );
  for (const m of mentions)
    assert.ok(e.message.includes(m), `${JSON.stringify(e.message)} mentions ${JSON.stringify(m)}`);
  return e;
}

describe('parseCageFile defaults', () => {
  it('gives every default for a bare [Cage] group', () => {
    const c = parse('[Cage]\n');
    assert.deepEqual(c, {
      name: 'web',
      description: '',
      backend: 'bubblewrap',
      image: undefined,
      remote: undefined,
      display: 'xpra',
      network: 'none',
      home: '/home/alice/.local/share/kagome/homes/web',
      mounts: [],
      environment: {},
      idleStopSeconds: 0,
      border: defaultBorder('web'),
      appName: '{name} [{cage}]',
      sound: 'output',
      clipboard: { direction: 'ask', primary: false, maxBytes: 256 * 1024, images: false },
      nestedSandbox: true,
      tasksMax: 4096,
      memoryMax: 4 * 1024 ** 3,
      sessionBus: 'private',
      onLogout: 'stop',
      openLinks: 'caged-default',
      openLinksLimit: 5,
      notifications: 'portal',
      trayIcons: true,
    });
  });

  it('refuses to bind a folder from where the cage can write (a link there would be bound at the next start)', () => {
    assertRefused(
      '[Cage]\nReadWrite=/srv/projects;\nReadOnly=/srv/projects/tools;\n',
      3,
      'ReadOnly',
      '/srv/projects/tools lies inside /srv/projects',
    );
    assertRefused(
      '[Cage]\nReadWrite=/srv/a;/srv/a/b;\n',
      2,
      'ReadWrite',
      '/srv/a/b lies inside /srv/a',
    );
    assertRefused(
      '[Cage]\nReadOnly=/home/alice/.local/share/kagome/homes/web/x;\n',
      2,
      'ReadOnly',
      "the cage's home",
    );
    assertRefused('[Cage]\nReadWrite=/home/alice/.local;\n', 2, 'ReadWrite', "the cage's home");
    // Side by side, read-only around the home, or a read-only folder holding a writable one: fine.
    assert.equal(parse('[Cage]\nReadWrite=/srv/a;/srv/ab;\nReadOnly=/srv/b;\n').mounts.length, 3);
    assert.equal(parse('[Cage]\nReadOnly=/home/alice/.local;\n').mounts.length, 1);
    assert.equal(parse('[Cage]\nReadOnly=/srv/a;\nReadWrite=/srv/a/out;\n').mounts.length, 2);
  });

  it('reads TasksMax: a number of at least 16, or infinity for none', () => {
    assert.equal(parse('[Cage]\nTasksMax=200\n').tasksMax, 200);
    assert.equal(parse('[Cage]\nTasksMax=infinity\n').tasksMax, 0);
    assertRefused('[Cage]\nTasksMax=8\n', 2, 'TasksMax', 'at least 16');
    assertRefused('[Cage]\nTasksMax=lots\n', 2, 'TasksMax', 'infinity');
  });

  it('reads MemoryMax: bytes with K, M, G or T, a share of the machine, or infinity; half by default', () => {
    const ctx = { ...CTX, totalMemory: 8 * 1024 ** 3 };
    const mem = (text: string) => parseCageFile(text, FILE, 'web', ctx).memoryMax;
    assert.equal(mem('[Cage]\n'), 4 * 1024 ** 3);
    assert.equal(mem('[Cage]\nMemoryMax=25%\n'), 2 * 1024 ** 3);
    assert.equal(mem('[Cage]\nMemoryMax=512M\n'), 512 * 1024 ** 2);
    assert.equal(mem('[Cage]\nMemoryMax=2G\n'), 2 * 1024 ** 3);
    assert.equal(mem('[Cage]\nMemoryMax=268435456\n'), 256 * 1024 ** 2);
    assert.equal(mem('[Cage]\nMemoryMax=infinity\n'), 0);
    assertRefused('[Cage]\nMemoryMax=1M\n', 2, 'MemoryMax', 'at least 64M');
    assertRefused('[Cage]\nMemoryMax=150%\n', 2, 'MemoryMax', '50%');
    assertRefused('[Cage]\nMemoryMax=lots\n', 2, 'MemoryMax', 'infinity');
    assertRefused('[Cage]\nMemoryMax=-1\n', 2, 'MemoryMax', 'infinity');
  });

  it('reads NestedSandbox, which only turns nested user namespaces off', () => {
    assert.equal(parse('[Cage]\nNestedSandbox=false\n').nestedSandbox, false);
    assert.equal(parse('[Cage]\nNestedSandbox=true\n').nestedSandbox, true);
    assertRefused('[Cage]\nNestedSandbox=no\n', 2, 'NestedSandbox', 'true or false');
  });

  it('reads the sound and clipboard policies', () => {
    const c = parse(
      '[Cage]\nSound=duplex\nClipboard=to-host\nClipboardPrimary=true\nClipboardMaxSize=1M\nClipboardImages=true\n',
    );
    assert.equal(c.sound, 'duplex');
    assert.deepEqual(c.clipboard, {
      direction: 'to-host',
      primary: true,
      maxBytes: 1024 * 1024,
      images: true,
    });
    assert.equal(parse('[Cage]\nClipboardMaxSize=4096\n').clipboard.maxBytes, 4096);
    assert.equal(parse('[Cage]\nClipboardMaxSize=64k\n').clipboard.maxBytes, 65536);
    for (const d of ['none', 'to-cage', 'to-host', 'both', 'ask'])
      assert.equal(parse(`[Cage]\nClipboard=${d}\n`).clipboard.direction, d);
  });

  it('refuses sound and clipboard values it does not know, saying what is allowed', () => {
    assertRefused('[Cage]\nSound=loud\n', 2, 'Sound', 'none, output, duplex');
    assertRefused('[Cage]\nClipboard=yes\n', 2, 'Clipboard', 'none, to-cage, to-host, both, ask');
    assertRefused('[Cage]\nClipboardPrimary=yes\n', 2, 'ClipboardPrimary', 'true or false');
    assertRefused('[Cage]\nClipboardImages=1\n', 2, 'ClipboardImages', 'true or false');
    for (const bad of ['0', '1G', '100M', '-5', 'big', '1.5M'])
      assertRefused(`[Cage]\nClipboardMaxSize=${bad}\n`, 2, 'ClipboardMaxSize', '256K');
  });

  it('reads SessionBus: a private bus by default, portal, none for no bus, nothing else', () => {
    assert.equal(parse('[Cage]\n').sessionBus, 'private');
    assert.equal(parse('[Cage]\nSessionBus=none\n').sessionBus, 'none');
    assert.equal(parse('[Cage]\nSessionBus=private\n').sessionBus, 'private');
    assert.equal(parse('[Cage]\nSessionBus=portal\n').sessionBus, 'portal');
    for (const bad of ['host', 'yes', 'Private', ''])
      assertRefused(`[Cage]\nSessionBus=${bad}\n`, 2, 'SessionBus', 'private, portal, none');
    for (const backend of ['podman', 'docker', 'lxd'])
      assertRefused(
        `[Cage]\nBackend=${backend}\nSessionBus=portal\n`,
        3,
        'SessionBus',
        'bubblewrap',
        'SessionBus=private',
      );
    assertRefused(
      '[Cage]\nEnvironment=DBUS_SESSION_BUS_ADDRESS=unix:path=/tmp/x\n',
      2,
      'Environment',
      'DBUS_SESSION_BUS_ADDRESS',
    );
  });

  it('reads OnLogout: stop by default, keep, nothing else', () => {
    assert.equal(parse('[Cage]\n').notifications, 'portal');
    assert.equal(parse('[Cage]\nNotifications=none\n').notifications, 'none');
    assert.equal(parse('[Cage]\nTrayIcons=false\n').trayIcons, false);
    assert.throws(() => parse('[Cage]\nTrayIcons=maybe\n'), /TrayIcons/);
    assert.throws(() => parse('[Cage]\nNotifications=direct\n'), /Notifications/);
    assert.equal(parse('[Cage]\n').openLinks, 'caged-default');
    assert.equal(parse('[Cage]\nOpenLinks=none\n').openLinks, 'none');
    assert.equal(parse('[Cage]\nOpenLinks=host\n').openLinks, 'host');
    assert.equal(parse('[Cage]\nOpenLinks=cage:web-2\n').openLinks, 'cage:web-2');
    assert.equal(parse('[Cage]\nOpenLinks=ask\n').openLinks, 'ask');
    assert.equal(parse('[Cage]\nOpenLinks=ask-with-host\n').openLinks, 'ask-with-host');
    for (const bad of ['asked', 'cage:', 'cage:../x', 'cage:a b'])
      assert.throws(() => parse(`[Cage]\nOpenLinks=${bad}\n`), /OpenLinks/, bad);
    assert.equal(parse('[Cage]\n').openLinksLimit, 5);
    assert.equal(parse('[Cage]\nOpenLinksLimit=none\n').openLinksLimit, 0);
    assert.equal(parse('[Cage]\nOpenLinksLimit=20\n').openLinksLimit, 20);
    for (const bad of ['0', '-1', 'many', '1.5', '10000'])
      assert.throws(() => parse(`[Cage]\nOpenLinksLimit=${bad}\n`), /OpenLinksLimit/, bad);
    assert.equal(parse('[Cage]\n').onLogout, 'stop');
    assert.equal(parse('[Cage]\nOnLogout=keep\n').onLogout, 'keep');
    for (const bad of ['yes', 'Keep', 'detach', ''])
      assertRefused(`[Cage]\nOnLogout=${bad}\n`, 2, 'OnLogout', 'stop, keep');
  });

  it('keeps the sound server for kagome to set', () => {
    assertRefused('[Cage]\nEnvironment=PULSE_SERVER=tcp:evil\n', 2, 'Environment', 'PULSE_SERVER');
  });

  it('derives the home from the cage name', () => {
    assert.equal(parse('[Cage]\n', 'mail').home, '/home/alice/.local/share/kagome/homes/mail');
    assert.equal(parse('[Cage]\nHome=\n').home, '/home/alice/.local/share/kagome/homes/web');
  });

  it('reads bytes as well as text', () => {
    const c = parseCageFile(new TextEncoder().encode('[Cage]\nNetwork=full\n'), FILE, 'web', CTX);
    assert.equal(c.network, 'full');
  });

  it('has a #rrggbb default border that differs between cages and is stable', () => {
    const a = defaultBorder('web');
    const b = defaultBorder('mail');
    assert.match(a, /^#[0-9a-f]{6}$/);
    assert.match(b, /^#[0-9a-f]{6}$/);
    assert.notEqual(a, b);
    assert.equal(defaultBorder('web'), a);
    assert.equal(parse('[Cage]\n', 'mail').border, b);
  });
});

describe('parseCageFile keys', () => {
  it('parses every key', () => {
    const c = parse(
      [
        '# a cage for the web',
        '[Cage]',
        'Backend=bubblewrap',
        'Display=xephyr',
        'Network=full',
        'Home=~/cages/web-home/',
        'ReadOnly=/srv/photos;/opt/tools:/tools;',
        'ReadWrite=~/Projects/site:~/site;/data',
        'Environment=LANG=C.UTF-8;EDITOR=vi;EQ=a=b;EMPTY=;',
        'IdleStop=60',
        'Border=#abc',
        'Description=Browsing & mail',
        'X-Foo=1',
        '',
      ].join('\n'),
    );
    assert.equal(c.backend, 'bubblewrap');
    assert.equal(c.display, 'xephyr');
    assert.equal(c.network, 'full');
    assert.equal(c.home, '/home/alice/cages/web-home');
    assert.deepEqual(c.mounts, [
      { source: '/srv/photos', dest: '/srv/photos', writable: false },
      { source: '/opt/tools', dest: '/tools', writable: false },
      { source: '/home/alice/Projects/site', dest: '/home/alice/site', writable: true },
      { source: '/data', dest: '/data', writable: true },
    ]);
    assert.deepEqual(c.environment, { LANG: 'C.UTF-8', EDITOR: 'vi', EQ: 'a=b', EMPTY: '' });
    assert.equal(c.idleStopSeconds, 60);
    assert.equal(c.border, '#abc');
    assert.equal(c.description, 'Browsing & mail');
  });

  it('accepts the documented Border forms', () => {
    assert.equal(parse('[Cage]\nBorder=none\n').border, undefined);
    assert.equal(parse('[Cage]\nBorder=red\n').border, 'red');
    assert.equal(parse('[Cage]\nBorder=#3465A4\n').border, '#3465A4');
    assert.equal(parse('[Cage]\nBorder=dark slate blue\n').border, 'dark slate blue');
  });

  it('accepts IdleStop=0 and large whole numbers', () => {
    assert.equal(parse('[Cage]\nIdleStop=0\n').idleStopSeconds, 0);
    assert.equal(parse('[Cage]\nIdleStop=3600\n').idleStopSeconds, 3600);
  });

  it("reads AppName, the menu name format of the cage's apps", () => {
    assert.equal(
      parse('[Cage]\nAppName={name} (sandboxed in {cage})\n').appName,
      '{name} (sandboxed in {cage})',
    );
    assert.equal(parse('[Cage]\nAppName={name}\n').appName, '{name}');
    assert.equal(parse('[Cage]\nAppName=\n').appName, '{name} [{cage}]');
  });

  it('allows X- extension keys', () => {
    assert.equal(parse('[Cage]\nX-Foo=1\nX-Other-Tool=yes\n').name, 'web');
  });

  it('accepts a home outside the host home', () => {
    assert.equal(parse('[Cage]\nHome=/srv/cage-homes/web\n').home, '/srv/cage-homes/web');
  });
});

describe('parseCageFile errors', () => {
  it('refuses an unknown display, listing the allowed ones', () => {
    assertRefused('[Cage]\nDisplay=wayland\n', 2, 'Display', '"wayland"', 'xpra, xephyr');
  });

  it('refuses Network=host, listing none, full and internet', () => {
    assertRefused(
      '[Cage]\nDescription=x\nNetwork=host\n',
      3,
      'Network',
      '"host"',
      'none, full, internet',
    );
  });

  it('takes Network=internet for bubblewrap cages and refuses it for container cages, naming the way out', () => {
    assert.equal(parse('[Cage]\nNetwork=internet\n').network, 'internet');
    for (const backend of ['podman', 'docker', 'lxd']) {
      assertRefused(
        `[Cage]\nBackend=${backend}\nNetwork=internet\n`,
        3,
        'Network',
        '"internet"',
        'bubblewrap',
        backend,
        'Network=full',
      );
    }
  });

  it('refuses an AppName without {name} or with an unknown placeholder', () => {
    assertRefused('[Cage]\nAppName=[{cage}]\n', 2, 'AppName', '{name}');
    assertRefused('[Cage]\nAppName={name} {Cage}\n', 2, 'AppName', '{Cage}');
  });

  it('refuses an unknown backend', () => {
    assertRefused('[Cage]\nBackend=qemu\n', 2, 'Backend', '"qemu"', 'bubblewrap');
  });

  it('refuses relative paths', () => {
    assertRefused('[Cage]\nReadOnly=photos\n', 2, 'ReadOnly', '"photos"', 'absolute');
    assertRefused('[Cage]\nReadWrite=/srv/a:site\n', 2, 'ReadWrite', '"site"', 'absolute');
    assertRefused('[Cage]\nHome=homes/web\n', 2, 'Home', 'absolute');
  });

  it("refuses '..' in paths", () => {
    assertRefused('[Cage]\nReadOnly=/srv/../etc\n', 2, 'ReadOnly', "'..'");
    assertRefused('[Cage]\n\nReadWrite=/data:/home/alice/../../etc\n', 3, 'ReadWrite', "'..'");
    assertRefused('[Cage]\nHome=~/../bob\n', 2, 'Home', "'..'");
  });

  it('refuses the host home itself as the cage home', () => {
    assertRefused('[Cage]\nHome=~\n', 2, 'Home', 'your own home directory');
    assertRefused('[Cage]\nHome=/home/alice/\n', 2, 'Home', 'your own home directory');
    assertRefused('[Cage]\nHome=~/\n', 2, 'Home', 'your own home directory');
  });

  it('refuses binding the root directory and paths with more than one colon', () => {
    assertRefused('[Cage]\nReadOnly=/\n', 2, 'ReadOnly', 'root directory');
    assertRefused('[Cage]\nReadWrite=/srv:/\n', 2, 'ReadWrite', 'root directory');
    assertRefused('[Cage]\nReadOnly=/a:/b:/c\n', 2, 'ReadOnly', 'HOST_PATH:CAGE_PATH');
  });

  it('refuses reserved and malformed environment entries', () => {
    assertRefused(
      '[Cage]\nEnvironment=DISPLAY=:0\n',
      2,
      'Environment',
      'DISPLAY',
      'cannot be overridden',
    );
    for (const name of [
      'XAUTHORITY',
      'HOME',
      'XDG_RUNTIME_DIR',
      'DBUS_SESSION_BUS_ADDRESS',
      'WAYLAND_DISPLAY',
    ]) {
      assertRefused(`[Cage]\nEnvironment=A=1;${name}=x\n`, 2, 'Environment', name);
    }
    assertRefused('[Cage]\nEnvironment=NOVALUE\n', 2, 'Environment', 'NAME=VALUE');
    assertRefused('[Cage]\nEnvironment=1X=a\n', 2, 'Environment', 'NAME=VALUE');
    assertRefused('[Cage]\nEnvironment=A-B=a\n', 2, 'Environment', 'NAME=VALUE');
  });

  it('refuses IdleStop that is not a whole number of seconds', () => {
    assertRefused('[Cage]\nIdleStop=soon\n', 2, 'IdleStop', '"soon"', 'whole number');
    assertRefused('[Cage]\nIdleStop=-1\n', 2, 'IdleStop', '"-1"');
    assertRefused('[Cage]\nIdleStop=1.5\n', 2, 'IdleStop', '"1.5"');
  });

  it('refuses a Border that is not a colour', () => {
    assertRefused('[Cage]\nBorder=#12\n', 2, 'Border', '"#12"', '#rrggbb', 'none');
    assertRefused('[Cage]\nBorder=#12345g\n', 2, 'Border', '"#12345g"');
  });

  it('refuses an unknown key, listing the allowed keys', () => {
    const e = assertRefused(
      '[Cage]\nDisplay=xpra\nFoo=1\n',
      3,
      'Foo',
      'Backend',
      'Display',
      'Network',
      'Description',
      'X-*',
    );
    assert.ok(e.message.includes('unknown key'));
  });

  it('refuses a localized key', () => {
    assertRefused('[Cage]\nBackend[de]=x\n', 2, 'Backend[de]', 'not localized');
  });

  it('refuses an unknown group, naming it', () => {
    const e = parseError('[Cage]\nNetwork=none\n[Other]\na=1\n');
    assert.ok(e.message.includes('[Other]'), e.message);
    assert.ok(e.message.includes('[Cage]'), e.message);
  });

  it('refuses a file without a [Cage] group', () => {
    for (const text of ['', '# only a comment\n', '[Other]\na=1\n']) {
      const e = parseError(text);
      assert.ok(e.message.includes('no [Cage] group'), e.message);
    }
  });

  it('refuses a key before any group, with its line', () => {
    const e = parseError('# c\nBackend=bubblewrap\n[Cage]\n');
    assert.equal(e.line, 2);
    assert.ok(e.message.startsWith(`${FILE}:2:`), e.message);
    assert.ok(e.message.includes('before any group'), e.message);
  });

  it('refuses an invalid cage name with InvalidArgument', () => {
    assert.throws(
      () => parse('[Cage]\n', '../x'),
      (e: unknown) => e instanceof KagomeError && e.errorName === 'InvalidArgument',
    );
  });
});

describe('formatCageFile', () => {
  it('writes a file that parses back to the chosen values', () => {
    const text = formatCageFile({
      description: 'Photos; and more',
      backend: 'bubblewrap',
      display: 'xephyr',
      network: 'full',
      home: '/srv/homes/web',
      readOnly: ['/srv/photos', '/opt/tools:/tools'],
      readWrite: ['~/Projects/site:~/site'],
      environment: ['LANG=C.UTF-8', 'GREETING=hello; world', 'PATHS=a\\b'],
      idleStop: 90,
      border: '#3465a4',
    });
    const c = parse(text);
    assert.deepEqual(c, {
      name: 'web',
      description: 'Photos; and more',
      backend: 'bubblewrap',
      image: undefined,
      remote: undefined,
      display: 'xephyr',
      network: 'full',
      home: '/srv/homes/web',
      mounts: [
        { source: '/srv/photos', dest: '/srv/photos', writable: false },
        { source: '/opt/tools', dest: '/tools', writable: false },
        { source: '/home/alice/Projects/site', dest: '/home/alice/site', writable: true },
      ],
      environment: { LANG: 'C.UTF-8', GREETING: 'hello; world', PATHS: 'a\\b' },
      idleStopSeconds: 90,
      border: '#3465a4',
      appName: '{name} [{cage}]',
      sound: 'output',
      clipboard: { direction: 'ask', primary: false, maxBytes: 256 * 1024, images: false },
      nestedSandbox: true,
      tasksMax: 4096,
      memoryMax: 4 * 1024 ** 3,
      sessionBus: 'private',
      onLogout: 'stop',
      openLinks: 'caged-default',
      openLinksLimit: 5,
      notifications: 'portal',
      trayIcons: true,
    });
  });

  it('writes only the essentials when nothing is chosen', () => {
    const text = formatCageFile({});
    assert.match(text, /^\[Cage\]\n/);
    assert.ok(
      !/^(Home|IdleStop|Border|ReadOnly|ReadWrite|Environment|Description)=/m.test(text),
      text,
    );
    const c = parse(text);
    assert.equal(c.backend, 'bubblewrap');
    assert.equal(c.display, 'xpra');
    assert.equal(c.network, 'none');
    assert.equal(c.home, `${CTX.homesDir}/web`);
    assert.equal(c.border, defaultBorder('web'));
  });

  it('keeps Border=none', () => {
    assert.equal(parse(formatCageFile({ border: 'none' })).border, undefined);
  });
});

describe('checkCageName', () => {
  it('accepts valid names and returns them', () => {
    for (const n of ['a', 'A-b_9', 'x'.repeat(64)]) assert.equal(checkCageName(n), n);
  });

  it('refuses invalid names with InvalidArgument', () => {
    const bad: unknown[] = [
      '',
      '../x',
      '..',
      'a/b',
      'x'.repeat(65),
      'a b',
      'é',
      'a.b',
      'a\n',
      undefined,
      null,
      42,
      ['a'],
      { name: 'a' },
    ];
    for (const n of bad) {
      assert.throws(
        () => checkCageName(n),
        (e: unknown) =>
          e instanceof KagomeError &&
          e.errorName === 'InvalidArgument' &&
          /1 to 64 characters/.test(e.message),
        `should refuse ${String(n)}`,
      );
    }
  });

  it('shortens very long names in the message', () => {
    try {
      checkCageName('y'.repeat(500));
      assert.fail('accepted a 500-character name');
    } catch (e) {
      assert.ok(e instanceof KagomeError);
      assert.ok(e.message.length < 300, e.message);
    }
  });
});

describe('parseCageFile: container backends', () => {
  it('gives container backends the image `kagome image build` makes, and bubblewrap none', () => {
    assert.equal(parse('[Cage]\n').image, undefined);
    for (const b of ['podman', 'docker', 'lxd']) {
      const c = parse(`[Cage]\nBackend=${b}\n`);
      assert.equal(c.backend, b);
      assert.equal(c.image, 'kagome/debian12');
      assert.equal(c.remote, undefined);
    }
    assert.equal(
      parse('[Cage]\nBackend=podman\nImage=registry.example.org/team/app:1.2\n').image,
      'registry.example.org/team/app:1.2',
    );
  });

  it('refuses Image= for bubblewrap, saying which backends take one', () => {
    assertRefused('[Cage]\nImage=kagome/debian12\n', 2, 'Image', 'Backend=podman, docker or lxd');
  });

  it('refuses image names an engine could read as an option or that hold spaces', () => {
    for (const bad of ['-rm', 'a b', 'x;y', '../x y'])
      assertRefused(`[Cage]\nBackend=docker\nImage=${bad}\n`, 3, 'Image', 'kagome/debian12');
  });

  it('takes Remote= for LXD only, as a remote name', () => {
    assert.equal(parse('[Cage]\nBackend=lxd\nRemote=lab\n').remote, 'lab');
    assertRefused('[Cage]\nBackend=podman\nRemote=lab\n', 3, 'Remote', 'Backend=lxd');
    assertRefused('[Cage]\nBackend=lxd\nRemote=-x\n', 3, 'Remote', 'lxc remote list');
  });

  it('writes Image= and Remote= in new cage files only when chosen', () => {
    const text = formatCageFile({ backend: 'lxd', image: 'kagome/other', remote: 'lab' });
    const c = parse(text);
    assert.equal(c.image, 'kagome/other');
    assert.equal(c.remote, 'lab');
    assert.doesNotMatch(formatCageFile({ backend: 'podman' }), /Image=|Remote=/);
  });
});
