import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { contentTypeOf, contentTypesOf } from '../../xdg/content-type.js';
import { KagomeError } from '../../lib/errors.js';

// contentTypeOf against real files and the real gio: by name first, then by content, for any
// name a file can have, and several files in one gio process.

const PNG = Buffer.from(
  '89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489',
  'hex',
);

describe('contentTypeOf (real gio)', () => {
  let dir: string;
  const file = (name: string | Buffer, content: string | Buffer): Buffer => {
    const p = Buffer.concat([Buffer.from(dir + '/'), Buffer.from(name)]);
    fs.writeFileSync(p, content);
    return p;
  };

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-type-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('types by name', async () => {
    assert.equal(await contentTypeOf(file('notes.txt', 'hello\n')), 'text/plain');
    assert.equal(
      await contentTypeOf(path.join(dir, 'notes.txt')),
      'text/plain',
      'a string path too',
    );
  });

  it('types by content when the name says nothing', async () => {
    assert.equal(await contentTypeOf(file('picture-without-extension', PNG)), 'image/png');
  });

  it('types files whose names have a newline or bytes that are not UTF-8', async () => {
    assert.equal(await contentTypeOf(file('new\nline.txt', 'x\n')), 'text/plain');
    assert.equal(
      await contentTypeOf(file('new\nline picture', PNG)),
      'image/png',
      'content, so gio opened the right file',
    );
    assert.equal(
      await contentTypeOf(
        file(Buffer.from([0x62, 0x61, 0x64, 0xff, 0xfe, 0x2e, 0x74, 0x78, 0x74]), 'x\n'),
      ),
      'text/plain',
    );
    assert.equal(await contentTypeOf(file(Buffer.from([0xff, 0xff]), PNG)), 'image/png');
    assert.equal(
      await contentTypeOf(file('100% ?#&;=+.txt', 'x\n')),
      'text/plain',
      'URI syntax in the name',
    );
  });

  it('is not fooled by a path that prints like gio output', async () => {
    // Folder names can hold '/' and newlines between them: a forged attribute line, if gio prints it raw.
    const sub = path.join(
      dir,
      'x\nattributes:\n  standard::content-type: image',
      'png\nuri: file:///etc',
    );
    fs.mkdirSync(sub, { recursive: true });
    const p = path.join(sub, 'notes.txt');
    fs.writeFileSync(p, 'hello\n');
    assert.equal(await contentTypeOf(p), 'text/plain');
    const [a, b] = await contentTypesOf([p, file('forged-neighbour', PNG)]);
    assert.deepEqual([a, b], ['text/plain', 'image/png']);
  });

  it('resolves relative paths against the working directory', async () => {
    file('relative.txt', 'x\n');
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      assert.equal(await contentTypeOf('relative.txt'), 'text/plain');
      assert.equal(await contentTypeOf('./sub/../relative.txt'), 'text/plain');
    } finally {
      process.chdir(cwd);
    }
  });

  it('types several files in order, and names the file that cannot be typed', async () => {
    const txt = file('many.txt', 'x\n');
    const png = file('many', PNG);
    assert.deepEqual(await contentTypesOf([png, txt, png, file('nl\nmany', PNG)]), [
      'image/png',
      'text/plain',
      'image/png',
      'image/png',
    ]);
    const missing = path.join(dir, 'missing.txt');
    await assert.rejects(
      contentTypesOf([txt, missing]),
      (e: unknown) =>
        e instanceof KagomeError &&
        e.errorName === 'NoSuchFile' &&
        e.message.includes('missing.txt'),
    );
    // Through contentTypeOf, one bad file fails only its own promise.
    const settled = await Promise.allSettled([
      contentTypeOf(txt),
      contentTypeOf(missing),
      contentTypeOf(png),
    ]);
    assert.deepEqual(
      settled.map((s) => s.status),
      ['fulfilled', 'rejected', 'fulfilled'],
    );
    assert.equal((settled[2] as PromiseFulfilledResult<string>).value, 'image/png');
    assert.match(String((settled[1] as PromiseRejectedResult).reason), /missing\.txt/);
  });

  it('types a folder', async () => {
    assert.equal(await contentTypeOf(dir), 'inode/directory');
  });

  describe('gio processes', () => {
    let bin: string;
    let log: string;
    let savedPath: string | undefined;
    before(() => {
      // A gio on PATH that records each run, then runs the real one.
      bin = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-gio-'));
      log = path.join(bin, 'runs');
      fs.writeFileSync(
        path.join(bin, 'gio'),
        `#!/bin/sh\necho run >> '${log}'\nexec /usr/bin/gio "$@"\n`,
        { mode: 0o755 },
      );
      savedPath = process.env.PATH;
    });
    after(() => {
      process.env.PATH = savedPath;
      fs.rmSync(bin, { recursive: true, force: true });
    });
    const runs = () =>
      fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).length : 0;

    it('uses one gio for the files asked for in the same tick', async () => {
      process.env.PATH = `${bin}:${savedPath}`;
      const files = Array.from({ length: 10 }, (_, i) => file(`batch${i}.txt`, 'x\n'));
      const types = await Promise.all(files.map((f) => contentTypeOf(f)));
      assert.deepEqual(types, Array(10).fill('text/plain'));
      assert.equal(runs(), 1);
    });

    it('fails with MissingProgram, naming the Debian package, when gio is not installed', async () => {
      process.env.PATH = bin + '/nothing-here';
      await assert.rejects(
        contentTypeOf(path.join(dir, 'notes.txt')),
        (e: unknown) =>
          e instanceof KagomeError &&
          e.errorName === 'MissingProgram' &&
          e.message.includes('libglib2.0-bin'),
      );
    });
  });
});
