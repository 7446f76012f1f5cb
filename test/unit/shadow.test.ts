import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileError, KagomeError } from '../../lib/errors.js';
import { Keyfile } from '../../xdg/keyfile.js';
import { parseExec } from '../../xdg/exec.js';
import {
  SHADOW_KEYS,
  checkNameFormat,
  isShadow,
  makeShadow,
  readShadow,
  type ShadowSpec,
} from '../../lib/desktop/shadow.js';

const DE = 'Desktop Entry';
const LAUNCHER = '/usr/bin/kagome-open';
const SOURCE = '/usr/share/applications/app.desktop';
const fixture = (name: string): Buffer =>
  readFileSync(new URL(`../../../test/fixtures/desktop/${name}`, import.meta.url));
const REAL_DIR = new URL('../../../test/fixtures/desktop/real/', import.meta.url);
const VALIDATOR = '/usr/bin/desktop-file-validate';

function shadowOf(original: string | Uint8Array, over: Partial<ShadowSpec> = {}): string {
  return makeShadow({
    cage: 'work',
    entryId: 'app.desktop',
    source: {
      path: SOURCE,
      bytes: typeof original === 'string' ? Buffer.from(original) : original,
    },
    launcher: LAUNCHER,
    ...over,
  });
}

const parsed = (text: string): Keyfile => Keyfile.parse(text);
const entry = (exec: string, extra = ''): string =>
  `[Desktop Entry]\nType=Application\nName=App\nExec=${exec}\n${extra}`;
const mainExec = (shadow: string): string | undefined => parsed(shadow).get(DE, 'Exec');
const sha256 = (data: string | Uint8Array): string =>
  createHash('sha256').update(data).digest('hex');

