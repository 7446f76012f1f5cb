import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sinon from 'sinon';
import { FileGrants, docDirInCage, type GrantDirs } from '../../lib/grants/registry.js';
import { openHostPath, type HostFile } from '../../lib/grants/host-file.js';
import type { GrantStore, ProvidedGrant } from '../../lib/grants/grant.js';
import type { SandboxSpec } from '../../lib/sandbox.js';
import type { Logger } from '../../lib/log.js';
import { KagomeError } from '../../lib/errors.js';
import { waitFor } from '../helpers/wait.js';

// The records of which files each cage was granted (lib/grants/registry.ts): kept on disk as
// JSON, transient ones apart from persistent ones, ended with their cage, recovered after a
// crash. The store (portal or copies) is a sinon stub handing out ids: what is tested is the
// bookkeeping around it, on real temp folders and real host files.

type Stubbed<T> = {
  [K in keyof T]-?: NonNullable<T[K]> extends (...args: infer A) => infer R
    ? sinon.SinonStub<A, R>
    : T[K];
};

const openCount = (): number => fs.readdirSync('/proc/self/fd').length;
const assertClosed = (fd: number): void =>
  assert.throws(() => fs.fstatSync(fd), { code: 'EBADF' }, `descriptor ${fd} was closed`);

describe('FileGrants', () => {
  let root: string;
  let dirs: GrantDirs;
  // Without the portal's own folder access (lock-files.test.ts covers what it is for).
  let store: Stubbed<Omit<GrantStore, 'documentFolder' | 'clearBeside'>> & {
    kind: GrantStore['kind'];
  };
  let copies: Stubbed<Omit<GrantStore, 'documentFolder' | 'clearBeside'>> & {
    kind: GrantStore['kind'];
  };
  let log: Stubbed<Logger>;
  let grants: FileGrants;
  let next: number;
  let fdsBefore: number;
  const RUNTIME = '/run/user/1000';

  /** A real host file, held as openHostPath holds it. */
  const file = (name: string | Buffer, text = 'x'): HostFile => {
    const p = Buffer.concat([Buffer.from(root + '/host/'), Buffer.from(name)]);
    fs.writeFileSync(p, text);
    return openHostPath(p, { followSymlinks: false, writable: 'auto' });
  };
  const recordFile = (persistent: boolean, cage: string) =>
    path.join(persistent ? dirs.persistent : dirs.transient, `${cage}.json`);
  const record = (persistent: boolean, cage: string) =>
    JSON.parse(fs.readFileSync(recordFile(persistent, cage), 'utf8'));
  const idsOf = async (cage: string) =>
    (await grants.list(cage)).map((g) => [g.id, g.persistent]).sort();

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-grants-'));
    fs.mkdirSync(path.join(root, 'host'));
    dirs = {
      transient: path.join(root, 'run', 'grants'),
      persistent: path.join(root, 'data', 'grants'),
    };
    next = 0;
    store = {
      kind: 'document-portal',
      folderFor: sinon
        .stub<[string], Promise<string>>()
        .callsFake(async (cage) => `/portal/by-app/kagome.${cage}`),
      add: sinon
        .stub<[string, readonly HostFile[], { persistent: boolean }], Promise<ProvidedGrant[]>>()
        .callsFake(async (_cage, files) =>
          files.map((f) => ({
            id: `doc${++next}`,
            name: Buffer.from(path.posix.basename(f.path.toString('latin1')), 'latin1'),
          })),
        ),
      revoke: sinon
        .stub<[string, { id: string; hostPath: Buffer; writable: boolean }], Promise<void>>()
        .resolves(),
      restore: sinon
        .stub<
          [string, { id: string; hostPath: Buffer; name: Buffer; writable: boolean }],
          Promise<void>
        >()
        .resolves(),
      close: sinon.stub<[], Promise<void>>().resolves(),
    };
    copies = {
      kind: 'copy',
      folderFor: sinon
        .stub<[string], Promise<string>>()
        .callsFake(async (cage) => `/copies/${cage}`),
      add: sinon
        .stub<[string, readonly HostFile[], { persistent: boolean }], Promise<ProvidedGrant[]>>()
        .callsFake(async (_cage, files) =>
          files.map((f) => ({
            id: `copy${++next}`,
            name: Buffer.from(path.posix.basename(f.path.toString('latin1')), 'latin1'),
          })),
        ),
      revoke: sinon
        .stub<[string, { id: string; hostPath: Buffer; writable: boolean }], Promise<void>>()
        .resolves(),
      restore: sinon
        .stub<
          [string, { id: string; hostPath: Buffer; name: Buffer; writable: boolean }],
          Promise<void>
        >()
        .resolves(),
      close: sinon.stub<[], Promise<void>>().resolves(),
    };
    log = { debug: sinon.stub(), info: sinon.stub(), warn: sinon.stub(), error: sinon.stub() };
    grants = new FileGrants(Promise.resolve(store as GrantStore), () => copies, dirs, RUNTIME, log);
    fdsBefore = openCount();
  });

  afterEach(() => {
    const fdsAfter = openCount();
    fs.rmSync(root, { recursive: true, force: true });
    assert.equal(fdsAfter, fdsBefore, 'no descriptor left open');
  });

  describe('add', () => {
    // Grants are recorded as JSON where they belong, with the bytes of the host path, and the
    // descriptors given are closed whether the store succeeds or not.
    it('records a transient grant in the transient dir, with what the store gave', async () => {
      const hostName = Buffer.concat([
        Buffer.from('a\n'),
        Buffer.from([0xff]),
        Buffer.from('.txt'),
      ]);
      const a = file(hostName);
      const [g, ...rest] = await grants.add('web', [a], { persistent: false });
      assert.equal(rest.length, 0);
      assert.equal(store.add.callCount, 1);
      assert.equal(store.add.firstCall.args[0], 'web');
      assert.deepEqual(store.add.firstCall.args[1], [a]);
      assert.deepEqual(store.add.firstCall.args[2], { persistent: false });

      assert.equal(g!.id, 'doc1');
      assert.equal(g!.cage, 'web');
      assert.deepEqual(g!.hostPath, a.path);
      assert.deepEqual(g!.name, hostName);
      assert.deepEqual(
        g!.pathInCage,
        Buffer.concat([Buffer.from('/run/user/1000/doc/doc1/'), hostName]),
      );
      assert.equal(g!.writable, true);
      assert.equal(g!.persistent, false);
      assert.equal(g!.store, 'document-portal');
      assert.deepEqual(
        [g!.dev, g!.ino],
        [a.dev, a.ino],
        "the host file's identity, so a file put in its place is never taken for it",
      );
      assert.ok(Math.abs(Date.parse(g!.grantedAt) - Date.now()) < 60_000, g!.grantedAt);

      const r = record(false, 'web');
      assert.equal(r.version, 1);
      assert.equal(r.cage, 'web');
      assert.deepEqual(r.grants, [
        {
          id: 'doc1',
          hostPath: a.path.toString('base64'),
          name: hostName.toString('base64'),
          writable: true,
          persistent: false,
          grantedAt: g!.grantedAt,
          store: 'document-portal',
          dev: a.dev,
          ino: a.ino,
        },
      ]);
      assert.equal(fs.existsSync(recordFile(true, 'web')), false, 'nothing in the persistent dir');
      assert.equal(fs.statSync(recordFile(false, 'web')).mode & 0o777, 0o600);
    });

    it('records a persistent grant in the persistent dir', async () => {
      const f = file('p.txt');
      const [g] = await grants.add('web', [f], { persistent: true });
      assert.equal(record(true, 'web').grants[0].id, g!.id);
      assert.equal(record(true, 'web').grants[0].persistent, true);
      assert.equal(fs.existsSync(recordFile(false, 'web')), false, 'nothing in the transient dir');
    });

    it('closes the descriptors it is given', async () => {
      const files = [file('a'), file('b'), file('c')];
      const out = await grants.add('web', files, { persistent: false });
      assert.equal(out.length, 3);
      for (const f of files) assertClosed(f.fd);
    });

    it('closes the descriptors when the store throws, and records nothing', async () => {
      store.add.rejects(new Error('portal gone'));
      const files = [file('a'), file('b')];
      await assert.rejects(grants.add('web', files, { persistent: false }), /portal gone/);
      for (const f of files) assertClosed(f.fd);
      assert.deepEqual(await grants.list('web'), []);
      assert.equal(fs.existsSync(recordFile(false, 'web')), false);
    });

    it('closes the descriptors when no store could be had', async () => {
      const failing = Promise.reject(new Error('no store'));
      failing.catch(() => undefined);
      const g = new FileGrants(failing, () => copies, dirs, RUNTIME, log);
      const f = file('a');
      await assert.rejects(g.add('web', [f], { persistent: false }), /no store/);
      assertClosed(f.fd);
    });

    it('keeps every grant of concurrent adds', async () => {
      await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          grants.add('web', [file(`f${i}`)], { persistent: i % 2 === 0 }),
        ),
      );
      const list = await grants.list('web');
      assert.equal(list.length, 12);
      assert.equal(record(true, 'web').grants.length, 6);
      assert.equal(record(false, 'web').grants.length, 6);
    });

    it('keeps each cage in its own record', async () => {
      await grants.add('web', [file('a')], { persistent: false });
      await grants.add('mail', [file('b')], { persistent: false });
      assert.deepEqual(await idsOf('web'), [['doc1', false]]);
      assert.deepEqual(await idsOf('mail'), [['doc2', false]]);
      assert.deepEqual(await grants.list('other'), []);
    });
  });

  describe('the same id granted again', () => {
    // The portal hands out the same document id for the same file: the new grant replaces the
    // old record, also moving it between transient and persistent.
    beforeEach(() => store.add.callsFake(async () => [{ id: 'same', name: Buffer.from('a.txt') }]));

    it('replaces the record within one kind', async () => {
      await grants.add('web', [file('a.txt', '1')], { persistent: false });
      await grants.add('web', [file('a.txt', '2')], { persistent: false });
      assert.deepEqual(await idsOf('web'), [['same', false]]);
      assert.equal(record(false, 'web').grants.length, 1);
    });

    it('moves from transient to persistent', async () => {
      await grants.add('web', [file('a.txt')], { persistent: false });
      await grants.add('web', [file('a.txt')], { persistent: true });
      assert.deepEqual(await idsOf('web'), [['same', true]]);
      assert.equal(
        fs.existsSync(recordFile(false, 'web')),
        false,
        'an emptied record file is removed',
      );
    });

    it('moves from persistent to transient', async () => {
      await grants.add('web', [file('a.txt')], { persistent: true });
      await grants.add('web', [file('a.txt')], { persistent: false });
      assert.deepEqual(await idsOf('web'), [['same', false]]);
      assert.equal(fs.existsSync(recordFile(true, 'web')), false);
    });

    it('leaves the other grants alone', async () => {
      store.add.onFirstCall().callsFake(async () => [{ id: 'other', name: Buffer.from('o') }]);
      await grants.add('web', [file('o')], { persistent: false });
      await grants.add('web', [file('a.txt')], { persistent: false });
      await grants.add('web', [file('a.txt')], { persistent: true });
      assert.deepEqual(await idsOf('web'), [
        ['other', false],
        ['same', true],
      ]);
    });
  });

  describe('revoke', () => {
    // Known ids are revoked through the store and their records go; an unknown id is an
    // InvalidArgument that points at 'kagome grants', and then nothing is revoked.
    it('refuses an unknown id, naming it and the command that lists grants', async () => {
      const [g] = await grants.add('web', [file('a')], { persistent: false });
      await assert.rejects(
        grants.revoke('web', [g!.id, 'nope']),
        (e: { errorName?: string; message: string }) => {
          assert.equal(e.errorName, 'InvalidArgument');
          assert.match(
            e.message,
            /cage "web" has no grant "nope"; 'kagome grants web' lists its grants/,
          );
          return true;
        },
      );
      assert.equal(store.revoke.callCount, 0, 'nothing is revoked when one id is unknown');
      assert.equal((await grants.list('web')).length, 1);
    });

    it('refuses an id of another cage', async () => {
      const [g] = await grants.add('web', [file('a')], { persistent: false });
      await assert.rejects(grants.revoke('mail', [g!.id]), {
        errorName: 'InvalidArgument',
      } as object);
      assert.equal(store.revoke.callCount, 0);
    });

    it('revokes through the store and removes the record', async () => {
      const [t] = await grants.add('web', [file('t')], { persistent: false });
      const [p] = await grants.add('web', [file('p')], { persistent: true });
      const [keep] = await grants.add('web', [file('k')], { persistent: false });
      await grants.revoke('web', [t!.id, p!.id]);
      assert.equal(store.revoke.callCount, 2);
      const revoked = store.revoke
        .getCalls()
        .map((c) => [c.args[0], c.args[1].id, c.args[1].hostPath.toString()]);
      assert.deepEqual(
        revoked.sort(),
        [
          ['web', p!.id, p!.hostPath.toString()],
          ['web', t!.id, t!.hostPath.toString()],
        ].sort(),
      );
      assert.deepEqual(await idsOf('web'), [[keep!.id, false]]);
      assert.equal(
        fs.existsSync(recordFile(true, 'web')),
        false,
        'the emptied persistent record is removed',
      );
    });

    it('drops the record of a grant made by another store without asking this one', async () => {
      const [g] = await grants.add('web', [file('a')], { persistent: true });
      const copyStore = { ...store, kind: 'copy' as const };
      const other = new FileGrants(
        Promise.resolve(copyStore as GrantStore),
        () => copies,
        dirs,
        RUNTIME,
        log,
      );
      await other.revoke('web', [g!.id]);
      assert.equal(store.revoke.callCount, 0);
      assert.deepEqual(await grants.list('web'), []);
    });
  });

  describe('cageStarting', () => {
    // The store's folder for the cage is bound at <runtime dir>/doc of the starting cage, and
    // persistent grants (only those) are brought back.
    const spec = (runtimeDir = '/run/user/4242'): SandboxSpec =>
      ({
        runtimeDir,
        ops: [{ op: 'dir', dest: runtimeDir, mode: 0o700 }],
      }) as unknown as SandboxSpec;

    it('binds the store folder at <runtimeDir>/doc', async () => {
      const s = spec();
      await grants.cageStarting('web', s);
      assert.deepEqual(
        store.folderFor.getCalls().map((c) => c.args),
        [['web']],
      );
      assert.deepEqual(s.ops.slice(1), [
        { op: 'bind', source: '/portal/by-app/kagome.web', dest: '/run/user/4242/doc' },
      ]);
      assert.equal(docDirInCage(s), '/run/user/4242/doc');
      assert.equal(store.restore.callCount, 0, 'no grants, nothing to restore');
    });

    it('restores persistent grants only', async () => {
      await grants.add('web', [file('t1')], { persistent: false });
      const [p1] = await grants.add('web', [file('p1')], { persistent: true });
      const [p2] = await grants.add('web', [file('p2')], { persistent: true });
      await grants.add('mail', [file('m')], { persistent: true });
      await grants.cageStarting('web', spec());
      const restored = store.restore
        .getCalls()
        .map((c) => [
          c.args[0],
          c.args[1].id,
          c.args[1].name.toString(),
          c.args[1].hostPath.toString(),
        ]);
      assert.deepEqual(
        restored.sort(),
        [
          ['web', p1!.id, 'p1', p1!.hostPath.toString()],
          ['web', p2!.id, 'p2', p2!.hostPath.toString()],
        ].sort(),
      );
    });

    it('a failing restore is a warning, and the others are still restored', async () => {
      await grants.add('web', [file('p1')], { persistent: true });
      await grants.add('web', [file('p2')], { persistent: true });
      store.restore.onFirstCall().rejects(new Error('copy failed'));
      await grants.cageStarting('web', spec());
      assert.equal(store.restore.callCount, 2);
      assert.equal(log.warn.callCount, 1);
      assert.match(String(log.warn.firstCall.args[0]), /cage web: copy failed/);
    });

    it('works with a store that has no restore', async () => {
      await grants.add('web', [file('p')], { persistent: true });
      const { restore: _unused, ...noRestore } = store;
      const g = new FileGrants(
        Promise.resolve(noRestore as GrantStore),
        () => copies,
        dirs,
        RUNTIME,
        log,
      );
      const s = spec();
      await g.cageStarting('web', s);
      assert.equal(s.ops.length, 2);
      assert.equal(store.restore.callCount, 0);
    });
  });

  describe("a backend that cannot reach the portal's FUSE mount", () => {
    const spec = (): SandboxSpec =>
      ({ runtimeDir: '/run/user/4242', ops: [] }) as unknown as SandboxSpec;
    const podman = { kind: 'podman', fileGrants: () => 'copies' as const };

    it('gets the copy folder, its grants are copies, and the log says why once per backend', async () => {
      const s = spec();
      await grants.cageStarting('box', s, podman);
      await grants.cageStarting('box2', spec(), podman);
      assert.deepEqual(s.ops, [{ op: 'bind', source: '/copies/box', dest: '/run/user/4242/doc' }]);
      const [g] = await grants.add('box', [file('a')], { persistent: false });
      assert.equal(g!.store, 'copy');
      assert.equal(copies.add.callCount, 1);
      assert.equal(store.add.callCount, 0, 'the portal is not asked');
      const said = log.info
        .getCalls()
        .map((c) => String(c.args[0]))
        .filter((m) => /podman cannot mount the document portal/.test(m));
      assert.equal(said.length, 1, 'said once');
      await grants.cageStopped('box');
      assert.equal(copies.revoke.callCount, 1, 'revoked by the store that made it');
      assert.equal(store.revoke.callCount, 0);
    });

    it('carries a persistent portal grant over to copies when the cage moves to such a backend', async () => {
      const [g] = await grants.add('box', [file('p')], { persistent: true });
      assert.equal(g!.store, 'document-portal');
      await grants.cageStarting('box', spec(), podman);
      assert.equal(store.revoke.callCount, 1, 'the portal grant ends');
      assert.deepEqual(
        copies.restore.getCalls().map((c) => c.args[1].id),
        [g!.id],
      );
      assert.equal((await grants.list('box'))[0]!.store, 'copy');
    });

    it('a re-adopted cage of such a backend keeps getting copies', async () => {
      await grants.cageAdopted('box', podman, spec());
      const [g] = await grants.add('box', [file('a')], { persistent: false });
      assert.equal(g!.store, 'copy');
    });

    it('refuses grants to a cage on another machine, saying why, and mounts no folder', async () => {
      const s = { ...spec(), remote: 'far' } as SandboxSpec;
      await grants.cageStarting('box', s, { kind: 'lxd', fileGrants: () => 'none' as const });
      assert.deepEqual(s.ops, []);
      await assert.rejects(
        grants.add('box', [file('a')], { persistent: false }),
        (e: unknown) =>
          e instanceof KagomeError &&
          e.errorName === 'NotSupported' &&
          /lxd remote far/.test(e.message) &&
          /lxc file push/.test(e.message),
      );
      assert.equal(copies.add.callCount + store.add.callCount, 0);
    });

    it('bubblewrap cages keep the portal', async () => {
      await grants.cageStarting('web', spec(), {
        kind: 'bubblewrap',
        fileGrants: () => 'portal' as const,
      });
      const [g] = await grants.add('web', [file('a')], { persistent: false });
      assert.equal(g!.store, 'document-portal');
    });
  });

  describe('cageStopped', () => {
    // A stopped cage's transient grants end (revoked and forgotten); persistent ones stay.
    it('revokes transient grants only', async () => {
      const [t1] = await grants.add('web', [file('t1')], { persistent: false });
      const [t2] = await grants.add('web', [file('t2')], { persistent: false });
      const [p] = await grants.add('web', [file('p')], { persistent: true });
      const [m] = await grants.add('mail', [file('m')], { persistent: false });
      await grants.cageStopped('web');
      assert.deepEqual(
        store.revoke
          .getCalls()
          .map((c) => [c.args[0], c.args[1].id])
          .sort(),
        [
          ['web', t1!.id],
          ['web', t2!.id],
        ],
      );
      assert.deepEqual(await idsOf('web'), [[p!.id, true]]);
      assert.deepEqual(await idsOf('mail'), [[m!.id, false]], 'other cages keep theirs');
      assert.equal(fs.existsSync(recordFile(false, 'web')), false);
    });

    it('a failing revoke is a warning and the others still end', async () => {
      await grants.add('web', [file('t1')], { persistent: false });
      const [t2] = await grants.add('web', [file('t2')], { persistent: false });
      store.revoke.onFirstCall().rejects(new Error('portal gone'));
      await grants.cageStopped('web');
      assert.equal(store.revoke.callCount, 2);
      assert.match(String(log.warn.firstCall.args[0]), /cage web: revoking doc1: portal gone/);
      assert.equal(
        (await grants.list('web')).some((g) => g.id === t2!.id),
        false,
      );
    });

    it('does nothing for a cage without grants', async () => {
      await grants.cageStopped('web');
      assert.equal(store.revoke.callCount, 0);
    });
  });

  describe('recover', () => {
    // After a crash: transient grants of cages no longer running are revoked, those of running
    // cages are taken up again (restored), and files that are not cage records are ignored.
    it('revokes the grants of stopped cages and restores those of running ones', async () => {
      const [d] = await grants.add('dead', [file('d')], { persistent: false });
      const [dp] = await grants.add('dead', [file('dp')], { persistent: true });
      const [a] = await grants.add('alive', [file('a')], { persistent: false });
      // A fresh service, as after a restart.
      const fresh = new FileGrants(
        Promise.resolve(store as GrantStore),
        () => copies,
        dirs,
        RUNTIME,
        log,
      );
      await fresh.recover(new Set(['alive']));
      assert.deepEqual(
        store.revoke.getCalls().map((c) => [c.args[0], c.args[1].id]),
        [['dead', d!.id]],
      );
      assert.deepEqual(
        store.restore.getCalls().map((c) => [c.args[0], c.args[1].id]),
        [['alive', a!.id]],
      );
      assert.deepEqual(
        await idsOf('dead'),
        [[dp!.id, true]],
        'persistent grants outlive their cage',
      );
      assert.deepEqual(await idsOf('alive'), [[a!.id, false]]);
    });

    it('ignores files that are not cage names, and leaves them', async () => {
      fs.mkdirSync(dirs.transient, { recursive: true });
      const bogus = [
        '..x.json',
        '.json',
        'a b.json',
        '.x.json',
        'x.json.123.tmp',
        `${'n'.repeat(65)}.json`,
      ];
      const valid = JSON.stringify({
        version: 1,
        grants: [
          {
            id: 'i',
            hostPath: '',
            name: '',
            writable: false,
            persistent: false,
            grantedAt: '',
            store: 'document-portal',
          },
        ],
      });
      for (const b of bogus) fs.writeFileSync(path.join(dirs.transient, b), valid);
      await grants.recover(new Set());
      await grants.recover(new Set(['a b', '..x', '.x']));
      assert.equal(store.revoke.callCount, 0);
      assert.equal(store.restore.callCount, 0);
      for (const b of bogus) assert.ok(fs.existsSync(path.join(dirs.transient, b)), b);
    });

    it('copes with no record dir at all', async () => {
      await grants.recover(new Set(['web']));
      assert.equal(store.revoke.callCount + store.restore.callCount, 0);
    });

    it('takes up the persistent grants of a running cage that has no transient ones', async () => {
      const [p] = await grants.add('alive', [file('p')], { persistent: true });
      await grants.recover(new Set(['alive']));
      assert.deepEqual(
        store.restore.getCalls().map((c) => [c.args[0], c.args[1].id]),
        [['alive', p!.id]],
      );
    });
  });

  describe('corrupt records', () => {
    // A record file that cannot be parsed is treated as empty, with a warning naming it.
    it('treats a corrupt JSON file as empty, with a warning', async () => {
      fs.mkdirSync(dirs.transient, { recursive: true });
      fs.writeFileSync(recordFile(false, 'web'), '{ not json');
      assert.deepEqual(await grants.list('web'), []);
      assert.equal(log.warn.callCount, 1);
      const msg = String(log.warn.firstCall.args[0]);
      assert.ok(msg.includes(recordFile(false, 'web')), msg);
      assert.match(msg, /cannot be read .*treating them as empty/);
    });

    it('a new grant replaces the corrupt file with a good record', async () => {
      fs.mkdirSync(dirs.persistent, { recursive: true });
      fs.writeFileSync(recordFile(true, 'web'), 'null');
      const [g] = await grants.add('web', [file('a')], { persistent: true });
      assert.deepEqual(
        record(true, 'web').grants.map((s: { id: string }) => s.id),
        [g!.id],
      );
      assert.ok(log.warn.called);
    });

    it('a missing record file is no warning', async () => {
      assert.deepEqual(await grants.list('web'), []);
      await grants.cageStopped('web');
      assert.equal(log.warn.callCount, 0);
    });
  });

  describe('with a store whose cages see the host files themselves (the portal)', () => {
    // Lock files beside read-write documents are carried (lock-files.ts), what a cage made
    // beside its documents goes when it stops, and a cage on the host's /usr gets the
    // LibreOffice start script without fcntl locks, where the host has LibreOffice.
    const views = () => path.join(root, 'views');
    let portal: FileGrants;
    let clearBeside: sinon.SinonStub<[string, { id: string; name: Buffer }], Promise<void>>;
    const spec = (): SandboxSpec =>
      ({ runtimeDir: '/run/user/4242', ops: [] }) as unknown as SandboxSpec;

    beforeEach(() => {
      clearBeside = sinon.stub<[string, { id: string; name: Buffer }], Promise<void>>().resolves();
      const shows = {
        ...store,
        documentFolder: (cage: string, id: string) => path.join(views(), cage, id),
        clearBeside,
      };
      portal = new FileGrants(
        Promise.resolve(shows as unknown as GrantStore),
        () => copies,
        dirs,
        RUNTIME,
        log,
      );
    });

    afterEach(async () => {
      await portal.close();
    });

    // libuv opens one inotify descriptor for its loop at the first watch and keeps it until the
    // loop ends: opened here, before any test counts descriptors, it is not taken for a leak.
    fs.watch(os.tmpdir()).close();

    it("carries a cage's lock file to the host folder while it runs, and clears up when it stops", async () => {
      const s = spec();
      await portal.cageStarting('web', s);
      const soffice = '/usr/lib/libreoffice/program/soffice';
      assert.equal(
        s.ops.some((o) => o.op === 'ro-bind' && o.dest === soffice),
        fs.existsSync(soffice),
        "LibreOffice's start script is covered where the host has LibreOffice",
      );
      const [g] = await portal.add('web', [file('report.odt')], { persistent: false });
      fs.mkdirSync(path.join(views(), 'web', g!.id), { recursive: true });
      fs.writeFileSync(
        path.join(views(), 'web', g!.id, '.~lock.report.odt#'),
        ',me,kagome-web,now,x;',
      );
      fs.writeFileSync(
        path.join(root, 'host', '.xdp-.~lock.report.odt#-Ab12Cd'),
        ',me,kagome-web,now,x;',
      );
      const copy = path.join(root, 'host', '.~lock.report.odt#');
      // The test's own writeFileSync empties the file before it writes it, and the copy may be
      // made at that moment (seen under load): it is copied again when the lock changes.
      const copied = () => (fs.existsSync(copy) ? fs.readFileSync(copy, 'utf8') : undefined);
      await waitFor('the lock file copied to the host folder', () => copied() !== undefined, {
        timeoutMs: 5000,
        pollMs: 10,
      });
      await waitFor('its content', () => copied() === ',me,kagome-web,now,x;', {
        timeoutMs: 5000,
        pollMs: 10,
      }).catch(() => undefined);
      assert.equal(copied(), ',me,kagome-web,now,x;');
      await portal.cageStopped('web');
      assert.deepEqual(
        clearBeside.getCalls().map((c) => [c.args[0], c.args[1].id]),
        [['web', g!.id]],
      );
      assert.equal(fs.existsSync(copy), false, 'the copy went with the cage');
    });
  });

  it('close waits for writes and closes the store', async () => {
    const pending = grants.add('web', [file('a')], { persistent: false });
    await pending;
    await grants.close();
    assert.equal(store.close.callCount, 1);
    assert.equal(record(false, 'web').grants.length, 1);
  });
});
