import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import sinon from 'sinon';
import { CopyStore } from '../../lib/grants/copy.js';
import { openHostPath, closeHostFiles } from '../../lib/grants/host-file.js';
import type { ProvidedGrant } from '../../lib/grants/grant.js';
import type { Logger } from '../../lib/log.js';
import { waitFor } from '../helpers/wait.js';

// The copy fallback (lib/grants/copy.ts) on real folders: a copy per grant under
// root/cage/id/name, changes to a writable copy written into the very host file that was
// granted (same inode, mode kept), never for a read-only grant or a host file replaced since.

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** How these tests wait; the watcher batches for ~100 ms after the last event. */
const WAIT = { timeoutMs: 8000, pollMs: 20 };

/**
 * Long enough for several batches: what has not happened by then is not coming. A sleep where
 * nothing is logged or written when all is well: the watcher gives no signal that every event
 * of the file system has been seen.
 */
const QUIET_MS = 800;

describe('CopyStore', () => {
  let root: string;
  let store: CopyStore;
  let log: { [K in keyof Logger]: sinon.SinonStub };

  const files = () => path.join(root, 'files');
  const hostFile = (name: string | Buffer, text: string, mode = 0o644): Buffer => {
    const p = Buffer.concat([Buffer.from(path.join(root, 'host') + '/'), Buffer.from(name)]);
    fs.writeFileSync(p, text);
    fs.chmodSync(p, mode);
    return p;
  };
  const copyOf = (cage: string, g: ProvidedGrant): Buffer =>
    Buffer.concat([Buffer.from(path.join(files(), cage, g.id) + '/'), g.name]);
  /** Grants one host file as openHostPath holds it; the test owns (and closes) the descriptor. */
  const grant = async (
    p: Buffer,
    writable: boolean,
    cage = 'web',
    persistent = false,
  ): Promise<{ g: ProvidedGrant; copy: Buffer }> => {
    const f = openHostPath(p, { followSymlinks: false, writable });
    try {
      const [g, ...rest] = await store.add(cage, [f], { persistent });
      assert.equal(rest.length, 0);
      return { g: g!, copy: copyOf(cage, g!) };
    } finally {
      closeHostFiles([f]);
    }
  };

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-copies-'));
    fs.mkdirSync(path.join(root, 'host'));
    log = { debug: sinon.stub(), info: sinon.stub(), warn: sinon.stub(), error: sinon.stub() };
    store = new CopyStore(files(), log);
  });

  afterEach(async () => {
    await store.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  describe('add', () => {
    // Each file is copied under root/cage/id/name with its content; the mode says whether the
    // cage may write it.
    it('copies a writable file as 0600 and a read-only one as 0400, under root/cage/id/name', async () => {
      const rw = await grant(hostFile('rw.txt', 'one\n', 0o664), true);
      const ro = await grant(hostFile('ro.txt', 'two\n', 0o664), false);
      assert.equal(rw.g.name.toString(), 'rw.txt');
      assert.match(rw.g.id, /^[0-9a-f]+$/);
      assert.notEqual(rw.g.id, ro.g.id);
      assert.equal(fs.readFileSync(rw.copy, 'utf8'), 'one\n');
      assert.equal(fs.readFileSync(ro.copy, 'utf8'), 'two\n');
      assert.equal(fs.statSync(rw.copy).mode & 0o777, 0o600);
      assert.equal(fs.statSync(ro.copy).mode & 0o777, 0o400);
      assert.notEqual(
        fs.statSync(rw.copy).ino,
        fs.statSync(path.join(root, 'host', 'rw.txt')).ino,
        'a copy, not a link',
      );
      assert.deepEqual(fs.readdirSync(path.join(files(), 'web')).sort(), [rw.g.id, ro.g.id].sort());
      assert.equal(await store.folderFor('web'), path.join(files(), 'web'));
    });

    it('keeps a name that is not UTF-8 byte for byte, and binary content exactly', async () => {
      const name = Buffer.concat([
        Buffer.from('caf'),
        Buffer.from([0xe9, 0xff]),
        Buffer.from('\n.bin'),
      ]);
      const content = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7) % 256));
      const p = hostFile(name, '');
      fs.writeFileSync(p, content);
      const { g, copy } = await grant(p, true);
      assert.deepEqual(g.name, name);
      assert.deepEqual(fs.readFileSync(copy), content);
    });

    it('gives each cage its own folder', async () => {
      const p = hostFile('shared.txt', 's');
      const a = await grant(p, false, 'web');
      const b = await grant(p, false, 'mail');
      assert.ok(a.copy.toString().startsWith(path.join(files(), 'web') + '/'));
      assert.ok(b.copy.toString().startsWith(path.join(files(), 'mail') + '/'));
      assert.equal(fs.readFileSync(b.copy, 'utf8'), 's');
    });
  });

  describe('write-back', () => {
    // A change to a writable copy reaches the host file in place; a read-only copy's never does.
    it('writes a changed writable copy into the same host file, keeping inode and mode', async () => {
      const host = hostFile('doc.txt', 'v1\n', 0o640);
      const before = fs.statSync(host);
      const { copy } = await grant(host, true);
      fs.writeFileSync(copy, 'v2, longer than before\n');
      await waitFor(
        'the write-back',
        () => fs.readFileSync(host, 'utf8') === 'v2, longer than before\n',
        WAIT,
      );
      // Shorter content: the host file is truncated, not left with a tail of the old one.
      fs.writeFileSync(copy, 'v3\n');
      await waitFor('the second write-back', () => fs.readFileSync(host, 'utf8') === 'v3\n', WAIT);
      const after = fs.statSync(host);
      assert.equal(after.ino, before.ino, 'the same file, not a replacement');
      assert.equal(after.dev, before.dev);
      assert.equal(after.mode & 0o777, 0o640, 'its mode kept');
      assert.equal(log.warn.callCount, 0, String(log.warn.firstCall?.args[0]));
    });

    it("writes back an editor's atomic save (a new file renamed over the copy)", async () => {
      const host = hostFile('atomic.txt', 'old\n', 0o600);
      const ino = fs.statSync(host).ino;
      const { copy } = await grant(host, true);
      const tmp = Buffer.concat([copy, Buffer.from('.tmp')]);
      fs.writeFileSync(tmp, 'saved\n');
      fs.renameSync(tmp, copy);
      await waitFor('the write-back', () => fs.readFileSync(host, 'utf8') === 'saved\n', WAIT);
      assert.equal(fs.statSync(host).ino, ino);
    });

    it('never writes a read-only copy back, even if the cage makes it writable', async () => {
      const host = hostFile('ro.txt', 'fixed\n');
      const { g, copy } = await grant(host, false);
      fs.chmodSync(copy, 0o600);
      fs.writeFileSync(copy, 'changed inside\n');
      // Control: a writable grant changed at the same time is written back, so the watcher ran.
      const other = hostFile('rw.txt', 'a\n');
      const rw = await grant(other, true);
      fs.writeFileSync(rw.copy, 'b\n');
      await waitFor('the control write-back', () => fs.readFileSync(other, 'utf8') === 'b\n', WAIT);
      await sleep(QUIET_MS);
      assert.equal(fs.readFileSync(host, 'utf8'), 'fixed\n');
      await store.revoke('web', { id: g.id });
      assert.equal(fs.readFileSync(host, 'utf8'), 'fixed\n', 'nor when it is revoked');
    });

    it('does not write into a host file that was replaced after the grant, and warns', async () => {
      const host = hostFile('swapped.txt', 'granted\n');
      const { copy } = await grant(host, true);
      const replacement = Buffer.concat([host, Buffer.from('.new')]);
      fs.writeFileSync(replacement, 'someone else\n');
      fs.renameSync(replacement, host);
      const inoAfterSwap = fs.statSync(host).ino;
      fs.writeFileSync(copy, 'from the cage\n');
      await waitFor('the warning', () => log.warn.called, WAIT);
      assert.match(
        String(log.warn.firstCall.args[0]),
        /"[^"]*swapped\.txt" was replaced on the host after it was granted to cage web; its changes in the cage were not written back/,
      );
      await sleep(QUIET_MS);
      assert.equal(fs.readFileSync(host, 'utf8'), 'someone else\n');
      assert.equal(fs.statSync(host).ino, inoAfterSwap);
    });

    it('does not follow a symbolic link put in place of the host file', async () => {
      const host = hostFile('linked.txt', 'granted\n');
      const elsewhere = hostFile('elsewhere.txt', 'untouched\n');
      const { copy } = await grant(host, true);
      fs.rmSync(host);
      fs.symlinkSync(elsewhere, host);
      fs.writeFileSync(copy, 'from the cage\n');
      await waitFor('the warning', () => log.warn.called, WAIT);
      assert.match(
        String(log.warn.firstCall.args[0]),
        /cannot write cage web's changes back to "[^"]*linked\.txt"/,
      );
      assert.equal(fs.readFileSync(elsewhere, 'utf8'), 'untouched\n');
    });
  });

  describe('revoke and restore', () => {
    // revoke writes back what is pending and removes the copy's folder; restore brings a
    // missing copy back and takes up writing back again.
    it('revoke removes the copy folder, and writes back a pending change first', async () => {
      const host = hostFile('r.txt', 'a\n');
      const { g, copy } = await grant(host, true);
      fs.writeFileSync(copy, 'b\n');
      await store.revoke('web', { id: g.id });
      assert.equal(fs.readFileSync(host, 'utf8'), 'b\n');
      assert.equal(fs.existsSync(path.join(files(), 'web', g.id)), false);
      assert.ok(
        fs.existsSync(path.join(files(), 'web')),
        'the cage folder stays (it is bound into the cage)',
      );
      // Revoked: later changes at that place are not written back.
      fs.mkdirSync(path.join(files(), 'web', g.id));
      fs.writeFileSync(copy, 'c\n');
      await sleep(QUIET_MS);
      assert.equal(fs.readFileSync(host, 'utf8'), 'b\n');
    });

    it('revoke of an unknown id is harmless', async () => {
      await store.folderFor('web');
      await store.revoke('web', { id: 'deadbeef' });
    });

    it('restore re-creates a missing copy, with the mode of the grant', async () => {
      const rwHost = hostFile('rw.txt', 'rw\n');
      const roHost = hostFile('ro.txt', 'ro\n');
      const rw = await grant(rwHost, true, 'web', true);
      const ro = await grant(roHost, false, 'web', true);
      // As after a reboot: the copies are gone, and so is the store that made them.
      await store.close();
      fs.rmSync(files(), { recursive: true, force: true });
      store = new CopyStore(files(), log);
      await store.restore('web', {
        id: rw.g.id,
        hostPath: rwHost,
        name: rw.g.name,
        writable: true,
      });
      await store.restore('web', {
        id: ro.g.id,
        hostPath: roHost,
        name: ro.g.name,
        writable: false,
      });
      assert.equal(fs.readFileSync(rw.copy, 'utf8'), 'rw\n');
      assert.equal(fs.readFileSync(ro.copy, 'utf8'), 'ro\n');
      assert.equal(fs.statSync(rw.copy).mode & 0o777, 0o600);
      assert.equal(fs.statSync(ro.copy).mode & 0o777, 0o400);
      // Taken up again: a change is written back.
      fs.writeFileSync(rw.copy, 'changed\n');
      await waitFor(
        'the write-back after restore',
        () => fs.readFileSync(rwHost, 'utf8') === 'changed\n',
        WAIT,
      );
    });

    it('restore keeps an existing copy as it is', async () => {
      const host = hostFile('k.txt', 'host\n');
      const { g, copy } = await grant(host, true, 'web', true);
      await store.close();
      fs.writeFileSync(copy, 'edited in the cage\n');
      store = new CopyStore(files(), log);
      await store.restore('web', { id: g.id, hostPath: host, name: g.name, writable: true });
      assert.equal(fs.readFileSync(copy, 'utf8'), 'edited in the cage\n');
    });

    it('restore of a host file that is gone warns and creates nothing', async () => {
      const gone = Buffer.from(path.join(root, 'host', 'gone.txt'));
      await store.restore('web', {
        id: 'abcd1234',
        hostPath: gone,
        name: Buffer.from('gone.txt'),
        writable: true,
      });
      assert.match(
        String(log.warn.firstCall.args[0]),
        /granted file "[^"]*gone\.txt" is gone from the host; cage web keeps its last copy/,
      );
      assert.equal(fs.existsSync(path.join(files(), 'web', 'abcd1234')), false);
    });
  });
});