function refusal(fn: () => unknown): KagomeError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof KagomeError, `expected a KagomeError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected makeShadow to refuse the entry');
}

/** Lines in which `text` has `key` (in any group), for counting duplicates. */
const linesWithKey = (text: string, key: string): string[] =>
  text.split('\n').filter((l) => l.startsWith(`${key}=`));

describe('makeShadow: Exec rewriting', () => {
  const cases: [string, string, string][] = [
    ['%f', 'prog %f', `${LAUNCHER} --cage work --entry app.desktop -- %f`],
    ['%F', 'prog --flag %F', `${LAUNCHER} --cage work --entry app.desktop -- %F`],
    ['%u', 'prog %u', `${LAUNCHER} --cage work --entry app.desktop -- %u`],
    ['%U', 'prog %U --after', `${LAUNCHER} --cage work --entry app.desktop -- %U`],
    ['a code inside a word', 'prog --file=%f', `${LAUNCHER} --cage work --entry app.desktop -- %f`],
    ['no field code', 'prog --window', `${LAUNCHER} --cage work --entry app.desktop --`],
  ];
  for (const [what, exec, expected] of cases) {
    it(`passes on the file field code of the original: ${what}`, () => {
      assert.equal(mainExec(shadowOf(entry(exec))), expected);
    });
  }

  it('does not pass %i, %c or %k (the service expands them from the original)', () => {
    assert.equal(
      mainExec(shadowOf(entry('prog %i --name %c --from=%k %U'))),
      `${LAUNCHER} --cage work --entry app.desktop -- %U`,
    );
    assert.equal(
      mainExec(shadowOf(entry('prog %i %c %k', 'Icon=app\n'))),
      `${LAUNCHER} --cage work --entry app.desktop --`,
    );
  });

  it("gives every [Desktop Action X] its own --action X, with that action's field code", () => {
    const original =
      entry('prog %F', 'Actions=new-window;private;\n') +
      '\n[Desktop Action new-window]\nName=New Window\nExec=prog --new-window %u\n' +
      '\n[Desktop Action private]\nName=Private\nExec=prog --private\n';
    const kf = parsed(shadowOf(original));
    assert.equal(kf.get(DE, 'Exec'), `${LAUNCHER} --cage work --entry app.desktop -- %F`);
    assert.equal(
      kf.get('Desktop Action new-window', 'Exec'),
      `${LAUNCHER} --cage work --entry app.desktop --action new-window -- %u`,
    );
    assert.equal(
      kf.get('Desktop Action private', 'Exec'),
      `${LAUNCHER} --cage work --entry app.desktop --action private --`,
    );
  });

  it('quotes a launcher path with a space so that it parses back as one argument', () => {
    const launcher = '/opt/my apps/kagome-open';
    const kf = parsed(
      shadowOf(entry('prog %f', 'Actions=x;\n') + '[Desktop Action x]\nName=X\nExec=prog -x\n', {
        launcher,
      }),
    );
    for (const group of [DE, 'Desktop Action x']) {
      const args = parseExec(kf.get(group, 'Exec')!);
      assert.equal(args[0], launcher, group);
      assert.equal(args[1], '--cage', group);
    }
    assert.deepEqual(parseExec(kf.get(DE, 'Exec')!), [
      launcher,
      '--cage',
      'work',
      '--entry',
      'app.desktop',
      '--',
      { fieldCode: 'f' },
    ]);
    assert.equal(kf.get(DE, 'TryExec'), launcher);
  });

  it('keeps a launcher path with quotes, $ and a backslash intact through both levels of escaping', () => {
    const launcher = '/opt/"odd" $dir\\x/kagome-open';
    const kf = parsed(shadowOf(entry('prog'), { launcher }));
    assert.equal(parseExec(kf.get(DE, 'Exec')!)[0], launcher);
  });
});

describe('makeShadow: other Desktop Entry keys', () => {
  it('removes DBusActivatable', () => {
    const kf = parsed(shadowOf(entry('prog', 'DBusActivatable=true\n')));
    assert.equal(kf.has(DE, 'DBusActivatable'), false);
    assert.equal(kf.get(DE, 'Exec'), `${LAUNCHER} --cage work --entry app.desktop --`);
  });

  it("sets TryExec to the launcher, replacing the original's and adding it when absent", () => {
    assert.equal(parsed(shadowOf(entry('prog', 'TryExec=prog\n'))).get(DE, 'TryExec'), LAUNCHER);
    assert.equal(parsed(shadowOf(entry('prog'))).get(DE, 'TryExec'), LAUNCHER);
  });

  it('turns StartupNotify=true into false, keeps false, and does not add it when absent', () => {
    assert.equal(
      parsed(shadowOf(entry('prog', 'StartupNotify=true\n'))).get(DE, 'StartupNotify'),
      'false',
    );
    assert.equal(
      parsed(shadowOf(entry('prog', 'StartupNotify=false\n'))).get(DE, 'StartupNotify'),
      'false',
    );
    assert.equal(parsed(shadowOf(entry('prog'))).has(DE, 'StartupNotify'), false);
  });

  it('keeps the original StartupWMClass', () => {
    assert.equal(
      parsed(shadowOf(entry('/opt/x/bin/prog', 'StartupWMClass=Some-Class\n'))).get(
        DE,
        'StartupWMClass',
      ),
      'Some-Class',
    );
  });

  it('sets StartupWMClass to the basename of the original program when absent', () => {
    assert.equal(
      parsed(shadowOf(entry('/opt/foo/bin/foo-bin --x %U'))).get(DE, 'StartupWMClass'),
      'foo-bin',
    );
    assert.equal(parsed(shadowOf(entry('plainprog'))).get(DE, 'StartupWMClass'), 'plainprog');
  });

  it('applies the default name format to Name and every translation of it, and to nothing else', () => {
    const original = fixture('fooview.desktop');
    const before = Keyfile.parse(original);
    const after = parsed(shadowOf(original));
    const names = before.keys(DE).filter((k) => k.key === 'Name');
    assert.ok(names.length >= 5, 'the fixture has translated names');
    for (const { locale } of names) {
      assert.equal(
        after.get(DE, 'Name', locale),
        `${before.get(DE, 'Name', locale)} [work]`,
        `Name[${locale ?? ''}]`,
      );
    }
    assert.equal(after.get(DE, 'GenericName'), before.get(DE, 'GenericName'));
    assert.equal(
      after.get('Desktop Action new-window', 'Name'),
      before.get('Desktop Action new-window', 'Name'),
    );
  });

  it('keeps $& and $1 in a name literally', () => {
    const kf = parsed(
      shadowOf(
        '[Desktop Entry]\nType=Application\nName=Cost $& $1 $$ $`\nName[de]=$1 Preis\nExec=prog\n',
      ),
    );
    assert.equal(kf.get(DE, 'Name'), 'Cost $& $1 $$ $` [work]');
    assert.equal(kf.get(DE, 'Name', 'de'), '$1 Preis [work]');
  });

  it('uses a custom name format', () => {
    const kf = parsed(
      shadowOf(entry('prog', 'Name[fr]=Appli\n'), { nameFormat: '{name} ({cage})', cage: 'web' }),
    );
    assert.equal(kf.get(DE, 'Name'), 'App (web)');
    assert.equal(kf.get(DE, 'Name', 'fr'), 'Appli (web)');
  });

  it('checks name formats', () => {
    assert.equal(checkNameFormat('{name} [{cage}]'), undefined);
    assert.match(checkNameFormat('[{cage}]') ?? '', /\{name\}/);
    assert.match(checkNameFormat('{name} {cages}') ?? '', /unknown placeholder \{cages\}/);
  });
});

