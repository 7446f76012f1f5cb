// "Open in cage" actions for file managers: each generated file is checked by the tool its
// format answers to (desktop-file-validate, Python's XML parser), and each command is run the
// way its file manager runs it, against a stand-in kagome-open that records its argv.

import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmod,
  lstat,
  mkdir,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { makeTempEnv, type TempEnv } from '../helpers/tmpenv.js';
import { Keyfile } from '../../xdg/keyfile.js';
import { expandExec, parseExec } from '../../xdg/exec.js';
import {
  installFileManagerActions,
  removeFileManagerActions,
  type CageInfo,
  type FileManagerActionsOptions,
  type SyncReport,
} from '../../lib/desktop/file-manager-actions.js';

const PYTHON = '/usr/bin/python3';

// Everything a file name may hold that a command line could trip over: spaces, both quotes,
// a backslash, a tab and a newline, '#' where a word starts (a comment to GLib's parser), a
// leading dash, command substitutions, %-codes of every format, shell operators and globs.
const NASTY = [
  `#one 'single' "double" \\back\tslash\nsecond line.txt`,
  '-dash $(touch pwned) `touch pwned2` %f %F %U %% %%F ;|&*?~ $HOME.txt',
];
// The stand-in kagome-open lives where quoting it is not trivial either.
const BIN_DIR = `bin 'q' "dq" $HOME %f %% \\ ;`;
const CAGES: CageInfo[] = [
  { name: 'web', description: 'Web browsing' },
  { name: 'my_work', description: 'Work: 100% "secure" & <private>\nsecond line' },
];

interface World {
  t: TempEnv;
  opts: FileManagerActionsOptions;
  /** Holds the NASTY files; file managers run actions from here. */
  sel: string;
  files: string[];
  argvFile: string;
}

async function makeWorld(configDirs: string[] = []): Promise<World> {
  const t = await makeTempEnv('kagome-fm-');
  const bin = path.join(t.root, BIN_DIR);
  await mkdir(bin);
  const kagomeOpen = path.join(bin, 'kagome-open');
  await writeFile(kagomeOpen, '#!/bin/sh\nfor a do printf \'%s\\0\' "$a"; done > "$ARGV_OUT"\n', {
    mode: 0o755,
  });
  const sel = path.join(t.root, 'selected files');
  await mkdir(sel);
  for (const n of NASTY) await writeFile(path.join(sel, n), '');
  return {
    t,
    opts: {
      dataHome: t.env.XDG_DATA_HOME,
      configHome: t.env.XDG_CONFIG_HOME,
      configDirs,
      kagomeOpen,
    },
    sel,
    files: NASTY.map((n) => path.join(sel, n)),
    argvFile: path.join(t.root, 'argv'),
  };
}

const install = (
  w: World,
  cages = CAGES,
  existing = new Set(cages.map((c) => c.name)),
): Promise<SyncReport> => installFileManagerActions(w.opts, cages, existing);

function ok(r: SyncReport): SyncReport {
  assert.deepEqual(
    r.problems.map((p) => p.error.message),
    [],
  );
  return r;
}

