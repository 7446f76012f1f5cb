import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KagomeError } from '../../lib/errors.js';
import { Keyfile } from '../../xdg/keyfile.js';
import {
  expandExec,
  fileUriToPath,
  formatExec,
  parseExec,
  pathToFileUri,
  quoteExecArg,
  type ExecArg,
} from '../../xdg/exec.js';

const F = { fieldCode: 'F' } as const;
const f = { fieldCode: 'f' } as const;
const U = { fieldCode: 'U' } as const;
const u = { fieldCode: 'u' } as const;

function invalidExec(raw: string, re: RegExp): void {
  assert.throws(
    () => parseExec(raw),
    (e: unknown) => {
      assert.ok(e instanceof KagomeError, String(e));
      assert.equal(e.errorName, 'InvalidDesktopEntry');
      assert.match(e.message, re);
      return true;
    },
    raw,
  );
}

/** Parse as found in a file: keyfile unescaping first, then Exec quoting. */
function execOfLine(line: string): ExecArg[] {
  return parseExec(Keyfile.parse(`[Desktop Entry]\n${line}\n`).get('Desktop Entry', 'Exec')!);
}

describe('parseExec', () => {
  it('splits on spaces and tabs', () => {
    assert.deepEqual(parseExec('  foo   bar\tbaz  '), ['foo', 'bar', 'baz']);
  });

  it('handles double quotes and their escapes', () => {
    assert.deepEqual(parseExec('fooview --title "Foo; Bar" %F'), [
      'fooview',
      '--title',
      'Foo; Bar',
      F,
    ]);
    assert.deepEqual(parseExec('p "a\\"b" "c\\`d" "e\\$f" "g\\\\h"'), [
      'p',
      'a"b',
      'c`d',
      'e$f',
      'g\\h',
    ]);
    assert.deepEqual(parseExec('p ""'), ['p', '']);
    assert.deepEqual(parseExec('p "" ""'), ['p', '', '']);
    // Other backslashes inside double quotes are literal, as in a shell.
    assert.deepEqual(parseExec('p "a\\nb\\x"'), ['p', 'a\\nb\\x']);
    // ...so a backslash does not protect a '%' inside quotes.
    invalidExec('p "\\%x"', /unknown field code %x/);
    assert.deepEqual(parseExec('p "a\'b" "<>|&;*?#()~"'), ['p', "a'b", '<>|&;*?#()~']);
    assert.deepEqual(parseExec('p "multi\nline"'), ['p', 'multi\nline']);
  });

  it('applies both levels of escaping to a line from a file', () => {
    assert.deepEqual(execOfLine('Exec=sh -c "echo \\\\"hi\\\\" \\\\$HOME"'), [
      'sh',
      '-c',
      'echo "hi" $HOME',
    ]);
    assert.deepEqual(execOfLine('Exec=p "a\\\\\\\\b"'), ['p', 'a\\b']);
    assert.deepEqual(execOfLine('Exec=p\\sq'), ['p', 'q']);
    assert.deepEqual(execOfLine('Exec=fooview --title "Foo; Bar" %F'), [
      'fooview',
      '--title',
      'Foo; Bar',
      F,
    ]);
  });

  it('accepts shell-style forms that real desktops accept', () => {
    assert.deepEqual(parseExec('env WINEPREFIX="/home/u/.wine" wine x.exe'), [
      'env',
      'WINEPREFIX=/home/u/.wine',
      'wine',
      'x.exe',
    ]);
    assert.deepEqual(parseExec('sh -c \'echo $HOME "x"\''), ['sh', '-c', 'echo $HOME "x"']);
    assert.deepEqual(parseExec('wine C:\\\\Program\\ Files\\\\x.exe'), [
      'wine',
      'C:\\Program Files\\x.exe',
    ]);
    assert.deepEqual(parseExec('p a"b c"d'), ['p', 'ab cd']);
    assert.deepEqual(parseExec('p ~/x $HOME a|b a&b a;b *?# (x) `y` <in >out'), [
      'p',
      '~/x',
      '$HOME',
      'a|b',
      'a&b',
      'a;b',
      '*?#',
      '(x)',
      '`y`',
      '<in',
      '>out',
    ]);
  });

  it('parses every field code', () => {
    assert.deepEqual(parseExec('p %f'), ['p', f]);
    assert.deepEqual(parseExec('p %F'), ['p', F]);
    assert.deepEqual(parseExec('p %u'), ['p', u]);
    assert.deepEqual(parseExec('p %U'), ['p', U]);
    assert.deepEqual(parseExec('p %i %c %k'), [
      'p',
      { fieldCode: 'i' },
      { fieldCode: 'c' },
      { fieldCode: 'k' },
    ]);
    assert.deepEqual(parseExec('p 100%% "50%%" %%%%'), ['p', '100%', '50%', '%%']);
    assert.deepEqual(parseExec('p --file=%f --name=%c:%k'), [
      'p',
      ['--file=', f],
      ['--name=', { fieldCode: 'c' }, ':', { fieldCode: 'k' }],
    ]);
    assert.deepEqual(parseExec('p %f.txt'), ['p', [f, '.txt']]);
  });

  it('drops deprecated field codes', () => {
    assert.deepEqual(parseExec('p %d %D %n %N %v %m %U'), ['p', U]);
    assert.deepEqual(parseExec('p a%db %d%m'), ['p', 'ab']);
    assert.deepEqual(parseExec('%m p'), ['p']);
  });

  it('rejects invalid lines', () => {
    invalidExec('', /no program/);
    invalidExec('   ', /no program/);
    invalidExec('p "abc', /unterminated double quote/);
    invalidExec('p "a\\"', /unterminated double quote/);
    invalidExec("p 'abc", /unterminated single quote/);
    invalidExec('p a"b', /unterminated double quote/);
    invalidExec('p abc\\', /backslash at the end/);
    invalidExec('p "%f"', /field code %f inside a quoted argument/);
    invalidExec('p "--file=%U"', /field code %U inside a quoted argument/);
    invalidExec("p '%c'", /field code %c inside a quoted argument/);
    invalidExec('p "%d"', /field code %d inside a quoted argument/);
    invalidExec('p %f %u', /more than one/);
    invalidExec('p %F %F', /more than one/);
    invalidExec('p --a=%f --b=%f', /more than one/);
    invalidExec('p %x', /unknown field code %x/);
    invalidExec('p 50%', /'%' at the end/);
    invalidExec('p 50% x', /unknown field code % /);
    invalidExec('p "%y"', /unknown field code %y/);
    invalidExec('p --files=%F', /%F must be an argument on its own/);
    invalidExec('p x%U', /%U must be an argument on its own/);
    invalidExec('p --%i', /%i must be an argument on its own/);
    invalidExec('%f', /program name/);
    invalidExec('x%k p', /program name/);
    invalidExec('"" p', /empty program name/);
  });
});

