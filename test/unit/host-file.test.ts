import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  openHostPath,
  adoptPassedFd,
  pathOfFd,
  closeHostFiles,
  type HostFile,
  type WriteWish,
} from '../../lib/grants/host-file.js';

// Choosing a host file to grant (lib/grants/host-file.ts): what is checked is what is held
// (an O_PATH descriptor), every refusal is a named KagomeError with a message that says why,
// a descriptor passed in is always closed, and no descriptor is ever left open.

const O_PATH = 0o10000000;
const O_NOFOLLOW = 0o400000;
const O_CLOEXEC = 0o2000000;
const ACCMODE = 0o3;

/** open(2) flags of one of our descriptors, as the kernel reports them. */
function flagsOf(fd: number): number {
  const m = /^flags:\s*([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  assert.ok(m, `fdinfo of ${fd} has flags`);
  return Number.parseInt(m[1]!, 8);
}

const openCount = (): number => fs.readdirSync('/proc/self/fd').length;

/** The descriptor is no longer open. */
function assertClosed(fd: number): void {
  assert.throws(() => fs.fstatSync(fd), { code: 'EBADF' }, `descriptor ${fd} was closed`);
}

/** Throws a KagomeError of this name whose message matches. */
function failsWith(fn: () => unknown, name: string, message: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    const err = e as { errorName?: string; message?: string };
    assert.equal(err.errorName, name, `error name (message: ${err.message})`);
    assert.match(String(err.message), message);
    return true;
  });
}

/** A file's path as bytes: a real temp folder plus a name that need not be UTF-8. */
const under = (dir: string, name: string | Buffer): Buffer =>
  Buffer.concat([Buffer.from(dir + '/'), Buffer.from(name)]);

/** What JSON.stringify makes of a name in messages (shown() in host-file.ts). */
const quoted = (p: Buffer | string): string =>
  JSON.stringify(Buffer.isBuffer(p) ? p.toString('utf8') : p);
const re = (s: string): RegExp => new RegExp(s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));

let dir: string;
let before: number;

function setUp(): void {
  // realpath: the kernel reports /proc/self/fd links resolved, so compare against that.
  dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-hostfile-')));
  before = openCount();
}
function tearDown(): void {
  const after = openCount();
  fs.rmSync(dir, { recursive: true, force: true });
  assert.equal(after, before, 'no descriptor left open');
}

function make(name: string | Buffer, text = 'content\n'): Buffer {
  const p = under(dir, name);
  fs.writeFileSync(p, text);
  return p;
}

