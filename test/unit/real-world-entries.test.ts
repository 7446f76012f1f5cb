// Hand-written desktop entries modelled on what distributions install (a browser with
// many translations, an image editor with a long MimeType list, an office program with a
// quoted Exec, a D-Bus activatable GNOME app, a file full of comments, ...). Every
// fixture passes `desktop-file-validate`; these tests check that the keyfile layer reads
// them as a desktop would and writes them back without touching what it did not change.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { Keyfile } from '../../xdg/keyfile.js';
import { expandExec, parseExec } from '../../xdg/exec.js';

const DIR = new URL('../../../test/fixtures/desktop/real/', import.meta.url);
const DE = 'Desktop Entry';

const FIXTURES = [
  'examplecounter.desktop',
  'examplemail-mailto.desktop',
  'exampleoffice-writer.desktop',
  'examplesettings-power.desktop',
  'examplevi.desktop',
  'org.example.Browser.desktop',
  'org.example.ImageEditor.desktop',
  'org.example.Notes.desktop',
  'org.example.kviewer.desktop',
];

const bytesOf = (name: string): Buffer => readFileSync(new URL(name, DIR));
const load = (name: string): Keyfile => Keyfile.parse(bytesOf(name), { file: name });

/** Lines that differ between two texts of the same line count, as [1-based line, before, after]. */
function changedLines(before: string, after: string): [number, string, string][] {
  const a = before.split('\n');
  const b = after.split('\n');
  assert.equal(b.length, a.length, 'the edit must not add or remove lines');
  return a.flatMap((l, i) => (l === b[i] ? [] : [[i + 1, l, b[i]!] as [number, string, string]]));
}

/** Translations of one key in one group, as locale -> raw value. */
function translations(kf: Keyfile, group: string, key: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const k of kf.keys(group))
    if (k.key === key && k.locale !== undefined)
      out.set(k.locale, kf.getRaw(group, key, k.locale)!);
  return out;
}

describe('real-world desktop entries: round trip', () => {
  it('has the expected set of fixtures', () => {
    const found = readdirSync(DIR)
      .filter((f) => f.endsWith('.desktop'))
      .sort();
    assert.deepEqual(found, [...FIXTURES].sort());
  });

  for (const name of FIXTURES) {
    it(`parses ${name} and writes it back byte for byte`, () => {
      const bytes = bytesOf(name);
      const kf = Keyfile.parse(bytes, { file: name });
      assert.ok(kf.hasGroup(DE), 'has a [Desktop Entry] group');
      assert.ok(kf.keys(DE).length >= 5, 'found the keys of [Desktop Entry]');
      assert.ok(kf.get(DE, 'Name'), 'has a Name');
      assert.equal(kf.get(DE, 'Type') ?? 'Application', 'Application');
      const out = Buffer.from(kf.toString());
      // A string comparison first gives a readable diff; the byte comparison is the point.
      assert.equal(out.toString('utf8'), bytes.toString('utf8'));
      assert.ok(out.equals(bytes), 'byte-identical output');
    });
  }

  it('keeps the missing final newline of org.example.kviewer.desktop', () => {
    const bytes = bytesOf('org.example.kviewer.desktop');
    assert.notEqual(bytes.at(-1), 0x0a, 'the fixture itself must lack the final newline');
    const out = Buffer.from(load('org.example.kviewer.desktop').toString());
    assert.notEqual(out.at(-1), 0x0a);
    assert.ok(out.toString().endsWith('X-DBUS-StartupType=Multi'));
  });

  it('keeps the trailing whitespace of the comment in examplevi.desktop', () => {
    const text = bytesOf('examplevi.desktop').toString('utf8');
    const first = text.split('\n')[0]!;
    assert.ok(first.startsWith('#') && first.endsWith('   \t'), 'the fixture itself must have it');
    assert.equal(load('examplevi.desktop').toString().split('\n')[0], first);
  });
});

