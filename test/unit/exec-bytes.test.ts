import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  argValue,
  expandExec,
  fileUriToPath,
  fileUriToPathBytes,
  parseExec,
  pathBytesToFileUri,
  pathToFileUri,
} from '../../xdg/exec.js';

// File names as bytes in xdg/exec.ts: file:// URIs that carry any name (UTF-8 or not) both
// ways, refusals of URIs that name no local file, and Exec expansion that hands a program the
// exact bytes of a name that is not UTF-8.

/** A deterministic generator, so a failure can be reproduced. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NOT_UTF8 = Buffer.concat([
  Buffer.from('/home/u/caf'),
  Buffer.from([0xe9]),
  Buffer.from(' '),
  Buffer.from([0xff, 0x80]),
  Buffer.from('.txt'),
]);
const NOT_UTF8_URI = 'file:///home/u/caf%E9%20%FF%80.txt';

describe('pathBytesToFileUri', () => {
  // Every byte outside the unreserved set (and '/') is %XX with upper-case hex.
  it('encodes bytes that are not UTF-8 as %XX', () => {
    assert.equal(pathBytesToFileUri(NOT_UTF8), NOT_UTF8_URI);
    assert.equal(pathBytesToFileUri(Buffer.from('/')), 'file:///');
    assert.equal(pathBytesToFileUri(Buffer.from("/a-_.!~*'()Z9")), "file:///a-_.!~*'()Z9");
    assert.equal(
      pathBytesToFileUri(Buffer.from('/%/?/#/ /\n/\\')),
      'file:///%25/%3F/%23/%20/%0A/%5C',
    );
    assert.equal(
      pathBytesToFileUri(Buffer.from([0x2f, 0x01, 0x7f, 0x80, 0xff])),
      'file:///%01%7F%80%FF',
    );
  });

  it('refuses a relative or empty path', () => {
    for (const p of [Buffer.from('rel/x'), Buffer.alloc(0), Buffer.from([0xff, 0x2f])]) {
      assert.throws(
        () => pathBytesToFileUri(p),
        (e: { errorName?: string; message: string }) =>
          e.errorName === 'InvalidArgument' && /relative path/.test(e.message),
      );
    }
  });

  it('encodes UTF-8 paths exactly as pathToFileUri does', () => {
    const fixed = [
      '/home/u/ä ö/日本語 🦀.txt',
      "/t/!'()*~-_.",
      '/p/%41',
      '/a b/c?d#e&f=g+h;i,j:k@l$m',
      '/\t\r\n',
      '/Ω/\u00a0/\u2028/\ufeff',
      '/𝄞/👩‍👩‍👧',
    ];
    for (const t of fixed) assert.equal(pathBytesToFileUri(Buffer.from(t)), pathToFileUri(t), t);
    const random = rng(1);
    // Code points from ASCII, Latin, CJK, emoji and the rest of the planes, no surrogates.
    const ranges: [number, number][] = [
      [0x01, 0x7f],
      [0x80, 0x7ff],
      [0x800, 0xd7ff],
      [0xe000, 0xfffd],
      [0x10000, 0x10ffff],
    ];
    for (let i = 0; i < 2000; i++) {
      const segments: string[] = [];
      for (let s = 0, n = 1 + Math.floor(random() * 4); s < n; s++) {
        let seg = '';
        for (let c = 0, len = 1 + Math.floor(random() * 12); c < len; c++) {
          const [lo, hi] = ranges[Math.floor(random() * ranges.length)]!;
          const cp = lo + Math.floor(random() * (hi - lo + 1));
          if (cp !== 0x2f) seg += String.fromCodePoint(cp);
        }
        // pathToFileUri normalizes a path; kernel paths are normal already ('.', '..', '//' never appear).
        if (seg !== '' && seg !== '.' && seg !== '..') segments.push(seg);
      }
      const p = '/' + segments.join('/');
      assert.equal(pathBytesToFileUri(Buffer.from(p)), pathToFileUri(p), JSON.stringify(p));
    }
  });
});

describe('fileUriToPathBytes', () => {
  // Decoding gives the exact bytes; anything that is not a local file:// URI is undefined.
  it('decodes %XX into any byte, upper or lower case', () => {
    assert.deepEqual(fileUriToPathBytes(NOT_UTF8_URI), NOT_UTF8);
    assert.deepEqual(
      fileUriToPathBytes('file:///caf%e9%ff%Fe%fE'),
      Buffer.concat([Buffer.from('/caf'), Buffer.from([0xe9, 0xff, 0xfe, 0xfe])]),
    );
    assert.deepEqual(fileUriToPathBytes('file:///a%2eb%41'), Buffer.from('/a.bA'));
    assert.deepEqual(fileUriToPathBytes('file:///%e9'), Buffer.from([0x2f, 0xe9]));
    assert.deepEqual(fileUriToPathBytes('file:///%25'), Buffer.from('/%'));
    assert.deepEqual(
      fileUriToPathBytes('file:///%252F'),
      Buffer.from('/%2F'),
      'an escaped % is not an escaped /',
    );
    assert.deepEqual(fileUriToPathBytes('file:///'), Buffer.from('/'));
  });

  it('takes literal characters in the URI as their UTF-8 bytes', () => {
    assert.deepEqual(fileUriToPathBytes('file:///ä 日'), Buffer.from('/ä 日'));
  });

  it('accepts localhost as the host', () => {
    assert.deepEqual(fileUriToPathBytes('file://localhost/a%FF'), Buffer.from([0x2f, 0x61, 0xff]));
  });

  it('refuses URIs that name no local file', () => {
    const refused = [
      'http://example.com/x',
      'https://localhost/x',
      'sftp:///x',
      'x-file:///x',
      'file://host/x',
      'file://localhost.example.com/x',
      'file://user@localhost/x',
      'file:relative',
      'file://',
      'file:///x?q',
      'file:///x?',
      'file:///x#f',
      'file:///x#',
      'file:///a%2Fb',
      'file:///a%2fb',
      'file:///a%00',
      'file:///%00b',
      'file:///a%zz',
      'file:///a%4',
      'file:///a%',
      'file:///a%%41',
      'file:///a%G0',
      '/plain/path',
      '',
    ];
    for (const u of refused) assert.equal(fileUriToPathBytes(u), undefined, u);
  });

  it('round-trips 2000 random byte names', () => {
    const random = rng(2);
    for (let i = 0; i < 2000; i++) {
      const len = 1 + Math.floor(random() * 60);
      // Any byte but NUL, '/' included: a path is bytes 0x01-0xff.
      const p = Buffer.from([
        0x2f,
        ...Array.from({ length: len }, () => 1 + Math.floor(random() * 255)),
      ]);
      const uri = pathBytesToFileUri(p);
      assert.match(uri, /^file:\/\/\/[A-Za-z0-9\-_.!~*'()/%]*$/, 'the URI is ASCII');
      assert.deepEqual(fileUriToPathBytes(uri), p, p.toString('hex'));
    }
  });

  it('agrees with fileUriToPath on URIs of UTF-8 paths', () => {
    for (const t of ['/home/u/ä ö/日本語 🦀.txt', '/a%b/c?d', '/x/\n']) {
      const uri = pathToFileUri(t);
      assert.deepEqual(fileUriToPathBytes(uri), Buffer.from(fileUriToPath(uri)!), uri);
      assert.deepEqual(fileUriToPathBytes(uri), Buffer.from(t));
    }
  });
});

describe('argValue', () => {
  // A name stays a string when it can, and the same bytes when it cannot.
  it('is a string for UTF-8 bytes and the bytes otherwise', () => {
    assert.equal(argValue(Buffer.from('é 日 🦀')), 'é 日 🦀');
    assert.equal(argValue(Buffer.alloc(0)), '');
    const bad = Buffer.from([0x61, 0xff]);
    const v = argValue(bad);
    assert.ok(Buffer.isBuffer(v));
    assert.deepEqual(v, bad);
    assert.ok(
      Buffer.isBuffer(argValue(Buffer.from([0xed, 0xa0, 0x80]))),
      'an encoded surrogate is not UTF-8',
    );
  });
});

describe('expandExec with names that are not UTF-8', () => {
  // %f/%F hand the program the exact bytes (a Buffer argv element, also inside a word like
  // --file=%f); %u/%U pass URIs on untouched; UTF-8 names stay strings.
  const other = Buffer.concat([Buffer.from('/tmp/'), Buffer.from([0xfe, 0x0a])]);

  it('%f gives a Buffer with the exact bytes, one run per file', () => {
    const runs = expandExec(parseExec('view %f'), {
      uris: [NOT_UTF8_URI, pathBytesToFileUri(other)],
    });
    assert.equal(runs.length, 2);
    assert.ok(Buffer.isBuffer(runs[0]![1]));
    assert.deepEqual(runs, [
      ['view', NOT_UTF8],
      ['view', other],
    ]);
  });

  it('%F gives all names in one run, bytes where needed and strings where possible', () => {
    const runs = expandExec(parseExec('view --flag %F'), {
      uris: [
        NOT_UTF8_URI,
        'file:///ok/%C3%A9',
        'https://example.com/x',
        'file:///a%2Fb',
        pathBytesToFileUri(other),
      ],
    });
    assert.deepEqual(runs, [['view', '--flag', NOT_UTF8, '/ok/é', other]]);
    assert.equal(typeof runs[0]![3], 'string');
  });

  it('--file=%f with such a name is one Buffer argument', () => {
    const runs = expandExec(parseExec('view --file=%f --x'), { uris: [NOT_UTF8_URI] });
    assert.equal(runs.length, 1);
    assert.equal(runs[0]!.length, 3);
    const arg = runs[0]![1];
    assert.ok(Buffer.isBuffer(arg));
    assert.deepEqual(arg, Buffer.concat([Buffer.from('--file='), NOT_UTF8]));
    assert.deepEqual(expandExec(parseExec('view --file=%f'), { uris: ['file:///ok/%C3%A9'] }), [
      ['view', '--file=/ok/é'],
    ]);
    assert.deepEqual(expandExec(parseExec('view a%fb'), { uris: ['file:///%FF'] }), [
      ['view', Buffer.from([0x61, 0x2f, 0xff, 0x62])],
    ]);
  });

  it('%u and %U pass a file URI of such a name on as the URI', () => {
    assert.deepEqual(expandExec(parseExec('view %u'), { uris: [NOT_UTF8_URI] }), [
      ['view', NOT_UTF8_URI],
    ]);
    assert.deepEqual(expandExec(parseExec('view %U'), { uris: [NOT_UTF8_URI, 'https://x/'] }), [
      ['view', NOT_UTF8_URI, 'https://x/'],
    ]);
    assert.deepEqual(expandExec(parseExec('view --uri=%u'), { uris: [NOT_UTF8_URI] }), [
      ['view', `--uri=${NOT_UTF8_URI}`],
    ]);
  });

  it('%f drops URIs that name no local file', () => {
    assert.deepEqual(
      expandExec(parseExec('view %f'), { uris: ['file:///a%00', 'file://host/x'] }),
      [['view']],
    );
    assert.deepEqual(expandExec(parseExec('view --file=%f'), { uris: ['http://x/y'] }), [['view']]);
  });
});