describe('CopyStore.close', () => {
  // close() stops the watcher: a process that used the store exits by itself. The control
  // (no close) shows that the watcher does keep a process alive, so the check can fail.
  const copyModule = fileURLToPath(new URL('../../lib/grants/copy.js', import.meta.url));
  const hostFileModule = fileURLToPath(new URL('../../lib/grants/host-file.js', import.meta.url));
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-copyclose-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** Runs a child that grants a file, optionally closes the store; resolves with whether it exited in time. */
  function runChild(
    close: boolean,
    ms: number,
  ): Promise<{ exited: boolean; code: number | null; stderr: string }> {
    const script = `
      import fs from 'node:fs';
      import { CopyStore } from ${JSON.stringify(copyModule)};
      import { openHostPath, closeHostFiles } from ${JSON.stringify(hostFileModule)};
      const host = ${JSON.stringify(path.join(dir, 'host.txt'))};
      fs.writeFileSync(host, 'x');
      const store = new CopyStore(${JSON.stringify(path.join(dir, 'files'))}, { debug() {}, info() {}, warn() {}, error() {} });
      const f = openHostPath(Buffer.from(host), { followSymlinks: false, writable: true });
      await store.add('web', [f], { persistent: false });
      closeHostFiles([f]);
      ${close ? 'await store.close();' : ''}
      console.error('ready');`;
    return new Promise((resolve) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
      }, ms);
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        resolve({ exited: signal === null, code, stderr });
      });
    });
  }

  it('a process exits once the store is closed', async () => {
    const r = await runChild(true, 10_000);
    assert.equal(r.exited, true, `the process hung: ${r.stderr}`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /ready/);
  });

  it('control: without close the watcher keeps the process alive', async () => {
    const r = await runChild(false, 2_000);
    assert.match(r.stderr, /ready/);
    assert.equal(r.exited, false, 'still running when killed');
  });
});