describe('openHostPath on a regular file', () => {
  // The held descriptor is what the document portal takes: O_PATH, following (no
  // O_NOFOLLOW), close-on-exec; the path is kept as the bytes the kernel has for it.
  beforeEach(setUp);
  afterEach(tearDown);

  for (const followSymlinks of [false, true]) {
    it(`holds an O_PATH, close-on-exec descriptor without O_NOFOLLOW (followSymlinks: ${followSymlinks})`, () => {
      const p = make('plain.txt');
      const f = openHostPath(p, { followSymlinks, writable: false });
      try {
        const flags = flagsOf(f.fd);
        assert.equal(flags & O_PATH, O_PATH, `O_PATH in ${flags.toString(8)}`);
        assert.equal(flags & O_NOFOLLOW, 0, 'the document portal refuses O_NOFOLLOW descriptors');
        assert.equal(flags & O_CLOEXEC, O_CLOEXEC, 'close-on-exec: no cage process inherits it');
        assert.ok(Buffer.isBuffer(f.path));
        assert.deepEqual(f.path, p);
        const st = fs.statSync(p);
        assert.equal(f.ino, st.ino);
        assert.equal(f.dev, st.dev);
        assert.deepEqual(pathOfFd(f.fd), p, 'the descriptor is on that very file');
        assert.equal(f.writable, false, 'writable: false is never writable');
      } finally {
        closeHostFiles([f]);
      }
      assertClosed(f.fd);
    });
  }

  it("'auto' and true are writable for a file the user may write", () => {
    const p = make('rw.txt');
    for (const writable of ['auto', true] as WriteWish[]) {
      const f = openHostPath(p, { followSymlinks: false, writable });
      closeHostFiles([f]);
      assert.equal(f.writable, true, `writable: ${writable}`);
    }
  });

  it('keeps a name with a newline and bytes that are not UTF-8 exactly', () => {
    const names = [
      Buffer.from('new\nline.txt'),
      Buffer.concat([Buffer.from('bad '), Buffer.from([0xff, 0xfe, 0x80]), Buffer.from('.txt')]),
      Buffer.from([0xc3, 0x28]), // a broken two-byte sequence
      // every byte a name may hold: 0x01-0xff but '/'
      Buffer.from(Array.from({ length: 255 }, (_, i) => i + 1).filter((b) => b !== 0x2f)),
    ];
    for (const name of names) {
      const p = make(name);
      const f = openHostPath(p, { followSymlinks: false, writable: 'auto' });
      closeHostFiles([f]);
      assert.ok(Buffer.isBuffer(f.path));
      assert.deepEqual(f.path, p, `name ${name.toString('hex')}`);
      assert.equal(f.ino, fs.statSync(p).ino);
    }
  });

  it('records the kernel path when a folder on the way is a symbolic link', () => {
    fs.mkdirSync(path.join(dir, 'real'));
    const target = make('real/f.txt');
    fs.symlinkSync(path.join(dir, 'real'), path.join(dir, 'via'));
    const f = openHostPath(under(dir, 'via/f.txt'), { followSymlinks: false, writable: false });
    closeHostFiles([f]);
    assert.deepEqual(
      f.path,
      target,
      'only a final link is refused; the recorded path is the real one',
    );
  });
});

describe('openHostPath on a symbolic link', () => {
  // A final link is refused unless followSymlinks, with a message naming the link and its
  // target; followed, the grant is recorded under the target's path.
  beforeEach(setUp);
  afterEach(tearDown);

  it('refuses a link to a file without followSymlinks, naming link and target', () => {
    const target = make('target.txt');
    const link = under(dir, 'link.txt');
    fs.symlinkSync(target, link);
    for (const writable of [false, true, 'auto'] as WriteWish[]) {
      failsWith(
        () => openHostPath(link, { followSymlinks: false, writable }),
        'NotPermitted',
        re(`${quoted(link)} is a symbolic link to ${quoted(target)}`),
      );
    }
    assert.equal(fs.readFileSync(target, 'utf8'), 'content\n');
  });

  it('refuses a dangling link without followSymlinks; followed, it is a missing file', () => {
    const link = under(dir, 'dangling');
    fs.symlinkSync(path.join(dir, 'nowhere'), link);
    failsWith(
      () => openHostPath(link, { followSymlinks: false, writable: false }),
      'NotPermitted',
      re(`${quoted(link)} is a symbolic link to ${quoted(path.join(dir, 'nowhere'))}`),
    );
    failsWith(
      () => openHostPath(link, { followSymlinks: true, writable: false }),
      'NoSuchFile',
      /does not exist/,
    );
  });

  it('with followSymlinks holds the target, recorded under its own path', () => {
    const target = make(Buffer.concat([Buffer.from('t\n'), Buffer.from([0xff])]));
    const link = under(dir, 'link');
    fs.symlinkSync(target, link);
    const f = openHostPath(link, { followSymlinks: true, writable: 'auto' });
    try {
      assert.deepEqual(f.path, target);
      assert.equal(f.ino, fs.statSync(target).ino);
      assert.notEqual(f.ino, fs.lstatSync(link).ino);
      assert.equal(f.writable, true);
      assert.equal(flagsOf(f.fd) & O_NOFOLLOW, 0);
    } finally {
      closeHostFiles([f]);
    }
  });

  it('a followed link to a folder is still a folder', () => {
    fs.mkdirSync(path.join(dir, 'sub'));
    fs.symlinkSync(path.join(dir, 'sub'), path.join(dir, 'to-sub'));
    failsWith(
      () => openHostPath(under(dir, 'to-sub'), { followSymlinks: true, writable: false }),
      'NotSupported',
      /is a folder/,
    );
  });
});

