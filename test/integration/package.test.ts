import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { REPO } from '../helpers/kagome.js';
import { CACHE } from '../helpers/engines.js';
import { cachedRootfs } from '../helpers/images.js';

// The Debian package (issue 18): packaging/build-deb builds it from this tree, lintian finds no
// error in it, and it installs into a clean Debian 12 root (mmdebstrap, with only the package's
// Depends: no Recommends, nothing of the tree), where an ordinary user launches into a cage from
// the installed files alone, against the root's own dbus-daemon and Xvfb.
//
// Debian 12's own nodejs is 18, which `nodejs (>= 20.10)` refuses, so the root first gets this
// machine's nodejs (nodesource's) made into a .deb again by dpkg-repack: the package a user of
// kagome's .deb would have installed. Both the root (per list of Depends) and that .deb (per
// nodejs version) are cached in the test cache, as the container image is.
//
// The root is unpacked by the test's user, so its files are that user's; it is mounted
// read-only under the user's session, as /usr is on a real machine. dpkg runs as root of a user
// namespace of its own (bwrap --uid 0) over the same folder, as it would as root.

const SUITE = 'bookworm';

async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
) {
  const r = await execa(cmd, args, { reject: false, all: true, stdin: 'ignore', ...opts });
  return { code: r.exitCode, out: String(r.all ?? ''), stdout: String(r.stdout ?? '') };
}

/** Package names of a control field, each relation's first alternative, without versions. */
function names(field: string): string[] {
  return field
    .split(',')
    .map((rel) =>
      rel
        .split('|')[0]!
        .replace(/\(.*\)/, '')
        .trim(),
    )
    .filter(Boolean);
}