describe('CopyStore.restore of a grant from an earlier session', () => {
  it('never writes into a host file that was put in place of the granted one meanwhile', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-restore-'));
    const warn = sinon.stub();
    const store = new CopyStore(path.join(dir, 'files'), {
      debug() {},
      info() {},
      warn,
      error() {},
    } as Logger);
    try {
      const host = path.join(dir, 'doc.txt');
      fs.writeFileSync(host, 'granted\n');
      const { dev, ino } = fs.statSync(host);
      // Between sessions: the granted file is replaced by another one at the same path.
      fs.writeFileSync(host + '.new', 'someone else\n');
      fs.renameSync(host + '.new', host);
      const copyDir = path.join(dir, 'files', 'web', 'g1');
      fs.mkdirSync(copyDir, { recursive: true });
      fs.writeFileSync(path.join(copyDir, 'doc.txt'), 'old copy\n');
      await store.restore('web', {
        id: 'g1',
        hostPath: Buffer.from(host),
        name: Buffer.from('doc.txt'),
        writable: true,
        dev,
        ino,
      });
      assert.match(
        String(warn.firstCall?.args[0]),
        /doc\.txt" was replaced on the host since it was granted/,
      );
      fs.writeFileSync(path.join(copyDir, 'doc.txt'), 'edited in the cage\n');
      // The watcher's write-back says why it did not write: wait for that, then look.
      const refused = () =>
        warn
          .getCalls()
          .some((c) =>
            /doc\.txt" was replaced on the host after it was granted to cage web; its changes in the cage were not written back/.test(
              String(c.args[0]),
            ),
          );
      await waitFor('the refused write-back', refused, WAIT);
      assert.equal(fs.readFileSync(host, 'utf8'), 'someone else\n');
    } finally {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