describe('openHostPath refusals', () => {
  // Everything that is not an existing regular file named by an absolute path is refused
  // with the right error name and a message naming the path; nothing stays open.
  beforeEach(setUp);
  afterEach(tearDown);
  const o = { followSymlinks: false, writable: false } as const;

  it('a folder is NotSupported', () => {
    fs.mkdirSync(path.join(dir, 'sub'));
    failsWith(
      () => openHostPath(under(dir, 'sub'), o),
      'NotSupported',
      re(`${quoted(under(dir, 'sub'))} is a folder; kagome grants single files`),
    );
    failsWith(
      () => openHostPath(under(dir, 'sub'), { followSymlinks: true, writable: 'auto' }),
      'NotSupported',
      /is a folder/,
    );
  });

  it('a named pipe is NotSupported, and opening it does not block', () => {
    const fifo = path.join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    failsWith(
      () => openHostPath(Buffer.from(fifo), o),
      'NotSupported',
      re(`${quoted(fifo)} is not a regular file (a named pipe)`),
    );
    failsWith(
      () => openHostPath(Buffer.from(fifo), { followSymlinks: true, writable: 'auto' }),
      'NotSupported',
      /a named pipe/,
    );
  });

  it('a device is NotSupported', () => {
    failsWith(
      () => openHostPath(Buffer.from('/dev/null'), o),
      'NotSupported',
      /"\/dev\/null" is not a regular file \(a device\)/,
    );
  });

  it('a missing file is NoSuchFile', () => {
    const p = under(dir, 'none');
    failsWith(() => openHostPath(p, o), 'NoSuchFile', re(`${quoted(p)} does not exist`));
    failsWith(() => openHostPath(under(dir, 'none/x'), o), 'NoSuchFile', /does not exist/);
  });

  it('a path through a file is NoSuchFile', () => {
    make('file');
    failsWith(
      () => openHostPath(under(dir, 'file/x'), o),
      'NoSuchFile',
      /does not exist \(a part of the path is not a folder\)/,
    );
  });

  it('a relative or empty path is InvalidArgument', () => {
    failsWith(
      () => openHostPath(Buffer.from('rel.txt'), o),
      'InvalidArgument',
      /"rel\.txt" is not an absolute path; give the full path/,
    );
    failsWith(() => openHostPath(Buffer.from('./x'), o), 'InvalidArgument', /not an absolute path/);
    failsWith(() => openHostPath(Buffer.alloc(0), o), 'InvalidArgument', /not an absolute path/);
  });

  it('a NUL byte is InvalidArgument, not a truncated path', () => {
    const real = make('a');
    failsWith(
      () => openHostPath(Buffer.concat([real, Buffer.from([0]), Buffer.from('b')]), o),
      'InvalidArgument',
      /a path contains a NUL byte/,
    );
  });

  it('a name that is too long is InvalidArgument', () => {
    failsWith(() => openHostPath(under(dir, 'n'.repeat(300)), o), 'InvalidArgument', /is too long/);
  });
});

// Permission bits do not stop root, so these run in a child process as nobody when the tests
// run as root (and as ourselves otherwise). The child prints what openHostPath gave.
const hostFileModule = fileURLToPath(new URL('../../lib/grants/host-file.js', import.meta.url));