describe('real-world desktop entries: values', () => {
  describe('org.example.Browser.desktop', () => {
    const kf = load('org.example.Browser.desktop');
    const name = (...locales: string[]) => kf.getLocaleString(DE, 'Name', locales);

    it('has 40+ translations of Name, GenericName, Comment and Keywords', () => {
      for (const key of ['Name', 'GenericName', 'Comment', 'Keywords']) {
        const t = translations(kf, DE, key);
        assert.ok(t.size >= 40, `${key} has only ${t.size} translations`);
        for (const l of ['de', 'pt_BR', 'sr@latin', 'zh_TW', 'en_GB', 'ca@valencia'])
          assert.ok(t.has(l), `${key}[${l}]`);
      }
    });

    it('holds translations in many scripts', () => {
      const values = [
        ...translations(kf, DE, 'Name').values(),
        ...translations(kf, DE, 'Comment').values(),
      ].join(' ');
      const scripts = [
        'Arabic',
        'Bengali',
        'Cyrillic',
        'Devanagari',
        'Georgian',
        'Greek',
        'Han',
        'Hangul',
        'Hebrew',
        'Katakana',
        'Hiragana',
        'Tamil',
        'Thai',
      ];
      const missing = scripts.filter((s) => !new RegExp(`\\p{Script=${s}}`, 'u').test(values));
      assert.deepEqual(missing, []);
    });

    it('looks up translations with the spec fallbacks', () => {
      assert.equal(name(), 'Example Browser');
      assert.equal(name('C'), 'Example Browser');
      assert.equal(name('de_DE.UTF-8'), 'Example-Browser');
      assert.equal(name('de_CH@euro'), 'Example-Browser');
      assert.equal(name('sr_RS@latin'), 'Example pregledač');
      assert.equal(name('sr_RS'), 'Example прегледач');
      assert.equal(name('pt_BR.UTF-8'), 'Navegador Example');
      assert.equal(name('pt_PT'), 'Navegador Example');
      assert.equal(name('zh_TW.UTF-8'), 'Example 瀏覽器');
      assert.equal(name('zh_HK'), 'Example Browser');
      assert.equal(name('ca_ES@valencia'), 'Navegador Example');
      assert.equal(name('xx', 'ar_EG.UTF-8', 'de'), 'متصفح إكزامبل');
      assert.equal(kf.getLocaleString(DE, 'GenericName', ['en_GB.UTF-8']), 'Web Browser');
      assert.equal(kf.getLocaleString(DE, 'Comment', ['ja_JP.UTF-8']), 'ウェブを閲覧します');
      assert.equal(
        kf.getLocaleString(DE, 'Comment', ['el_GR']),
        'Περιηγηθείτε στον παγκόσμιο ιστό',
      );
      assert.deepEqual(kf.getLocaleList(DE, 'Keywords', ['vi_VN']), [
        'Internet',
        'WWW',
        'Trình duyệt',
        'Web',
      ]);
      assert.deepEqual(kf.getLocaleList(DE, 'Keywords', ['tr_TR.UTF-8']), [
        'İnternet',
        'WWW',
        'Tarayıcı',
        'Web',
      ]);
      assert.deepEqual(kf.getLocaleList(DE, 'Keywords', ['nn']), [
        'Internet',
        'WWW',
        'Browser',
        'Web',
        'Explorer',
      ]);
    });

    it('has three desktop actions with translated names and their own Exec', () => {
      const actions = kf.getList(DE, 'Actions');
      assert.deepEqual(actions, ['new-window', 'new-private-window', 'profile-manager']);
      assert.deepEqual(kf.groups(), [DE, ...actions!.map((a) => `Desktop Action ${a}`)]);
      assert.equal(kf.get('Desktop Action new-window', 'Exec'), 'examplebrowser --new-window %u');
      assert.equal(
        kf.get('Desktop Action new-private-window', 'Exec'),
        'examplebrowser --private-window %u',
      );
      assert.equal(
        kf.get('Desktop Action profile-manager', 'Exec'),
        'examplebrowser --profile-manager',
      );
      assert.equal(
        kf.getLocaleString('Desktop Action new-private-window', 'Name', ['it_IT.UTF-8']),
        'Nuova finestra anonima',
      );
      assert.equal(
        kf.getLocaleString('Desktop Action new-window', 'Name', ['sr_RS@latin']),
        'Novi prozor',
      );
      // Only sr@latin is translated here: plain Serbian falls back to the untranslated name.
      assert.equal(
        kf.getLocaleString('Desktop Action profile-manager', 'Name', ['sr_RS']),
        'Open the Profile Manager',
      );
      assert.equal(
        kf.getLocaleString('Desktop Action profile-manager', 'Name', ['ko_KR']),
        '프로필 관리자 열기',
      );
      assert.ok(translations(kf, 'Desktop Action new-window', 'Name').size >= 10);
    });

    it('reads Exec, booleans and lists', () => {
      assert.deepEqual(parseExec(kf.get(DE, 'Exec')!), ['examplebrowser', { fieldCode: 'u' }]);
      assert.equal(kf.getBoolean(DE, 'StartupNotify'), true);
      assert.equal(kf.getBoolean(DE, 'Terminal'), false);
      assert.equal(kf.get(DE, 'StartupWMClass'), 'examplebrowser');
      const mime = kf.getList(DE, 'MimeType')!;
      assert.equal(mime.length, 13);
      assert.ok(mime.includes('x-scheme-handler/https'));
      assert.deepEqual(kf.getList(DE, 'Categories'), ['Network', 'WebBrowser']);
    });
  });

  describe('org.example.ImageEditor.desktop', () => {
    const kf = load('org.example.ImageEditor.desktop');

    it('reads the long MimeType list', () => {
      const mime = kf.getList(DE, 'MimeType')!;
      assert.equal(mime.length, 37);
      assert.equal(mime[0], 'image/bmp');
      assert.equal(mime.at(-1), 'image/qoi');
      assert.ok(mime.includes('image/x-xcf') && mime.includes('image/svg+xml'));
      assert.ok(
        mime.every((m) => /^[a-z0-9.+-]+\/[a-z0-9.+-]+$/.test(m)),
        'no element has a stray ; or space',
      );
    });

    it('keeps an escaped \\; inside one list element', () => {
      assert.deepEqual(kf.getList(DE, 'X-Example-OpenFilters'), [
        'Images (*.png;*.jpg;*.webp)',
        'Raw photos (*.cr2;*.nef;*.dng)',
        'All files (*)',
      ]);
    });

    it('reads Exec with %U, TryExec and StartupWMClass', () => {
      const exec = parseExec(kf.get(DE, 'Exec')!);
      assert.deepEqual(exec, ['exampleimage-3.0', { fieldCode: 'U' }]);
      assert.deepEqual(
        expandExec(exec, { files: ['/tmp/a b.png'], uris: ['https://example.org/c.jpg'] }),
        [['exampleimage-3.0', 'file:///tmp/a%20b.png', 'https://example.org/c.jpg']],
      );
      assert.equal(kf.get(DE, 'TryExec'), 'exampleimage-3.0');
      assert.equal(kf.get(DE, 'StartupWMClass'), 'exampleimage-3.0');
    });

    it('falls back from sr@latin to sr', () => {
      assert.equal(kf.getLocaleString(DE, 'Name', ['sr@latin']), 'Example уређивач слика');
      assert.equal(kf.getLocaleString(DE, 'GenericName', ['sr_RS.UTF-8@latin']), 'Уређивач слика');
      assert.deepEqual(kf.getLocaleList(DE, 'Keywords', ['de_AT']), [
        'Bild',
        'Foto',
        'Malen',
        'Zeichnen',
        'Retusche',
        'Ebenen',
      ]);
    });
  });

  describe('exampleoffice-writer.desktop', () => {
    const kf = load('exampleoffice-writer.desktop');

    it('decodes both escaping layers of the quoted Exec arguments', () => {
      // The file has \\" \\` \\$ and \\\\; the keyfile layer halves the backslashes...
      const exec = kf.get(DE, 'Exec')!;
      assert.equal(
        exec,
        'exampleoffice --writer --title "Say \\"hi\\" to \\`whoami\\` at \\$HOME" --template-dir "C:\\\\Templates\\\\Letters" %F',
      );
      // ...and the Exec layer removes the remaining ones inside the quotes.
      assert.deepEqual(parseExec(exec), [
        'exampleoffice',
        '--writer',
        '--title',
        'Say "hi" to `whoami` at $HOME',
        '--template-dir',
        'C:\\Templates\\Letters',
        { fieldCode: 'F' },
      ]);
      assert.deepEqual(
        expandExec(parseExec(exec), { files: ['/home/u/a.odt', '/home/u/b.docx'] })[0]!.slice(-3),
        ['C:\\Templates\\Letters', '/home/u/a.odt', '/home/u/b.docx'],
      );
    });

    it('reads Path, the action and %% inside quotes', () => {
      assert.equal(kf.get(DE, 'Path'), '/opt/exampleoffice/program');
      assert.deepEqual(kf.getList(DE, 'Actions'), ['new-document']);
      assert.deepEqual(parseExec(kf.get('Desktop Action new-document', 'Exec')!), [
        'exampleoffice',
        '--writer',
        '--new',
        '%-template',
      ]);
      assert.equal(
        kf.getLocaleString('Desktop Action new-document', 'Name', ['es_MX']),
        'Documento nuevo',
      );
      assert.equal(kf.getLocaleString(DE, 'GenericName', ['pt_BR.UTF-8']), 'Processador de texto');
      assert.equal(kf.getLocaleString(DE, 'GenericName', ['pt_PT']), 'Word Processor');
    });
  });

  describe('org.example.Notes.desktop', () => {
    const kf = load('org.example.Notes.desktop');

    it('is D-Bus activatable with a gapplication service Exec', () => {
      assert.equal(kf.getBoolean(DE, 'DBusActivatable'), true);
      assert.deepEqual(parseExec(kf.get(DE, 'Exec')!), ['examplenotes', '--gapplication-service']);
      assert.equal(kf.get(DE, 'Version'), undefined);
      assert.deepEqual(kf.getList(DE, 'NotShowIn'), ['KDE']);
      assert.deepEqual(kf.getList(DE, 'X-Purism-FormFactor'), ['Workstation', 'Mobile']);
      assert.equal(kf.getBoolean(DE, 'X-GNOME-UsesNotifications'), true);
    });

    it('skips the translator comment between keys', () => {
      assert.equal(kf.lineOf(DE, 'Comment', 'uk'), 9);
      assert.equal(kf.lineOf(DE, 'Keywords'), 11);
      assert.ok(kf.keys(DE).every((k) => !k.key.startsWith('#')));
      assert.equal(kf.getLocaleString(DE, 'Name', ['zh_CN.UTF-8']), '笔记');
      assert.equal(kf.getLocaleString(DE, 'Name', ['zh_TW']), 'Notes');
    });
  });

  describe('examplecounter.desktop', () => {
    const kf = load('examplecounter.desktop');

    it('finds groups and keys between comments and blank lines', () => {
      assert.deepEqual(kf.groups(), [DE, 'X-Vendor Extra']);
      assert.equal(kf.groupLine(DE), 5);
      assert.equal(kf.lineOf(DE, 'Name'), 10);
      assert.equal(kf.lineOf(DE, 'Icon'), 16);
      assert.equal(kf.groupLine('X-Vendor Extra'), 26);
      assert.deepEqual(
        kf.keys('X-Vendor Extra').map((k) => `${k.key}:${k.line}`),
        ['Interval:28', 'Channel:29', 'Note:30'],
      );
      assert.equal(kf.keys(DE).length, 14);
    });

    it('keeps # inside values', () => {
      assert.equal(kf.get(DE, 'Comment'), 'Shows #1 foos');
      assert.equal(
        kf.getLocaleString(DE, 'Comment', ['de_AT.UTF-8']),
        'Zeigt die Foos auf Platz #1',
      );
      assert.equal(kf.get(DE, 'X-Example-Homepage'), 'https://example.org/counter#top');
      assert.equal(
        kf.get('X-Vendor Extra', 'Note'),
        'free text; with = signs and [brackets] # not a comment',
      );
    });

    it('decodes \\s \\n \\t \\r and \\\\', () => {
      assert.equal(
        kf.get(DE, 'X-Example-Motd'),
        ' Indented start\nsecond line\tafter a tab\rcarriage return and a backslash \\ here',
      );
      assert.equal(kf.get(DE, 'X-Example-WindowsPath'), 'C:\\Counter\\foos.ini');
      assert.equal(kf.getRaw(DE, 'X-Example-WindowsPath'), 'C:\\\\Counter\\\\foos.ini');
      assert.equal(kf.get('X-Vendor Extra', 'Interval'), '30');
      assert.equal(kf.getBoolean(DE, 'StartupNotify'), false);
    });
  });

  describe('examplevi.desktop', () => {
    const kf = load('examplevi.desktop');

    it('is a terminal program taking one file per run', () => {
      assert.equal(kf.getBoolean(DE, 'Terminal'), true);
      const exec = parseExec(kf.get(DE, 'Exec')!);
      assert.deepEqual(exec, ['examplevi', { fieldCode: 'f' }]);
      assert.deepEqual(expandExec(exec, { files: ['/etc/hosts', '/etc/fstab'] }), [
        ['examplevi', '/etc/hosts'],
        ['examplevi', '/etc/fstab'],
      ]);
      assert.equal(kf.getLocaleString(DE, 'GenericName', ['ko_KR.UTF-8']), '텍스트 편집기');
      assert.deepEqual(kf.getList(DE, 'Categories'), ['Utility', 'TextEditor', 'ConsoleOnly']);
    });
  });

  describe('examplemail-mailto.desktop', () => {
    const kf = load('examplemail-mailto.desktop');

    it('is a hidden URL handler taking one URL per run', () => {
      assert.equal(kf.getBoolean(DE, 'NoDisplay'), true);
      assert.equal(kf.getBoolean(DE, 'StartupNotify'), true);
      assert.deepEqual(kf.getList(DE, 'MimeType'), ['x-scheme-handler/mailto']);
      const exec = parseExec(kf.get(DE, 'Exec')!);
      assert.deepEqual(exec, ['examplemail', '--compose', { fieldCode: 'u' }]);
      assert.deepEqual(
        expandExec(exec, { uris: ['mailto:a@example.org', 'mailto:b@example.org'] }),
        [
          ['examplemail', '--compose', 'mailto:a@example.org'],
          ['examplemail', '--compose', 'mailto:b@example.org'],
        ],
      );
      assert.equal(kf.getLocaleString(DE, 'Name', ['it_IT.UTF-8']), 'Example Mail (componi)');
    });
  });

  describe('examplesettings-power.desktop', () => {
    const kf = load('examplesettings-power.desktop');

    it('is shown only in some desktops', () => {
      assert.deepEqual(kf.getList(DE, 'OnlyShowIn'), ['GNOME', 'Unity']);
      assert.equal(kf.has(DE, 'NotShowIn'), false);
      assert.equal(kf.getList(DE, 'Keywords')!.length, 10);
      assert.deepEqual(parseExec(kf.get(DE, 'Exec')!), ['examplesettings', 'power']);
      assert.equal(kf.getLocaleString(DE, 'Name', ['he_IL.UTF-8']), 'חשמל');
      assert.equal(
        kf.getLocaleString(DE, 'Comment', ['cs_CZ']),
        'Zobrazit stav baterie a změnit nastavení úspory energie',
      );
    });
  });

  describe('org.example.kviewer.desktop', () => {
    const kf = load('org.example.kviewer.desktop');

    it('expands %i %c %k', () => {
      const exec = parseExec(kf.get(DE, 'Exec')!);
      assert.deepEqual(exec, [
        'examplekviewer',
        { fieldCode: 'i' },
        '-qwindowtitle',
        { fieldCode: 'c' },
        '--desktop-file',
        { fieldCode: 'k' },
        { fieldCode: 'U' },
      ]);
      const name = kf.getLocaleString(DE, 'GenericName', ['sv_SE.UTF-8'])!;
      assert.equal(name, 'Dokumentvisare');
      const ctx = {
        icon: kf.get(DE, 'Icon')!,
        name,
        desktopFile: '/usr/share/applications/org.example.kviewer.desktop',
        uris: ['file:///a.pdf'],
      };
      assert.deepEqual(expandExec(exec, ctx), [
        [
          'examplekviewer',
          '--icon',
          'org.example.kviewer',
          '-qwindowtitle',
          'Dokumentvisare',
          '--desktop-file',
          '/usr/share/applications/org.example.kviewer.desktop',
          'file:///a.pdf',
        ],
      ]);
    });

    it('reads the last line, which has no newline', () => {
      assert.equal(kf.get(DE, 'X-DBUS-StartupType'), 'Multi');
      assert.deepEqual(kf.getList(DE, 'NotShowIn'), ['GNOME']);
      assert.equal(kf.getBoolean(DE, 'StartupNotify'), true);
    });
  });
});