describe('expandExec', () => {
  it('expands %F and %U to all files', () => {
    assert.deepEqual(expandExec(parseExec('p --x %F'), { files: ['/a', '/b c'] }), [
      ['p', '--x', '/a', '/b c'],
    ]);
    assert.deepEqual(expandExec(parseExec('p %F'), {}), [['p']]);
    assert.deepEqual(expandExec(parseExec('p %U'), { uris: ['https://e.org/', 'file:///x'] }), [
      ['p', 'https://e.org/', 'file:///x'],
    ]);
  });

  it('runs the program once per file for %f and %u', () => {
    assert.deepEqual(expandExec(parseExec('p %f end'), { files: ['/a', '/b'] }), [
      ['p', '/a', 'end'],
      ['p', '/b', 'end'],
    ]);
    assert.deepEqual(expandExec(parseExec('p %u'), { uris: ['http://a', 'http://b'] }), [
      ['p', 'http://a'],
      ['p', 'http://b'],
    ]);
    assert.deepEqual(expandExec(parseExec('p %f'), {}), [['p']]);
  });

  it('expands %f inside a word, and drops the word without files', () => {
    assert.deepEqual(expandExec(parseExec('p --file=%f.bak -v'), { files: ['/a', '/b'] }), [
      ['p', '--file=/a.bak', '-v'],
      ['p', '--file=/b.bak', '-v'],
    ]);
    assert.deepEqual(expandExec(parseExec('p --file=%f -v'), {}), [['p', '-v']]);
  });

  it('turns files into percent-encoded file URIs for %u/%U', () => {
    assert.deepEqual(
      expandExec(parseExec('p %U'), {
        files: ['/home/u/a b#1?.txt', '/tmp/ü%'],
        uris: ['mailto:x@y'],
      }),
      [['p', 'file:///home/u/a%20b%231%3F.txt', 'file:///tmp/%C3%BC%25', 'mailto:x@y']],
    );
    assert.deepEqual(expandExec(parseExec('p %u'), { files: ['rel/x'], cwd: '/w' }), [
      ['p', 'file:///w/rel/x'],
    ]);
    assert.throws(
      () => expandExec(parseExec('p %u'), { files: ['rel/x'] }),
      (e: unknown) => e instanceof KagomeError && e.errorName === 'InvalidArgument',
    );
  });

  it('turns file URIs into paths for %f/%F and drops other URIs', () => {
    assert.deepEqual(
      expandExec(parseExec('p %F'), {
        files: ['/a'],
        uris: [
          'file:///b%20c',
          'https://e.org/x',
          'file://localhost/d',
          'file://otherhost/e',
          'file:///f%2Fg',
          'not a uri',
        ],
      }),
      [['p', '/a', '/b c', '/d']],
    );
    assert.deepEqual(expandExec(parseExec('p %f'), { uris: ['http://x'] }), [['p']]);
  });

  it('expands %i, %c, %k and %%', () => {
    const args = parseExec('p %i --name %c --from=%k %k 100%%');
    assert.deepEqual(
      expandExec(args, {
        icon: 'fooview',
        name: 'Fooview',
        desktopFile: '/usr/share/applications/foo.desktop',
      }),
      [
        [
          'p',
          '--icon',
          'fooview',
          '--name',
          'Fooview',
          '--from=/usr/share/applications/foo.desktop',
          '/usr/share/applications/foo.desktop',
          '100%',
        ],
      ],
    );
    assert.deepEqual(expandExec(args, { icon: '' }), [['p', '--name', '--from=', '100%']]);
  });

  it('ignores files when the line takes none', () => {
    assert.deepEqual(expandExec(parseExec('p -x'), { files: ['/a'], uris: ['http://b'] }), [
      ['p', '-x'],
    ]);
  });
});

