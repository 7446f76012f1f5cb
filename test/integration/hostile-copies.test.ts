import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import dbus from 'dbus-next';
import { execa } from 'execa';
import { World } from '../helpers/kagome.js';
import { waitFor } from '../helpers/wait.js';
import type { GrantTuple } from '../../dbus/contract.js';

// Copy grants (where the document portal cannot serve, and always for container cages) put
// files in a folder the cage can write. A hostile program there plants links, FIFOs and huge
// files where the service reads and writes. Each attack is shown working against a plain
// path-following read or write on the host first (the control), then failing against kagome.

function vmRssKiB(pid: number): number {
  return Number(/^VmRSS:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
}

describe('a hostile cage and its copy grants', () => {
  let w: World;
  let host: string;
  let secret: string;

  const grant = async (file: string, opts: { persistent?: boolean } = {}): Promise<GrantTuple> => {
    const options: Record<string, InstanceType<typeof dbus.Variant>> = {
      writable: new dbus.Variant('b', true),
    };
    if (opts.persistent) options.persistent = new dbus.Variant('b', true);
    const [grants] = await w.dbus.Files1.GrantPaths('evil', [Buffer.from(file)], options);
    return grants[0]!;
  };
  /** Where the service keeps a grant's copy: the cage's folder, which the cage writes. */
  const copyOnHost = (g: GrantTuple) =>
    path.join(w.runtimeDir, 'files', 'evil', g[0], path.basename(g[1].toString()));
  const inCage = async (script: string, g: GrantTuple) => {
    const done = w.homeFile('evil', 'done');
    fs.rmSync(done, { force: true });
    await w.launchCommand('evil', [
      '/bin/sh',
      '-c',
      `${script}\necho ok > "$HOME/done.tmp"; mv "$HOME/done.tmp" "$HOME/done"`,
      'sh',
      g[1].toString(),
    ]);
    await w.readFileWhenWritten(done);
  };

  before(async () => {
    w = await World.create();
    w.env.KAGOME_FILE_GRANTS = 'copy';
    host = path.join(w.tmp.root, 'host');
    fs.mkdirSync(host);
    secret = path.join(host, 'secret.txt');
    fs.writeFileSync(secret, 'HOST SECRET\n', { mode: 0o600 });
    w.writeCage('evil', '[Cage]\n');
    await w.startService();
  });

  after(async () => {
    await w?.cleanup();
  });

  it('a copy replaced by a link to a host file: that file is never read into the granted file', async () => {
    const victim = path.join(host, 'victim-read.txt');
    fs.writeFileSync(victim, 'victim original\n');
    const g = await grant(victim);
    await inCage(`rm -f "$1"; ln -s '${secret}' "$1"`, g);
    // Control: a read of the copy's path on the host follows the cage's link to the secret.
    assert.equal(fs.readFileSync(copyOnHost(g), 'utf8'), 'HOST SECRET\n');
    await waitFor(
      'the refusal in the log',
      () => /not written back: it is not a regular file/.test(w.service!.log()),
      { timeoutMs: 10000, pollMs: 25 },
    );
    await w.dbus.Files1.Revoke('evil', [g[0]]);
    assert.equal(fs.readFileSync(victim, 'utf8'), 'victim original\n');
    assert.equal(fs.readFileSync(secret, 'utf8'), 'HOST SECRET\n');
  });

  it('a copy replaced by a FIFO: the write-back and the revoke do not hang, and the service answers', async () => {
    const victim = path.join(host, 'victim-fifo.txt');
    fs.writeFileSync(victim, 'victim original\n');
    const g = await grant(victim);
    await inCage('rm -f "$1"; mkfifo "$1"', g);
    // Control: a plain read of the FIFO on the host blocks (here cut by timeout).
    const blocked = await execa('timeout', ['1', 'cat', copyOnHost(g)], { reject: false });
    assert.equal(blocked.exitCode, 124, 'cat waited for a writer');
    const t0 = Date.now();
    await w.dbus.Files1.Revoke('evil', [g[0]]);
    assert.ok(Date.now() - t0 < 5000, 'the revoke returned');
    const cages = await w.dbus.Cages1.List();
    assert.ok('evil' in cages);
    assert.equal(fs.readFileSync(victim, 'utf8'), 'victim original\n');
  });

  it('a huge sparse copy is not written back, and the service does not read it into memory', async () => {
    const victim = path.join(host, 'victim-huge.txt');
    fs.writeFileSync(victim, 'victim original\n');
    const g = await grant(victim);
    const before = vmRssKiB(w.service!.child.pid!);
    await inCage('truncate -s 1500M "$1"', g);
    // Control: the file the cage made is that large, as the host sees it.
    assert.equal(fs.statSync(copyOnHost(g)).size, 1500 * 1024 * 1024);
    await waitFor(
      'the refusal in the log',
      () => /over the \d+-byte limit for copies/.test(w.service!.log()),
      { timeoutMs: 10000, pollMs: 25 },
    );
    assert.equal(fs.readFileSync(victim, 'utf8'), 'victim original\n');
    assert.equal(fs.statSync(victim).size, 16);
    const after = vmRssKiB(w.service!.child.pid!);
    assert.ok(after - before < 100 * 1024, `the service grew by ${after - before} KiB`);
    await w.dbus.Files1.Revoke('evil', [g[0]]);
  });

  it("a persistent grant's folder replaced by a link to a host folder: the next start creates nothing there", async () => {
    const victim = path.join(host, 'victim-persistent.txt');
    fs.writeFileSync(victim, 'victim original\n');
    const target = path.join(w.tmp.root, 'target');
    fs.mkdirSync(target);
    const g = await grant(victim, { persistent: true });
    await inCage(`d=$(dirname "$1"); mv "$d" "$d.old" && ln -s '${target}' "$d"`, g);
    // Control: a write through the grant's path on the host lands in the host folder.
    const probe = path.join(path.dirname(copyOnHost(g)), 'control.txt');
    fs.writeFileSync(probe, 'x');
    assert.ok(fs.existsSync(path.join(target, 'control.txt')));
    fs.rmSync(path.join(target, 'control.txt'));
    await w.dbus.Cages1.Stop('evil');
    await w.dbus.Cages1.Start('evil');
    assert.deepEqual(fs.readdirSync(target), [], 'nothing was created in the host folder');
    // The grant is whole again, as a real folder with a fresh copy.
    assert.ok(fs.lstatSync(path.dirname(copyOnHost(g))).isDirectory());
    assert.equal(fs.readFileSync(copyOnHost(g), 'utf8'), 'victim original\n');
    await w.dbus.Files1.Revoke('evil', [g[0]]);
    assert.ok(fs.existsSync(target), 'the revoke removed the link, never the folder it pointed to');
  });
});