describe('makeShadow: X-Kagome keys', () => {
  it("records cage, entry, source, the source's SHA-256 and a digest", () => {
    const bytes = fixture('fooview.desktop');
    const kf = parsed(shadowOf(bytes, { cage: 'web', entryId: 'org.example.Foo.desktop' }));
    assert.equal(kf.get(DE, SHADOW_KEYS.cage), 'web');
    assert.equal(kf.get(DE, SHADOW_KEYS.entry), 'org.example.Foo.desktop');
    assert.equal(kf.get(DE, SHADOW_KEYS.source), SOURCE);
    assert.equal(kf.get(DE, SHADOW_KEYS.sourceHash), sha256(bytes));
    assert.match(kf.get(DE, SHADOW_KEYS.digest) ?? '', /^[0-9a-f]{64}$/);
  });

  it('replaces X-Kagome-* keys that the original already has instead of duplicating them', () => {
    const original = entry(
      'prog %f',
      'X-Kagome-Cage=old\nX-Kagome-Entry=old.desktop\nX-Kagome-Source=/old/path\nX-Kagome-Source-SHA256=abc\nX-Kagome-Digest=def\n',
    );
    const text = shadowOf(original);
    for (const key of Object.values(SHADOW_KEYS))
      assert.equal(linesWithKey(text, key).length, 1, key);
    const info = readShadow(parsed(text));
    assert.deepEqual(info, {
      cage: 'work',
      entryId: 'app.desktop',
      sourcePath: SOURCE,
      sourceHash: sha256(original),
      intact: true,
    });
  });
});

