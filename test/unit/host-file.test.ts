import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { openHostPath, adoptPassedFd, closeHostFiles } from '../../lib/grants/host-file.js';
import { execArgv } from '../../lib/backends/argv-bytes.js';
import { argValue, expandExec, fileUriToPathBytes, parseExec, pathBytesToFileUri, pathToFileUri } from '../../xdg/exec.js';

// Choosing a host file to grant: what is checked is what is held (an O_PATH descriptor), bad
// files are named errors, and no descriptor is ever left open. Then file names as bytes: URIs
// that carry any name, and argv that delivers any name to a program.

const O_PATH = 0o10000000;
const O_NOFOLLOW = 0o400000;
const O_CLOEXEC = 0o2000000;

function flagsOf(fd: number): number {
  return Number.parseInt(/^flags:\s*([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8);
}

const openCount = () => fs.readdirSync('/proc/self/fd').length;

describe('openHostPath and adoptPassedFd', () => {
  let dir: string;
  let before: number;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-hostfile-'));
    before = openCount();
  });
  afterEach(() => {
    assert.equal(openCount(), before, 'no descriptor left open');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const make = (name: string | Buffer, text = 'x\n'): Buffer => {
    const p = Buffer.concat([Buffer.from(dir + '/'), Buffer.from(name)]);
    fs.writeFileSync(p, text);
    return p;
  };
  const failsWith = (fn: () => unknown, name: string, text: RegExp) =>
    assert.throws(fn, (e: { errorName?: string; message: string }) => e.errorName === name && text.test(e.message));

  it('holds a regular file by an O_PATH, close-on-exec, following descriptor, under its path as bytes', () => {
    const p = make(Buffer.concat([Buffer.from('new\nline '), Buffer.from([0xff]), Buffer.from('.txt')]));
    const f = openHostPath(p, { followSymlinks: false, writable: 'auto' });
    try {
      const flags = flagsOf(f.fd);
      assert.equal(flags & O_PATH, O_PATH);
      assert.equal(flags & O_NOFOLLOW, 0, 'the document portal refuses O_NOFOLLOW descriptors');
      assert.equal(flags & O_CLOEXEC, O_CLOEXEC);
      assert.deepEqual(f.path, p);
      assert.equal(f.ino, fs.statSync(p).ino);
      assert.equal(f.writable, true, "'auto' is writable where the user may write");
    } finally {
      closeHostFiles([f]);
    }
    const ro = openHostPath(p, { followSymlinks: false, writable: false });
    assert.equal(ro.writable, false);
    closeHostFiles([ro]);
  });

  it('refuses a final symlink unless asked, and then holds and names the target', () => {
    const target = make('target.txt');
    const link = Buffer.from(path.join(dir, 'link.txt'));
    fs.symlinkSync(target, link);
    failsWith(() => openHostPath(link, { followSymlinks: false, writable: false }), 'NotPermitted', /link\.txt" is a symbolic link to ".*target\.txt"/);
    const f = openHostPath(link, { followSymlinks: true, writable: false });
    assert.deepEqual(f.path, target);
    closeHostFiles([f]);
  });

  it('names folders, pipes, missing files, relative paths and NUL bytes', () => {
    fs.mkdirSync(path.join(dir, 'sub'));
    execFileSync('mkfifo', [path.join(dir, 'fifo')]);
    const o = { followSymlinks: false, writable: false } as const;
    failsWith(() => openHostPath(Buffer.from(path.join(dir, 'sub')), o), 'NotSupported', /sub" is a folder/);
    failsWith(() => openHostPath(Buffer.from(path.join(dir, 'fifo')), o), 'NotSupported', /fifo" is not a regular file \(a named pipe\)/);
    failsWith(() => openHostPath(Buffer.from(path.join(dir, 'none')), o), 'NoSuchFile', /none" does not exist/);
    failsWith(() => openHostPath(Buffer.from(path.join(dir, 'none', 'x')), o), 'NoSuchFile', /does not exist/);
    failsWith(() => openHostPath(Buffer.from('rel.txt'), o), 'InvalidArgument', /not an absolute path/);
    failsWith(() => openHostPath(Buffer.from(`${dir}/a\0b`), o), 'InvalidArgument', /NUL/);
  });

  it('takes a passed descriptor by its access mode, and always closes it', () => {
    const p = make('passed.txt');
    const closed = (fd: number) => assert.throws(() => fs.fstatSync(fd), { code: 'EBADF' });

    let fd = fs.openSync(p, 'r');
    failsWith(() => adoptPassedFd(fd, true), 'NotPermitted', /opened read-only, so it can only be granted read-only/);
    closed(fd);

    fd = fs.openSync(p, 'r');
    const auto = adoptPassedFd(fd, 'auto');
    closed(fd);
    assert.equal(auto.writable, false, 'a read-only descriptor proves only reading');
    assert.equal(flagsOf(auto.fd) & O_PATH, O_PATH);
    closeHostFiles([auto]);

    fd = fs.openSync(p, 'r+');
    const rw = adoptPassedFd(fd, true);
    closed(fd);
    assert.equal(rw.writable, true);
    closeHostFiles([rw]);

    fd = fs.openSync(p, O_PATH);
    const viaPath = adoptPassedFd(fd, 'auto');
    closed(fd);
    assert.equal(viaPath.writable, true);
    closeHostFiles([viaPath]);

    fd = fs.openSync(p, 'w');
    failsWith(() => adoptPassedFd(fd, false), 'NotPermitted', /writing only/);
    closed(fd);

    fd = fs.openSync(p, 'r');
    fs.unlinkSync(p);
    failsWith(() => adoptPassedFd(fd, false), 'NoSuchFile', /passed\.txt" was deleted/);
    closed(fd);
  });
});

describe('file names as bytes: URIs', () => {
  const names = [Buffer.from('/a b/c%d#e?f'), Buffer.from('/x/\n\t\\"\'$(y)'), Buffer.concat([Buffer.from('/l/'), Buffer.from([0xe9, 0xff, 0x80]), Buffer.from('.txt')])];

  it('round-trips any name, and encodes text exactly as pathToFileUri', () => {
    for (const n of names) assert.deepEqual(fileUriToPathBytes(pathBytesToFileUri(n)), n);
    for (let i = 0; i < 500; i++) {
      const bytes = Buffer.from([0x2f, ...Array.from({ length: 1 + (i % 40) }, () => 1 + Math.floor(Math.random() * 255))]);
      assert.deepEqual(fileUriToPathBytes(pathBytesToFileUri(bytes)), bytes);
    }
    for (const t of ['/home/u/ä ö/日本語 🦀.txt', "/t/!'()*~-_.", '/p/%41']) assert.equal(pathBytesToFileUri(Buffer.from(t)), pathToFileUri(t));
  });

  it('refuses what names no local file', () => {
    for (const u of ['http://x/y', 'file://host/x', 'file:///x?q', 'file:///x#f', 'file:///a%2Fb', 'file:///a%00', 'file:///a%zz', 'file:relative']) {
      assert.equal(fileUriToPathBytes(u), undefined, u);
    }
    assert.deepEqual(fileUriToPathBytes('file://localhost/a'), Buffer.from('/a'));
  });

  it('expands %f, %F and --file=%f with the bytes of a name that is not UTF-8', () => {
    const bad = pathBytesToFileUri(names[2]!);
    assert.deepEqual(expandExec(parseExec('view %F'), { uris: [bad, 'file:///ok'] }), [['view', names[2], '/ok']]);
    assert.deepEqual(expandExec(parseExec('view --file=%f'), { uris: [bad] }), [['view', Buffer.concat([Buffer.from('--file='), names[2]!])]]);
    assert.deepEqual(expandExec(parseExec('view %u'), { uris: [bad] }), [['view', bad]], 'URIs stay URIs');
    assert.equal(argValue(Buffer.from('é')), 'é');
  });
});

describe('file names as bytes: argv', () => {
  it('leaves text argv alone, and delivers any bytes through sh without running them', () => {
    assert.deepEqual(execArgv(['a', 'b c']), ['a', 'b c']);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-argv-'));
    try {
      const every = Buffer.from(Array.from({ length: 255 }, (_, i) => i + 1));
      const args = [
        every,
        Buffer.from('trailing\n\n'),
        Buffer.from('\\c stops %b printf'),
        Buffer.from(`$(touch ${dir}/pwned)\`touch ${dir}/pwned2\``),
        Buffer.from(''),
        Buffer.from('-n'),
        Buffer.concat([Buffer.from([0xff]), Buffer.from("'\"")]),
      ];
      const argv = execArgv(['/usr/bin/python3', '-c', 'import os, sys; sys.stdout.buffer.write(b"\\0".join(os.fsencode(a) for a in sys.argv[1:]))', ...args]);
      assert.equal(argv[0], '/bin/sh', 'bytes need the detour');
      const r = spawnSync(argv[0]!, argv.slice(1));
      assert.equal(r.status, 0, String(r.stderr));
      assert.deepEqual(r.stdout, Buffer.concat(args.flatMap((a, i) => (i ? [Buffer.from([0]), a] : [a]))));
      assert.equal(fs.existsSync(`${dir}/pwned`) || fs.existsSync(`${dir}/pwned2`), false, 'nothing was executed');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