describe('file URIs', () => {
  it('converts both ways', () => {
    assert.equal(pathToFileUri('/a b/ü/c#d'), 'file:///a%20b/%C3%BC/c%23d');
    assert.equal(pathToFileUri('/'), 'file:///');
    assert.equal(fileUriToPath('file:///a%20b/%C3%BC/c%23d'), '/a b/ü/c#d');
    for (const p of ['/x', '/with space/and%percent', '/q\'uote"s/[b]{c}', '/日本/ファイル']) {
      assert.equal(fileUriToPath(pathToFileUri(p)), p);
    }
    assert.equal(fileUriToPath('http://x/y'), undefined);
    assert.equal(fileUriToPath('file:///a#frag'), undefined);
    assert.throws(() => pathToFileUri('relative'), KagomeError);
  });
});

describe('quoteExecArg and formatExec', () => {
  it('quotes only what needs quoting', () => {
    assert.equal(quoteExecArg('plain-arg=1,2.x/y:z'), 'plain-arg=1,2.x/y:z');
    assert.equal(quoteExecArg(''), '""');
    assert.equal(quoteExecArg('a b'), '"a b"');
    assert.equal(quoteExecArg('a"b'), '"a\\"b"');
    assert.equal(quoteExecArg('$HOME'), '"\\$HOME"');
    assert.equal(quoteExecArg('`x`'), '"\\`x\\`"');
    assert.equal(quoteExecArg('a\\b'), '"a\\\\b"');
    assert.equal(quoteExecArg("it's"), '"it\'s"');
    assert.equal(quoteExecArg('50%'), '50%%');
    assert.equal(quoteExecArg('%f'), '%%f');
    assert.equal(quoteExecArg('50% off'), '"50%% off"');
    for (const c of ['\t', '\n', '>', '<', '~', '|', '&', ';', '*', '?', '#', '(', ')']) {
      assert.equal(quoteExecArg(`a${c}b`), `"a${c}b"`, JSON.stringify(c));
    }
  });

  it('formats argv and field codes', () => {
    assert.equal(
      formatExec(['fooview', '--title', 'Foo; Bar', { fieldCode: 'F' }]),
      'fooview --title "Foo; Bar" %F',
    );
    assert.equal(formatExec(['p', ['--file=', f], { fieldCode: 'i' }]), 'p --file=%f %i');
    assert.equal(formatExec(['p', { fieldCode: '%U' }]), 'p %U');
    assert.equal(formatExec(['p', ['lit', 'eral']]), 'p literal');
  });

  it('round trips awkward arguments through the parser and the keyfile', () => {
    const argv = [
      '/opt/my app/bin',
      '',
      'a"b',
      '$X',
      '`y`',
      'c\\d',
      'e\\\\',
      '100%',
      '%f',
      "q'uote",
      'tab\there',
      'nl\nhere',
      ' lead',
      'ü',
    ];
    const line = formatExec(argv);
    assert.deepEqual(expandExec(parseExec(line)), [argv]);
    const kf = Keyfile.create();
    kf.set('Desktop Entry', 'Exec', line);
    const back = Keyfile.parse(kf.toString());
    assert.deepEqual(back.keys('Desktop Entry').length, 1);
    assert.deepEqual(expandExec(parseExec(back.get('Desktop Entry', 'Exec')!)), [argv]);
  });

  it('rejects what cannot be written', () => {
    const invalidArg = (e: unknown) =>
      e instanceof KagomeError && e.errorName === 'InvalidArgument';
    assert.throws(() => formatExec([]), invalidArg);
    assert.throws(() => formatExec(['p', f, F]), invalidArg);
    assert.throws(() => formatExec([F]), invalidArg);
    assert.throws(() => formatExec(['p', { fieldCode: 'x' }]), invalidArg);
    assert.throws(() => formatExec(['p', { fieldCode: 'd' }]), invalidArg);
    assert.throws(() => formatExec(['p', ['--x=', U]]), invalidArg);
    assert.throws(() => formatExec(['p', ['a b=', f]]), invalidArg);
  });
});
