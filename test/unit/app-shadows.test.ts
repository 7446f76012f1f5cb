import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sinon from 'sinon';
import { KagomeError } from '../../lib/errors.js';
import { AppShadows } from '../../lib/desktop/app-shadows.js';
import { Keyfile } from '../../xdg/keyfile.js';
import { readShadow } from '../../lib/desktop/shadow.js';

const DE = 'Desktop Entry';
const LAUNCHER = '/usr/bin/kagome-open';
const EDITOR = 'org.example.Editor.desktop';
const PLAIN = 'org.example.Plain.desktop';

const editorText = (name = 'Editor'): string =>
  `[Desktop Entry]\nType=Application\nName=${name}\nName[de]=Bearbeiter\nExec=exampleeditor %F\nTryExec=exampleeditor\nMimeType=text/plain;\nStartupNotify=true\n`;
const plainText = '[Desktop Entry]\nType=Application\nName=Plain\nExec=exampleplain\n';

interface World {
  root: string;
  dataHome: string;
  /** applications/ of the one system data directory */
  sysApps: string;
  /** dataHome/applications */
  userApps: string;
  updateDatabase: sinon.SinonSpy<[string], Promise<void>>;
  shadows: AppShadows;
}

/** Stands in for update-desktop-database: lists the shadows that have a MimeType. */
async function fakeUpdateDatabase(dir: string): Promise<void> {
  const ids: string[] = [];
  for (const name of (await readdir(dir)).sort()) {
    if (!name.endsWith('.desktop')) continue;
    const text = await readFile(path.join(dir, name), 'utf8');
    if (text.includes('X-Kagome-Cage=') && /^MimeType=/m.test(text)) ids.push(name);
  }
  await writeFile(
    path.join(dir, 'mimeinfo.cache'),
    ids.length > 0 ? `[MIME Cache]\ntext/plain=${ids.join(';')};\n` : '[MIME Cache]\n',
  );
}

async function makeWorld(): Promise<World> {
  const root = await mkdtemp(path.join(tmpdir(), 'kagome-app-shadows-'));
  const dataHome = path.join(root, 'data');
  const sysData = path.join(root, 'usr-share');
  const sysApps = path.join(sysData, 'applications');
  await mkdir(dataHome, { recursive: true });
  await mkdir(sysApps, { recursive: true });
  await writeFile(path.join(sysApps, EDITOR), editorText());
  await writeFile(path.join(sysApps, PLAIN), plainText);
  const updateDatabase = sinon.spy(fakeUpdateDatabase);
  const shadows = new AppShadows({
    dataHome,
    dataDirs: [sysData],
    launcher: LAUNCHER,
    nameFormat: async (cage) => {
      if (cage === 'work' || cage === 'web') return '{name} [{cage}]';
      throw new KagomeError('NoSuchCage', `no cage ${cage}`);
    },
    updateDatabase,
    programExists: async () => true,
  });
  return {
    root,
    dataHome,
    sysApps,
    userApps: path.join(dataHome, 'applications'),
    updateDatabase,
    shadows,
  };
}

