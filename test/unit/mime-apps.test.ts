import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defaultAppFor, findEntryInView, typeAndParents, type MimeView } from '../../xdg/mime-apps.js';
import { contentTypeOf } from '../../xdg/content-type.js';

// "Which program opens this file" in a cage, by the MIME applications associations rules,
// over a temporary tree standing for what a cage sees: config folders (home, then /etc/xdg),
// data folders (home, then /usr/share) with applications/ and mime/. Every path is read
// through hostPath, as the service reads a running cage's root.

describe('defaultAppFor', () => {
  let root: string;
  let view: MimeView;

  const write = (rel: string, text: string) => {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, text);
  };
  const app = (dataDir: string, id: string, extra = '') => write(`${dataDir}/applications/${id}`, `[Desktop Entry]\nType=Application\nName=${id}\nExec=prog %f\n${extra}`);

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-mime-'));
    // Paths as the cage sees them; the tree lives under root on the "host".
    view = { configDirs: ['/home/.config', '/etc/xdg'], dataDirs: ['/home/.local/share', '/usr/share'], desktops: [], hostPath: (p) => path.join(root, p) };
    app('usr/share', 'sys-editor.desktop');
    app('usr/share', 'other-editor.desktop');
    app('home/.local/share', 'mine.desktop');
    write('usr/share/applications/mimeinfo.cache', '[MIME Cache]\ntext/plain=sys-editor.desktop;other-editor.desktop;\nimage/png=other-editor.desktop;\n');
  });

  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  it('falls back to mimeinfo.cache, first entry first', async () => {
    assert.equal(await defaultAppFor('text/plain', view), 'sys-editor.desktop');
    assert.equal(await defaultAppFor('image/png', view), 'other-editor.desktop');
  });

  it('takes [Default Applications] of the most important list that names an installed program', async () => {
    write('usr/share/applications/mimeapps.list', '[Default Applications]\ntext/plain=other-editor.desktop\n');
    assert.equal(await defaultAppFor('text/plain', view), 'other-editor.desktop');
    write('etc/xdg/mimeapps.list', '[Default Applications]\ntext/plain=uninstalled.desktop;mine.desktop;\n');
    assert.equal(await defaultAppFor('text/plain', view), 'mine.desktop', 'an uninstalled default is skipped');
    write('home/.config/mimeapps.list', '[Default Applications]\ntext/plain=sys-editor.desktop\n');
    assert.equal(await defaultAppFor('text/plain', view), 'sys-editor.desktop', "the cage home's list wins");
  });

  it('reads $desktop-mimeapps.list before mimeapps.list in the same folder', async () => {
    write('home/.config/mimeapps.list', '[Default Applications]\ntext/plain=sys-editor.desktop\n');
    write('home/.config/xfce-mimeapps.list', '[Default Applications]\ntext/plain=mine.desktop\n');
    assert.equal(await defaultAppFor('text/plain', view), 'sys-editor.desktop', 'not for another desktop');
    assert.equal(await defaultAppFor('text/plain', { ...view, desktops: ['XFCE'] }), 'mine.desktop');
  });

  it('uses [Added Associations], and [Removed Associations] hide a program from less important sources', async () => {
    write('home/.config/mimeapps.list', '[Added Associations]\nimage/png=mine.desktop;\n');
    assert.equal(await defaultAppFor('image/png', view), 'mine.desktop');
    write('home/.config/mimeapps.list', '[Removed Associations]\ntext/plain=sys-editor.desktop;\n');
    assert.equal(await defaultAppFor('text/plain', view), 'other-editor.desktop');
  });

  it('skips Hidden entries and entries without Exec', async () => {
    app('home/.local/share', 'sys-editor.desktop', 'Hidden=true\n');
    assert.equal(await defaultAppFor('text/plain', view), 'other-editor.desktop', "the home's Hidden copy hides the system one");
    write('usr/share/applications/noexec.desktop', '[Desktop Entry]\nType=Application\nName=x\n');
    write('usr/share/applications/mimeapps.list', '[Default Applications]\nimage/png=noexec.desktop;\n');
    assert.equal(await defaultAppFor('image/png', view), 'other-editor.desktop');
  });

  it('finds entries in subfolders by their desktop file ID (kde-foo.desktop is kde/foo.desktop)', async () => {
    write('usr/share/applications/kde/viewer.desktop', '[Desktop Entry]\nType=Application\nName=v\nExec=v %u\n');
    write('home/.config/mimeapps.list', '[Default Applications]\nimage/png=kde-viewer.desktop\n');
    assert.equal(await defaultAppFor('image/png', view), 'kde-viewer.desktop');
    assert.equal((await findEntryInView('kde-viewer.desktop', view))?.path, '/usr/share/applications/kde/viewer.desktop');
  });

  it('walks up aliases and declared sub-classes, and every text/* type to text/plain, adding no catch-all of its own', async () => {
    write('usr/share/mime/aliases', 'text/x-old-python text/x-python\n');
    write('usr/share/mime/subclasses', 'text/x-python application/x-executable\napplication/x-executable application/octet-stream\n');
    assert.deepEqual(await typeAndParents('text/x-old-python', view), ['text/x-python', 'application/x-executable', 'text/plain', 'application/octet-stream']);
    assert.equal(await defaultAppFor('text/x-old-python', view), 'sys-editor.desktop', 'through text/plain');
    write('usr/share/applications/mimeinfo.cache', '[MIME Cache]\napplication/x-executable=mine.desktop;\ntext/plain=sys-editor.desktop;\n');
    app('usr/share', 'mine.desktop');
    assert.equal(await defaultAppFor('text/x-python', view), 'mine.desktop', 'the nearer parent first');
    assert.deepEqual(await typeAndParents('application/x-unknown', view), ['application/x-unknown']);
    assert.equal(await defaultAppFor('application/x-unknown', view), undefined, 'nothing is found');
  });

  it('skips a broken mimeapps.list instead of failing', async () => {
    write('home/.config/mimeapps.list', '[Default Applications\ntext/plain=mine.desktop\n\xff\xfe');
    write('etc/xdg/mimeapps.list', '[Default Applications]\ntext/plain=other-editor.desktop\n');
    assert.equal(await defaultAppFor('text/plain', view), 'other-editor.desktop');
  });
});

describe('contentTypeOf (real gio)', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-type-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('types by name, then by content, for any file name', async () => {
    const txt = path.join(dir, 'notes.txt');
    fs.writeFileSync(txt, 'hello\n');
    assert.equal(await contentTypeOf(txt), 'text/plain');
    const png = path.join(dir, 'picture-without-extension');
    fs.writeFileSync(png, Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex'));
    assert.equal(await contentTypeOf(png), 'image/png');
    const odd = Buffer.concat([Buffer.from(dir + '/new\nline '), Buffer.from([0xff, 0xfe]), Buffer.from('.txt')]);
    fs.writeFileSync(odd, 'x\n');
    assert.equal(await contentTypeOf(odd), 'text/plain');
  });

  it('names the file it cannot type', async () => {
    await assert.rejects(contentTypeOf(path.join(dir, 'missing.txt')), /missing\.txt/);
  });
});
