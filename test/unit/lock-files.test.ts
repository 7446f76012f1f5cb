import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import sinon from 'sinon';
import {
  LockMirror,
  concernsLock,
  lockFileName,
  MAX_LOCK_FILE,
} from '../../lib/grants/lock-files.js';
import { libreOfficeOps, withoutFcntlLocks } from '../../lib/grants/libreoffice.js';
import type { Logger } from '../../lib/log.js';
import { waitFor } from '../helpers/wait.js';

// LibreOffice's lock files carried between the host folder of a granted document and the
// folders in which cages see it (lib/grants/lock-files.ts), on real folders: here a cage's
// folder is a plain one standing for the portal's by-app/APP/ID (the integration test
// programs.test.ts has the real portal and real LibreOffices). Also the start script that
// LibreOffice gets in a cage (lib/grants/libreoffice.ts).

/** How these tests wait for the mirror's passes. */
const WAIT = { timeoutMs: 5000, pollMs: 10 };

const read = (f: string): string | undefined => {
  try {
    return fs.readFileSync(f, 'utf8');
  } catch {
    return undefined;
  }
};

describe('LockMirror', () => {
  let root: string;
  let host: string;
  let doc: string;
  let record: string;
  let log: { [K in keyof Logger]: sinon.SinonStub };
  let mirror: LockMirror;
  const view = (cage: string) => path.join(root, 'views', cage, 'doc1');
  const lockIn = (folder: string) => path.join(folder, '.~lock.report.odt#');
  const make = () =>
    new LockMirror(
      (cage, id) => path.join(root, 'views', cage, id),
      record,
      log as unknown as Logger,
    );
  /** A program in cage c takes the lock, as the portal shows it: in the cage's folder, and as the portal's own file in the host folder. */
  const cageLocks = (c: string, content: string) => {
    fs.writeFileSync(lockIn(view(c)), content);
    fs.writeFileSync(path.join(host, `.xdp-.~lock.report.odt#-${c}b12Cd`), content);
  };
  const cageUnlocks = (c: string) => {
    fs.rmSync(lockIn(view(c)));
    fs.rmSync(path.join(host, `.xdp-.~lock.report.odt#-${c}b12Cd`));
  };

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-locks-'));
    host = path.join(root, 'host docs');
    fs.mkdirSync(host);
    doc = path.join(host, 'report.odt');
    fs.writeFileSync(doc, 'document');
    for (const c of ['a', 'b']) fs.mkdirSync(view(c), { recursive: true });
    record = path.join(root, 'run', 'lock-files.json');
    log = { debug: sinon.stub(), info: sinon.stub(), warn: sinon.stub(), error: sinon.stub() };
    mirror = make();
  });

  afterEach(async () => {
    await mirror.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it("names the lock file as LibreOffice does, and knows the portal's file for a cage's", () => {
    assert.equal(lockFileName(Buffer.from('a b.odt')).toString(), '.~lock.a b.odt#');
    const lock = lockFileName(Buffer.from('report.odt'));
    assert.ok(concernsLock(Buffer.from('.~lock.report.odt#'), lock));
    assert.ok(concernsLock(Buffer.from('.xdp-.~lock.report.odt#-Ab12Cd'), lock));
    assert.ok(!concernsLock(Buffer.from('.xdp-.~lock.report.odt#-'), lock));
    assert.ok(!concernsLock(Buffer.from('.~lock.report.odt'), lock));
    assert.ok(!concernsLock(Buffer.from('.xdp-lu1234.tmp-Ab12Cd'), lock));
  });

  it("carries a cage's lock to the host and the other cage, and takes the copies away with it", async () => {
    mirror.add('a', 'doc1', Buffer.from(doc));
    mirror.add('b', 'doc1', Buffer.from(doc));
    const held = ',me,kagome-a,27.11.2026 10:00,file:///home/me/.config/libreoffice/4;';
    cageLocks('a', held);
    await waitFor(
      'the copies',
      () => read(lockIn(host)) === held && read(lockIn(view('b'))) === held,
      WAIT,
    );
    assert.equal(read(lockIn(view('a'))), held, "the cage's own lock is left as it is");
    await waitFor('the record of the copies', () => fs.existsSync(record), WAIT);
    const kept = JSON.parse(fs.readFileSync(record, 'utf8')) as { mirrors: { path: string }[] };
    assert.deepEqual(
      kept.mirrors.map((m) => Buffer.from(m.path, 'base64').toString()).sort(),
      [lockIn(host), lockIn(view('b'))].sort(),
    );

    cageUnlocks('a');
    await waitFor(
      'the copies to go',
      () => read(lockIn(host)) === undefined && read(lockIn(view('b'))) === undefined,
      WAIT,
    );
    assert.equal(log.warn.callCount, 0);
  });

  it("carries a host program's lock into the cages and never removes it", async () => {
    const held = ',me,laptop,27.11.2026 10:00,file:///home/me/.config/libreoffice/4;';
    fs.writeFileSync(lockIn(host), held);
    mirror.add('a', 'doc1', Buffer.from(doc));
    await waitFor('the copy in the cage', () => read(lockIn(view('a'))) === held, WAIT);
    await mirror.remove('a', 'doc1');
    assert.equal(read(lockIn(view('a'))), undefined, "the cage's copy goes with its grant");
    assert.equal(read(lockIn(host)), held, "the host program's lock stays");
  });

  it("removes a stopped cage's own lock (its program was killed) and what was copied from it", async () => {
    mirror.add('a', 'doc1', Buffer.from(doc));
    mirror.add('b', 'doc1', Buffer.from(doc));
    cageLocks('a', ',me,kagome-a,now,x;');
    await waitFor('the copy on the host', () => read(lockIn(host)) !== undefined, WAIT);
    await mirror.cageStopped('a');
    assert.equal(read(lockIn(view('a'))), undefined);
    assert.equal(read(lockIn(host)), undefined);
    assert.equal(read(lockIn(view('b'))), undefined);
  });

  it("a restarted service knows its copies from a program's lock", async () => {
    mirror.add('a', 'doc1', Buffer.from(doc));
    cageLocks('a', ',me,kagome-a,now,x;');
    await waitFor('the copy on the host', () => read(lockIn(host)) !== undefined, WAIT);
    await mirror.close();
    // The cage's program ends while no service runs.
    cageUnlocks('a');
    mirror = make();
    mirror.add('a', 'doc1', Buffer.from(doc));
    await waitFor('the stale copy to go', () => read(lockIn(host)) === undefined, WAIT);
  });

  it('leaves alone what is not a small regular file, and does not follow a link on the host', async () => {
    const elsewhere = path.join(root, 'elsewhere');
    fs.writeFileSync(elsewhere, 'keep');
    fs.symlinkSync(elsewhere, lockIn(host));
    fs.writeFileSync(lockIn(view('a')), 'x'.repeat(MAX_LOCK_FILE + 1));
    execFileSync('mkfifo', [lockIn(view('b'))]);
    mirror.add('a', 'doc1', Buffer.from(doc));
    mirror.add('b', 'doc1', Buffer.from(doc));
    // add() starts the passes at once, and nothing was changed since: close() waits for them.
    await mirror.close();
    assert.equal(read(elsewhere), 'keep');
    assert.equal(fs.lstatSync(lockIn(host)).isSymbolicLink(), true);
    assert.ok(!fs.existsSync(record), 'nothing was copied');
  });
});

