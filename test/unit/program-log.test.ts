import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openProgramLog, programLogName, programLogTail } from '../../lib/cage/program-log.js';

describe('program logs', () => {
  it('names a log after the last path element of the program, with only safe characters', () => {
    assert.equal(programLogName('/usr/bin/firefox-esr'), 'firefox-esr.log');
    assert.equal(programLogName('../../etc/passwd'), 'passwd.log');
    assert.equal(programLogName('..'), '_.log');
    assert.equal(programLogName('a b$(x)'), 'a_b__x_.log');
    assert.equal(programLogName(''), 'program.log');
  });

  it("reads back only this launch's last lines, and refuses a link planted in its place", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-plog-'));
    try {
      const first = openProgramLog(dir, ['prog']);
      fs.writeSync(first.fd, 'old run\n');
      fs.closeSync(first.fd);
      const second = openProgramLog(dir, ['prog', 'x']);
      fs.writeSync(
        second.fd,
        Array.from({ length: 12 }, (_, i) => `line ${i}`).join('\n') + '\n\x1b[2Jbell\x07\n',
      );
      fs.closeSync(second.fd);
      const tail = programLogTail(second.log, 3);
      assert.equal(tail, 'line 10\nline 11\n?[2Jbell?');
      assert.doesNotMatch(programLogTail(second.log, 50), /old run/);
      fs.rmSync(path.join(dir, 'prog.log'));
      fs.symlinkSync('/etc/hostname', path.join(dir, 'prog.log'));
      assert.throws(() => openProgramLog(dir, ['prog']), /ELOOP/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
