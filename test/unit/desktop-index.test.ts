import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { posix } from 'node:path';
import { KagomeError } from '../../lib/errors.js';
import { DesktopIndex, desktopFileId, type DesktopIndexFs } from '../../xdg/desktop-index.js';
import type { Keyfile } from '../../xdg/keyfile.js';

type Node = string | Uint8Array | { link: string } | { dir: true } | { unreadable: true };

/** An in-memory filesystem: absolute paths to file contents, directories or symlinks. */
class MemFs implements DesktopIndexFs {
  readonly nodes = new Map<string, Node>();
  reads: string[] = [];

  constructor(tree: Record<string, Node>) {
    for (const [path, node] of Object.entries(tree)) this.add(path, node);
  }

  add(path: string, node: Node): void {
    this.nodes.set(path, node);
    for (let d = posix.dirname(path); d !== '/' && !this.nodes.has(d); d = posix.dirname(d))
      this.nodes.set(d, { dir: true });
  }

  private enoent(path: string): Error {
    return Object.assign(new Error(`ENOENT: no such file or directory, '${path}'`), {
      code: 'ENOENT',
    });
  }

  /** Resolve symlinks in every component; throws ENOENT or ELOOP. */
  private resolve(path: string, hops = 0): string {
    if (hops > 40) throw Object.assign(new Error(`ELOOP: '${path}'`), { code: 'ELOOP' });
    const parts = posix.normalize(path).split('/').filter(Boolean);
    let cur = '/';
    for (let i = 0; i < parts.length; i++) {
      const next = posix.join(cur, parts[i]!);
      const node = this.nodes.get(next);
      if (node === undefined) throw this.enoent(path);
      if (typeof node === 'object' && 'link' in node) {
        const target = posix.resolve(cur, node.link);
        return this.resolve(posix.join(target, ...parts.slice(i + 1)), hops + 1);
      }
      cur = next;
    }
    return cur;
  }

  async realpath(path: string): Promise<string> {
    return this.resolve(path);
  }

  async stat(path: string): Promise<{ isFile(): boolean; isDirectory(): boolean }> {
    const node = this.nodes.get(this.resolve(path));
    const dir = typeof node === 'object' && 'dir' in node;
    return { isFile: () => !dir, isDirectory: () => dir };
  }

  async readdir(path: string): Promise<string[]> {
    const real = this.resolve(path);
    const prefix = real === '/' ? '/' : real + '/';
    // Reverse order, so that nothing depends on the listing being sorted.
    return [...this.nodes.keys()]
      .filter((p) => p.startsWith(prefix) && !p.slice(prefix.length).includes('/'))
      .map((p) => p.slice(prefix.length))
      .sort()
      .reverse();
  }

  async readFile(path: string): Promise<Uint8Array> {
    const real = this.resolve(path);
    this.reads.push(path);
    const node = this.nodes.get(real)!;
    if (typeof node === 'string') return Buffer.from(node);
    if (node instanceof Uint8Array) return node;
    if ('unreadable' in node)
      throw Object.assign(new Error(`EACCES: permission denied, open '${path}'`), {
        code: 'EACCES',
      });
    throw Object.assign(new Error(`EISDIR: '${path}'`), { code: 'EISDIR' });
  }
}

const app = (name: string, extra = ''): string =>
  `[Desktop Entry]\nType=Application\nName=${name}\nExec=${name.toLowerCase()}\n${extra}`;
const HOME = '/home/u/.local/share';
const USR = '/usr/share';
const LOCAL = '/usr/local/share';
const dataDirs = [HOME, LOCAL, USR];
const installed = new Set(['present', '/opt/bin/abs']);
const programExists = async (p: string) => installed.has(p);
const names = (m: Map<string, { keyfile: Keyfile }>) =>
  Object.fromEntries([...m].map(([id, e]) => [id, e.keyfile.get('Desktop Entry', 'Name')]));

