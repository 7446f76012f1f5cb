import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { FileError, KagomeError } from '../../lib/errors.js';
import {
  Keyfile,
  escapeValue,
  joinList,
  localeFallbacks,
  localesFromEnv,
  splitList,
  unescapeValue,
} from '../../xdg/keyfile.js';

const fixture = (name: string): Buffer =>
  readFileSync(new URL(`../../../test/fixtures/desktop/${name}`, import.meta.url));
const DE = 'Desktop Entry';

function parseError(
  input: string | Uint8Array,
  options?: Parameters<typeof Keyfile.parse>[1],
): FileError {
  try {
    Keyfile.parse(input, options);
  } catch (e) {
    assert.ok(e instanceof FileError, `expected a FileError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected the parse to fail');
}

describe('Keyfile round trip', () => {
  it('writes an unchanged fixture back byte for byte', () => {
    const bytes = fixture('fooview.desktop');
    const kf = Keyfile.parse(bytes, { file: 'fooview.desktop' });
    assert.equal(kf.toString(), bytes.toString('utf8'));
    assert.equal(kf.file, 'fooview.desktop');
  });

  it('keeps a missing final newline', () => {
    const bytes = fixture('no-final-newline.desktop');
    const text = bytes.toString('utf8');
    assert.ok(!text.endsWith('\n'));
    assert.equal(Keyfile.parse(bytes).toString(), text);
  });

  it('keeps CRLF line endings, also when editing', () => {
    const text = '# top\r\n[A]\r\nk1 = v1\r\nk2=v2\r\n\r\n# about B\r\n[B]\r\nb=1\r\n';
    const kf = Keyfile.parse(text);
    assert.equal(kf.toString(), text);
    assert.equal(kf.get('A', 'k1'), 'v1');
    kf.set('A', 'k1', 'changed');
    kf.set('A', 'k3', 'new');
    assert.equal(
      kf.toString(),
      '# top\r\n[A]\r\nk1 = changed\r\nk2=v2\r\nk3=new\r\n\r\n# about B\r\n[B]\r\nb=1\r\n',
    );
  });

  it('keeps mixed line endings as found', () => {
    const text = '[A]\r\na=1\nb=2\r\n';
    const kf = Keyfile.parse(text);
    assert.equal(kf.toString(), text);
    kf.set('A', 'a', '9');
    assert.equal(kf.toString(), '[A]\r\na=9\nb=2\r\n');
  });

  it('adds lines to a file without final newline without adding one', () => {
    const kf = Keyfile.parse('[A]\r\na=1');
    kf.set('A', 'b', '2');
    assert.equal(kf.toString(), '[A]\r\na=1\r\nb=2');
    kf.delete('A', 'b');
    assert.equal(kf.toString(), '[A]\r\na=1');
  });

  it('keeps a byte order mark', () => {
    const text = '\uFEFF[A]\na=1\n';
    const kf = Keyfile.parse(Buffer.from(text, 'utf8'));
    assert.deepEqual(kf.groups(), ['A']);
    assert.equal(kf.toString(), text);
  });

  it('round trips the empty file and whitespace-only lines', () => {
    assert.equal(Keyfile.parse('').toString(), '');
    const text = '\n  \n\t\n[A]\n   \n';
    assert.equal(Keyfile.parse(text).toString(), text);
  });

  it('changes only the edited line of the fixture', () => {
    const text = fixture('fooview.desktop').toString('utf8');
    const kf = Keyfile.parse(text);
    kf.set(DE, 'X-Odd-Spacing', 'other');
    kf.set(DE, 'Name', 'Fooview 2', 'de');
    const before = text.split('\n');
    const after = kf.toString().split('\n');
    assert.equal(after.length, before.length);
    const changed = before.flatMap((l, i) => (l === after[i] ? [] : [[l, after[i]]]));
    assert.deepEqual(changed, [
      ['Name[de]=Foobetrachter', 'Name[de]=Fooview 2'],
      ['X-Odd-Spacing   =   spaced value', 'X-Odd-Spacing   =   other'],
    ]);
  });

  it('leaves a line alone when set() is given the value it already has', () => {
    const text = '[A]\nk=\\x20 a\\sb\n';
    const kf = Keyfile.parse(text);
    const value = kf.get('A', 'k')!;
    kf.set('A', 'k', value);
    kf.setList('A', 'k', kf.getList('A', 'k')!);
    assert.equal(kf.toString(), text);
  });

  it('parses 1 MB of keys quickly and round trips them', () => {
    const lines = ['[Desktop Entry]'];
    let size = 0;
    for (let i = 0; size < 1_000_000; i++) {
      const line = `X-Key-${i}[de_DE]=value number ${i} with some padding text`;
      lines.push(line);
      size += line.length + 1;
    }
    const text = lines.join('\n') + '\n';
    const start = performance.now();
    const kf = Keyfile.parse(Buffer.from(text));
    const out = kf.toString();
    const ms = performance.now() - start;
    assert.equal(out, text);
    assert.equal(kf.keys(DE).length, lines.length - 1);
    assert.equal(kf.get(DE, 'X-Key-1234', 'de_DE'), 'value number 1234 with some padding text');
    assert.equal(kf.lineOf(DE, 'X-Key-1234', 'de_DE'), 1236);
    assert.ok(ms < 2000, `parse and write took ${ms} ms`);
  });
});

describe('Keyfile reading', () => {
  const kf = Keyfile.parse(fixture('fooview.desktop'), { file: 'fooview.desktop' });

  it('lists groups in file order', () => {
    assert.deepEqual(kf.groups(), [DE, 'Desktop Action new-window', 'Desktop Action slideshow']);
    assert.ok(kf.hasGroup('Desktop Action slideshow'));
    assert.ok(!kf.hasGroup('Desktop Action missing'));
    assert.equal(kf.groupLine('Desktop Action new-window'), 35);
  });

  it('reads keys with locales and line numbers', () => {
    const keys = kf.keys(DE);
    assert.deepEqual(keys.slice(0, 4), [
      { key: 'Version', locale: undefined, line: 4 },
      { key: 'Type', locale: undefined, line: 5 },
      { key: 'Name', locale: undefined, line: 6 },
      { key: 'Name', locale: 'de', line: 7 },
    ]);
    assert.equal(kf.lineOf(DE, 'Name', 'sr@latin'), 11);
    assert.equal(kf.lineOf(DE, 'Name', 'xx'), undefined);
    assert.deepEqual(kf.keys('nope'), []);
    assert.deepEqual(
      kf
        .keys('Desktop Action slideshow')
        .map((k) => `${k.key}${k.locale ? `[${k.locale}]` : ''}:${k.line}`),
      ['Name:42', 'Name[de]:43', 'Name[sr@latin]:44', 'Exec:45'],
    );
  });

  it('reads values', () => {
    assert.equal(kf.get(DE, 'Name'), 'Fooview');
    assert.equal(kf.get(DE, 'Name', 'sr@latin'), 'Fugled');
    assert.equal(kf.get(DE, 'Name', 'zh_CN'), 'Foo 查看器');
    assert.equal(kf.get(DE, 'Comment'), 'Shows #1 foos');
    assert.equal(kf.get(DE, 'Exec'), 'fooview --title "Foo; Bar" %F');
    assert.equal(kf.get(DE, 'StartupNotify'), 'true');
    assert.equal(kf.get(DE, 'X-Odd-Spacing'), 'spaced value');
    assert.equal(kf.getRaw(DE, 'X-Odd-Spacing'), 'spaced value');
    assert.equal(kf.get(DE, 'X-Empty'), '');
    assert.equal(kf.get(DE, 'Missing'), undefined);
    assert.equal(kf.get('No Group', 'Name'), undefined);
    assert.ok(kf.has(DE, 'Name', 'de_DE'));
    assert.ok(!kf.has(DE, 'Name', 'de_AT'));
  });

  it('unescapes values', () => {
    assert.equal(kf.getRaw(DE, 'X-Escapes'), 'line one\\nline two\\ttabbed\\\\ and \\s leading');
    assert.equal(kf.get(DE, 'X-Escapes'), 'line one\nline two\ttabbed\\ and   leading');
  });

  it('splits lists, with \\; inside an element', () => {
    assert.deepEqual(kf.getList(DE, 'MimeType'), ['a/b', 'x/y;z']);
    assert.deepEqual(kf.getList(DE, 'Categories'), ['Graphics', 'Viewer']);
    assert.deepEqual(kf.getList(DE, 'Keywords', 'de'), ['Foo', 'Betrachten']);
    assert.deepEqual(kf.getList(DE, 'Actions'), ['new-window', 'slideshow']);
    assert.equal(kf.getList(DE, 'Nope'), undefined);
  });

  it('reads booleans strictly', () => {
    assert.equal(kf.getBoolean(DE, 'Terminal'), false);
    assert.equal(kf.getBoolean(DE, 'StartupNotify'), true);
    assert.equal(kf.getBoolean(DE, 'NoDisplay'), undefined);
    const bad = Keyfile.parse('[A]\nok=true\nb=1\n', {
      file: 'x.cage',
      errorName: 'InvalidCageFile',
    });
    assert.throws(
      () => bad.getBoolean('A', 'b'),
      (e: unknown) =>
        e instanceof FileError &&
        e.errorName === 'InvalidCageFile' &&
        e.line === 3 &&
        e.key === 'b' &&
        e.file === 'x.cage' &&
        /true or false/.test(e.message),
    );
  });

  it('matches locales the way the spec says', () => {
    const names = (locales: string[]) => kf.getLocaleString(DE, 'Name', locales);
    assert.equal(names(['de_DE.UTF-8@euro']), 'Foobetrachter (Deutschland)');
    assert.equal(names(['de_AT']), 'Foobetrachter');
    assert.equal(names(['de_AT.UTF-8']), 'Foobetrachter');
    assert.equal(names(['sr_RS@latin']), 'Fugled');
    assert.equal(names(['sr_RS']), 'Фуглед');
    assert.equal(names(['sr@latin']), 'Fugled');
    assert.equal(names(['ca_ES@valencia']), 'Visor de foo');
    assert.equal(names(['ca_ES']), 'Fooview');
    assert.equal(names(['pt']), 'Fooview');
    assert.equal(names(['pt_BR']), 'Visualizador de foo');
    assert.equal(names(['nl', 'fr']), 'Visionneuse de foo');
    assert.equal(names(['C']), 'Fooview');
    assert.equal(names([]), 'Fooview');
    assert.equal(
      kf.getLocaleString('Desktop Action new-window', 'Name', ['de_CH']),
      'Neues Fenster',
    );
    assert.equal(kf.getLocaleString(DE, 'Missing', ['de']), undefined);
    assert.deepEqual(kf.getLocaleList(DE, 'Keywords', ['de_DE']), ['Foo', 'Betrachten']);
    assert.deepEqual(kf.getLocaleList(DE, 'Keywords', ['fr']), ['foo', 'view']);
  });

  it('matches translations whose key carries an encoding', () => {
    const k = Keyfile.parse('[A]\nN=plain\nN[de_DE.UTF-8]=enc\nN[fr.UTF-8@euro]=fr\n');
    assert.equal(k.getLocaleString('A', 'N', ['de_DE']), 'enc');
    assert.equal(k.getLocaleString('A', 'N', ['fr_FR@euro']), 'fr');
    assert.equal(k.getLocaleString('A', 'N', ['it']), 'plain');
  });

  it('treats # inside a value as part of it, and # at line start as a comment', () => {
    const k = Keyfile.parse('# c\n[A]\n#k=1\nk=a # b\n  # indented\n');
    assert.equal(k.get('A', 'k'), 'a # b');
    assert.deepEqual(
      k.keys('A').map((x) => x.key),
      ['k'],
    );
  });

  it('accepts whitespace around = and indentation', () => {
    const k = Keyfile.parse('[A]\n  a\t= \t1\nb= 2 \nc =3\n');
    assert.equal(k.get('A', 'a'), '1');
    // Only the whitespace after '=' is dropped; trailing whitespace is part of the value.
    assert.equal(k.get('A', 'b'), '2 ');
    assert.equal(k.get('A', 'c'), '3');
  });
});

describe('Keyfile errors', () => {
  it('rejects invalid UTF-8 and names the line', () => {
    const bytes = Buffer.concat([
      Buffer.from('[A]\nok=1\nName=caf'),
      Buffer.from([0xc3, 0x28]),
      Buffer.from('\n'),
    ]);
    const e = parseError(bytes, { file: 'bad.desktop' });
    assert.equal(e.errorName, 'InvalidDesktopEntry');
    assert.equal(e.file, 'bad.desktop');
    assert.equal(e.line, 3);
    assert.match(e.message, /^bad\.desktop:3: .*UTF-8/);
  });

  it('rejects overlong, surrogate and truncated UTF-8 sequences', () => {
    for (const bad of [
      [0xc0, 0xaf],
      [0xed, 0xa0, 0x80],
      [0xe2, 0x82],
      [0xf5, 0x80, 0x80, 0x80],
      [0xff],
    ]) {
      const e = parseError(Buffer.concat([Buffer.from('[A]\nx='), Buffer.from(bad)]));
      assert.equal(e.line, 2, `bytes ${bad.join(',')}`);
    }
    assert.equal(Keyfile.parse(Buffer.from('[A]\nx=€𝄞\n')).get('A', 'x'), '€𝄞');
  });

  it("uses the caller's error name", () => {
    const e = parseError('[Cage]\nk=1\nk=2\n', { file: 'web.cage', errorName: 'InvalidCageFile' });
    assert.equal(e.errorName, 'InvalidCageFile');
    assert.equal(e.dbusName, 'io.kagome.Error.InvalidCageFile');
    assert.equal(e.line, 3);
    assert.match(
      e.message,
      /^web\.cage:3: k: duplicate key k in group \[Cage\] \(first at line 2\)$/,
    );
  });

  const cases: [string, string, number, RegExp][] = [
    ['key before any group', '# c\nName=x\n[A]\n', 2, /before any group/],
    ['duplicate group', '[A]\na=1\n[B]\n[A]\n', 4, /duplicate group \[A\] \(first at line 1\)/],
    ['duplicate localized key', '[A]\nN[de]=1\nN=2\nN[de]=3\n', 4, /duplicate key N\[de\]/],
    [
      'line without =',
      '[A]\na=1\njust some words\n',
      3,
      /not a group header, comment or Key=value/,
    ],
    ['invalid key character', '[A]\nmy_key=1\n', 2, /invalid key name "my_key"/],
    ['key with space', '[A]\nmy key=1\n', 2, /invalid key name/],
    ['empty key', '[A]\n=1\n', 2, /invalid key name/],
    ['bad locale', '[A]\nName[d e]=1\n', 2, /invalid locale/],
    ['empty locale', '[A]\nName[]=1\n', 2, /invalid locale/],
    ['unclosed locale', '[A]\nName[de=1\n', 2, /invalid key name/],
    ['unterminated group', '[A]\na=1\n[Desktop Entry\n', 3, /unterminated group header/],
    ['text after group', '[A] x\n', 1, /after the closing/],
    ['empty group name', '[]\n', 1, /invalid group name/],
    ['bracket in group name', '[a[b]\n', 1, /invalid group name/],
  ];
  for (const [name, text, line, re] of cases) {
    it(`rejects ${name}`, () => {
      const e = parseError(text, { file: 'f.desktop' });
      assert.equal(e.errorName, 'InvalidDesktopEntry');
      assert.equal(e.line, line);
      assert.ok(e.message.startsWith(`f.desktop:${line}:`), e.message);
      assert.match(e.message, re);
    });
  }

  it('allows the same key with different locales, and any key with lenientKeys', () => {
    const k = Keyfile.parse('[A]\nN=1\nN[de]=2\nN[de_DE]=3\n');
    assert.equal(k.keys('A').length, 3);
    const m = Keyfile.parse('[Default Applications]\nx-scheme-handler/http=firefox.desktop;\n', {
      lenientKeys: true,
    });
    assert.deepEqual(m.getList('Default Applications', 'x-scheme-handler/http'), [
      'firefox.desktop',
    ]);
    assert.throws(() => Keyfile.parse('[A]\nx/y=1\n'), FileError);
  });
});

describe('Keyfile editing', () => {
  it('appends new keys at the end of their group, before comments about the next group', () => {
    const kf = Keyfile.parse('[A]\na=1\n# about a\nb=2\n\n# about B\n[B]\nc=3\n');
    kf.set('A', 'new', 'x');
    kf.set('B', 'd', 'y');
    assert.equal(kf.toString(), '[A]\na=1\n# about a\nb=2\nnew=x\n\n# about B\n[B]\nc=3\nd=y\n');
    assert.equal(kf.lineOf('A', 'new'), 5);
    assert.equal(kf.lineOf('B', 'c'), 9);
    assert.deepEqual(
      kf.keys('A').map((k) => k.key),
      ['a', 'b', 'new'],
    );
  });

  it('puts a key into an empty group right after its header', () => {
    const kf = Keyfile.parse('[A]\n\n# B\n[B]\n');
    kf.set('A', 'k', 'v');
    assert.equal(kf.toString(), '[A]\nk=v\n\n# B\n[B]\n');
  });

  it('creates groups as needed, separated by a blank line', () => {
    const kf = Keyfile.create();
    assert.equal(kf.file, '<memory>');
    kf.set('Cage', 'Description', 'Web browsing');
    kf.setList('Cage', 'ReadOnly', ['/a', '/b;c']);
    kf.setBoolean('Cage', 'Network', true);
    kf.addGroup('Other');
    kf.set('Other', 'x', '1');
    kf.addGroup('Cage');
    assert.equal(
      kf.toString(),
      '[Cage]\nDescription=Web browsing\nReadOnly=/a;/b\\;c;\nNetwork=true\n\n[Other]\nx=1\n',
    );
    const back = Keyfile.parse(kf.toString());
    assert.deepEqual(back.getList('Cage', 'ReadOnly'), ['/a', '/b;c']);
    assert.equal(back.getBoolean('Cage', 'Network'), true);
  });

  it('does not add a second blank line before a new group', () => {
    const kf = Keyfile.parse('[A]\na=1\n\n');
    kf.addGroup('B');
    assert.equal(kf.toString(), '[A]\na=1\n\n[B]\n');
  });

  it('escapes values so that they cannot inject lines', () => {
    const kf = Keyfile.parse('[A]\na=1\n');
    kf.set('A', 'a', 'x\n[Evil]\nExec=rm -rf ~');
    kf.set('A', 'b', '  lead and trail  ');
    kf.set('A', 'c', 'back\\slash\ttab\rcr');
    const text = kf.toString();
    assert.equal(
      text,
      '[A]\na=x\\n[Evil]\\nExec=rm -rf ~\nb=\\s lead and trail \\s\nc=back\\\\slash\\ttab\\rcr\n',
    );
    const back = Keyfile.parse(text);
    assert.deepEqual(back.groups(), ['A']);
    assert.equal(back.get('A', 'a'), 'x\n[Evil]\nExec=rm -rf ~');
    assert.equal(back.get('A', 'b'), '  lead and trail  ');
    assert.equal(back.get('A', 'c'), 'back\\slash\ttab\rcr');
  });

  it('sets localized keys and raw values', () => {
    const kf = Keyfile.parse('[A]\nName=x\n');
    kf.set('A', 'Name', 'y', 'sr@latin');
    kf.setRaw('A', 'Exec', 'foo\\sbar');
    assert.equal(kf.toString(), '[A]\nName=x\nName[sr@latin]=y\nExec=foo\\sbar\n');
    assert.equal(kf.get('A', 'Exec'), 'foo bar');
  });

  it('rejects invalid names and unsafe raw values', () => {
    const kf = Keyfile.create();
    const invalidArg = (e: unknown) =>
      e instanceof KagomeError && e.errorName === 'InvalidArgument';
    assert.throws(() => kf.set('A', 'bad key', 'x'), invalidArg);
    assert.throws(() => kf.set('A', 'k', 'x', 'd e'), invalidArg);
    assert.throws(() => kf.setRaw('A', 'k', 'a\nb=c'), invalidArg);
    assert.throws(() => kf.setRaw('A', 'k', ' lead'), invalidArg);
    assert.throws(() => kf.addGroup('a]b'), invalidArg);
    assert.throws(() => kf.addGroup(''), invalidArg);
    assert.equal(kf.toString(), '');
  });

  it('deletes keys', () => {
    const kf = Keyfile.parse('[A]\na=1\nb=2\nb[de]=3\n');
    assert.equal(kf.delete('A', 'b'), true);
    assert.equal(kf.delete('A', 'b'), false);
    assert.equal(kf.delete('Z', 'b'), false);
    assert.equal(kf.toString(), '[A]\na=1\nb[de]=3\n');
    assert.equal(kf.lineOf('A', 'b', 'de'), 3);
    kf.set('A', 'b', 'again');
    assert.equal(kf.toString(), '[A]\na=1\nb[de]=3\nb=again\n');
  });

  it('removes groups with their own comments', () => {
    const text = fixture('fooview.desktop').toString('utf8');
    const kf = Keyfile.parse(text);
    assert.equal(kf.removeGroup('Desktop Action new-window'), true);
    assert.equal(kf.removeGroup('Desktop Action new-window'), false);
    assert.ok(!kf.toString().includes('New Window'));
    assert.ok(
      kf.toString().includes('# The slideshow action is experimental.\n[Desktop Action slideshow]'),
    );
    assert.equal(kf.groupLine('Desktop Action slideshow'), 36);
    kf.removeGroup('Desktop Action slideshow');
    assert.ok(kf.toString().endsWith('X-Empty=\n'), JSON.stringify(kf.toString().slice(-40)));
    assert.deepEqual(kf.groups(), [DE]);

    const k2 = Keyfile.parse('[A]\na=1\n\n# B is about b\n[B]\nb=1\n\n[C]\nc=1\n');
    k2.removeGroup('B');
    assert.equal(k2.toString(), '[A]\na=1\n\n[C]\nc=1\n');
    k2.removeGroup('A');
    assert.equal(k2.toString(), '[C]\nc=1\n');
  });
});

describe('value escaping helpers', () => {
  it('escapes and unescapes', () => {
    assert.equal(escapeValue(' a\\b\nc\td\re '), '\\sa\\\\b\\nc\\td\\re\\s');
    assert.equal(escapeValue(' '), '\\s');
    assert.equal(escapeValue(''), '');
    assert.equal(unescapeValue('\\sa\\\\b\\nc\\td\\re\\s'), ' a\\b\nc\td\re ');
    // Unknown escapes and a trailing backslash stay as written.
    assert.equal(unescapeValue('a\\;b\\$c\\'), 'a\\;b\\$c\\');
    for (const s of ['', ' ', '  x  ', 'a\\\\n', '\n\n', 'tab\there', 'ü € 𝄞']) {
      assert.equal(unescapeValue(escapeValue(s)), s, JSON.stringify(s));
    }
  });

  it('splits and joins lists', () => {
    assert.deepEqual(splitList('a/b;x/y\\;z;'), ['a/b', 'x/y;z']);
    assert.deepEqual(splitList('a;b'), ['a', 'b']);
    assert.deepEqual(splitList(''), []);
    assert.deepEqual(splitList(';'), ['']);
    assert.deepEqual(splitList('a;;b;'), ['a', '', 'b']);
    assert.deepEqual(splitList('a\\\\;b'), ['a\\', 'b']);
    assert.deepEqual(splitList('a\\sb\\n;c'), ['a b\n', 'c']);
    assert.equal(joinList(['a/b', 'x/y;z']), 'a/b;x/y\\;z;');
    assert.equal(joinList([]), '');
    assert.equal(joinList(['']), ';');
    for (const list of [[], [''], ['a'], ['a;b', 'c\\', ' d ', 'e\nf'], ['', '']]) {
      assert.deepEqual(splitList(joinList(list)), list);
    }
  });

  it('computes locale fallbacks and reads locales from the environment', () => {
    assert.deepEqual(localeFallbacks('de_DE.UTF-8@euro'), ['de_DE@euro', 'de_DE', 'de@euro', 'de']);
    assert.deepEqual(localeFallbacks('sr@latin'), ['sr@latin', 'sr']);
    assert.deepEqual(localeFallbacks('pt_BR'), ['pt_BR', 'pt']);
    assert.deepEqual(localeFallbacks('C.UTF-8'), []);
    assert.deepEqual(localesFromEnv({ LANG: 'de_DE.UTF-8' }), ['de_DE.UTF-8']);
    assert.deepEqual(localesFromEnv({ LANG: 'de_DE.UTF-8', LC_MESSAGES: 'fr_FR' }), ['fr_FR']);
    assert.deepEqual(localesFromEnv({ LANG: 'de_DE', LC_ALL: 'it_IT', LC_MESSAGES: 'fr_FR' }), [
      'it_IT',
    ]);
    assert.deepEqual(localesFromEnv({ LANG: 'de_DE', LANGUAGE: 'nl:fr::en' }), ['nl', 'fr', 'en']);
    assert.deepEqual(localesFromEnv({ LANG: 'C', LANGUAGE: 'nl' }), []);
    assert.deepEqual(localesFromEnv({}), []);
  });
});
