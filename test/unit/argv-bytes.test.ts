import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { execArgv, printfEscape } from '../../lib/backends/argv-bytes.js';
import type { ArgValue } from '../../xdg/exec.js';

// argv for execve when arguments are bytes (lib/backends/argv-bytes.ts): text argv passes
// untouched; with a Buffer anywhere, the returned argv, run for real, hands the program every
// argument byte for byte, and no argument is ever run as shell code.

const PYTHON = '/usr/bin/python3';
// The program under test echoes its own argv exactly as the kernel has it: NUL-terminated.
const ECHO_ARGV = 'import sys; sys.stdout.buffer.write(open("/proc/self/cmdline", "rb").read())';

/** Runs argv through execArgv and returns what the program received, one Buffer per argument. */
function received(argv: readonly ArgValue[], cwd: string): Buffer[] {
  const run = execArgv(argv);
  const r = spawnSync(run[0]!, run.slice(1), { cwd });
  assert.equal(r.status, 0, String(r.stderr));
  const out = r.stdout;
  assert.equal(out[out.length - 1], 0, 'cmdline ends with a NUL');
  const args: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < out.length; i++) {
    if (out[i] === 0) {
      args.push(out.subarray(start, i));
      start = i + 1;
    }
  }
  return args;
}

describe('execArgv with text only', () => {
  // No detour through sh when nothing needs it: the same arguments, in a new array.
  it('returns all-string argv unchanged', () => {
    const argv = ['/usr/bin/env', 'a b', '', '$(x)', 'ä 日本 🦀', '\\c', '-n'];
    const out = execArgv(argv);
    assert.deepEqual(out, argv);
    assert.notEqual(out, argv, 'a copy, so the caller can change it');
    assert.deepEqual(execArgv([]), []);
  });

  it('a Buffer anywhere means the sh detour, with every argument escaped to ASCII', () => {
    const out = execArgv(['prog', Buffer.from([0xff])]);
    assert.equal(out[0], '/bin/sh');
    assert.equal(out[1], '-c');
    assert.deepEqual(out.slice(3), ['kagome-args', 'prog', '\\0377']);
    for (const a of out.slice(4)) assert.match(a, /^[\x20-\x7e]*$/);
  });
});

describe('printfEscape', () => {
  // The escaped form that sh's printf %b turns back into bytes.
  it('keeps printable ASCII, doubles a backslash, writes any other byte as \\0NNN', () => {
    assert.equal(printfEscape('abc XYZ-%b$(x)"\''), 'abc XYZ-%b$(x)"\'');
    assert.equal(printfEscape('\\c'), '\\\\c');
    assert.equal(
      printfEscape(Buffer.from([0x01, 0x0a, 0x7f, 0x80, 0xff])),
      '\\0001\\0012\\0177\\0200\\0377',
    );
    assert.equal(printfEscape('é'), '\\0303\\0251', 'text is its UTF-8 bytes');
    assert.equal(printfEscape(''), '');
  });
});

describe('execArgv with bytes, run for real', () => {
  // The argv execArgv returns is spawned: the program's /proc/self/cmdline must equal the
  // arguments byte for byte, and sentinel files that shell code would create must not appear.
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-argv-'));
    // Files a stray glob would expand to.
    fs.writeFileSync(path.join(dir, 'glob-a'), '');
    fs.writeFileSync(path.join(dir, 'glob-b'), '');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const prefix = [PYTHON, '-c', ECHO_ARGV];
  const sentinel = (n: string) => path.join(dir, `pwned-${n}`);

  it('delivers every byte 0x01-0xff, each as an argument of its own and all in one', () => {
    const singles = Array.from({ length: 255 }, (_, i) => Buffer.from([i + 1]));
    const all = Buffer.from(Array.from({ length: 255 }, (_, i) => i + 1));
    const args = [...singles, all, Buffer.concat([all].concat(singles.slice().reverse()))];
    assert.deepEqual(received([...prefix, ...args], dir), [
      ...prefix.map((s) => Buffer.from(s)),
      ...args,
    ]);
  });

  it('delivers what printf, sh and $(...) would mangle, and runs none of it', () => {
    const args: ArgValue[] = [
      Buffer.from([0xff]), // forces the detour
      'trailing newlines\n\n\n',
      '\n',
      '\\',
      '\\\\',
      '\\c',
      'before\\cafter',
      '\\0101',
      '\\101',
      '\\x41\\u0041\\n\\t',
      '%b',
      '%s%d%%',
      '%',
      `$(touch ${sentinel('dollar')})`,
      `\`touch ${sentinel('backtick')}\``,
      `"; touch ${sentinel('semicolon')}; "`,
      `'; touch ${sentinel('quote')}; '`,
      '${IFS}$HOME$0$1$@',
      '"',
      "'",
      '',
      '',
      '-n',
      '-e',
      '--',
      '-',
      '*',
      'glob-*',
      '~',
      ' leading and trailing spaces ',
      '\t',
      'x',
      'ä 日本語 🦀',
      Buffer.concat([
        Buffer.from('bad '),
        Buffer.from([0xc3, 0x28, 0xa0, 0xa1, 0xf0, 0x28, 0x8c, 0xbc]),
        Buffer.from('\n'),
      ]),
      Buffer.alloc(0),
    ];
    const got = received([...prefix, ...args], dir);
    assert.equal(got.length, prefix.length + args.length, 'argument count');
    assert.deepEqual(
      got,
      [...prefix, ...args].map((a) => Buffer.from(a)),
    );
    const created = fs.readdirSync(dir).filter((n) => n.startsWith('pwned'));
    assert.deepEqual(created, [], 'nothing was executed');
  });

  it('the program itself may be bytes, and its exit status comes through', () => {
    const run = execArgv([
      Buffer.from(PYTHON),
      '-c',
      'import sys; sys.exit(7)',
      Buffer.from([0xfe]),
    ]);
    const r = spawnSync(run[0]!, run.slice(1));
    assert.equal(r.status, 7);
  });

  it('many arguments, in order', () => {
    const args = Array.from({ length: 1000 }, (_, i) =>
      i % 2 ? String(i) : Buffer.from([0x80 + (i % 128), 0x0a]),
    );
    assert.deepEqual(
      received([...prefix, ...args], dir),
      [...prefix, ...args].map((a) => Buffer.from(a)),
    );
  });

  it('random byte strings arrive exactly', () => {
    const args: Buffer[] = [];
    for (let i = 0; i < 300; i++) {
      args.push(
        Buffer.from(
          Array.from(
            { length: Math.floor(Math.random() * 40) },
            () => 1 + Math.floor(Math.random() * 255),
          ),
        ),
      );
    }
    assert.deepEqual(received([...prefix, ...args], dir), [
      ...prefix.map((s) => Buffer.from(s)),
      ...args,
    ]);
  });
});