describe('readShadow and isShadow', () => {
  const original = fixture('fooview.desktop');
  const text = shadowOf(original);
  const lines = text.split('\n');

  /** readShadow of the text, or undefined when it no longer parses. */
  const read = (t: string) => {
    try {
      return { info: readShadow(Keyfile.parse(t)) };
    } catch {
      return undefined;
    }
  };

  it('finds makeShadow output intact and reads what it says', () => {
    assert.deepEqual(readShadow(parsed(text)), {
      cage: 'work',
      entryId: 'app.desktop',
      sourcePath: SOURCE,
      sourceHash: sha256(original),
      intact: true,
    });
  });

  it('is deterministic', () => {
    assert.equal(shadowOf(original), text);
  });

  it('notices one character changed in any line', () => {
    let tested = 0;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      // Change one character, from the end of the line backwards, until the result is still a shadow.
      let found = false;
      for (let p = line.length - 1; p >= 0 && !found; p--) {
        const c = line[p] === 'x' ? 'y' : 'x';
        const changed = [
          ...lines.slice(0, i),
          line.slice(0, p) + c + line.slice(p + 1),
          ...lines.slice(i + 1),
        ].join('\n');
        const r = read(changed);
        if (!r?.info) continue;
        assert.equal(r.info.intact, false, `line ${i + 1} ${JSON.stringify(line)} changed at ${p}`);
        found = true;
        tested++;
      }
      if (!found) {
        // Only the [Desktop Entry] header and empty lines have no such change.
        assert.ok(
          line === '' || line === `[${DE}]`,
          `no one-character change of line ${i + 1} ${JSON.stringify(line)} kept it a shadow`,
        );
      }
    }
    assert.ok(tested >= lines.length - 4, `tested ${tested} of ${lines.length} lines`);
  });

  it('notices a comment line added anywhere', () => {
    for (let i = 0; i <= lines.length - 1; i++) {
      const changed = [...lines.slice(0, i), '# added', ...lines.slice(i)].join('\n');
      assert.equal(readShadow(parsed(changed))?.intact, false, `comment before line ${i + 1}`);
    }
  });

  it('notices any one line removed', () => {
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      const r = read([...lines.slice(0, i), ...lines.slice(i + 1)].join('\n'));
      if (line.startsWith('[') || line.startsWith(`${SHADOW_KEYS.cage}=`)) {
        // Without a group header the file does not parse; without X-Kagome-Cage it is no shadow.
        assert.equal(r?.info, undefined, `line ${i + 1} ${JSON.stringify(line)} removed`);
      } else {
        assert.equal(r?.info?.intact, false, `line ${i + 1} ${JSON.stringify(line)} removed`);
      }
    }
  });

  it('tells shadows from normal entries', () => {
    const normal = Keyfile.parse(original);
    assert.equal(isShadow(normal), false);
    assert.equal(readShadow(normal), undefined);
    assert.equal(isShadow(parsed(text)), true);
  });
});

describe('makeShadow keeps everything else', () => {
  // A group that is not an action: kept exactly, Exec and all.
  const VENDOR_TAIL = [
    '',
    '# comment before the vendor group',
    '[X-Vendor Stuff]',
    'Name=Vendor Name',
    'Exec=not-an-action %f',
    '',
  ];
  const original = [
    '# Top comment',
    '[Desktop Entry]',
    'Version=1.5',
    'Type=Application',
    'Name=Thing',
    'Name[de]=Ding',
    'GenericName=Widget',
    'GenericName[de]=Dingsbums',
    'Comment=Does things',
    'Comment[fr]=Fait des choses',
    '# comment inside the group',
    'Exec=thing --open %U',
    'DBusActivatable=true',
    'Icon=thing',
    'X-Unknown-Key  =  keep me',
    'Keywords[de]=Ding;Sache;',
    'StartupNotify=true',
    'Actions=new;',
    '',
    '[Desktop Action new]',
    'Name=New',
    'Name[de]=Neu',
    'X-Action-Extra=1',
    'Exec=thing --new',
    ...VENDOR_TAIL,
  ].join('\n');

  it('changes only the lines it must, line by line', () => {
    const shadow = shadowOf(original).split('\n');
    const expected = [
      '# Top comment',
      '[Desktop Entry]',
      'Version=1.5',
      'Type=Application',
      'Name=Thing [work]',
      'Name[de]=Ding [work]',
      'GenericName=Widget',
      'GenericName[de]=Dingsbums',
      'Comment=Does things',
      'Comment[fr]=Fait des choses',
      '# comment inside the group',
      `Exec=${LAUNCHER} --cage work --entry app.desktop -- %U`,
      'Icon=thing',
      'X-Unknown-Key  =  keep me',
      'Keywords[de]=Ding;Sache;',
      'StartupNotify=false',
      'Actions=new;',
      `TryExec=${LAUNCHER}`,
      'StartupWMClass=thing',
      'X-Kagome-Cage=work',
      'X-Kagome-Entry=app.desktop',
      `X-Kagome-Source=${SOURCE}`,
      `X-Kagome-Source-SHA256=${sha256(original)}`,
      'DIGEST',
      '',
      '[Desktop Action new]',
      'Name=New',
      'Name[de]=Neu',
      'X-Action-Extra=1',
      `Exec=${LAUNCHER} --cage work --entry app.desktop --action new --`,
      ...VENDOR_TAIL,
    ];
    const digestAt = expected.indexOf('DIGEST');
    assert.match(shadow[digestAt] ?? '', /^X-Kagome-Digest=[0-9a-f]{64}$/);
    expected[digestAt] = shadow[digestAt]!;
    assert.deepEqual(shadow, expected);
  });

  it('keeps every untouched line of the fooview fixture byte for byte', () => {
    const text = fixture('fooview.desktop').toString('utf8');
    const shadow = shadowOf(text);
    const touched =
      /^(Name(\[[^\]]*\])?|Exec|TryExec|StartupNotify|StartupWMClass|X-Kagome-[A-Za-z0-9-]+)\s*=/;
    const keptBefore = text.split('\n').filter((l) => !touched.test(l));
    const keptAfter = shadow.split('\n').filter((l) => !touched.test(l));
    assert.deepEqual(keptAfter, keptBefore);
  });
});

