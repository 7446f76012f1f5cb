import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sinon from 'sinon';
import { CopyStore } from '../../lib/grants/copy.js';
import { openHostPath, closeHostFiles } from '../../lib/grants/host-file.js';
import type { Logger } from '../../lib/log.js';

// The copy fallback on real folders: a copy for each grant, changes to a writable copy written
// into the very host file that was granted, and never into a read-only one's or a file that
// has been replaced on the host since.

async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('CopyStore', () => {
  let root: string;
  let store: CopyStore;
  let warn: sinon.SinonStub;

  const hostFile = (name: string, text: string) => {
    const p = path.join(root, 'host', name);
    fs.writeFileSync(p, text);
    return p;
  };
  const grant = async (p: string, writable: boolean) => {
    const f = openHostPath(Buffer.from(p), { followSymlinks: false, writable });
    try {
      const [g] = await store.add('web', [f], { persistent: false });
      return path.join(root, 'files', 'web', g!.id, g!.name.toString());
    } finally {
      closeHostFiles([f]);
    }
  };

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-copies-'));
    fs.mkdirSync(path.join(root, 'host'));
    warn = sinon.stub();
    store = new CopyStore(path.join(root, 'files'), { debug() {}, info() {}, warn, error() {} } as Logger);
  });

  afterEach(async () => {
    await store.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('copies each file into the cage folder, 0600 when writable and 0400 when not', async () => {
    const rw = await grant(hostFile('rw.txt', 'one\n'), true);
    const ro = await grant(hostFile('ro.txt', 'two\n'), false);
    assert.equal(fs.readFileSync(rw, 'utf8'), 'one\n');
    assert.equal(fs.statSync(rw).mode & 0o777, 0o600);
    assert.equal(fs.statSync(ro).mode & 0o777, 0o400);
    assert.equal(await store.folderFor('web'), path.join(root, 'files', 'web'));
  });

  it('writes a changed writable copy into the same host file, and never a read-only one', async () => {
    const host = hostFile('doc.txt', 'v1\n');
    fs.chmodSync(host, 0o640);
    const ino = fs.statSync(host).ino;
    const copy = await grant(host, true);
    // An editor's atomic save: a new file renamed over the copy.
    fs.writeFileSync(copy + '.tmp', 'v2\n');
    fs.renameSync(copy + '.tmp', copy);
    await until(() => fs.readFileSync(host, 'utf8') === 'v2\n', 'the write-back');
    const st = fs.statSync(host);
    assert.equal(st.ino, ino, 'the same file, not a replacement');
    assert.equal(st.mode & 0o777, 0o640, 'its mode kept');

    const roHost = hostFile('ro.txt', 'fixed\n');
    const roCopy = await grant(roHost, false);
    fs.chmodSync(roCopy, 0o600);
    fs.writeFileSync(roCopy, 'changed inside\n');
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(fs.readFileSync(roHost, 'utf8'), 'fixed\n');
  });

  it('does not write into a host file that was replaced after the grant, and says so', async () => {
    const host = hostFile('swapped.txt', 'granted\n');
    const copy = await grant(host, true);
    fs.writeFileSync(host + '.new', 'someone else\n');
    fs.renameSync(host + '.new', host);
    fs.writeFileSync(copy, 'from the cage\n');
    await until(() => warn.called, 'the warning');
    assert.match(String(warn.firstCall.args[0]), /swapped\.txt" was replaced on the host .* not written back/);
    assert.equal(fs.readFileSync(host, 'utf8'), 'someone else\n');
  });

  it('revoke writes back what is pending and removes the copy; restore brings a missing copy back', async () => {
    const host = hostFile('r.txt', 'a\n');
    const f = openHostPath(Buffer.from(host), { followSymlinks: false, writable: true });
    const [g] = await store.add('web', [f], { persistent: true });
    closeHostFiles([f]);
    const copy = path.join(root, 'files', 'web', g!.id, 'r.txt');
    fs.writeFileSync(copy, 'b\n');
    await store.revoke('web', g!);
    assert.equal(fs.readFileSync(host, 'utf8'), 'b\n');
    assert.equal(fs.existsSync(path.dirname(copy)), false);
    await store.restore('web', { id: g!.id, hostPath: Buffer.from(host), name: Buffer.from('r.txt'), writable: true });
    assert.equal(fs.readFileSync(copy, 'utf8'), 'b\n');
  });
});
