import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  appsForType,
  defaultAppFor,
  findEntryInView,
  typeAndParents,
  type MimeFs,
  type MimeView,
} from '../../xdg/mime-apps.js';

// "Which program opens this type" in a cage, by the MIME applications rules, over a temporary
// tree standing for what a cage sees: config folders (its home, then /etc/xdg) and data
// folders (its home, then /usr/local/share, then /usr/share) with applications/ and mime/.
// The tree lives under a temporary root on the "host"; every read goes through hostPath, as
// the service reads a running cage's root.

describe('defaultAppFor', () => {
  let root: string;
  let view: MimeView;
  let warnings: string[];

  const write = (rel: string, text: string | Buffer) => {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, text);
  };
  /** An installed entry: rel is the data folder, id may be a subfolder path (kde/foo.desktop). */
  const app = (dataDir: string, file: string, extra = '') =>
    write(
      `${dataDir}/applications/${file}`,
      `[Desktop Entry]\nType=Application\nName=${file}\nExec=prog %f\n${extra}`,
    );
  const cache = (dataDir: string, lines: string) =>
    write(`${dataDir}/applications/mimeinfo.cache`, `[MIME Cache]\n${lines}`);
  const lookup = (type: string, v: Partial<MimeView> = {}) =>
    defaultAppFor(type, { ...view, ...v });

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-mime-'));
    warnings = [];
    view = {
      configDirs: ['/home/.config', '/etc/xdg'],
      dataDirs: ['/home/.local/share', '/usr/local/share', '/usr/share'],
      desktops: [],
      hostPath: (p) => path.join(root, p),
      warn: (m) => warnings.push(m),
    };
    for (const id of ['a.desktop', 'b.desktop', 'c.desktop', 'd.desktop']) app('usr/share', id);
  });

  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  describe('[Default Applications]', () => {
    it('takes the most important list: config home, config dirs, data home, data dirs', async () => {
      const levels = [
        'usr/share/applications',
        'usr/local/share/applications',
        'home/.local/share/applications',
        'etc/xdg',
        'home/.config',
      ];
      const ids = ['a.desktop', 'b.desktop', 'c.desktop', 'd.desktop', 'a.desktop'];
      assert.equal(await lookup('text/plain'), undefined);
      for (const [i, dir] of levels.entries()) {
        write(`${dir}/mimeapps.list`, `[Default Applications]\ntext/plain=${ids[i]}\n`);
        assert.equal(
          await lookup('text/plain'),
          ids[i],
          `${dir}/mimeapps.list is more important than the ones before`,
        );
      }
    });

    it('skips uninstalled programs, within a list and on to the next list', async () => {
      write(
        'home/.config/mimeapps.list',
        '[Default Applications]\ntext/plain=gone.desktop;c.desktop;\nimage/png=gone.desktop\n',
      );
      write(
        'etc/xdg/mimeapps.list',
        '[Default Applications]\nimage/png=gone-too.desktop;b.desktop\n',
      );
      assert.equal(await lookup('text/plain'), 'c.desktop');
      assert.equal(await lookup('image/png'), 'b.desktop');
    });

    it('reads $desktop-mimeapps.list before mimeapps.list in each folder, for each current desktop in order', async () => {
      write('etc/xdg/mimeapps.list', '[Default Applications]\ntext/plain=a.desktop\n');
      write('etc/xdg/xfce-mimeapps.list', '[Default Applications]\ntext/plain=b.desktop\n');
      write('etc/xdg/ubuntu-mimeapps.list', '[Default Applications]\ntext/plain=c.desktop\n');
      assert.equal(await lookup('text/plain'), 'a.desktop', 'no desktop: no desktop-specific list');
      assert.equal(
        await lookup('text/plain', { desktops: ['GNOME'] }),
        'a.desktop',
        'another desktop',
      );
      assert.equal(
        await lookup('text/plain', { desktops: ['XFCE'] }),
        'b.desktop',
        'names are lower-cased',
      );
      assert.equal(
        await lookup('text/plain', { desktops: ['ubuntu', 'XFCE'] }),
        'c.desktop',
        'the first desktop first',
      );
      assert.equal(await lookup('text/plain', { desktops: ['GNOME', 'XFCE'] }), 'b.desktop');
      write('home/.config/mimeapps.list', '[Default Applications]\ntext/plain=d.desktop\n');
      assert.equal(
        await lookup('text/plain', { desktops: ['XFCE'] }),
        'd.desktop',
        "a more important folder's plain list beats a desktop-specific one further down",
      );
    });

    it('ignores associations in desktop-specific lists, with a warning', async () => {
      write('home/.config/xfce-mimeapps.list', '[Added Associations]\nimage/png=a.desktop;\n');
      cache('usr/share', 'image/png=b.desktop;\n');
      assert.equal(await lookup('image/png', { desktops: ['XFCE'] }), 'b.desktop');
      assert.match(warnings.join('\n'), /xfce-mimeapps\.list: \[Added Associations\] ignored/);
    });

    it('may name a program that is not associated, or even removed, and one from a more important folder', async () => {
      app('home/.local/share', 'mine.desktop');
      write(
        'usr/share/applications/mimeapps.list',
        '[Default Applications]\nimage/png=mine.desktop\n[Removed Associations]\nimage/png=mine.desktop\n',
      );
      cache('usr/share', 'image/png=a.desktop;\n');
      assert.equal(await lookup('image/png'), 'mine.desktop');
    });
  });

  describe('associations', () => {
    it('lists every program for a type, the default first, each once, none uninstalled or removed', async () => {
      cache('usr/share', 'text/plain=b.desktop;a.desktop;gone.desktop;c.desktop;\n');
      write(
        'home/.config/mimeapps.list',
        '[Default Applications]\ntext/plain=c.desktop\n[Removed Associations]\ntext/plain=a.desktop\n',
      );
      assert.deepEqual(await appsForType('text/plain', view), ['c.desktop', 'b.desktop']);
      assert.deepEqual(await appsForType('text/plain', view, 1), ['c.desktop']);
      assert.deepEqual(await appsForType('image/png', view), []);
    });

    it('falls back to mimeinfo.cache, first entry first, data home before data dirs', async () => {
      cache('usr/share', 'text/plain=b.desktop;a.desktop;\nimage/png=c.desktop;\n');
      assert.equal(await lookup('text/plain'), 'b.desktop');
      assert.equal(await lookup('image/png'), 'c.desktop');
      app('home/.local/share', 'mine.desktop');
      cache('home/.local/share', 'image/png=mine.desktop;\n');
      assert.equal(await lookup('image/png'), 'mine.desktop');
    });

    it('reads no mimeinfo.cache in config folders', async () => {
      write('home/.config/mimeinfo.cache', '[MIME Cache]\nimage/png=a.desktop;\n');
      assert.equal(await lookup('image/png'), undefined);
    });

    it('takes [Added Associations] in order, before the caches', async () => {
      cache('usr/share', 'image/png=c.desktop;\n');
      write(
        'etc/xdg/mimeapps.list',
        '[Added Associations]\nimage/png=gone.desktop;b.desktop;a.desktop;\n',
      );
      assert.equal(await lookup('image/png'), 'b.desktop');
    });

    it("goes folder by folder: a more important folder's cache beats a lesser folder's added associations", async () => {
      app('home/.local/share', 'mine.desktop');
      cache('home/.local/share', 'image/png=mine.desktop;\n');
      write('usr/share/applications/mimeapps.list', '[Added Associations]\nimage/png=a.desktop;\n');
      assert.equal(await lookup('image/png'), 'mine.desktop');
      write(
        'home/.local/share/applications/mimeapps.list',
        '[Added Associations]\nimage/png=b.desktop;\n',
      );
      assert.equal(await lookup('image/png'), 'b.desktop');
    });

    it('[Removed Associations] hide a program from its own folder and less important ones, not from more important ones', async () => {
      cache('usr/share', 'text/plain=a.desktop;b.desktop;\n');
      write('home/.config/mimeapps.list', '[Removed Associations]\ntext/plain=a.desktop;\n');
      assert.equal(
        await lookup('text/plain'),
        'b.desktop',
        "the config home's removal hides the system cache's entry",
      );

      write('home/.config/mimeapps.list', '[Added Associations]\ntext/plain=c.desktop;\n');
      write('etc/xdg/mimeapps.list', '[Removed Associations]\ntext/plain=c.desktop;a.desktop;\n');
      assert.equal(
        await lookup('text/plain'),
        'c.desktop',
        'a less important removal cannot take back an addition',
      );
      fs.rmSync(path.join(root, 'home/.config/mimeapps.list'));
      assert.equal(await lookup('text/plain'), 'b.desktop');

      write(
        'usr/share/applications/mimeapps.list',
        '[Removed Associations]\ntext/plain=b.desktop;\n',
      );
      cache('usr/share', 'text/plain=b.desktop;a.desktop;\n');
      fs.rmSync(path.join(root, 'etc/xdg/mimeapps.list'));
      assert.equal(
        await lookup('text/plain'),
        'a.desktop',
        "a folder's removals apply to its own cache",
      );
    });

    it('keeps an addition listed as removed in the same file', async () => {
      write(
        'home/.config/mimeapps.list',
        '[Added Associations]\nimage/png=a.desktop;\n[Removed Associations]\nimage/png=a.desktop;\n',
      );
      assert.equal(await lookup('image/png'), 'a.desktop');
    });

    it("ignores a lesser folder's associations for an ID a more important data folder has", async () => {
      // The user's own copy of b.desktop decides what b opens; the system cache speaks for the system copy.
      app('home/.local/share', 'b.desktop');
      cache('usr/share', 'image/png=b.desktop;c.desktop;\n');
      assert.equal(await lookup('image/png'), 'c.desktop');
      write(
        'usr/local/share/applications/mimeapps.list',
        '[Added Associations]\nimage/png=b.desktop;\n',
      );
      assert.equal(await lookup('image/png'), 'c.desktop', 'nor its added associations');
      write('etc/xdg/mimeapps.list', '[Added Associations]\nimage/png=b.desktop;\n');
      assert.equal(await lookup('image/png'), 'b.desktop', 'config folders speak for every entry');
    });
  });

  describe('installed programs', () => {
    it('skips Hidden entries, and a Hidden entry hides the same ID in less important folders', async () => {
      cache('usr/share', 'text/plain=a.desktop;b.desktop;\n');
      app('home/.local/share', 'a.desktop', 'Hidden=true\n');
      assert.equal(await lookup('text/plain'), 'b.desktop');
    });

    it('skips entries without Exec and entries that are not applications, and accepts NoDisplay ones', async () => {
      write('usr/share/applications/noexec.desktop', '[Desktop Entry]\nType=Application\nName=x\n');
      write(
        'usr/share/applications/link.desktop',
        '[Desktop Entry]\nType=Link\nName=x\nURL=https://example.org/\nExec=x\n',
      );
      app('usr/share', 'helper.desktop', 'NoDisplay=true\n');
      write(
        'home/.config/mimeapps.list',
        '[Default Applications]\nimage/png=noexec.desktop;link.desktop;helper.desktop;a.desktop\n',
      );
      assert.equal(await lookup('image/png'), 'helper.desktop');
    });

    it('does not check TryExec (it names a program in the cage)', async () => {
      app('usr/share', 'try.desktop', 'TryExec=/nonexistent/program\n');
      write('home/.config/mimeapps.list', '[Default Applications]\nimage/png=try.desktop\n');
      assert.equal(await lookup('image/png'), 'try.desktop');
    });

    it('finds entries in subfolders by their desktop file ID (kde-viewer.desktop is kde/viewer.desktop)', async () => {
      app('usr/share', 'kde/viewer.desktop');
      write(
        'home/.config/mimeapps.list',
        '[Default Applications]\nimage/png=kde/viewer.desktop;viewer.desktop;kde-viewer.desktop\n',
      );
      assert.equal(await lookup('image/png'), 'kde-viewer.desktop', 'a path is no ID');
      assert.equal(
        (await findEntryInView('kde-viewer.desktop', view))?.path,
        '/usr/share/applications/kde/viewer.desktop',
        'the path as the cage sees it',
      );
      assert.equal(await findEntryInView('kde/viewer.desktop', view), undefined);
      assert.equal(await findEntryInView('gone.desktop', view), undefined);
    });
  });

  describe('parent types', () => {
    beforeEach(() => {
      write(
        'usr/share/mime/aliases',
        'text/x-old-python text/x-python\napplication/x-pdf application/pdf\n',
      );
      write(
        'usr/share/mime/subclasses',
        'text/x-python application/x-executable\napplication/x-executable application/octet-stream\n',
      );
    });

    it('lists the canonical type, then sub-class parents nearest first, text/plain for text/*', async () => {
      assert.deepEqual(await typeAndParents('text/x-old-python', view), [
        'text/x-python',
        'application/x-executable',
        'text/plain',
        'application/octet-stream',
      ]);
      assert.deepEqual(await typeAndParents('text/x-csv', view), ['text/x-csv', 'text/plain']);
      assert.deepEqual(await typeAndParents('application/x-unknown', view), [
        'application/x-unknown',
      ]);
    });

    it('looks an alias up as its canonical type, and files list entries for an alias under it', async () => {
      cache('usr/share', 'application/pdf=a.desktop;\n');
      assert.equal(await lookup('application/x-pdf'), 'a.desktop');
      write('home/.config/mimeapps.list', '[Default Applications]\napplication/x-pdf=b.desktop\n');
      assert.equal(await lookup('application/pdf'), 'b.desktop');
    });

    it("walks up sub-classes only when a type has nothing of its own; a child's association beats a parent's default", async () => {
      write('home/.config/mimeapps.list', '[Default Applications]\ntext/plain=a.desktop\n');
      assert.equal(await lookup('text/x-python'), 'a.desktop', 'through text/plain');
      cache('usr/share', 'application/x-executable=b.desktop;\n');
      assert.equal(await lookup('text/x-python'), 'b.desktop', 'the nearer parent first');
      cache('usr/share', 'application/x-executable=b.desktop;\ntext/x-python=c.desktop;\n');
      assert.equal(await lookup('text/x-old-python'), 'c.desktop');
    });

    it('maps every text/* type to text/plain, without a subclasses file', async () => {
      fs.rmSync(path.join(root, 'usr/share/mime'), { recursive: true });
      cache('usr/share', 'text/plain=d.desktop;\n');
      assert.equal(await lookup('text/x-never-heard-of'), 'd.desktop');
      assert.equal(await lookup('application/x-never-heard-of'), undefined);
    });

    it('keeps a removal in force for the parents (as GLib does)', async () => {
      cache('usr/share', 'text/plain=a.desktop;b.desktop;\n');
      write('home/.config/mimeapps.list', '[Removed Associations]\ntext/x-python=a.desktop;\n');
      assert.equal(await lookup('text/x-python'), 'b.desktop');
      assert.equal(await lookup('text/x-csv'), 'a.desktop');
    });

    it('never falls back to application/octet-stream on its own', async () => {
      write(
        'home/.config/mimeapps.list',
        '[Default Applications]\napplication/octet-stream=a.desktop\n',
      );
      cache('usr/share', 'application/octet-stream=b.desktop;\n');
      assert.equal(await lookup('application/x-unknown'), undefined);
      assert.equal(await lookup('image/png'), undefined);
      assert.equal(
        await lookup('text/x-python'),
        'a.desktop',
        'only where the MIME database says so',
      );
    });
  });

  it('answers undefined when nothing opens the type', async () => {
    cache('usr/share', 'text/plain=a.desktop;\n');
    assert.equal(await lookup('image/png'), undefined);
    assert.equal(await lookup('text/plain', { dataDirs: [], configDirs: [] }), undefined);
  });

  describe('broken files', () => {
    it('skips a mimeapps.list that does not parse, with a warning, and reads the others', async () => {
      write('home/.config/mimeapps.list', '[Default Applications\ntext/plain=a.desktop\n');
      write('etc/xdg/mimeapps.list', '[Default Applications]\ntext/plain=b.desktop\n');
      assert.equal(await lookup('text/plain'), 'b.desktop');
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!, /^skipped: \/home\/\.config\/mimeapps\.list:1:/);
    });

    it('skips invalid UTF-8, a broken mimeinfo.cache and an unreadable file, with warnings', async () => {
      write(
        'home/.config/mimeapps.list',
        Buffer.from('[Default Applications]\ntext/plain=a.desktop\xff\n', 'latin1'),
      );
      cache('home/.local/share', 'text/plain=a.desktop;\n[MIME Cache]\n');
      fs.mkdirSync(path.join(root, 'etc/xdg/mimeapps.list'), { recursive: true });
      cache('usr/share', 'text/plain=c.desktop;\n');
      assert.equal(await lookup('text/plain'), 'c.desktop');
      const all = warnings.join('\n');
      assert.match(all, /\/home\/\.config\/mimeapps\.list:2: invalid UTF-8/);
      assert.match(all, /\/home\/\.local\/share\/applications\/mimeinfo\.cache:3: duplicate group/);
      assert.match(all, /\/etc\/xdg\/mimeapps\.list: skipped, cannot be read/);
      assert.equal(warnings.length, 3);
    });

    it('is silent about files that are simply not there', async () => {
      cache('usr/share', 'text/plain=a.desktop;\n');
      await lookup('text/plain', { desktops: ['XFCE', 'GNOME'] });
      assert.deepEqual(warnings, []);
    });
  });

  it('reads only through the given fs and hostPath', async () => {
    const files = new Map<string, string>([
      ['/cage/etc/xdg/mimeapps.list', '[Default Applications]\nimage/png=viewer.desktop\n'],
      [
        '/cage/usr/share/applications/viewer.desktop',
        '[Desktop Entry]\nType=Application\nName=V\nExec=v %f\n',
      ],
    ]);
    const read: string[] = [];
    const enoent = (p: string) => Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
    const memFs: MimeFs = {
      readFile: async (p) => {
        read.push(p);
        const text = files.get(p);
        if (text === undefined) throw enoent(p);
        return Buffer.from(text);
      },
      stat: async (p) => {
        if (!files.has(p)) throw enoent(p);
        return { isFile: () => true, isDirectory: () => false, size: files.get(p)!.length };
      },
    };
    const v: MimeView = {
      configDirs: ['/etc/xdg'],
      dataDirs: ['/usr/share'],
      desktops: [],
      fs: memFs,
      hostPath: (p) => '/cage' + p,
    };
    assert.equal(await defaultAppFor('image/png', v), 'viewer.desktop');
    assert.ok(read.length > 0 && read.every((p) => p.startsWith('/cage/')), read.join(', '));
    assert.ok(read.includes('/cage/usr/share/applications/viewer.desktop'));
  });
});