function openAsUser(
  p: string,
  writable: WriteWish,
): { ok?: { writable: boolean; path: string }; errorName?: string; message?: string } {
  const script = `
    import { openHostPath, closeHostFiles } from ${JSON.stringify(hostFileModule)};
    try {
      const f = openHostPath(Buffer.from(${JSON.stringify(p)}), { followSymlinks: false, writable: ${JSON.stringify(writable)} });
      closeHostFiles([f]);
      console.log(JSON.stringify({ ok: { writable: f.writable, path: f.path.toString() } }));
    } catch (e) {
      console.log(JSON.stringify({ errorName: e.errorName, message: e.message }));
    }`;
  const asRoot = process.getuid?.() === 0;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    ...(asRoot ? { uid: 65534, gid: 65534 } : {}),
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

describe('openHostPath and permissions', () => {
  // O_PATH checks no permission, so the module probes: a file the user cannot write is
  // refused for writable: true and granted read-only for 'auto'; an unreadable one is refused.
  beforeEach(() => {
    setUp();
    fs.chmodSync(dir, 0o755);
  });
  afterEach(tearDown);

  it('writable: true on a file the user may not write is NotPermitted; auto grants it read-only', () => {
    const p = path.join(dir, 'read-only.txt');
    fs.writeFileSync(p, 'x');
    fs.chmodSync(p, 0o444);
    const strict = openAsUser(p, true);
    assert.equal(strict.errorName, 'NotPermitted', JSON.stringify(strict));
    assert.match(strict.message!, re(`you can read ${quoted(p)} but not write it`));
    assert.match(strict.message!, /grant it read-only/);
    assert.deepEqual(openAsUser(p, 'auto'), { ok: { writable: false, path: p } });
    assert.deepEqual(openAsUser(p, false), { ok: { writable: false, path: p } });
  });

  it('a file the user may not read is NotPermitted', () => {
    const p = path.join(dir, 'secret.txt');
    fs.writeFileSync(p, 'x');
    fs.chmodSync(p, 0o200);
    for (const writable of [false, 'auto', true] as WriteWish[]) {
      const r = openAsUser(p, writable);
      assert.equal(r.errorName, 'NotPermitted', JSON.stringify(r));
      assert.match(r.message!, re(`you may not read ${quoted(p)} (permission denied)`));
    }
  });
});

describe('adoptPassedFd', () => {
  // A descriptor passed by a caller is judged by its access mode, the result holds a new O_PATH
  // descriptor, and the one passed is closed on success and on every error path.
  beforeEach(setUp);
  afterEach(tearDown);

  /** Adopts fd, then checks that fd was closed whatever happened. */
  function adopt(fd: number, writable: WriteWish): HostFile {
    try {
      return adoptPassedFd(fd, writable);
    } finally {
      assertClosed(fd);
    }
  }
  function adoptFails(fd: number, writable: WriteWish, name: string, message: RegExp): void {
    failsWith(() => adoptPassedFd(fd, writable), name, message);
    assertClosed(fd);
  }

  it("a descriptor opened 'r' with writable: true is NotPermitted", () => {
    const p = make('r.txt');
    adoptFails(
      fs.openSync(p, 'r'),
      true,
      'NotPermitted',
      re(`${quoted(p)} was passed opened read-only, so it can only be granted read-only`),
    );
  });

  it("a descriptor opened 'r' is granted read-only for 'auto' and false", () => {
    const p = make(Buffer.concat([Buffer.from('r\n'), Buffer.from([0xff])]));
    for (const writable of ['auto', false] as WriteWish[]) {
      const fd = fs.openSync(p, 'r');
      const f = adopt(fd, writable);
      try {
        assert.equal(f.writable, false, 'a read-only descriptor proves only reading');
        assert.deepEqual(f.path, p);
        assert.equal(f.ino, fs.statSync(p).ino);
        const flags = flagsOf(f.fd);
        assert.equal(flags & O_PATH, O_PATH);
        assert.equal(flags & O_NOFOLLOW, 0);
        assert.equal(flags & O_CLOEXEC, O_CLOEXEC);
      } finally {
        closeHostFiles([f]);
      }
    }
  });

  it("a descriptor opened 'r+' is writable for true and 'auto'", () => {
    const p = make('rw.txt');
    for (const writable of [true, 'auto'] as WriteWish[]) {
      const f = adopt(fs.openSync(p, 'r+'), writable);
      closeHostFiles([f]);
      assert.equal(f.writable, true);
    }
    const ro = adopt(fs.openSync(p, 'r+'), false);
    closeHostFiles([ro]);
    assert.equal(ro.writable, false);
  });

  it('an O_PATH descriptor is judged by the file itself', () => {
    const p = make('path.txt');
    const fd = fs.openSync(p, O_PATH);
    assert.equal(flagsOf(fd) & ACCMODE, 0);
    const f = adopt(fd, 'auto');
    closeHostFiles([f]);
    assert.equal(f.writable, true, 'the user may write it');
    assert.deepEqual(f.path, p);
  });

  it('a descriptor opened for writing only is NotPermitted, whatever was asked', () => {
    const p = make('w.txt');
    for (const writable of [true, 'auto', false] as WriteWish[]) {
      adoptFails(
        fs.openSync(p, 'a'),
        writable,
        'NotPermitted',
        /was opened for writing only; open it for reading \(or O_PATH\)/,
      );
    }
    adoptFails(fs.openSync(p, fs.constants.O_WRONLY), false, 'NotPermitted', /writing only/);
  });

  it('a descriptor of a file deleted after it was opened is NoSuchFile "was deleted"', () => {
    const p = make('gone.txt');
    for (const [flags, writable] of [
      ['r', false],
      ['r', 'auto'],
      ['r+', true],
      [O_PATH, 'auto'],
    ] as [string | number, WriteWish][]) {
      fs.writeFileSync(p, 'x');
      const fd = fs.openSync(p, flags);
      fs.unlinkSync(p);
      adoptFails(
        fd,
        writable,
        'NoSuchFile',
        re(`${quoted(p)} was deleted before it could be granted`),
      );
    }
  });

  it('a descriptor of a folder, a device or a symbolic link is refused', () => {
    fs.mkdirSync(path.join(dir, 'sub'));
    adoptFails(fs.openSync(path.join(dir, 'sub'), 'r'), false, 'NotSupported', /is a folder/);
    adoptFails(
      fs.openSync('/dev/null', 'r'),
      false,
      'NotSupported',
      /"\/dev\/null" is not a regular file \(a device\)/,
    );
    const target = make('t.txt');
    const link = path.join(dir, 'link');
    fs.symlinkSync(target, link);
    adoptFails(
      fs.openSync(link, O_PATH | O_NOFOLLOW),
      'auto',
      'NotPermitted',
      re(`${quoted(link)} is a symbolic link to ${quoted(target)}`),
    );
  });

  it('a descriptor that is not open is InvalidArgument', () => {
    const fd = fs.openSync(make('x'), 'r');
    fs.closeSync(fd);
    failsWith(
      () => adoptPassedFd(fd, false),
      'InvalidArgument',
      re(`file descriptor ${fd} is not open`),
    );
  });
});

describe('pathOfFd and closeHostFiles', () => {
  // The path of a descriptor comes as bytes; a deleted file is NoSuchFile; closing is
  // complete and tolerates descriptors already closed.
  beforeEach(setUp);
  afterEach(tearDown);

  it('gives the path as bytes, and refuses a deleted file', () => {
    const p = make(Buffer.from([0x61, 0xff, 0x0a]));
    const fd = fs.openSync(p, 'r');
    try {
      assert.deepEqual(pathOfFd(fd), p);
      fs.unlinkSync(p);
      failsWith(() => pathOfFd(fd), 'NoSuchFile', /was deleted before it could be granted/);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('a file that is really named "… (deleted)" is not taken for a deleted one', () => {
    const p = make('x (deleted)');
    const fd = fs.openSync(p, 'r');
    try {
      assert.deepEqual(pathOfFd(fd), p);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('closeHostFiles closes every descriptor, also after one was closed already', () => {
    const files = ['a', 'b', 'c'].map((n) =>
      openHostPath(make(n), { followSymlinks: false, writable: false }),
    );
    fs.closeSync(files[1]!.fd);
    closeHostFiles(files);
    for (const f of files) assertClosed(f.fd);
    closeHostFiles(files); // twice is harmless
  });
});
