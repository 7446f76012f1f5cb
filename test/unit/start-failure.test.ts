import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decisiveLine, withCause } from '../../lib/cage/start-failure.js';
import { refuseRoot } from '../../lib/service.js';
import { KagomeError } from '../../lib/errors.js';

describe('decisiveLine', () => {
  it('takes the last line that states a cause, not the noise after it', () => {
    const log = [
      '2026-11-27 10:00:01,100 xpra server starting',
      "kagome-enter: joining the cage's network namespace: Operation not permitted",
      '2026-11-27 10:00:01,300 cleaning up',
      '',
    ].join('\n');
    assert.equal(
      decisiveLine(log),
      "kagome-enter: joining the cage's network namespace: Operation not permitted",
    );
  });

  it('finds bwrap, slirp4netns and xpra causes', () => {
    assert.equal(
      decisiveLine("bwrap: Can't create file at /proc/x: No such file or directory\n"),
      "bwrap: Can't create file at /proc/x: No such file or directory",
    );
    assert.equal(
      decisiveLine('setns(CLONE_NEWNET): Operation not permitted\nWARNING: x\n'),
      'setns(CLONE_NEWNET): Operation not permitted',
    );
    assert.match(
      decisiveLine('xpra initialization error:\n Xvfb failed to start\n')!,
      /Xvfb failed to start/,
    );
  });

  it('says nothing when no line states a cause', () => {
    assert.equal(decisiveLine('starting\nlistening on socket\n'), undefined);
    assert.equal(decisiveLine(''), undefined);
  });

  it('strips control characters and bounds the length, since the log is partly written by the cage', () => {
    const line = decisiveLine('error: \x1b[31mred\x1b[0m\x07 ' + 'x'.repeat(1000));
    assert.ok(line);
    assert.doesNotMatch(line, /[\x00-\x1f]/);
    assert.ok(line.length <= 300);
  });
});

describe('withCause', () => {
  it('adds the line to the message and keeps the error name', () => {
    const e = withCause(
      new KagomeError('DisplayFailed', 'the xpra server did not start for cage "web"'),
      'Xvfb: cannot open display\n',
    );
    assert.equal(e.errorName, 'DisplayFailed');
    assert.equal(
      e.message,
      'the xpra server did not start for cage "web". The cage log says: Xvfb: cannot open display',
    );
  });

  it('leaves the error as it is when the log has no cause or the message already quotes it', () => {
    const e = new KagomeError('BackendFailed', 'x failed: bwrap: denied');
    assert.equal(withCause(e, 'all fine\n'), e);
    assert.equal(withCause(e, 'bwrap: denied\n'), e);
  });
});

describe('refuseRoot', () => {
  it('refuses uid 0 with NotPermitted naming /proc/sys and what to do', () => {
    assert.throws(
      () => refuseRoot(0),
      (e: unknown) =>
        e instanceof KagomeError &&
        e.errorName === 'NotPermitted' &&
        /\/proc\/sys/.test(e.message) &&
        /your own user/.test(e.message),
    );
  });

  it('lets every other uid run', () => {
    assert.doesNotThrow(() => refuseRoot(1000));
    assert.doesNotThrow(() => refuseRoot(65534));
  });
});