/** Runs argv as a file manager's spawn would, and returns what kagome-open received. */
async function run(w: World, argv: string[], cwd = w.sel): Promise<string[]> {
  await rm(w.argvFile, { force: true });
  const r = spawnSync(argv[0]!, argv.slice(1), {
    cwd,
    env: { ...process.env, ARGV_OUT: w.argvFile },
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, `${JSON.stringify(argv)} failed: ${r.stderr}${r.error ?? ''}`);
  return received(w);
}

async function received(w: World): Promise<string[]> {
  const out = (await readFile(w.argvFile)).toString('utf8').split('\0');
  assert.equal(out.pop(), '', 'argv ends with a NUL');
  assert.ok(
    !existsSync(path.join(w.sel, 'pwned')) && !existsSync(path.join(w.sel, 'pwned2')),
    'a file name was run as a command',
  );
  return out;
}

const expected = (w: World, cage: string, files = w.files): string[] => [
  '--cage',
  cage,
  '--open',
  '--',
  ...files,
];

// GLib's own g_shell_parse_argv (Nemo's g_spawn_command_line_async, caja-actions and libfm
// all split their expanded command with it), called through ctypes: no reimplementation to
// get subtly wrong.
const PARSE_ARGV = `
import ctypes, sys
g = ctypes.CDLL('libglib-2.0.so.0')
P = ctypes.POINTER
g.g_shell_parse_argv.argtypes = [ctypes.c_char_p, P(ctypes.c_int), P(P(ctypes.c_char_p)), P(ctypes.c_void_p)]
argc = ctypes.c_int(); argv = P(ctypes.c_char_p)(); err = ctypes.c_void_p()
if not g.g_shell_parse_argv(sys.stdin.buffer.read(), ctypes.byref(argc), ctypes.byref(argv), ctypes.byref(err)):
    sys.exit('g_shell_parse_argv failed')
sys.stdout.buffer.write(b''.join(argv[i] + b'\\0' for i in range(argc.value)))
`;

function gShellParseArgv(command: string): string[] {
  const r = spawnSync(PYTHON, ['-c', PARSE_ARGV], { input: command });
  assert.equal(r.status, 0, `g_shell_parse_argv(${JSON.stringify(command)}): ${r.stderr}`);
  const out = r.stdout.toString('utf8').split('\0');
  out.pop();
  return out;
}

/** g_shell_quote: always single quotes, a ' inside becomes '\''. */
const gShellQuote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;

/** Nemo (5.6 and later) with Quote unset: eel_str_escape_shell_characters. */
const nemoEscape = (s: string): string =>
  s.replace(/[ \t'"\\#\n]/g, (c) => (c === '\n' ? `'\n'` : `\\${c}`));

/**
 * nemo_action_activate: tokens are found at the first '%' left, from after the last insertion;
 * a '%' that starts no token ends the expansion.
 */
function nemoCommand(exec: string, files: string[]): string {
  let out = exec;
  let from = 0;
  for (;;) {
    const at = out.indexOf('%', from);
    if (at < 0) return out;
    const code = out.slice(at, at + 2);
    let insert: string;
    if (code === '%F') insert = files.map(nemoEscape).join(' ');
    else if (code === '%%') insert = '%';
    else if (['%U', '%P', '%R', '%f', '%p', '%N', '%D', '%e', '%X'].includes(code))
      throw new Error(`unexpected Nemo token ${code}`);
    else return out;
    out = out.slice(0, at) + insert + out.slice(at + 2);
    from = at + insert.length;
  }
}

/** caja-actions' parse_singular and libfm's _expand_params: %F is the g_shell_quote'd files. */
function fmaCommand(exec: string, files: string[]): string {
  return exec.replace(/%(.)/gs, (m, c: string) => {
    if (c === 'F') return files.map(gShellQuote).join(' ');
    if (c === '%') return '%';
    throw new Error(`unexpected code ${m}`);
  });
}

/** thunar_uca_model_parse_argv then xfce_expand_desktop_entry_field_codes; run by /bin/sh -c. */
function thunarCommand(command: string, files: string[]): string {
  // First pass: %d %D %n %N (none in kagome's commands), anything else kept for the second.
  let first = '';
  for (let i = 0; i < command.length; i++) {
    if (command[i] === '%' && i + 1 < command.length) {
      const c = command[++i]!;
      if ('dDnN'.includes(c)) throw new Error(`unexpected code %${c}`);
      first += '%' + c;
    } else first += command[i];
  }
  let out = '';
  for (let i = 0; i < first.length; i++) {
    if (first[i] === '%' && i + 1 < first.length) {
      const c = first[++i]!;
      if (c === 'f' || c === 'F')
        out += (c === 'f' ? files.slice(0, 1) : files).map(gShellQuote).join(' ');
      else if (c === '%') out += '%';
      // Thunar drops any other code: the generated command must not depend on one.
      else throw new Error(`unexpected code %${c}`);
    } else out += first[i];
  }
  return out;
}

const UCA_PY = `
import json, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == 'actions', root.tag
print(json.dumps([{'id': a.findtext('unique-id') or '', 'name': a.findtext('name'), 'command': a.findtext('command'),
                   'description': a.findtext('description'), 'patterns': a.findtext('patterns'),
                   'flags': sorted(c.tag for c in a if c.tag.endswith('-files') or c.tag == 'directories')}
                  for a in root.findall('action')]))
`;

interface UcaAction {
  id: string;
  name: string;
  command: string;
  description: string;
  patterns: string;
  flags: string[];
}

/** The actions of a uca.xml, as Python's XML parser reads them; fails if it is not well-formed. */
function parseUca(file: string): UcaAction[] {
  const r = spawnSync(PYTHON, ['-c', UCA_PY, file], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${file} is not well-formed XML: ${r.stderr}`);
  return JSON.parse(r.stdout) as UcaAction[];
}

const ucaFile = (w: World): string => path.join(w.t.env.XDG_CONFIG_HOME, 'Thunar', 'uca.xml');
const nautilusScript = (w: World, cage: string): string =>
  path.join(w.t.env.XDG_DATA_HOME, 'nautilus', 'scripts', `Open in cage ${cage}`);
const nemoFile = (w: World, cage: string): string =>
  path.join(w.t.env.XDG_DATA_HOME, 'nemo', 'actions', `kagome-${cage}.nemo_action`);
const dolphinFile = (w: World, cage: string): string =>
  path.join(w.t.env.XDG_DATA_HOME, 'kio', 'servicemenus', `kagome-${cage}.desktop`);
const fmaFile = (w: World, cage: string): string =>
  path.join(w.t.env.XDG_DATA_HOME, 'file-manager', 'actions', `kagome-${cage}.desktop`);

async function keyfileExec(file: string, group: string): Promise<string> {
  const exec = Keyfile.parse(await readFile(file), { file }).get(group, 'Exec');
  assert.ok(exec, `${file} has an Exec in [${group}]`);
  return exec;
}

/** As a desktop following the Desktop Entry spec runs it (KIO's DesktopExecParser does). */
async function runDesktopExec(w: World, exec: string): Promise<string[]> {
  const runs = expandExec(parseExec(exec), { files: w.files });
  assert.equal(runs.length, 1, '%F: one run for all the files');
  return run(w, runs[0]!.map(String));
}

describe('file manager actions: commands reach kagome-open with the files byte for byte', () => {
  let w: World;
  before(async () => {
    w = await makeWorld();
    ok(await install(w));
  });
  after(() => w.t.cleanup());

  for (const cage of CAGES.map((c) => c.name)) {
    it(`Nautilus: the script, run in the folder with the files named relative to it (${cage})`, async () => {
      assert.deepEqual(await run(w, [nautilusScript(w, cage), ...NASTY]), expected(w, cage));
      // Absolute names (Nautilus passes those for files outside the folder, e.g. in search
      // results) stay as they are.
      assert.deepEqual(
        await run(w, [nautilusScript(w, cage), ...w.files], w.t.root),
        expected(w, cage),
      );
    });
  }

  it('Nautilus: a relative name that looks like a URI reaches kagome-open as an absolute path', async () => {
    assert.deepEqual(
      await run(w, [nautilusScript(w, 'web'), 'notes:2024.txt']),
      expected(w, 'web', [path.join(w.sel, 'notes:2024.txt')]),
    );
  });

  it('Nemo: as nemo_action_activate expands %F (Quote unset) and g_spawn_command_line_async splits it', async () => {
    for (const c of CAGES) {
      const exec = await keyfileExec(nemoFile(w, c.name), 'Nemo Action');
      assert.deepEqual(
        await run(w, gShellParseArgv(nemoCommand(exec, w.files))),
        expected(w, c.name),
      );
      // The same line read by the Desktop Entry rules means the same.
      assert.deepEqual(await runDesktopExec(w, exec), expected(w, c.name));
    }
  });

  it('Dolphin: the service menu action, expanded by the Desktop Entry rules', async () => {
    for (const c of CAGES) {
      assert.deepEqual(
        await runDesktopExec(w, await keyfileExec(dolphinFile(w, c.name), 'Desktop Action open')),
        expected(w, c.name),
      );
    }
  });

  it("Caja and PCManFM: as caja-actions and libfm put in g_shell_quote'd files and split with g_shell_parse_argv", async () => {
    for (const c of CAGES) {
      const exec = await keyfileExec(fmaFile(w, c.name), 'X-Action-Profile open');
      assert.deepEqual(
        await run(w, gShellParseArgv(fmaCommand(exec, w.files))),
        expected(w, c.name),
      );
      assert.deepEqual(await runDesktopExec(w, exec), expected(w, c.name));
    }
  });

  it('Thunar: the command from uca.xml, with %F expanded as Thunar does, run by sh -c', async () => {
    const actions = parseUca(ucaFile(w));
    for (const c of CAGES) {
      const a = actions.find((x) => x.id === `kagome-${c.name}`);
      assert.ok(a, `kagome-${c.name} is in uca.xml`);
      assert.deepEqual(
        await run(w, ['/bin/sh', '-c', thunarCommand(a.command, w.files)]),
        expected(w, c.name),
      );
    }
  });
});

// What desktop-file-validate (0.26) reports that follows from each format being an extension of
// the Desktop Entry format that the spec does not know, with no option to accept it (its only
// options are --no-hints, --no-warn-deprecated and --warn-kde, which adds warnings). Anything
// else it says fails the test.
const INHERENT: Record<string, string[]> = {
  // Nemo reads [Nemo Action] from *.nemo_action files and nothing else.
  nemo: [
    'error: first group is not "Desktop Entry"',
    'error: file contains group "Nemo Action", but groups extending the format should start with "X-"',
    'error: filename does not have a .desktop extension',
  ],
  // A KDE service menu: Type=Service (a KDE type the validator accepts) with the MimeType and
  // Actions keys the spec defines for applications only, and KDE's pseudo-type all/allfiles
  // ("every file, no folder"), which no MIME registry has. Its Name, which KIO does not need, is
  // there because the spec requires it. The [Desktop Action open] group is checked in full.
  dolphin: [
    'error: (will be fatal in the future): value "all/allfiles;" for key "MimeType" in group "Desktop Entry" contains value "all/allfiles" which is an invalid MIME type: "all" is an unregistered media type',
    'error: key "MimeType" is present in group "Desktop Entry", but the type is "Service" while this key is only valid for type "Application"',
    'error: key "Actions" is present in group "Desktop Entry", but the type is "Service" while this key is only valid for type "Application"',
  ],
  // The FileManager-Actions spec (DES-EMA) reuses [Desktop Entry] with its own Type and keys;
  // its [X-Action-Profile ...] groups are extension groups, which the validator skips.
  fma: [
    'error: value "Action" for key "Type" in group "Desktop Entry" is not a registered type value ("Application", "Link" and "Directory")',
    'error: file contains key "Tooltip" in group "Desktop Entry", but keys extending the format should start with "X-"',
    'error: file contains key "Profiles" in group "Desktop Entry", but keys extending the format should start with "X-"',
  ],
};

function validate(file: string): string[] {
  const r = spawnSync('desktop-file-validate', [file], { encoding: 'utf8' });
  assert.ok(
    !r.error,
    `desktop-file-validate could not run (packaging/install-deps installs desktop-file-utils): ${r.error}`,
  );
  const lines = (r.stdout + r.stderr).split('\n').filter((l) => l !== '');
  if (r.status !== 0) assert.ok(lines.length > 0, 'a failure says why');
  return lines.map((l) => (l.startsWith(`${file}: `) ? l.slice(file.length + 2) : l));
}

/**
 * Nemo's and caja's Exec lines are in groups the validator does not look into: it checks them
 * in an application entry of their own, by the same rules those readers are compatible with.
 */
async function validateExec(w: World, exec: string): Promise<string[]> {
  const file = path.join(w.t.root, 'exec-check.desktop');
  const kf = Keyfile.create();
  kf.set('Desktop Entry', 'Type', 'Application');
  kf.set('Desktop Entry', 'Name', 'Exec check');
  kf.set('Desktop Entry', 'Exec', exec);
  await writeFile(file, kf.toString());
  return validate(file);
}

describe('file manager actions: desktop-file-validate', () => {
  let w: World;
  before(async () => {
    w = await makeWorld();
    ok(await install(w));
  });
  after(() => w.t.cleanup());

  for (const [format, file, group] of [
    ['nemo', nemoFile, 'Nemo Action'],
    ['dolphin', dolphinFile, undefined],
    ['fma', fmaFile, 'X-Action-Profile open'],
  ] as const) {
    it(`${format}: nothing but what the format itself implies`, async () => {
      for (const c of CAGES) {
        const f = file(w, c.name);
        assert.deepEqual(
          validate(f).filter((l) => !INHERENT[format]!.includes(l)),
          [],
          f,
        );
        if (group)
          assert.deepEqual(await validateExec(w, await keyfileExec(f, group)), [], `Exec of ${f}`);
      }
    });
  }

  it('the check can fail: a broken Exec in the service menu action is reported', async () => {
    const f = path.join(w.t.root, 'broken.desktop');
    await writeFile(
      f,
      (await readFile(dolphinFile(w, 'web'), 'utf8')).replace(/^Exec=.*$/m, 'Exec=/bin/x $HOME %x'),
    );
    assert.ok(validate(f).filter((l) => !INHERENT.dolphin!.includes(l)).length >= 2);
  });
});

describe('file manager actions: Thunar uca.xml', () => {
  let w: World;
  beforeEach(async () => {
    w = await makeWorld();
  });
  afterEach(() => w.t.cleanup());

  const kagomeIds = (actions: UcaAction[]): string[] =>
    actions
      .filter((a) => a.id.startsWith('kagome-'))
      .map((a) => a.id)
      .sort();
  const write = async (text: string): Promise<void> => {
    await mkdir(path.dirname(ucaFile(w)), { recursive: true });
    await writeFile(ucaFile(w), text);
  };

  it('no file: a new one with an action per cage, for files of every kind and no folders', async () => {
    ok(await install(w));
    const actions = parseUca(ucaFile(w));
    assert.deepEqual(kagomeIds(actions), ['kagome-my_work', 'kagome-web']);
    const a = actions.find((x) => x.id === 'kagome-my_work')!;
    assert.equal(a.name, 'Open in cage my__work', 'an underscore is no mnemonic in the menu');
    assert.equal(a.patterns, '*');
    assert.deepEqual(a.flags, [
      'audio-files',
      'image-files',
      'other-files',
      'text-files',
      'video-files',
    ]);
    assert.match(a.description, /100% "secure" & <private> second line/);
    ok(await removeFileManagerActions(w.opts));
    assert.ok(!existsSync(ucaFile(w)), 'remove leaves no file behind where there was none');
  });

  it('an empty file (which Thunar cannot read) counts as none', async () => {
    await write(' \n');
    ok(await install(w));
    assert.deepEqual(kagomeIds(parseUca(ucaFile(w))), ['kagome-my_work', 'kagome-web']);
    ok(await removeFileManagerActions(w.opts));
    assert.ok(!existsSync(ucaFile(w)));
  });

  it('<actions/>: it gets an end tag to hold the actions', async () => {
    await write('<?xml version="1.0"?>\n<actions/>\n');
    ok(await install(w));
    assert.deepEqual(kagomeIds(parseUca(ucaFile(w))), ['kagome-my_work', 'kagome-web']);
    ok(await removeFileManagerActions(w.opts));
    assert.deepEqual(parseUca(ucaFile(w)), []);
  });

  const USER = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE actions [
  <!ELEMENT actions (action)+>
  <!-- a ] and a > in a comment in the subset -->
  <!ATTLIST name xml:lang CDATA "en">
]>
<!-- my actions; <action> in a comment is no action -->
<actions>
<action>
\t<icon>utilities-terminal</icon>
\t<name>Open Terminal Here</name>
\t<name xml:lang="de">Terminal &amp; hier</name>
\t<unique-id>1234567890123456-1</unique-id>
\t<command>exo-open --working-directory %f --launch TerminalEmulator</command>
\t<description><![CDATA[Example <b>for</b> a new action]]></description>
\t<patterns>*</patterns>
\t<startup-notify/>
\t<directories/>
</action>
  <action><name>kagome-lookalike</name><unique-id>kagome-</unique-id><command>x</command></action>  <!-- mine -->
<action>
\t<name>Not kagome's</name>
\t<unique-id>kagome-web-x y</unique-id>
\t<command>true</command>
</action>
</actions>
`;

  it("a user's file: their actions and comments are kept byte for byte; --remove gives the file back exactly", async () => {
    await write(USER);
    ok(await install(w));
    const text = await readFile(ucaFile(w), 'utf8');
    const actions = parseUca(ucaFile(w));
    assert.deepEqual(kagomeIds(actions), [
      'kagome-',
      'kagome-my_work',
      'kagome-web',
      'kagome-web-x y',
    ]);
    assert.ok(
      text.startsWith(USER.slice(0, USER.lastIndexOf('</actions>'))),
      "everything of the user's is there, unchanged, before kagome's",
    );
    ok(await removeFileManagerActions(w.opts));
    assert.equal(await readFile(ucaFile(w), 'utf8'), USER);
  });

  it('a second install changes nothing and duplicates nothing', async () => {
    await write(USER);
    ok(await install(w));
    const first = await readFile(ucaFile(w), 'utf8');
    const r = ok(await install(w));
    assert.equal(await readFile(ucaFile(w), 'utf8'), first);
    assert.deepEqual(
      r.changes.filter((c) => c.fileManager === 'thunar').map((c) => c.change),
      ['unchanged'],
    );
    assert.equal(parseUca(ucaFile(w)).filter((a) => a.id === 'kagome-web').length, 1);
  });

  it("a file as Thunar rewrites it (with kagome's action reformatted) is merged the same way", async () => {
    ok(await install(w));
    const thunarStyle = (await readFile(ucaFile(w), 'utf8')).replace(
      /<unique-id>kagome-web<\/unique-id>\n/,
      '<submenu></submenu>\n\t<unique-id>kagome-web</unique-id>\n\t<range></range>\n',
    );
    await write(thunarStyle);
    ok(await install(w));
    assert.deepEqual(kagomeIds(parseUca(ucaFile(w))), ['kagome-my_work', 'kagome-web']);
    assert.doesNotMatch(await readFile(ucaFile(w), 'utf8'), /<range>/);
  });

  it("stale actions of cages that are gone are taken out; other cages' stay", async () => {
    ok(await install(w));
    const r = ok(await installFileManagerActions(w.opts, [CAGES[0]!], new Set(['web'])));
    assert.deepEqual(kagomeIds(parseUca(ucaFile(w))), ['kagome-web']);
    assert.deepEqual(r.changes.find((c) => c.fileManager === 'thunar')?.takenOut, ['my_work']);
    ok(await install(w));
    ok(await installFileManagerActions(w.opts, [CAGES[0]!], new Set(['web', 'my_work'])));
    assert.deepEqual(kagomeIds(parseUca(ucaFile(w))), ['kagome-my_work', 'kagome-web']);
    ok(await removeFileManagerActions(w.opts, ['web']));
    assert.deepEqual(kagomeIds(parseUca(ucaFile(w))), ['kagome-my_work']);
  });

  for (const [what, text, reason] of [
    [
      'no <actions> root',
      '<?xml version="1.0"?>\n<menu><action/></menu>\n',
      /root element is <menu>, not <actions>/,
    ],
    [
      'an unclosed element',
      '<actions>\n<action>\n<name>x</name>\n</actions>\n',
      /<\/actions> closes <action>/,
    ],
    ['a bare &', '<actions><action><name>a & b</name></action></actions>', /"&"/],
    ['text outside the root', 'hello <actions/>', /outside the <actions> element/],
    ['an unclosed comment', '<actions><!-- x </actions>', /never closed/],
  ] as const) {
    it(`a file with ${what} is left untouched, with an error naming it and what to do`, async () => {
      await write(text);
      const r = await install(w);
      const p = r.problems.filter((x) => x.fileManager === 'thunar');
      assert.equal(p.length, 1);
      assert.ok(p[0]!.error.message.startsWith(ucaFile(w) + ':'), p[0]!.error.message);
      assert.match(p[0]!.error.message, reason);
      assert.match(
        p[0]!.error.message,
        /kagome did not change the file.*run 'kagome integrate file-managers' again/,
      );
      assert.equal(await readFile(ucaFile(w), 'utf8'), text);
      // The other file managers are done all the same.
      assert.ok(existsSync(nemoFile(w, 'web')));
    });
  }

  it("without a file of the user's, the system's uca.xml is the start, so its actions stay in Thunar's menu", async () => {
    const sys = path.join(w.t.root, 'etc-xdg');
    await mkdir(path.join(sys, 'Thunar'), { recursive: true });
    const system = USER.replace('<!-- mine -->', '');
    await writeFile(path.join(sys, 'Thunar', 'uca.xml'), system);
    const opts = { ...w.opts, configDirs: [path.join(w.t.root, 'nothing-here'), sys] };
    ok(await installFileManagerActions(opts, CAGES, new Set(['web', 'my_work'])));
    assert.ok(
      (await readFile(ucaFile(w), 'utf8')).startsWith(
        system.slice(0, system.lastIndexOf('</actions>')),
      ),
    );
    assert.ok(parseUca(ucaFile(w)).some((a) => a.id === '1234567890123456-1'));
    ok(await removeFileManagerActions(opts));
    assert.ok(
      !existsSync(ucaFile(w)),
      "with kagome's actions gone it would only repeat the system's file",
    );
  });

  it('a symbolic link to uca.xml stays a link; the file it points to is changed', async () => {
    const target = path.join(w.t.root, 'dotfiles-uca.xml');
    await writeFile(target, USER);
    await mkdir(path.dirname(ucaFile(w)), { recursive: true });
    await symlink(target, ucaFile(w));
    ok(await install(w));
    assert.ok((await lstat(ucaFile(w))).isSymbolicLink());
    assert.ok(kagomeIds(parseUca(target)).includes('kagome-web'));
  });
});

describe('file manager actions: files', () => {
  let w: World;
  beforeEach(async () => {
    w = await makeWorld();
  });
  afterEach(() => w.t.cleanup());

  const ours = (c: string): string[] => [
    nautilusScript(w, c),
    nemoFile(w, c),
    dolphinFile(w, c),
    fmaFile(w, c),
  ];

  it('writes each format, Nautilus scripts and Dolphin service menus executable; again, nothing changes', async () => {
    const r = ok(await install(w));
    for (const c of CAGES) for (const f of ours(c.name)) assert.ok(existsSync(f), f);
    assert.equal((await stat(nautilusScript(w, 'web'))).mode & 0o777, 0o755);
    assert.equal((await stat(dolphinFile(w, 'web'))).mode & 0o777, 0o755);
    assert.equal((await stat(nemoFile(w, 'web'))).mode & 0o777, 0o644);
    assert.ok(r.changes.every((c) => c.change === 'written'));
    assert.ok(ok(await install(w)).changes.every((c) => c.change === 'unchanged'));
    await chmod(dolphinFile(w, 'web'), 0o644);
    assert.equal(
      ok(await install(w)).changes.find((c) => c.path === dolphinFile(w, 'web'))?.change,
      'written',
    );
    assert.equal((await stat(dolphinFile(w, 'web'))).mode & 0o777, 0o755);
  });

  it("a user's file at kagome's path is not overwritten, and the error names it", async () => {
    await mkdir(path.dirname(nemoFile(w, 'web')), { recursive: true });
    await writeFile(nemoFile(w, 'web'), '[Nemo Action]\nName=Mine\n');
    const r = await install(w);
    assert.deepEqual(
      r.problems.map((p) => p.path),
      [nemoFile(w, 'web')],
    );
    assert.match(
      r.problems[0]!.error.message,
      new RegExp(
        `^${nemoFile(w, 'web').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} exists and kagome did not write it`,
      ),
    );
    assert.equal(await readFile(nemoFile(w, 'web'), 'utf8'), '[Nemo Action]\nName=Mine\n');
    assert.ok(existsSync(nemoFile(w, 'my_work')) && existsSync(dolphinFile(w, 'web')));
  });

  it("--remove deletes kagome's files only", async () => {
    const mine = [
      path.join(w.t.env.XDG_DATA_HOME, 'nautilus', 'scripts', 'My script'),
      path.join(w.t.env.XDG_DATA_HOME, 'nautilus', 'scripts', 'Open in cage other'),
      path.join(w.t.env.XDG_DATA_HOME, 'nemo', 'actions', 'mine.nemo_action'),
      path.join(w.t.env.XDG_DATA_HOME, 'kio', 'servicemenus', 'mine.desktop'),
      path.join(w.t.env.XDG_DATA_HOME, 'file-manager', 'actions', 'mine.desktop'),
    ];
    for (const f of mine) {
      await mkdir(path.dirname(f), { recursive: true });
      await writeFile(
        f,
        f.endsWith('.desktop')
          ? '[Desktop Entry]\nType=Action\nName=x\nX-Kagome-Cage-Not=web\n'
          : '#!/bin/sh\n# X-Kagome-Cage=web\n',
      );
    }
    ok(await install(w));
    const r = ok(await removeFileManagerActions(w.opts));
    for (const c of CAGES) for (const f of ours(c.name)) assert.ok(!existsSync(f), f);
    for (const f of mine) assert.ok(existsSync(f), f);
    assert.equal(r.changes.filter((c) => c.change === 'removed').length, 4 * CAGES.length + 1);
    assert.deepEqual(ok(await removeFileManagerActions(w.opts)).changes, []);
  });

  it("install takes out the actions of cages that are gone, and a renamed copy of a cage's script", async () => {
    ok(await install(w));
    const renamed = path.join(path.dirname(nautilusScript(w, 'web')), '1 - web first');
    await writeFile(renamed, await readFile(nautilusScript(w, 'web')));
    ok(await installFileManagerActions(w.opts, [CAGES[0]!], new Set(['web'])));
    for (const f of ours('my_work')) assert.ok(!existsSync(f), f);
    for (const f of ours('web')) assert.ok(existsSync(f), f);
    assert.ok(!existsSync(renamed));
  });

  it("--remove --cage takes out only that cage's actions", async () => {
    ok(await install(w));
    ok(await removeFileManagerActions(w.opts, ['my_work']));
    for (const f of ours('my_work')) assert.ok(!existsSync(f), f);
    for (const f of ours('web')) assert.ok(existsSync(f), f);
    assert.deepEqual((await readdir(path.dirname(nemoFile(w, 'web')))).sort(), [
      'kagome-web.nemo_action',
    ]);
  });

  it('refuses a kagome-open that is not an absolute path', async () => {
    await assert.rejects(
      installFileManagerActions({ ...w.opts, kagomeOpen: 'kagome-open' }, CAGES, new Set()),
      /absolute path/,
    );
  });
});