describe('makeShadow refusals', () => {
  const atLine = (e: KagomeError, line: number): void => {
    assert.ok(e instanceof FileError, `expected a FileError, got ${e.name}`);
    assert.equal(e.file, SOURCE);
    assert.equal(e.line, line);
    assert.ok(e.message.startsWith(`${SOURCE}:${line}:`), e.message);
  };

  it('refuses a file without [Desktop Entry]', () => {
    const e = refusal(() => shadowOf('[Something Else]\nType=Application\nExec=prog\n'));
    assert.equal(e.errorName, 'InvalidDesktopEntry');
    assert.ok(e.message.startsWith(SOURCE), e.message);
    assert.match(e.message, /no \[Desktop Entry\] group/);
  });

  it('refuses NUL, escape and other control characters anywhere in the entry, naming the line', () => {
    for (const [bad, code] of [
      ['\u0000', 'U+0000'],
      ['\u001b[2J', 'U+001B'],
      ['\u0007', 'U+0007'],
      ['\u007f', 'U+007F'],
    ] as const) {
      const e = refusal(() =>
        shadowOf(`[Desktop Entry]\nType=Application\nName=Evil${bad}Name\nExec=prog\n`),
      );
      assert.equal(e.errorName, 'InvalidDesktopEntry');
      atLine(e, 3);
      assert.ok(e.message.includes(code), e.message);
    }
    // Tabs and CRLF line ends are not control characters a desktop entry forbids.
    assert.match(
      shadowOf('[Desktop Entry]\r\nType=Application\r\nName=Ok\r\nExec=prog\r\n# a\tcomment\r\n'),
      /Exec=/,
    );
  });

  it('refuses Type=Link', () => {
    const e = refusal(() =>
      shadowOf('[Desktop Entry]\nName=Site\nType=Link\nURL=https://example.org/\n'),
    );
    assert.equal(e.errorName, 'InvalidDesktopEntry');
    atLine(e, 3);
    assert.match(e.message, /Type=Application/);
  });

  it('refuses a deleted entry (Hidden=true)', () => {
    const e = refusal(() => shadowOf(entry('prog', 'Hidden=true\n')));
    assert.equal(e.errorName, 'InvalidDesktopEntry');
    atLine(e, 5);
    assert.match(e.message, /Hidden=true/);
  });

  it('shadows a Terminal=true entry without Terminal=true: the terminal is made in the cage', () => {
    const text = shadowOf(entry('prog', 'Terminal=true\n'));
    assert.match(text, /^Terminal=false$/m);
    assert.doesNotMatch(text, /^Terminal=true$/m);
  });

  it('refuses an entry without Exec', () => {
    const e = refusal(() => shadowOf('# c\n[Desktop Entry]\nType=Application\nName=App\n'));
    assert.equal(e.errorName, 'InvalidDesktopEntry');
    atLine(e, 2);
    assert.match(e.message, /no Exec key/);
  });

  it('refuses an entry that can only be started over D-Bus', () => {
    const e = refusal(() =>
      shadowOf('[Desktop Entry]\nType=Application\nName=App\nDBusActivatable=true\n'),
    );
    assert.equal(e.errorName, 'InvalidDesktopEntry');
    atLine(e, 1);
    assert.match(e.message, /D-Bus/);
  });

  it('refuses an unbalanced quote in the main Exec', () => {
    const e = refusal(() => shadowOf(entry('prog "--title=a b --other')));
    assert.equal(e.errorName, 'InvalidDesktopEntry');
    atLine(e, 4);
    assert.equal((e as FileError).key, 'Exec');
    assert.match(e.message, /unterminated double quote/);
  });

  it("refuses an unbalanced quote in an action's Exec, returning no shadow at all", () => {
    const original =
      entry('prog %f', 'Actions=ok;bad;\n') +
      "\n[Desktop Action ok]\nName=OK\nExec=prog --ok\n\n[Desktop Action bad]\nName=Bad\nExec=prog '--oops\n";
    const e = refusal(() => shadowOf(original));
    assert.equal(e.errorName, 'InvalidDesktopEntry');
    atLine(e, 13);
    assert.match(e.message, /unterminated single quote/);
  });

  it('refuses a name format without {name}', () => {
    const e = refusal(() => shadowOf(entry('prog'), { nameFormat: '[{cage}]' }));
    assert.equal(e.errorName, 'InvalidArgument');
    assert.match(e.message, /"\[\{cage\}\]".*\{name\}/);
  });

  it('leaves out an action without Exec of a D-Bus activatable entry (it could only start over D-Bus, outside the cage)', () => {
    const original =
      entry('prog', 'DBusActivatable=true\nActions=new;open;\n') +
      '\n[Desktop Action new]\nName=New\n\n[Desktop Action open]\nName=Open\nExec=prog --open\n';
    const kf = parsed(shadowOf(original));
    assert.ok(!kf.hasGroup('Desktop Action new'));
    assert.deepEqual(kf.getList(DE, 'Actions'), ['open']);
    assert.equal(parseExec(kf.get('Desktop Action open', 'Exec')!)[0], LAUNCHER);
    const only = parsed(
      shadowOf(
        entry('prog', 'DBusActivatable=true\nActions=new;\n') +
          '\n[Desktop Action new]\nName=New\n',
      ),
    );
    assert.equal(only.get(DE, 'Actions'), undefined);
  });
});