describe('desktopFileId', () => {
  it('turns subdirectories into dashes', () => {
    assert.equal(
      desktopFileId('/usr/share/applications', '/usr/share/applications/foo.desktop'),
      'foo.desktop',
    );
    assert.equal(
      desktopFileId('/usr/share/applications/', '/usr/share/applications/kde4/foo-bar.desktop'),
      'kde4-foo-bar.desktop',
    );
    assert.equal(
      desktopFileId('/usr/share/applications', '/usr/share/applications/a/b/c.desktop'),
      'a-b-c.desktop',
    );
  });

  it('returns undefined outside the directory or for other files', () => {
    assert.equal(
      desktopFileId('/usr/share/applications', '/usr/share/applications2/foo.desktop'),
      undefined,
    );
    assert.equal(desktopFileId('/usr/share/applications', '/usr/share/foo.desktop'), undefined);
    assert.equal(
      desktopFileId('/usr/share/applications', '/usr/share/applications/../x/foo.desktop'),
      undefined,
    );
    assert.equal(
      desktopFileId('/usr/share/applications', '/usr/share/applications/foo.txt'),
      undefined,
    );
    assert.equal(
      desktopFileId('/usr/share/applications', '/usr/share/applications/.desktop'),
      undefined,
    );
  });
});

describe('DesktopIndex.lookup', () => {
  const fs = new MemFs({
    [`${HOME}/applications/editor.desktop`]: app('User editor'),
    [`${USR}/applications/editor.desktop`]: app('System editor'),
    [`${USR}/applications/viewer.desktop`]: app('Viewer'),
    [`${USR}/applications/kde4/okular.desktop`]: app('Okular'),
    [`${USR}/applications/a-b/c-d.desktop`]: app('Deep dashes'),
    [`${LOCAL}/applications/shadowed.desktop`]: app('Kagome shadow', 'X-Kagome-Cage=web\n'),
    [`${USR}/applications/shadowed.desktop`]: app('Original'),
    [`${HOME}/applications/gone.desktop`]: '[Desktop Entry]\nHidden=true\n',
    [`${USR}/applications/gone.desktop`]: app('Gone'),
    [`${HOME}/applications/broken.desktop`]: '[Desktop Entry]\nthis is not a keyfile\n',
    [`${USR}/applications/broken.desktop`]: app('Fallback for broken'),
    [`${USR}/applications/link.desktop`]:
      '[Desktop Entry]\nType=Link\nURL=https://example.org/\nName=Link\n',
    [`${USR}/applications/tryexec-missing.desktop`]: app('Missing', 'TryExec=absent\n'),
    [`${USR}/applications/tryexec-present.desktop`]: app('Present', 'TryExec=present\n'),
    [`${USR}/applications/symlinked.desktop`]: { link: '/opt/real/thing.desktop' },
    ['/opt/real/thing.desktop']: app('Through a link'),
  });
  const index = new DesktopIndex({ dataDirs, fs, programExists });
  const name = async (id: string, skip?: (kf: Keyfile) => boolean) =>
    (await index.lookup(id, skip ? { skip } : {}))?.keyfile.get('Desktop Entry', 'Name');

  it('finds the entry in the first data directory that has it', async () => {
    const hit = await index.lookup('editor.desktop');
    assert.equal(hit?.id, 'editor.desktop');
    assert.equal(hit?.path, `${HOME}/applications/editor.desktop`);
    assert.equal(hit?.keyfile.get('Desktop Entry', 'Name'), 'User editor');
    assert.equal(await name('viewer.desktop'), 'Viewer');
    assert.equal(await name('nothing.desktop'), undefined);
  });

  it('finds entries in subdirectories, also with dashes in names', async () => {
    const hit = await index.lookup('kde4-okular.desktop');
    assert.equal(hit?.path, `${USR}/applications/kde4/okular.desktop`);
    assert.equal(
      (await index.lookup('a-b-c-d.desktop'))?.path,
      `${USR}/applications/a-b/c-d.desktop`,
    );
    assert.equal(
      await name('kde4/okular.desktop').catch(
        (e: unknown) => e instanceof KagomeError && e.errorName,
      ),
      'InvalidArgument',
    );
  });

  it('skips entries the predicate rejects', async () => {
    assert.equal(await name('shadowed.desktop'), 'Kagome shadow');
    assert.equal(
      await name('shadowed.desktop', (kf) => kf.has('Desktop Entry', 'X-Kagome-Cage')),
      'Original',
    );
  });

  it('honours Hidden, Type and TryExec, and falls back past broken files', async () => {
    assert.equal(await name('gone.desktop'), undefined);
    assert.equal(await name('broken.desktop'), 'Fallback for broken');
    assert.equal(await name('link.desktop'), undefined);
    assert.equal(await name('tryexec-missing.desktop'), undefined);
    assert.equal(await name('tryexec-present.desktop'), 'Present');
    assert.equal(await name('symlinked.desktop'), 'Through a link');
  });

  it('rejects IDs that are not desktop file IDs', async () => {
    for (const id of [
      '',
      '.desktop',
      'foo',
      '../etc/passwd.desktop',
      'a/b.desktop',
      'a\0.desktop',
    ]) {
      await assert.rejects(
        index.lookup(id),
        (e: unknown) => e instanceof KagomeError && e.errorName === 'InvalidArgument',
        JSON.stringify(id),
      );
    }
    // '..' as a would-be directory must not climb out of applications/.
    const fs2 = new MemFs({
      [`${USR}/x.desktop`]: app('Outside'),
      [`${USR}/applications/y.desktop`]: app('Y'),
    });
    const idx2 = new DesktopIndex({ dataDirs: [USR], fs: fs2, programExists });
    assert.equal(await idx2.lookup('..-x.desktop'), undefined);
  });
});

