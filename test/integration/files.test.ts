import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import dbus from 'dbus-next';
import { World, KAGOME_OPEN } from '../helpers/kagome.js';
import { waitFor } from '../helpers/wait.js';
import { pathBytesToFileUri } from '../../xdg/exec.js';
import { isCloexec } from '../../lib/runtime/cloexec.js';
import type { GrantTuple, Variant } from '../../dbus/contract.js';
import { kagomeClient } from '../../dbus/client.js';
import { connectSessionBus } from '../../lib/bus.js';

// Host files into cages through the real document portal: what a cage may do with a granted
// file, that nothing else of the host is reachable through it, that any file name survives
// the trip, that bad files are refused by name with nothing granted, and that no grant
// outlives its cage, even across a killed service.

const PROBE = 'org.kagome.FileProbe.desktop';
const FILES = 'files';

/** An entry whose program writes, for each file it gets, the path it was given and the content it read. */
function probeEntry(home: string): string {
  return `[Desktop Entry]\nType=Application\nName=File Probe\nExec=/bin/sh ${home}/probe.sh %F\nMimeType=application/x-kagome-probe;\n`;
}

const PROBE_SCRIPT = `out="$HOME/probe.out"
for f; do printf '%s\\0' "$f"; cat -- "$f"; printf '\\0'; done > "$out.tmp"
mv "$out.tmp" "$out"
`;

/** [path as the program got it, content it read] per file, from the probe's output. */
function parseProbe(out: Buffer): [Buffer, string][] {
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < out.length; i++) {
    if (out[i] === 0) {
      parts.push(out.subarray(start, i));
      start = i + 1;
    }
  }
  const pairs: [Buffer, string][] = [];
  for (let i = 0; i + 1 < parts.length; i += 2) pairs.push([parts[i]!, parts[i + 1]!.toString()]);
  return pairs;
}

const basename = (p: Buffer): Buffer => p.subarray(p.lastIndexOf(0x2f) + 1);