/** Every file and folder below `dir` with its bytes (hex), for before/after comparisons. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string, rel: string): Promise<void> => {
    let names: string[];
    try {
      names = (await readdir(d)).sort();
    } catch {
      return;
    }
    for (const name of names) {
      const p = path.join(d, name);
      const r = rel ? `${rel}/${name}` : name;
      if ((await stat(p)).isDirectory()) {
        out[`${r}/`] = '<dir>';
        await walk(p, r);
      } else {
        out[r] = (await readFile(p)).toString('hex');
      }
    }
  };
  await walk(dir, '');
  return out;
}

async function rejection(p: Promise<unknown>): Promise<KagomeError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof KagomeError, `expected a KagomeError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected a rejection');
}

const text = (p: string): Promise<string> => readFile(p, 'utf8');
const exists = async (p: string): Promise<boolean> =>
  stat(p).then(
    () => true,
    () => false,
  );
const shadowInfo = async (p: string) => readShadow(Keyfile.parse(await text(p)));

describe('AppShadows', () => {
  let w: World;
  beforeEach(async () => {
    w = await makeWorld();
  });
  afterEach(async () => {
    await rm(w.root, { recursive: true, force: true });
  });

  describe('add and preview', () => {
    it("writes the shadow under the original's own ID, listed as active and primary", async () => {
      const record = await w.shadows.add('work', EDITOR);
      const file = path.join(w.userApps, EDITOR);
      assert.equal(record.path, file);
      const kf = Keyfile.parse(await text(file));
      assert.equal(kf.get(DE, 'Name'), 'Editor [work]');
      assert.equal(kf.get(DE, 'Exec'), `${LAUNCHER} --cage work --entry ${EDITOR} -- %F`);
      assert.deepEqual(readShadow(kf), {
        cage: 'work',
        entryId: EDITOR,
        sourcePath: path.join(w.sysApps, EDITOR),
        sourceHash: readShadow(kf)!.sourceHash,
        intact: true,
      });
      assert.deepEqual(await w.shadows.list(), [
        {
          cage: 'work',
          entryId: EDITOR,
          shadowId: EDITOR,
          path: file,
          primary: true,
          state: 'active',
          sourcePath: path.join(w.sysApps, EDITOR),
        },
      ]);
      assert.ok(w.updateDatabase.calledWith(w.userApps));
    });

    it('writes kagome-CAGE-ID for a second cage', async () => {
      await w.shadows.add('work', EDITOR);
      const second = await w.shadows.add('web', EDITOR);
      const file = path.join(w.userApps, `kagome-web-${EDITOR}`);
      assert.equal(second.path, file);
      assert.equal(second.primary, false);
      assert.equal((await shadowInfo(file))?.cage, 'web');
      assert.equal((await shadowInfo(path.join(w.userApps, EDITOR)))?.cage, 'work');
      const list = await w.shadows.list();
      assert.deepEqual(
        list.map((r) => [r.cage, r.shadowId, r.primary, r.state]),
        [
          ['web', `kagome-web-${EDITOR}`, false, 'active'],
          ['work', EDITOR, true, 'active'],
        ],
      );
    });

    it('preview returns the shadow text and writes nothing', async () => {
      const before = await snapshot(w.root);
      const preview = await w.shadows.preview('work', EDITOR);
      assert.deepEqual(await snapshot(w.root), before);
      assert.ok(w.updateDatabase.notCalled);
      assert.equal(readShadow(Keyfile.parse(preview))?.cage, 'work');
      await w.shadows.add('work', EDITOR);
      assert.equal(await text(path.join(w.userApps, EDITOR)), preview);
    });

    it('refuses an unknown ID with NoSuchApp', async () => {
      const e = await rejection(w.shadows.add('work', 'org.example.Missing.desktop'));
      assert.equal(e.errorName, 'NoSuchApp');
      assert.equal(await exists(w.userApps), false);
    });

    it('refuses an unknown cage with NoSuchCage and writes nothing', async () => {
      // A user entry at the ID would be moved aside by a successful add.
      await mkdir(w.userApps, { recursive: true });
      await writeFile(path.join(w.userApps, EDITOR), editorText('My Editor'));
      const before = await snapshot(w.root);
      const e = await rejection(w.shadows.add('nope', EDITOR));
      assert.equal(e.errorName, 'NoSuchCage');
      assert.deepEqual(await snapshot(w.root), before);
      assert.ok(w.updateDatabase.notCalled);
    });

    it('writes nothing for an entry with a broken Exec', async () => {
      await mkdir(w.userApps, { recursive: true });
      await writeFile(
        path.join(w.userApps, EDITOR),
        '[Desktop Entry]\nType=Application\nName=Broken\nExec=exampleeditor "unclosed\n',
      );
      const before = await snapshot(w.root);
      const e = await rejection(w.shadows.add('work', EDITOR));
      assert.equal(e.errorName, 'InvalidDesktopEntry');
      assert.match(e.message, /unterminated double quote/);
      assert.deepEqual(await snapshot(w.root), before);
    });

    it('re-renders the shadow when a program is added again to the same cage', async () => {
      await w.shadows.add('work', EDITOR);
      await writeFile(path.join(w.sysApps, EDITOR), editorText('Editor 2'));
      const again = await w.shadows.add('work', EDITOR);
      assert.equal(again.primary, true);
      const kf = Keyfile.parse(await text(path.join(w.userApps, EDITOR)));
      assert.equal(kf.get(DE, 'Name'), 'Editor 2 [work]');
      assert.equal(readShadow(kf)?.intact, true);
      assert.equal(await exists(path.join(w.userApps, `kagome-work-${EDITOR}`)), false);
      assert.equal((await w.shadows.list()).length, 1);
    });

    it('refuses to replace a hand-edited shadow with NotPermitted unless forced', async () => {
      await w.shadows.add('work', EDITOR);
      const file = path.join(w.userApps, EDITOR);
      const edited = (await text(file)).replace('Name=Editor [work]', 'Name=My own name');
      await writeFile(file, edited);
      assert.equal((await w.shadows.list())[0]?.state, 'edited');
      const e = await rejection(w.shadows.add('work', EDITOR));
      assert.equal(e.errorName, 'NotPermitted');
      assert.ok(e.message.includes(file), e.message);
      assert.equal(await text(file), edited);
      await w.shadows.add('work', EDITOR, { force: true });
      const kf = Keyfile.parse(await text(file));
      assert.equal(kf.get(DE, 'Name'), 'Editor [work]');
      assert.equal(readShadow(kf)?.intact, true);
    });
  });

  describe('remove', () => {
    it('promotes the second cage when the primary is removed', async () => {
      await w.shadows.add('work', EDITOR);
      await w.shadows.add('web', EDITOR);
      const result = await w.shadows.remove('work', EDITOR);
      const file = path.join(w.userApps, EDITOR);
      assert.equal(result.removed.cage, 'work');
      assert.equal(result.promoted?.cage, 'web');
      assert.equal(result.promoted?.path, file);
      const kf = Keyfile.parse(await text(file));
      assert.equal(readShadow(kf)?.cage, 'web');
      assert.equal(readShadow(kf)?.intact, true);
      assert.equal(kf.get(DE, 'Name'), 'Editor [web]');
      assert.equal(await exists(path.join(w.userApps, `kagome-web-${EDITOR}`)), false);
      assert.deepEqual(
        (await w.shadows.list()).map((r) => [r.cage, r.shadowId, r.primary, r.state]),
        [['web', EDITOR, true, 'active']],
      );
    });

    it('leaves the applications folder exactly as it was when the last cage is removed, MIME cache included', async () => {
      await mkdir(w.userApps, { recursive: true });
      await writeFile(
        path.join(w.userApps, 'mimeapps.list'),
        '[Default Applications]\ntext/plain=other.desktop;\n',
      );
      await writeFile(
        path.join(w.userApps, 'other.desktop'),
        '[Desktop Entry]\nType=Application\nName=Other\nExec=other\n',
      );
      const before = await snapshot(w.userApps);
      await w.shadows.add('work', EDITOR);
      await w.shadows.add('web', EDITOR);
      assert.equal(
        await text(path.join(w.userApps, 'mimeinfo.cache')),
        `[MIME Cache]\ntext/plain=kagome-web-${EDITOR};${EDITOR};\n`,
      );
      await w.shadows.remove('web', EDITOR);
      await w.shadows.remove('work', EDITOR);
      assert.deepEqual(await snapshot(w.userApps), before);
      assert.deepEqual(await w.shadows.list(), []);
    });

    it('moves a user entry at the same path aside on add and back, byte for byte, on remove', async () => {
      await mkdir(w.userApps, { recursive: true });
      const userEntry = Buffer.from(
        '# mine\n[Desktop Entry]\nType=Application\nName=My Editor\nExec=exampleeditor --mine %f\nX-Mine=1\n',
      );
      const atId = path.join(w.userApps, EDITOR);
      const aside = path.join(w.dataHome, 'kagome', 'originals', 'applications', EDITOR);
      await writeFile(atId, userEntry);
      const record = await w.shadows.add('work', EDITOR);
      assert.deepEqual(await readFile(aside), userEntry);
      assert.equal(record.sourcePath, aside);
      const info = await shadowInfo(atId);
      assert.equal(info?.sourcePath, aside);
      assert.equal(Keyfile.parse(await text(atId)).get(DE, 'Name'), 'My Editor [work]');
      const result = await w.shadows.remove('work', EDITOR);
      assert.equal(result.restored, atId);
      assert.deepEqual(await readFile(atId), userEntry);
      assert.equal(await exists(aside), false);
    });

    it('does not report the user entry that remove put back as a replaced shadow', async () => {
      await mkdir(w.userApps, { recursive: true });
      await writeFile(path.join(w.userApps, EDITOR), editorText('My Editor'));
      await w.shadows.add('work', EDITOR);
      await w.shadows.sync();
      await w.shadows.remove('work', EDITOR);
      assert.deepEqual((await w.shadows.sync()).replaced, []);
    });

    it('removeCage removes every shadow of that cage and only those', async () => {
      await w.shadows.add('work', EDITOR);
      await w.shadows.add('work', PLAIN);
      await w.shadows.add('web', EDITOR);
      const removed = await w.shadows.removeCage('work');
      assert.deepEqual(removed.map((r) => [r.cage, r.entryId]).sort(), [
        ['work', EDITOR],
        ['work', PLAIN],
      ]);
      assert.deepEqual(
        (await w.shadows.list()).map((r) => [r.cage, r.entryId, r.shadowId]),
        [['web', EDITOR, EDITOR]],
      );
      assert.equal(await exists(path.join(w.userApps, PLAIN)), false);
      assert.equal(await exists(path.join(w.userApps, `kagome-web-${EDITOR}`)), false);
    });
  });

  describe('sync', () => {
    const empty = { updated: [], dormant: [], revived: [], edited: [], replaced: [], problems: [] };
    let file: string;
    beforeEach(async () => {
      await w.shadows.add('work', EDITOR);
      file = path.join(w.userApps, EDITOR);
      w.updateDatabase.resetHistory();
    });

    it('does nothing, and does not refresh the MIME cache, when nothing changed', async () => {
      const before = await snapshot(w.root);
      assert.deepEqual(await w.shadows.sync(), empty);
      assert.deepEqual(await snapshot(w.root), before);
      assert.ok(w.updateDatabase.notCalled);
    });

    it('updates the shadow when the original changed', async () => {
      await writeFile(path.join(w.sysApps, EDITOR), editorText('Editor 2'));
      const report = await w.shadows.sync();
      assert.deepEqual(
        report.updated.map((r) => [r.cage, r.entryId, r.path]),
        [['work', EDITOR, file]],
      );
      assert.deepEqual({ ...report, updated: [] }, empty);
      assert.equal(await text(file), await w.shadows.preview('work', EDITOR));
      assert.equal(Keyfile.parse(await text(file)).get(DE, 'Name'), 'Editor 2 [work]');
      assert.ok(w.updateDatabase.calledOnceWith(w.userApps));
    });

    it('moves the shadow to the dormant folder when the original is deleted, and revives it when it is back', async () => {
      const shadowText = await text(file);
      await rm(path.join(w.sysApps, EDITOR));
      const dormantFile = path.join(w.dataHome, 'kagome', 'dormant', EDITOR);
      const report = await w.shadows.sync();
      assert.equal(report.dormant.length, 1);
      assert.equal(report.dormant[0]?.path, dormantFile);
      assert.match(report.dormant[0]?.reason ?? '', /no file with this ID/);
      assert.equal(await exists(file), false);
      assert.equal(await text(dormantFile), shadowText);
      assert.deepEqual(
        (await w.shadows.list()).map((r) => [r.cage, r.path, r.state]),
        [['work', dormantFile, 'dormant']],
      );
      assert.ok(w.updateDatabase.calledOnce);

      await writeFile(path.join(w.sysApps, EDITOR), editorText());
      const back = await w.shadows.sync();
      assert.deepEqual(
        back.revived.map((r) => [r.cage, r.path, r.state]),
        [['work', file, 'active']],
      );
      assert.deepEqual(back.dormant, []);
      assert.equal(await exists(dormantFile), false);
      assert.equal(await text(file), shadowText);
      assert.deepEqual(
        (await w.shadows.list()).map((r) => [r.path, r.state]),
        [[file, 'active']],
      );
    });

    it('makes the shadow dormant, saying why, when the original is no longer valid UTF-8', async () => {
      await writeFile(
        path.join(w.sysApps, EDITOR),
        Buffer.concat([
          Buffer.from('[Desktop Entry]\nType=Application\nName=Edit'),
          Buffer.from([0xff, 0xfe]),
          Buffer.from('\nExec=exampleeditor\n'),
        ]),
      );
      const report = await w.shadows.sync();
      assert.equal(report.dormant.length, 1);
      assert.match(report.dormant[0]?.reason ?? '', /UTF-8/);
      assert.equal(await exists(file), false);
      assert.equal((await w.shadows.list())[0]?.state, 'dormant');
    });

    it('reports an original with a broken Exec as a problem and leaves the shadow alone', async () => {
      const before = await text(file);
      await writeFile(
        path.join(w.sysApps, EDITOR),
        '[Desktop Entry]\nType=Application\nName=Editor\nExec=exampleeditor "unclosed\n',
      );
      const report = await w.shadows.sync();
      assert.equal(report.problems.length, 1);
      assert.equal(report.problems[0]?.record.entryId, EDITOR);
      assert.match(report.problems[0]?.reason ?? '', /Exec/);
      assert.deepEqual({ ...report, problems: [] }, empty);
      assert.equal(await text(file), before);
      assert.ok(w.updateDatabase.notCalled);
    });

    it('reports a hand-edited shadow whose original changed as edited and leaves it alone', async () => {
      const edited = (await text(file)) + '# my note\n';
      await writeFile(file, edited);
      await writeFile(path.join(w.sysApps, EDITOR), editorText('Editor 2'));
      const report = await w.shadows.sync();
      assert.deepEqual(
        report.edited.map((r) => [r.cage, r.path, r.state]),
        [['work', file, 'edited']],
      );
      assert.deepEqual({ ...report, edited: [] }, empty);
      assert.equal(await text(file), edited);
      assert.ok(w.updateDatabase.notCalled);
    });

    it('reports a shadow replaced by a non-shadow entry once', async () => {
      await writeFile(
        file,
        '[Desktop Entry]\nType=Application\nName=Editor\nExec=exampleeditor %F\n',
      );
      const first = await w.shadows.sync();
      assert.deepEqual(first.replaced, [file]);
      const second = await w.shadows.sync();
      assert.deepEqual(second, empty);
    });

    it('does not report a hand-edited shadow as edited while its original is unchanged', async () => {
      await writeFile(file, (await text(file)) + '# my note\n');
      assert.deepEqual((await w.shadows.sync()).edited, []);
    });

    it('with IDs, checks only the shadows of those IDs', async () => {
      const before = await text(file);
      await writeFile(path.join(w.sysApps, EDITOR), editorText('Editor 2'));
      assert.deepEqual(await w.shadows.sync(new Set(['org.example.Unrelated.desktop'])), empty);
      assert.equal(await text(file), before);
      assert.ok(w.updateDatabase.notCalled);
      const report = await w.shadows.sync(new Set([EDITOR]));
      assert.deepEqual(
        report.updated.map((r) => r.path),
        [file],
      );
      assert.ok(w.updateDatabase.calledOnce);
    });
  });
});