describe('DesktopIndex.scan', () => {
  it('indexes every application, honouring precedence, Hidden and TryExec', async () => {
    const fs = new MemFs({
      [`${HOME}/applications/editor.desktop`]: app('User editor'),
      [`${HOME}/applications/gone.desktop`]: '[Desktop Entry]\nHidden=true\n',
      [`${HOME}/applications/broken.desktop`]: Buffer.from([0x5b, 0x41, 0x5d, 0x0a, 0xff]),
      [`${HOME}/applications/notes.txt`]: 'not a desktop file',
      [`${LOCAL}/applications/gone.desktop`]: app('Gone too'),
      [`${USR}/applications/editor.desktop`]: app('System editor'),
      [`${USR}/applications/gone.desktop`]: app('Gone'),
      [`${USR}/applications/broken.desktop`]: app('Fallback for broken'),
      [`${USR}/applications/kde4/okular.desktop`]: app('Okular'),
      [`${USR}/applications/link.desktop`]:
        '[Desktop Entry]\nType=Link\nURL=https://example.org/\nName=Link\n',
      [`${USR}/applications/no-group.desktop`]: '[Other]\nType=Application\n',
      [`${USR}/applications/bad-hidden.desktop`]: app('Bad hidden', 'Hidden=yes\n'),
      [`${USR}/applications/secret.desktop`]: { unreadable: true },
      [`${USR}/applications/dangling.desktop`]: { link: '/nowhere/x.desktop' },
      [`${USR}/applications/tryexec-missing.desktop`]: app('Missing', 'TryExec=absent\n'),
      [`${USR}/applications/tryexec-abs.desktop`]: app('Absolute', 'TryExec=/opt/bin/abs\n'),
    });
    const { entries, problems } = await new DesktopIndex({ dataDirs, fs, programExists }).scan();
    assert.deepEqual(names(entries), {
      'broken.desktop': 'Fallback for broken',
      'editor.desktop': 'User editor',
      'kde4-okular.desktop': 'Okular',
      'tryexec-abs.desktop': 'Absolute',
    });
    assert.deepEqual(
      [...entries.keys()],
      ['broken.desktop', 'editor.desktop', 'kde4-okular.desktop', 'tryexec-abs.desktop'],
    );
    assert.equal(
      entries.get('kde4-okular.desktop')?.path,
      `${USR}/applications/kde4/okular.desktop`,
    );
    assert.equal(entries.get('editor.desktop')?.id, 'editor.desktop');

    const why = Object.fromEntries(
      problems.map((p) => [p.path.replace(/^.*\/applications\//, ''), p.reason]),
    );
    assert.deepEqual(Object.keys(why).sort(), [
      'bad-hidden.desktop',
      'broken.desktop',
      'dangling.desktop',
      'link.desktop',
      'no-group.desktop',
      'secret.desktop',
      'tryexec-missing.desktop',
    ]);
    assert.match(why['broken.desktop']!, /UTF-8/);
    assert.match(why['bad-hidden.desktop']!, /Hidden must be true or false/);
    assert.match(why['link.desktop']!, /Type is "Link", not Application/);
    assert.match(why['no-group.desktop']!, /no \[Desktop Entry\] group/);
    assert.match(why['secret.desktop']!, /EACCES/);
    assert.match(why['dangling.desktop']!, /ENOENT/);
    assert.match(why['tryexec-missing.desktop']!, /TryExec program "absent"/);
    assert.equal(
      problems.find((p) => p.path.endsWith('broken.desktop'))?.path,
      `${HOME}/applications/broken.desktop`,
    );
    assert.equal(problems.find((p) => p.path.endsWith('link.desktop'))?.id, 'link.desktop');
  });

  it('agrees with lookup on every ID', async () => {
    const fs = new MemFs({
      [`${HOME}/applications/a-b.desktop`]: app('Top level'),
      [`${HOME}/applications/a/b.desktop`]: app('In a/'),
      [`${USR}/applications/x/y-z.desktop`]: app('x/y-z'),
      [`${USR}/applications/x-y/z.desktop`]: app('x-y/z'),
      [`${USR}/applications/p/q.desktop`]: app('Shadow', 'X-Kagome-Cage=c\n'),
      [`${USR}/applications/p-q.desktop`]: app('Shadow top', 'X-Kagome-Cage=c\n'),
      [`${USR}/applications/p/q/r.desktop`]: app('unrelated'),
    });
    const skip = (kf: Keyfile) => kf.has('Desktop Entry', 'X-Kagome-Cage');
    const index = new DesktopIndex({ dataDirs, fs, programExists });
    const { entries } = await index.scan({ skip });
    assert.deepEqual(names(entries), {
      'a-b.desktop': 'Top level',
      'x-y-z.desktop': 'x/y-z',
      'p-q-r.desktop': 'unrelated',
    });
    for (const [id, e] of entries)
      assert.equal((await index.lookup(id, { skip }))?.path, e.path, id);
    assert.equal(await index.lookup('p-q.desktop', { skip }), undefined);
  });

  it('survives symlink loops and missing directories', async () => {
    const fs = new MemFs({
      [`${USR}/applications/ok.desktop`]: app('Ok'),
      [`${USR}/applications/sub/inner.desktop`]: app('Inner'),
      [`${USR}/applications/sub/loop`]: { link: '..' },
      [`${USR}/applications/self`]: { link: '.' },
    });
    const { entries, problems } = await new DesktopIndex({
      dataDirs: ['/nonexistent', USR, USR],
      fs,
      programExists,
    }).scan();
    assert.deepEqual(names(entries), { 'ok.desktop': 'Ok', 'sub-inner.desktop': 'Inner' });
    assert.deepEqual(
      problems.map((p) => [p.path, p.reason]),
      [
        [`${USR}/applications/self`, 'not searched: symbolic link loop'],
        [`${USR}/applications/sub/loop`, 'not searched: symbolic link loop'],
      ],
    );
  });

  it('reads each file of a directory listed twice only once', async () => {
    const fs = new MemFs({
      [`${USR}/applications/ok.desktop`]: app('Ok'),
      ['/usr/share2']: { link: USR },
    });
    await new DesktopIndex({ dataDirs: [USR, '/usr/share2'], fs, programExists }).scan();
    assert.deepEqual(fs.reads, [`${USR}/applications/ok.desktop`]);
  });
});
