import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sinon from 'sinon';
import { FileGrants } from '../../lib/grants/registry.js';
import { openHostPath, type HostFile } from '../../lib/grants/host-file.js';
import type { GrantStore } from '../../lib/grants/grant.js';
import type { SandboxSpec } from '../../lib/sandbox.js';
import type { Logger } from '../../lib/log.js';

// The records of who was granted what: kept on disk, transient ones apart from persistent
// ones, ended with their cage, and recovered after a crash. The store (portal or copies) is
// stubbed: what is tested is the bookkeeping around it.

describe('FileGrants', () => {
  let root: string;
  let store: GrantStore;
  let add: sinon.SinonStub;
  let revoke: sinon.SinonStub;
  let restore: sinon.SinonStub;
  let grants: FileGrants;
  let log: { [K in keyof Logger]: sinon.SinonStub };
  let next: number;
  const dirs = () => ({ transient: path.join(root, 'run', 'grants'), persistent: path.join(root, 'data', 'grants') });

  const file = (name: string): HostFile => {
    const p = path.join(root, name);
    fs.writeFileSync(p, name);
    return openHostPath(Buffer.from(p), { followSymlinks: false, writable: 'auto' });
  };
  const record = (persistent: boolean, cage: string) => JSON.parse(fs.readFileSync(path.join(persistent ? dirs().persistent : dirs().transient, `${cage}.json`), 'utf8'));

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-grants-'));
    next = 0;
    add = sinon.stub().callsFake(async (_cage: string, files: readonly HostFile[]) => files.map((f) => ({ id: `doc${++next}`, name: Buffer.from(path.basename(f.path.toString())) })));
    revoke = sinon.stub().resolves();
    restore = sinon.stub().resolves();
    store = {
      kind: 'document-portal',
      folderFor: sinon.stub().callsFake(async (cage: string) => `/portal/by-app/${cage}`),
      add,
      revoke,
      restore,
      close: sinon.stub().resolves(),
    };
    log = { debug: sinon.stub(), info: sinon.stub(), warn: sinon.stub(), error: sinon.stub() };
    grants = new FileGrants(Promise.resolve(store), dirs(), '/run/user/1000', log as unknown as Logger);
  });

  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  it('records grants where they belong, with the path the cage sees, and closes the descriptors', async () => {
    const a = file('a.txt');
    const [g] = await grants.add('web', [a], { persistent: false });
    assert.deepEqual(g!.pathInCage, Buffer.from('/run/user/1000/doc/doc1/a.txt'));
    assert.throws(() => fs.fstatSync(a.fd), { code: 'EBADF' });
    const [p] = await grants.add('web', [file('b.txt')], { persistent: true });
    assert.equal(record(false, 'web').grants.length, 1);
    assert.equal(record(true, 'web').grants[0].id, p!.id);
    assert.deepEqual((await grants.list('web')).map((x) => [x.id, x.persistent]).sort(), [['doc1', false], ['doc2', true]]);
    assert.deepEqual(await grants.list('other'), []);
  });

  it('closes the descriptors when the store fails, and records nothing', async () => {
    add.rejects(new Error('portal gone'));
    const a = file('a.txt');
    await assert.rejects(grants.add('web', [a], { persistent: false }), /portal gone/);
    assert.throws(() => fs.fstatSync(a.fd), { code: 'EBADF' });
    assert.deepEqual(await grants.list('web'), []);
  });

  it('a file granted again replaces its record, also between transient and persistent', async () => {
    add.callsFake(async () => [{ id: 'same', name: Buffer.from('a.txt') }]);
    await grants.add('web', [file('a.txt')], { persistent: false });
    await grants.add('web', [file('a.txt')], { persistent: true });
    const list = await grants.list('web');
    assert.deepEqual(list.map((g) => [g.id, g.persistent]), [['same', true]]);
    assert.equal(fs.existsSync(path.join(dirs().transient, 'web.json')), false, 'an emptied record file is removed');
  });

  it('revokes by id through the store, and names unknown ids', async () => {
    const [g] = await grants.add('web', [file('a.txt')], { persistent: false });
    await assert.rejects(grants.revoke('web', ['nope']), (e: { errorName?: string; message: string }) => e.errorName === 'InvalidArgument' && /no grant "nope".*kagome grants web/.test(e.message));
    assert.equal(revoke.callCount, 0, 'nothing is revoked when one id is unknown');
    await grants.revoke('web', [g!.id]);
    assert.equal(revoke.firstCall.args[0], 'web');
    assert.equal(revoke.firstCall.args[1].id, g!.id);
    assert.deepEqual(await grants.list('web'), []);
  });

  it('adds the file folder to a starting cage and brings back only persistent grants', async () => {
    await grants.add('web', [file('t.txt')], { persistent: false });
    await grants.add('web', [file('p.txt')], { persistent: true });
    const spec = { runtimeDir: '/run/user/1000', ops: [] } as unknown as SandboxSpec;
    await grants.cageStarting('web', spec);
    assert.deepEqual(spec.ops, [{ op: 'bind', source: '/portal/by-app/web', dest: '/run/user/1000/doc' }]);
    assert.deepEqual(restore.getCalls().map((c) => c.args[1].name.toString()), ['p.txt']);
  });

  it('ends transient grants when the cage stops, keeping persistent ones', async () => {
    await grants.add('web', [file('t.txt')], { persistent: false });
    await grants.add('web', [file('p.txt')], { persistent: true });
    await grants.cageStopped('web');
    assert.deepEqual(revoke.getCalls().map((c) => c.args[1].name.toString()), ['t.txt']);
    assert.deepEqual((await grants.list('web')).map((g) => g.name.toString()), ['p.txt']);
  });

  it('after a crash, ends the grants of cages no longer running and takes up those of running ones', async () => {
    await grants.add('dead', [file('d.txt')], { persistent: false });
    await grants.add('alive', [file('a.txt')], { persistent: false });
    fs.writeFileSync(path.join(dirs().transient, '..x.json'), '{}');
    fs.writeFileSync(path.join(dirs().transient, 'a b.json'), '{}');
    await grants.recover(new Set(['alive']));
    assert.deepEqual(revoke.getCalls().map((c) => c.args[0]), ['dead']);
    assert.deepEqual(restore.getCalls().map((c) => c.args[0]), ['alive']);
    assert.deepEqual(await grants.list('dead'), []);
    assert.equal((await grants.list('alive')).length, 1);
  });

  it('treats a corrupt record file as empty, with a warning naming it', async () => {
    fs.mkdirSync(dirs().transient, { recursive: true });
    fs.writeFileSync(path.join(dirs().transient, 'web.json'), '{ not json');
    assert.deepEqual(await grants.list('web'), []);
    assert.match(String(log.warn.firstCall.args[0]), /web\.json cannot be read/);
  });
});