describe('real-world desktop entries: editing changes only the edited line', () => {
  for (const name of FIXTURES) {
    it(`renames ${name}`, () => {
      const kf = load(name);
      const before = kf.toString();
      const line = kf.lineOf(DE, 'Name')!;
      const old = kf.getRaw(DE, 'Name');
      kf.set(DE, 'Name', 'Renamed Program');
      assert.deepEqual(changedLines(before, kf.toString()), [
        [line, `Name=${old}`, 'Name=Renamed Program'],
      ]);
    });
  }

  it('edits one translation among dozens', () => {
    const kf = load('org.example.Browser.desktop');
    const before = kf.toString();
    kf.set(DE, 'Name', 'Example pretraživač', 'sr@latin');
    kf.set(
      'Desktop Action profile-manager',
      'Exec',
      'examplebrowser --profile-manager --no-remote',
    );
    assert.deepEqual(changedLines(before, kf.toString()), [
      [50, 'Name[sr@latin]=Example pregledač', 'Name[sr@latin]=Example pretraživač'],
      [
        283,
        'Exec=examplebrowser --profile-manager',
        'Exec=examplebrowser --profile-manager --no-remote',
      ],
    ]);
    assert.equal(kf.getLocaleString(DE, 'Name', ['sr_RS@latin']), 'Example pretraživač');
    assert.equal(kf.getLocaleString(DE, 'Name', ['sr_RS']), 'Example прегледач');
  });

  it('re-escapes a quoted Exec the way it was written', () => {
    const kf = load('exampleoffice-writer.desktop');
    const before = kf.toString();
    const line = kf.lineOf(DE, 'Exec')!;
    const raw = kf.getRaw(DE, 'Exec')!;
    kf.set(DE, 'Exec', kf.get(DE, 'Exec')!.replace('Letters', 'Memos'));
    assert.deepEqual(changedLines(before, kf.toString()), [
      [line, `Exec=${raw}`, `Exec=${raw.replace('Letters', 'Memos')}`],
    ]);
    assert.ok(raw.includes('"C:\\\\\\\\Templates\\\\\\\\Letters"'), 'four backslashes in the file');
  });

  it('edits values in a commented file, escaping a new line break', () => {
    const kf = load('examplecounter.desktop');
    const before = kf.toString();
    kf.set('X-Vendor Extra', 'Interval', '60');
    kf.set(DE, 'X-Example-Motd', 'two\nlines');
    kf.set(DE, 'Comment', 'Shows #2 foos');
    assert.deepEqual(changedLines(before, kf.toString()), [
      [13, 'Comment=Shows #1 foos', 'Comment=Shows #2 foos'],
      [21, before.split('\n')[20]!, 'X-Example-Motd=two\\nlines'],
      [28, 'Interval=30', 'Interval=60'],
    ]);
    assert.ok(before.split('\n')[20]!.startsWith('X-Example-Motd=\\sIndented'));
  });

  it('edits the last line of a file without a final newline and adds none', () => {
    const kf = load('org.example.kviewer.desktop');
    const before = kf.toString();
    kf.set(DE, 'X-DBUS-StartupType', 'Unique');
    const after = kf.toString();
    const n = before.split('\n').length;
    assert.deepEqual(changedLines(before, after), [
      [n, 'X-DBUS-StartupType=Multi', 'X-DBUS-StartupType=Unique'],
    ]);
    assert.ok(!after.endsWith('\n'));
  });

  it('keeps the trailing whitespace of a comment when editing another line', () => {
    const kf = load('examplevi.desktop');
    const before = kf.toString();
    kf.setBoolean(DE, 'Terminal', false);
    const line = kf.lineOf(DE, 'Terminal')!;
    assert.deepEqual(changedLines(before, kf.toString()), [
      [line, 'Terminal=true', 'Terminal=false'],
    ]);
    assert.ok(kf.toString().split('\n')[0]!.endsWith('on purpose.   \t'));
  });

  it('leaves the file alone when a value is set to what it already is', () => {
    for (const name of FIXTURES) {
      const kf = load(name);
      const before = kf.toString();
      kf.set(DE, 'Exec', kf.get(DE, 'Exec')!);
      kf.setList(DE, 'Categories', kf.getList(DE, 'Categories')!);
      assert.equal(kf.toString(), before, name);
    }
  });
});