/** The machine's nodejs as a .deb (dpkg-repack), once per nodejs version. */
async function repackedNodejs(): Promise<string> {
  const version = (await run('dpkg-query', ['-W', '-f', '${Version}', 'nodejs'])).out.trim();
  assert.match(version, /^\d/, `nodejs is not installed as a Debian package here: ${version}`);
  const dir = path.join(CACHE, `nodejs-repack-${version}`);
  const done = path.join(dir, 'nodejs.deb');
  if (fs.existsSync(done)) return done;
  const tmp = fs.mkdtempSync(path.join(CACHE, '.nodejs-repack-'));
  try {
    // fakeroot: the files are root's in the .deb. gzip -1: it is a cache, made once.
    const r = await run('fakeroot', ['-u', 'dpkg-repack', '-d-Zgzip', '-d-z1', 'nodejs'], {
      cwd: tmp,
    });
    const deb = fs.readdirSync(tmp).find((f) => f.endsWith('.deb'));
    assert.ok(r.code === 0 && deb, `dpkg-repack nodejs failed:\n${r.out.slice(-3000)}`);
    fs.mkdirSync(dir, { recursive: true });
    fs.renameSync(path.join(tmp, deb), done);
    return done;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** rm -rf for a tree that may hold folders without write permission (an unpacked root). */
function removeTree(dir: string): void {
  if (!fs.existsSync(dir)) return;
  (function writable(d: string) {
    fs.chmodSync(d, 0o700);
    for (const e of fs.readdirSync(d, { withFileTypes: true }))
      if (e.isDirectory()) writable(path.join(d, e.name));
  })(dir);
  fs.rmSync(dir, { recursive: true, force: true });
}

describe('the Debian package', () => {
  let work: string;
  let deb: string;
  let control: Record<string, string>;
  let listing: string;
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as {
    version: string;
  };

  before(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-package-'));
    // The tree is built (the test command builds it first): package what is there.
    const r = await run(path.join(REPO, 'packaging', 'build-deb'), [
      '--prebuilt',
      path.join(work, 'out'),
    ]);
    assert.equal(r.code, 0, `packaging/build-deb failed:\n${r.out}`);
    deb = r.stdout.trim().split('\n').pop()!;
    const fields = (await run('dpkg-deb', ['-f', deb])).out;
    control = Object.fromEntries(
      [...fields.matchAll(/^([\w-]+): (.*(?:\n .*)*)/gm)].map((m) => [m[1]!, m[2]!]),
    );
    listing = (await run('dpkg-deb', ['-c', deb])).out;
  });
  after(() => {
    if (work) removeTree(work);
  });

  it('is kagome_VERSION_ARCH.deb, versioned from package.json, with the files where Debian wants them', async () => {
    const arch = (await run('dpkg', ['--print-architecture'])).out.trim();
    assert.equal(path.basename(deb), `kagome_${pkg.version}-1_${arch}.deb`);
    assert.equal(control.Package, 'kagome');
    assert.equal(control.Version, `${pkg.version}-1`);
    assert.equal(control.Architecture, arch);
    const depends = names(control.Depends!);
    for (const p of [
      'nodejs',
      'bubblewrap',
      'xpra',
      'xvfb',
      'xauth',
      'dbus',
      'python3',
      'python3-seccomp',
      'python3-xlib',
      'xclip',
      'x11-utils',
    ])
      assert.ok(depends.includes(p), `Depends lacks ${p}: ${control.Depends}`);
    assert.match(control.Depends!, /nodejs \(>= 20\.10\), nodejs \(<< 21\)/);
    for (const p of ['slirp4netns', 'nftables', 'xdg-desktop-portal', 'pulseaudio-utils'])
      assert.ok(names(control.Recommends!).includes(p), `Recommends lacks ${p}`);
    for (const p of ['xserver-xephyr', 'podman', 'lxd', 'mmdebstrap'])
      assert.ok(names(control.Suggests!).includes(p), `Suggests lacks ${p}`);

    const entries = new Map(
      listing
        .split('\n')
        .filter(Boolean)
        .map((l) => {
          const m = /^(\S+) (\S+)\s+\d+ \S+ \S+ \.\/(\S*)(?: -> (.*))?$/.exec(l);
          assert.ok(m, `unexpected dpkg -c line: ${l}`);
          return [m[3]!.replace(/\/$/, ''), { mode: m[1]!, owner: m[2]!, target: m[4] }] as const;
        }),
    );
    const has = (p: string) => assert.ok(entries.has(p), `${p} is not in the package`);
    for (const p of [
      'usr/lib/kagome/package.json',
      'usr/lib/kagome/dist/bin/cli.js',
      'usr/lib/kagome/node_modules/dbus-next/package.json',
      'usr/lib/kagome/node_modules/usocket/build/Release/uwrap.node',
      'usr/lib/kagome/node_modules/fs-ext/build/Release/fs_ext.node',
      'usr/lib/kagome/packaging/image/debian12.packages',
      'usr/share/dbus-1/services/io.kagome.Kagome.service',
      'usr/lib/systemd/user/kagome.service',
      'usr/share/doc/kagome/README.md',
      'usr/share/doc/kagome/copyright',
      'usr/share/doc/kagome/changelog.Debian.gz',
      'usr/share/man/man1/kagome.1.gz',
      'usr/share/man/man1/kagome-open.1.gz',
    ])
      has(p);
    for (const p of [
      'usr/lib/kagome/bin/kagome',
      'usr/lib/kagome/bin/kagome-open',
      'usr/lib/kagome/dist/libexec/kagome-enter',
    ])
      assert.equal(entries.get(p)?.mode, '-rwxr-xr-x', p);
    assert.equal(entries.get('usr/bin/kagome')?.target, '../lib/kagome/bin/kagome');
    assert.equal(entries.get('usr/bin/kagome-open')?.target, '../lib/kagome/bin/kagome-open');
    assert.equal(
      entries.get('usr/lib/systemd/user/graphical-session.target.wants/kagome.service')?.target,
      '../kagome.service',
    );
    for (const [p, e] of entries) assert.equal(e.owner, 'root/root', p);
    // Production modules only; no tests, benchmarks or source maps of the tree.
    const paths = [...entries.keys()];
    for (const gone of [
      'node_modules/typescript',
      'node_modules/sinon',
      'node_modules/node-gyp',
      'node_modules/@types',
      'dist/test',
      'dist/bench',
      'dist/bin/demo.js',
    ]) {
      assert.ok(
        !paths.some((p) => p.startsWith(`usr/lib/kagome/${gone}`)),
        `${gone} is in the package`,
      );
    }
    assert.deepEqual(
      paths.filter(
        (p) =>
          (p.startsWith('usr/lib/kagome/dist/') && p.endsWith('.map')) || p.endsWith('.npmignore'),
      ),
      [],
    );

    const x = path.join(work, 'x');
    assert.equal((await run('dpkg-deb', ['-x', deb, x])).code, 0);
    const read = (p: string) => fs.readFileSync(path.join(x, p), 'utf8');
    assert.match(
      read('usr/share/dbus-1/services/io.kagome.Kagome.service'),
      /^Exec=\/usr\/bin\/kagome daemon$/m,
    );
    const unit = read('usr/lib/systemd/user/kagome.service');
    assert.match(unit, /^ExecStart=\/usr\/bin\/kagome daemon$/m);
    assert.match(unit, /^Documentation=file:\/\/\/usr\/share\/doc\/kagome\/README\.md$/m);
    assert.match(unit, /^WantedBy=graphical-session\.target$/m);
    assert.doesNotMatch(unit, /@\w+@/);
    assert.match(read('usr/lib/kagome/bin/kagome'), /^#!\/usr\/bin\/node\n/);
    assert.match(
      read('usr/share/doc/kagome/copyright'),
      /^Format: https:\/\/www\.debian\.org\/doc\/packaging-manuals\/copyright-format\/1\.0\/$/m,
    );
    // The man page is the CLI's own help: every subcommand `kagome --help` lists is in it.
    const man = (await execa('zcat', [path.join(x, 'usr/share/man/man1/kagome.1.gz')])).stdout;
    const help = (await execa(process.execPath, [path.join(REPO, 'bin', 'kagome'), '--help']))
      .stdout;
    const commands = [...help.split('Commands:')[1]!.matchAll(/^ {2}([a-z][a-z-]*)/gm)]
      .map((m) => m[1]!)
      .filter((c) => c !== 'help');
    assert.ok(commands.length > 10, help);
    for (const c of commands)
      assert.match(
        man,
        new RegExp(`^\\.SS "kagome ${c}"$`, 'm'),
        `kagome ${c} is not in the man page`,
      );
    assert.match(man, /\\-\\-terminal/);
    // A file of kagome's that the help names is where the package puts it, not where it was built.
    assert.match(man, /"\/usr\/lib\/kagome\/packaging\/image\/debian12\.packages"/);
    assert.doesNotMatch(man, /kagome\\-deb\\-|\/tmp\//);
    const openMan = (await execa('zcat', [path.join(x, 'usr/share/man/man1/kagome-open.1.gz')]))
      .stdout;
    assert.match(openMan, /^\.SH SYNOPSIS\n\.B kagome-open\n.*--cage CAGE/m);
  });

  it('lintian reports no errors', async () => {
    const r = await run('lintian', ['--tag-display-limit', '0', deb]);
    // lintian exits 1 on errors (and on its own failures); warnings are read by people: the
    // README says which ones it gives and why they stay.
    assert.equal(r.code, 0, `lintian:\n${r.out}`);
    assert.doesNotMatch(r.out, /^E: /m, r.out);
    process.stderr.write(`lintian:\n${r.out}\n`);
  });

  it('installs into a clean Debian 12 root, where an ordinary user launches into a cage from the installed files alone', async () => {
    // The root: Debian 12 with the Depends of kagome and of the nodejs .deb, nothing else.
    const nodejs = await repackedNodejs();
    const nodeDepends = (await run('dpkg-deb', ['-f', nodejs, 'Depends'])).out;
    const recipe = path.join(work, 'root.packages');
    const wanted = [...new Set([...names(control.Depends!), ...names(nodeDepends)])]
      .filter((p) => p !== 'nodejs')
      .sort();
    fs.writeFileSync(
      recipe,
      `# package.test.ts: the Depends of kagome_${control.Version} and of nodejs (${SUITE})\n${wanted.join('\n')}\n`,
    );
    const tar = await cachedRootfs(recipe, 'deb-root');

    const root = path.join(work, 'root');
    fs.mkdirSync(root);
    // Device files cannot be made without privilege, and bwrap gives the root its /dev.
    let r = await run('tar', ['-xf', tar, '-C', root, '--exclude=./dev/*']);
    assert.equal(r.code, 0, `unpacking ${tar}:\n${r.out}`);

    // dpkg -i as the root's root, in a user namespace: dpkg refuses a package whose Depends the
    // root does not satisfy, so this also checks that the Depends are installable as written.
    const debs = path.join(work, 'debs');
    fs.mkdirSync(debs);
    fs.copyFileSync(nodejs, path.join(debs, 'nodejs.deb'));
    fs.copyFileSync(deb, path.join(debs, path.basename(deb)));
    r = await run('bwrap', [
      '--unshare-user',
      '--uid',
      '0',
      '--gid',
      '0',
      '--unshare-pid',
      '--unshare-net',
      '--bind',
      root,
      '/',
      '--dev',
      '/dev',
      '--proc',
      '/proc',
      '--tmpfs',
      '/tmp',
      '--ro-bind',
      debs,
      '/debs',
      '--clearenv',
      '--setenv',
      'PATH',
      '/usr/sbin:/usr/bin:/sbin:/bin',
      '--setenv',
      'LANG',
      'C.UTF-8',
      '--',
      'sh',
      '-c',
      'dpkg -i /debs/nodejs.deb && dpkg -i /debs/kagome_*.deb',
    ]);
    assert.equal(r.code, 0, `dpkg -i in the root:\n${r.out}`);
    const status = await run('dpkg-query', [
      `--admindir=${path.join(root, 'var/lib/dpkg')}`,
      '-W',
      '-f',
      '${Status} ${Version}',
      'kagome',
    ]);
    assert.equal(status.out, `install ok installed ${control.Version}`);
    assert.equal(
      fs.readlinkSync(
        path.join(root, 'usr/lib/systemd/user/graphical-session.target.wants/kagome.service'),
      ),
      '../kagome.service',
    );
    // Only what the Depends brought: no Recommends.
    for (const p of ['slirp4netns', 'xdg-desktop-portal', 'pulseaudio-utils']) {
      assert.notEqual(
        (
          await run('dpkg-query', [
            `--admindir=${path.join(root, 'var/lib/dpkg')}`,
            '-W',
            '-f',
            '${Status}',
            p,
          ])
        ).out,
        'install ok installed',
        `${p} is in the root`,
      );
    }

    // The user, as adduser would make them; a machine id, as the first boot writes it.
    const me = os.userInfo();
    const home = `/home/${me.username}`;
    fs.appendFileSync(
      path.join(root, 'etc/passwd'),
      `${me.username}:x:${me.uid}:${me.gid}::${home}:/bin/sh\n`,
    );
    fs.appendFileSync(path.join(root, 'etc/group'), `${me.username}:x:${me.gid}:\n`);
    fs.writeFileSync(path.join(root, 'etc/machine-id'), `${randomBytes(16).toString('hex')}\n`);
    fs.mkdirSync(path.join(root, home), { mode: 0o755 });
    const hostHome = path.join(work, 'home');
    fs.mkdirSync(hostHome, { mode: 0o700 });
    const runtime = `/run/user/${me.uid}`;

    r = await run('bwrap', [
      '--ro-bind',
      root,
      '/',
      '--dev',
      '/dev',
      '--proc',
      '/proc',
      '--ro-bind',
      '/sys',
      '/sys',
      '--tmpfs',
      '/tmp',
      '--tmpfs',
      '/run',
      '--perms',
      '0700',
      '--dir',
      runtime,
      '--bind',
      hostHome,
      home,
      '--ro-bind',
      path.join(REPO, 'test', 'fixtures', 'package', 'in-root.sh'),
      '/tmp/in-root.sh',
      '--unshare-pid',
      '--unshare-ipc',
      '--unshare-net',
      '--unshare-uts',
      '--die-with-parent',
      '--new-session',
      '--chdir',
      home,
      '--clearenv',
      '--setenv',
      'HOME',
      home,
      '--setenv',
      'USER',
      me.username,
      '--setenv',
      'LOGNAME',
      me.username,
      '--setenv',
      'PATH',
      '/usr/bin:/bin',
      '--setenv',
      'LANG',
      'C.UTF-8',
      '--setenv',
      'XDG_RUNTIME_DIR',
      runtime,
      '--',
      '/bin/sh',
      '/tmp/in-root.sh',
    ]);
    const out = r.out;
    assert.equal(r.code, 0, `the session in the root failed:\n${out}`);
    process.stderr.write(`the session in the root:\n${out.replace(/^/gm, '  ')}\n`);
    const line = (name: string) => new RegExp(`^${name}: (.*)$`, 'm').exec(out)?.[1];
    assert.equal(line('kagome'), '/usr/bin/kagome -> /usr/lib/kagome/bin/kagome', out);
    // Everything kagome doctor requires is there with the Depends alone.
    assert.equal(line('doctor-exit'), '0', out);
    // The session bus started the service by the package's activation file.
    assert.equal(line('service')?.trim(), '/usr/bin/node /usr/bin/kagome daemon', out);
    assert.equal(
      fs.readFileSync(path.join(hostHome, '.local/share/kagome/homes/pkg/marker'), 'utf8'),
      `written in the cage by ${me.username}\n`,
    );
    assert.match(line('window') ?? '', /"kagome-package-test" "Xmessage"/, out);
    assert.equal(line('stopped'), '0', out);
  });
});