describe("LibreOffice's start script in a cage", () => {
  const DEBIAN = [
    '#!/bin/sh',
    '# file locking now enabled by default',
    'SAL_ENABLE_FILE_LOCKING=1',
    'export SAL_ENABLE_FILE_LOCKING',
    '',
    'exec "$sd_prog/oosplash" "$@"',
    '',
  ].join('\n');

  it('leaves SAL_ENABLE_FILE_LOCKING unset and the rest as it was', () => {
    const out = withoutFcntlLocks(DEBIAN)!;
    assert.doesNotMatch(out, /^\s*(export\s+)?SAL_ENABLE_FILE_LOCKING/m);
    assert.match(out, /^unset SAL_ENABLE_FILE_LOCKING$/m);
    assert.match(out, /^exec "\$sd_prog\/oosplash" "\$@"$/m);
    assert.equal(
      withoutFcntlLocks('#!/bin/sh\nexec oosplash "$@"\n'),
      undefined,
      'a script that sets nothing is not replaced',
    );
  });

  it('covers the script with its copy, written once', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-lo-'));
    try {
      const script = path.join(root, 'soffice');
      fs.writeFileSync(script, DEBIAN);
      const first = libreOfficeOps(path.join(root, 'programs'), script);
      assert.deepEqual(first.ops, [
        { op: 'ro-bind', source: path.join(root, 'programs', 'libreoffice-soffice'), dest: script },
      ]);
      const copy = first.ops[0]!.source;
      assert.equal(fs.statSync(copy).mode & 0o100, 0o100, 'it can be run');
      const ino = fs.statSync(copy).ino;
      libreOfficeOps(path.join(root, 'programs'), script);
      assert.equal(fs.statSync(copy).ino, ino, 'the same copy: running cages keep theirs');
      assert.deepEqual(
        libreOfficeOps(path.join(root, 'programs'), path.join(root, 'missing')).ops,
        [],
        'no LibreOffice, nothing to cover',
      );
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
