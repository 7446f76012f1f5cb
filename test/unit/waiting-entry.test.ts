import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { launchRequest } from '../../lib/backends/waiting-entry.js';
import { enterHelper } from '../../lib/backends/enter-helper.js';
import { KagomeError } from '../../lib/errors.js';

// A waiting kagome-enter (`--await`) reads its launch from the service: the request's layout,
// and what the real helper does with good and damaged requests. Entering a cage is covered by
// the lifecycle tests; `--exec` here runs the program without one.

function runAwaiting(input: Buffer): { status: number | null; stderr: string } {
  const r = spawnSync(enterHelper(), ['--await'], { input, encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

describe('a waiting kagome-enter', () => {
  let dir: string;
  let log: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-await-'));
    log = path.join(dir, 'program.log');
    fs.writeFileSync(log, '');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('is sent the log, the environment count and entries, then the arguments', () => {
    const req = launchRequest('/l', { A: '1', B: 'x y' }, ['--exec', '--', 'p']);
    assert.deepEqual(req.toString().split('\0'), [
      '/l',
      '2',
      'A=1',
      'B=x y',
      '--exec',
      '--',
      'p',
      '',
    ]);
  });

  it('refuses a NUL byte anywhere, by name', () => {
    for (const [env, args] of [
      [{ A: 'a\0b' }, ['p']],
      [{}, ['p', 'x\0y']],
    ] as const)
      assert.throws(
        () => launchRequest('/l', env, args),
        (e) =>
          e instanceof KagomeError &&
          e.errorName === 'InvalidArgument' &&
          /NUL byte/.test(e.message),
      );
  });

  it('runs exactly the program, arguments and environment it was sent, its output in the log', () => {
    const args = ['', 'two words', 'new\nline', 'ünï', '*', '$HOME'];
    const req = launchRequest(log, { FOO: 'a=b c', PATH: '/usr/bin:/bin' }, [
      '--exec',
      '--',
      '/bin/sh',
      '-c',
      'printf "[%s]" "$@"; printf "|%s|%s|" "$FOO" "$HOME"; ls -l /proc/self/fd/0 | sed "s/.*-> //"',
      'sh',
      ...args,
    ]);
    const r = runAwaiting(req);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(
      fs.readFileSync(log, 'utf8'),
      `${args.map((a) => `[${a}]`).join('')}|a=b c||/dev/null\n`,
      'arguments, environment (nothing else) and input as sent',
    );
  });

  it('ends quietly when the service goes without sending anything', () => {
    assert.deepEqual(runAwaiting(Buffer.alloc(0)), { status: 0, stderr: '' });
  });

  it('refuses a damaged request, and a link in place of the log, with a message', () => {
    const link = path.join(dir, 'link.log');
    fs.symlinkSync(log, link);
    const cases: [Buffer, RegExp][] = [
      [Buffer.from('/l\x000\x00--exec\x00--\x00/bin/true'), /cut short/],
      [Buffer.from('/l\x00'), /no log and no environment count/],
      [Buffer.from('/l\x009\x00A=1\x00'), /environment count is wrong/],
      [Buffer.from('/l\x00x\x00'), /environment count is wrong/],
      [launchRequest(link, {}, ['--exec', '--', '/bin/true']), /opening the program's log/],
    ];
    for (const [input, message] of cases) {
      const r = runAwaiting(input);
      assert.equal(r.status, 125, `${JSON.stringify(input.toString())}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
  });
});