describe('files into cages through the document portal', () => {
  let w: World;
  let dir: string;
  let probeOut: string;

  const grants = (cage: string): Promise<GrantTuple[]> => w.dbus.Files1.ListGrants(cage);
  const grantPaths = async (
    cage: string,
    paths: (string | Buffer)[],
    opts: Record<string, Variant> = {},
  ): Promise<GrantTuple[]> => {
    const [granted] = await w.dbus.Files1.GrantPaths(
      cage,
      paths.map((p) => Buffer.from(p)),
      opts,
    );
    return granted;
  };
  const runInCage = async (
    cage: string,
    script: string,
    args: string[],
    out: string,
  ): Promise<string> => {
    fs.rmSync(w.homeFile(cage, out), { force: true });
    await w.launchCommand(cage, [
      '/bin/sh',
      '-c',
      `{ ${script}; } > "$HOME/${out}.tmp" 2>&1; mv "$HOME/${out}.tmp" "$HOME/${out}"`,
      'sh',
      ...args,
    ]);
    return w.readFileWhenWritten(w.homeFile(cage, out), 20000);
  };
  const readProbe = async (): Promise<[Buffer, string][]> => {
    await w.readFileWhenWritten(probeOut, 20000);
    return parseProbe(fs.readFileSync(probeOut));
  };
  const cageInit = (cage: string): number =>
    (w.cageState(cage) as { sandbox: { init: { pid: number } } }).sandbox.init.pid;

  before(async () => {
    w = await World.create({ systemData: true, documentPortal: true });
    dir = path.join(w.tmp.root, 'host files');
    fs.mkdirSync(dir);
    w.writeCage(FILES, '[Cage]\nIdleStop=0\n');
    w.writeCage('files2', '[Cage]\nIdleStop=0\n');
    fs.writeFileSync(path.join(w.systemApps, PROBE), probeEntry(w.env.HOME!));
    for (const cage of [FILES, 'files2']) {
      fs.mkdirSync(w.homeFile(cage, ''), { recursive: true });
      fs.writeFileSync(w.homeFile(cage, 'probe.sh'), PROBE_SCRIPT);
    }
    probeOut = w.homeFile(FILES, 'probe.out');
    await w.startService();
  });

  after(async () => {
    await w?.cleanup();
  });

  it('lets the cage edit a read-write grant, and refuses writes to a read-only one', async () => {
    const rw = path.join(dir, 'rw.txt');
    const ro = path.join(dir, 'ro.txt');
    fs.writeFileSync(rw, 'original\n');
    fs.writeFileSync(ro, 'keep me\n');
    const [gRw] = await grantPaths(FILES, [rw], { writable: new dbus.Variant('b', true) });
    const [gRo] = await grantPaths(FILES, [ro]);
    assert.equal(gRw![3], true);
    assert.equal(gRo![3], false);
    assert.equal(gRw![2].toString(), rw, 'the host path is reported');
    assert.match(gRw![1].toString(), /^\/run\/user\/\d+\/doc\/[^/]+\/rw\.txt$/);
    const out = await runInCage(
      FILES,
      'echo edited >> "$1"; echo "rw=$?"; echo nope >> "$2"; echo "ro=$?"; cat "$2"',
      [gRw![1].toString(), gRo![1].toString()],
      'edit.out',
    );
    assert.match(out, /^rw=0$/m, out);
    assert.match(out, /^ro=[1-9]/m, out);
    assert.match(out, /keep me/);
    assert.equal(fs.readFileSync(rw, 'utf8'), 'original\nedited\n');
    assert.equal(fs.readFileSync(ro, 'utf8'), 'keep me\n');
  });

  it('grants 40 files in one call (more descriptors than one D-Bus message may carry to the portal)', async () => {
    const many = Array.from({ length: 40 }, (_, i) => path.join(dir, `many-${i}.txt`));
    many.forEach((f, i) => fs.writeFileSync(f, `${i}\n`));
    const made = await grantPaths(FILES, many);
    assert.equal(made.length, 40);
    assert.deepEqual(
      made.map((g) => g[2].toString()),
      many,
      'in the order asked',
    );
    const out = await runInCage(
      FILES,
      'cat "$@"',
      made.map((g) => g[1].toString()),
      'many.out',
    );
    assert.equal(out, many.map((_, i) => `${i}\n`).join(''));
    assert.match(w.service!.log(), /serving io\.kagome\.Kagome/);
    assert.equal(w.service!.child.exitCode, null, 'the service is still running');
  });

  it('shows a file granted while the cage runs, without restarting it', async () => {
    await w.dbus.Cages1.Start(FILES);
    const init = cageInit(FILES);
    const late = path.join(dir, 'late.txt');
    fs.writeFileSync(late, 'granted late\n');
    const [g] = await grantPaths(FILES, [late]);
    const out = await runInCage(FILES, 'cat "$1"', [g![1].toString()], 'late.out');
    assert.equal(out, 'granted late\n');
    assert.equal(cageInit(FILES), init, 'the cage was not restarted');
  });

  it('opens files with any name, byte for byte, executing nothing', async () => {
    const names: Buffer[] = [
      'with space.txt',
      `it's "quoted".txt`,
      'new\nline.txt',
      '-leading-dash.txt',
      '$(touch pwned).txt',
      ';touch pwned;.txt',
      '100%f.txt',
      'back\\slash `tick`.txt',
    ].map((n) => Buffer.from(n));
    names.push(
      Buffer.concat([Buffer.from('latin1-'), Buffer.from([0xe9, 0xff]), Buffer.from('.txt')]),
    );
    const hostDir = Buffer.from(path.join(dir, 'names'));
    fs.mkdirSync(hostDir);
    names.forEach((n, i) =>
      fs.writeFileSync(Buffer.concat([hostDir, Buffer.from('/'), n]), `content ${i}\n`),
    );
    const pwned = [
      path.join(hostDir.toString(), 'pwned'),
      w.homeFile(FILES, 'pwned'),
      '/pwned',
      path.join(process.cwd(), 'pwned'),
    ];
    for (const p of pwned) fs.rmSync(p, { force: true });
    const check = (got: [Buffer, string][], via: string) => {
      assert.equal(got.length, names.length, `${via}: every file reached the program`);
      const byName = new Map(got.map(([p, c]) => [basename(p).toString('hex'), c]));
      names.forEach((n, i) => {
        assert.equal(
          byName.get(n.toString('hex')),
          `content ${i}\n`,
          `${via}: ${JSON.stringify(n.toString())} was opened as itself`,
        );
      });
      for (const [p] of got)
        assert.match(
          p.toString('latin1'),
          /^\/run\/user\/\d+\/doc\//,
          `${via}: the program got the path the cage sees`,
        );
    };

    // Over D-Bus, as GLib's launcher and scripts call it: file:// URIs.
    fs.rmSync(probeOut, { force: true });
    const uris = names.map((n) =>
      pathBytesToFileUri(Buffer.concat([hostDir, Buffer.from('/'), n])),
    );
    await w.dbus.Launcher1.Launch(FILES, PROBE, uris, {});
    check(await readProbe(), 'Launch');

    // Through kagome-open, as a shadow entry's Exec runs it, with names straight from a glob.
    fs.rmSync(probeOut, { force: true });
    const r = await execa(
      '/bin/sh',
      [
        '-c',
        'cd "$1" && exec "$2" --cage files --entry "$3" -- *',
        'sh',
        hostDir.toString(),
        KAGOME_OPEN,
        PROBE,
      ],
      { env: w.env, reject: false },
    );
    assert.equal(r.exitCode, 0, String(r.stderr));
    check(await readProbe(), 'kagome-open');

    // Files1.OpenURIs with an app, as `kagome open --app` does.
    fs.rmSync(probeOut, { force: true });
    await w.dbus.Files1.OpenURIs(FILES, uris, { app: new dbus.Variant('s', PROBE) });
    check(await readProbe(), 'OpenURIs');

    for (const p of pwned) assert.equal(fs.existsSync(p), false, `nothing was executed (${p})`);
    const root = `/proc/${cageInit(FILES)}/root`;
    for (const p of ['/tmp/pwned', '/pwned'])
      assert.equal(fs.existsSync(root + p), false, `nothing was executed in the cage (${p})`);
  });

  it("opens files without a named program with the cage's default for their type", async () => {
    // The cage's own defaults: its private home's mimeapps.list, naming an entry only the cage
    // has (the host has no org.kagome.CageOnly.desktop).
    fs.mkdirSync(w.homeFile(FILES, '.config'), { recursive: true });
    fs.writeFileSync(
      w.homeFile(FILES, '.config/mimeapps.list'),
      `[Default Applications]\ntext/plain=org.kagome.CageOnly.desktop;\n`,
    );
    fs.mkdirSync(w.homeFile(FILES, '.local/share/applications'), { recursive: true });
    fs.writeFileSync(
      w.homeFile(FILES, '.local/share/applications/org.kagome.CageOnly.desktop'),
      probeEntry(w.env.HOME!),
    );
    const a = path.join(dir, 'first.txt');
    const b = path.join(dir, 'second.txt');
    fs.writeFileSync(a, 'first\n');
    fs.writeFileSync(b, 'second\n');
    fs.rmSync(probeOut, { force: true });
    const r = await w.kagome(['open', FILES, a, b]);
    assert.equal(r.exitCode, 0, String(r.stderr));
    const got = await readProbe();
    assert.deepEqual(
      got.map(([, c]) => c).sort(),
      ['first\n', 'second\n'],
      'one program got both files',
    );
    assert.match(w.service!.log(), /text\/plain opens with org\.kagome\.CageOnly\.desktop/);
    // The same through kagome-open --open, as the file-manager actions run it.
    fs.rmSync(probeOut, { force: true });
    const k = await execa(KAGOME_OPEN, ['--cage', FILES, '--open', '--', a, b], {
      env: w.env,
      reject: false,
    });
    assert.equal(k.exitCode, 0, String(k.stderr));
    assert.equal((await readProbe()).length, 2);
  });

  it('file-manager actions, run as each file manager runs them with two files, open both in the cage', async () => {
    fs.mkdirSync(w.homeFile(FILES, '.config'), { recursive: true });
    fs.writeFileSync(
      w.homeFile(FILES, '.config/mimeapps.list'),
      `[Default Applications]\ntext/plain=org.kagome.CageOnly.desktop;\n`,
    );
    fs.mkdirSync(w.homeFile(FILES, '.local/share/applications'), { recursive: true });
    fs.writeFileSync(
      w.homeFile(FILES, '.local/share/applications/org.kagome.CageOnly.desktop'),
      probeEntry(w.env.HOME!),
    );
    const r = await w.kagome(['integrate', 'file-managers', '--cage', FILES]);
    assert.equal(r.exitCode, 0, `${r.stdout}${r.stderr}`);
    const picked = [path.join(dir, "fm 'one'.txt"), path.join(dir, 'fm\ntwo.txt')];
    picked.forEach((f, i) => fs.writeFileSync(f, `picked ${i}\n`));
    const expectBoth = async (via: string) => {
      const got = await readProbe();
      assert.deepEqual(got.map(([, c]) => c).sort(), ['picked 0\n', 'picked 1\n'], via);
    };

    // Nautilus: the script, in the folder, with the selected names as arguments.
    const script = path.join(w.env.XDG_DATA_HOME!, 'nautilus', 'scripts', `Open in cage ${FILES}`);
    fs.rmSync(probeOut, { force: true });
    const n = await execa(
      script,
      picked.map((f) => path.basename(f)),
      { cwd: dir, env: w.env, reject: false },
    );
    assert.equal(n.exitCode, 0, String(n.stderr));
    await expectBoth('Nautilus script');

    // Dolphin, Caja/PCManFM: the desktop-entry Exec with %F, expanded as a desktop does.
    const { Keyfile } = await import('../../xdg/keyfile.js');
    const { parseExec, expandExec } = await import('../../xdg/exec.js');
    for (const [file, group] of [
      [
        path.join(w.env.XDG_DATA_HOME!, 'kio', 'servicemenus', `kagome-${FILES}.desktop`),
        'Desktop Action open',
      ],
      [
        path.join(w.env.XDG_DATA_HOME!, 'file-manager', 'actions', `kagome-${FILES}.desktop`),
        undefined,
      ],
    ] as const) {
      const kf = Keyfile.parse(fs.readFileSync(file));
      const g = group ?? kf.groups().find((x) => x.startsWith('X-Action-Profile'))!;
      const [argv] = expandExec(parseExec(kf.get(g, 'Exec')!), { files: picked });
      fs.rmSync(probeOut, { force: true });
      const e = await execa(String(argv![0]), argv!.slice(1).map(String), {
        env: w.env,
        reject: false,
      });
      assert.equal(e.exitCode, 0, `${file}: ${e.stderr}`);
      await expectBoth(file);
    }

    // Thunar: its command with %F replaced by the quoted names, run by a shell.
    const uca = fs.readFileSync(path.join(w.env.XDG_CONFIG_HOME!, 'Thunar', 'uca.xml'), 'utf8');
    const m = new RegExp(
      `<unique-id>kagome-${FILES}</unique-id>[\\s\\S]*?<command>([^<]*)</command>`,
    ).exec(uca);
    assert.ok(m, 'the Thunar action is in uca.xml');
    const unxml = (t: string) =>
      t
        .replace(/&lt;/g, '<')
        .replace(/&gt;/g, '>')
        .replace(/&quot;/g, '"')
        .replace(/&apos;/g, "'")
        .replace(/&amp;/g, '&');
    const quoted = picked.map((f) => `'${f.replace(/'/g, `'\\''`)}'`).join(' ');
    fs.rmSync(probeOut, { force: true });
    const t = await execa('/bin/sh', ['-c', unxml(m![1]!).replace('%F', quoted)], {
      env: w.env,
      reject: false,
    });
    assert.equal(t.exitCode, 0, String(t.stderr));
    await expectBoth('Thunar');
  });

  it('refuses a symlink, a folder, a FIFO, a missing and a deleted file by name, granting nothing', async () => {
    const before = (await grants(FILES)).length;
    const secret = path.join(w.tmp.root, 'secret.txt');
    fs.writeFileSync(secret, 'not chosen\n');
    const link = path.join(dir, 'innocent.txt');
    fs.symlinkSync(secret, link);
    const fifo = path.join(dir, 'pipe');
    await execa('mkfifo', [fifo]);
    const folder = path.join(dir, 'a folder');
    fs.mkdirSync(folder);

    const cases: [string, string, RegExp][] = [
      [link, 'io.kagome.Error.NotPermitted', /innocent\.txt.* is a symbolic link to .*secret\.txt/],
      [folder, 'io.kagome.Error.NotSupported', /a folder.* is a folder/],
      [fifo, 'io.kagome.Error.NotSupported', /pipe.* is not a regular file \(a named pipe\)/],
      [
        path.join(dir, 'missing.txt'),
        'io.kagome.Error.NoSuchFile',
        /missing\.txt.* does not exist/,
      ],
      ['relative.txt', 'io.kagome.Error.InvalidArgument', /not an absolute path/],
    ];
    for (const [p, type, text] of cases) {
      const err = await w.rejection(w.dbus.Files1.GrantPaths(FILES, [Buffer.from(p)], {}));
      assert.equal(err.type, type, `${p}: ${err.text}`);
      assert.match(err.text, text);
    }
    // One bad file among good ones: nothing of the call is granted.
    const good = path.join(dir, 'good.txt');
    fs.writeFileSync(good, 'good\n');
    const mixed = await w.rejection(
      w.dbus.Files1.GrantPaths(FILES, [Buffer.from(good), Buffer.from(fifo)], {}),
    );
    assert.equal(mixed.type, 'io.kagome.Error.NotSupported');

    // A descriptor whose file was deleted between the choice and the grant.
    const doomed = path.join(dir, 'doomed.txt');
    fs.writeFileSync(doomed, 'bye\n');
    const fd = fs.openSync(doomed, 'r');
    fs.unlinkSync(doomed);
    const client = await connectSessionBus({ DBUS_SESSION_BUS_ADDRESS: w.bus.address });
    client.on('error', () => undefined);
    try {
      await assert.rejects(
        kagomeClient(client).Files1.GrantFiles(FILES, [fd], {}),
        (e: { type?: string; text?: string }) =>
          e.type === 'io.kagome.Error.NoSuchFile' && /doomed\.txt.* was deleted/.test(e.text ?? ''),
      );
    } finally {
      fs.closeSync(fd);
      client.disconnect();
    }
    assert.equal((await grants(FILES)).length, before, 'no grant was made by any refused call');

    // Asked for explicitly, the link's target is granted, and it is the target that is seen.
    const [g] = await grantPaths(FILES, [link], { 'follow-symlinks': new dbus.Variant('b', true) });
    assert.equal(g![2].toString(), secret);
  });

  it('leaves mode, owner, ACLs and mtime of host files exactly as they were', async () => {
    const files = ['plain.txt', 'acl.txt'].map((n) => path.join(dir, n));
    for (const f of files) fs.writeFileSync(f, 'stable\n');
    fs.chmodSync(files[0]!, 0o640);
    await execa('setfacl', ['-m', 'u:nobody:r--,g:nogroup:rw-', files[1]!]);
    const old = new Date('2020-02-02T02:02:02Z');
    for (const f of files) fs.utimesSync(f, old, old);
    const snapshot = async () =>
      Promise.all(
        files.map(async (f) => {
          const st = fs.statSync(f);
          const acl = (await execa('getfacl', ['-p', f])).stdout;
          return { mode: st.mode, uid: st.uid, gid: st.gid, mtime: st.mtimeMs, ino: st.ino, acl };
        }),
      );
    const before = await snapshot();
    const made = [
      ...(await grantPaths(FILES, [files[0]!], { writable: new dbus.Variant('b', true) })),
      ...(await grantPaths(FILES, [files[1]!])),
    ];
    const out = await runInCage(
      FILES,
      'cat "$1" "$2"',
      made.map((g) => g[1].toString()),
      'stable.out',
    );
    assert.equal(out, 'stable\nstable\n');
    assert.deepEqual(await snapshot(), before, 'granted and read');
    await w.dbus.Files1.Revoke(
      FILES,
      made.map((g) => g[0]),
    );
    assert.deepEqual(await snapshot(), before, 'after revoke');
    const ids = new Set((await grants(FILES)).map((g) => g[0]));
    for (const g of made)
      assert.equal(ids.has(g[0]), false, 'revoked grants are gone from the list');
    const gone = await runInCage(
      FILES,
      'test -e "$1"; echo "exists=$?"',
      [made[0]![1].toString()],
      'gone.out',
    );
    assert.equal(gone, 'exists=1\n', 'a revoked file disappears from the cage at once');
  });

  it("takes descriptors over D-Bus (kagome grant) and hands the cage none of the service's", async () => {
    const f = path.join(dir, 'by-fd.txt');
    fs.writeFileSync(f, 'passed as a descriptor\n');
    const r = await w.kagome(['grant', FILES, '--writable', '--json', f]);
    assert.equal(r.exitCode, 0, String(r.stderr));
    const [g] = JSON.parse(String(r.stdout)) as {
      id: string;
      pathInCage: string;
      hostPath: string;
      writable: boolean;
    }[];
    assert.equal(g!.hostPath, f);
    assert.equal(g!.writable, true);
    const out = await runInCage(FILES, 'cat "$1"; ls -l /proc/self/fd/', [g!.pathInCage], 'fd.out');
    assert.match(out, /^passed as a descriptor$/m);
    // ls holds 0-2 and its own directory descriptor; anything else came from the service.
    const fds = [...out.matchAll(/ (\d+) -> (.*)$/gm)].map((m) => [Number(m[1]), m[2]] as const);
    const foreign = fds.filter(([n, target]) => n > 2 && !/\/proc\/\d+\/fd/.test(target!));
    assert.deepEqual(
      foreign,
      [],
      `descriptors inherited by a program in the cage: ${JSON.stringify(fds)}`,
    );
    // The service's own bus socket (usocket) is close-on-exec...
    const cloexec = (pid: number, fd: number | string): boolean =>
      (Number.parseInt(
        /^flags:\s*([0-7]+)$/m.exec(fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))![1]!,
        8,
      ) &
        0o2000000) !==
      0;
    const pid = w.service!.child.pid!;
    const sockets = fs
      .readdirSync(`/proc/${pid}/fd`)
      .filter((n) => fs.readlinkSync(`/proc/${pid}/fd/${n}`).startsWith('socket:'));
    assert.ok(sockets.length > 0);
    assert.deepEqual(
      sockets.filter((n) => !cloexec(pid, n)),
      [],
      'every socket of the service is close-on-exec',
    );
    // ...which usocket, left to itself, does not do: the same check sees it on a plain client.
    const raw = dbus.sessionBus({ busAddress: w.bus.address, negotiateUnixFd: true } as {
      busAddress: string;
    });
    raw.on('error', () => undefined);
    try {
      await raw.getProxyObject('org.freedesktop.DBus', '/org/freedesktop/DBus');
      const rawFd = (raw as unknown as { _connection: { stream: { fd: number } } })._connection
        .stream.fd;
      assert.equal(
        cloexec(process.pid, rawFd),
        false,
        'a bare usocket connection is inherited by children',
      );
      assert.equal(isCloexec(rawFd), false);
    } finally {
      raw.disconnect();
    }
  });

  it('ends the grants of cages that stopped while the service was killed', async () => {
    const f = path.join(dir, 'crash.txt');
    fs.writeFileSync(f, 'crash\n');
    const kept = path.join(dir, 'kept.txt');
    fs.writeFileSync(kept, 'kept\n');
    await grantPaths('files2', [f]);
    const [keptGrant] = await grantPaths(FILES, [kept]);
    assert.equal((await grants('files2')).length, 1);
    const appDir = path.join(w.portal!.mountPoint, 'by-app', 'io.kagome.Cage_files2');
    assert.equal(fs.readdirSync(appDir).length, 1, 'the portal shows the document to the cage');
    const victim = cageInit('files2');
    await w.killService();
    process.kill(victim, 'SIGKILL');
    await waitFor('the cage to die', () => !fs.existsSync(`/proc/${victim}`), {
      timeoutMs: 5000,
      pollMs: 25,
    });
    await w.startService();
    assert.deepEqual(await grants('files2'), [], 'the stopped cage has no grants left');
    assert.deepEqual(fs.readdirSync(appDir), [], 'and the portal no longer shows it any document');
    // The cage that kept running keeps its grant, and can still read the file.
    assert.ok((await grants(FILES)).some((g) => g[0] === keptGrant![0]));
    const out = await runInCage(FILES, 'cat "$1"', [keptGrant![1].toString()], 'kept.out');
    assert.equal(out, 'kept\n');
  });

  it('ends grants when the cage stops, but keeps persistent ones', async () => {
    const a = path.join(dir, 'transient.txt');
    const b = path.join(dir, 'persistent.txt');
    fs.writeFileSync(a, 'a\n');
    fs.writeFileSync(b, 'b\n');
    await grantPaths('files2', [a]);
    const [p] = await grantPaths('files2', [b], { persistent: new dbus.Variant('b', true) });
    await w.dbus.Cages1.Stop('files2');
    const left = await grants('files2');
    assert.deepEqual(
      left.map((g) => g[2].toString()),
      [b],
    );
    const out = await runInCage('files2', 'cat "$1"', [p![1].toString()], 'persist.out');
    assert.equal(out, 'b\n', 'a persistent grant is there when the cage starts again');
    await w.dbus.Files1.Revoke('files2', [p![0]]);
    const err = await w.rejection(w.dbus.Files1.Revoke('files2', [p![0]]));
    assert.equal(err.type, 'io.kagome.Error.InvalidArgument');
    assert.match(err.text, /has no grant/);
  });
});

describe('files into cages without the document portal (copies)', () => {
  let w: World;
  let dir: string;

  before(async () => {
    w = await World.create();
    w.env.KAGOME_FILE_GRANTS = 'copy';
    dir = path.join(w.tmp.root, 'host');
    fs.mkdirSync(dir);
    w.writeCage('copy', '[Cage]\nIdleStop=0\n');
    await w.startService();
  });

  after(async () => {
    await w?.cleanup();
  });

  it('says so, writes a read-write copy back into the same host file, and never writes a read-only one', async () => {
    assert.match(w.service!.log(), /file grants: copied into cages/);
    const rw = path.join(dir, 'rw.txt');
    const ro = path.join(dir, 'ro.txt');
    fs.writeFileSync(rw, 'one\n');
    fs.writeFileSync(ro, 'fixed\n');
    const ino = fs.statSync(rw).ino;
    const grantOne = async (p: string, writable: boolean) =>
      (
        await w.dbus.Files1.GrantPaths('copy', [Buffer.from(p)], {
          writable: new dbus.Variant('b', writable),
        })
      )[0][0]!;
    const gRw = await grantOne(rw, true);
    const gRo = await grantOne(ro, false);
    fs.rmSync(w.homeFile('copy', 'copy.out'), { force: true });
    await w.launchCommand('copy', [
      '/bin/sh',
      '-c',
      'echo two >> "$1"; echo nope >> "$2"; echo "ro=$?" > "$HOME/copy.out"',
      'sh',
      gRw[1].toString(),
      gRo[1].toString(),
    ]);
    assert.match(await w.readFileWhenWritten(w.homeFile('copy', 'copy.out')), /^ro=[1-9]/);
    await waitFor('the edit to be written back', () => fs.readFileSync(rw, 'utf8'), {
      timeoutMs: 10000,
      pollMs: 25,
      until: (text) => text === 'one\ntwo\n',
    });
    assert.equal(fs.statSync(rw).ino, ino, 'written into the same file, not replaced');
    assert.equal(fs.readFileSync(ro, 'utf8'), 'fixed\n');
  });
});

describe('a file the caller cannot read', () => {
  let w: World;

  before(async () => {
    w = await World.create({ documentPortal: true });
    w.writeCage('locked', '[Cage]\nIdleStop=0\n');
    // Root reads everything: without these capabilities the service is held to file modes
    // like any user, which is what this needs to show.
    const wrap =
      process.getuid?.() === 0
        ? [
            'setpriv',
            '--bounding-set=-dac_override,-dac_read_search',
            '--inh-caps=-dac_override,-dac_read_search',
            '--',
          ]
        : [];
    await w.startService({ wrap });
  });

  after(async () => {
    await w?.cleanup();
  });

  it('is refused as NotPermitted, naming it, and nothing is granted', async () => {
    const f = path.join(w.tmp.root, 'locked.txt');
    fs.writeFileSync(f, 'private\n');
    fs.chmodSync(f, 0o000);
    const err = await w.rejection(w.dbus.Files1.GrantPaths('locked', [Buffer.from(f)], {}));
    assert.equal(err.type, 'io.kagome.Error.NotPermitted', err.text);
    assert.match(err.text, /may not read .*locked\.txt/);
    const list = await w.dbus.Files1.ListGrants('locked');
    assert.deepEqual(list, []);
  });
});