describe('shadows of real desktop entries', () => {
  const realFiles = existsSync(REAL_DIR)
    ? readdirSync(REAL_DIR)
        .filter((n) => n.endsWith('.desktop'))
        .sort()
    : [];
  const noValidator =
    !existsSync(VALIDATOR) && `${VALIDATOR} is not installed (package desktop-file-utils)`;
  let tmp = '';
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'kagome-shadow-'));
  });
  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  if (realFiles.length === 0) {
    it(
      'validates shadows of the real fixtures',
      { skip: 'test/fixtures/desktop/real/ does not exist yet or holds no .desktop files' },
      () => {},
    );
    return;
  }

  it('has at least one Terminal=true fixture and one other', () => {
    const terminal = realFiles.filter(
      (n) => Keyfile.parse(readFileSync(new URL(n, REAL_DIR))).get(DE, 'Terminal') === 'true',
    );
    assert.ok(
      terminal.length > 0 && terminal.length < realFiles.length,
      `Terminal=true fixtures: ${terminal.join(', ')}`,
    );
  });

  for (const name of realFiles) {
    const file = new URL(name, REAL_DIR);
    const bytes = readFileSync(file);
    const terminal = Keyfile.parse(bytes, { file: name }).get(DE, 'Terminal') === 'true';
    const spec = {
      cage: 'work',
      entryId: name,
      source: { path: `/usr/share/applications/${name}`, bytes },
      launcher: LAUNCHER,
    };
    it(
      `${name}: the shadow passes desktop-file-validate${terminal ? ', and says Terminal=false (the terminal is made in the cage)' : ''}`,
      { skip: noValidator },
      () => {
        const text = makeShadow(spec);
        if (terminal) assert.equal(Keyfile.parse(text).get(DE, 'Terminal'), 'false');
        assert.equal(readShadow(Keyfile.parse(text))?.intact, true);
        const out = join(tmp, name);
        writeFileSync(out, text);
        const r = spawnSync(VALIDATOR, [out], { encoding: 'utf8' });
        assert.equal(r.error, undefined);
        assert.equal(
          r.status,
          0,
          `desktop-file-validate ${name} said:\n${r.stdout}${r.stderr}\n--- shadow ---\n${text}`,
        );
      },
    );
  }
});
