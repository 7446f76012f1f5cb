import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../helpers/wait.js';

// The wait helper of the tests and benchmarks (test/helpers/wait.ts).

describe('waitFor', () => {
  it('resolves to the first value that is not undefined, null or false', async () => {
    const seen = [undefined, null, false, 0, 1];
    let i = 0;
    assert.equal(await waitFor('a value', () => seen[i++], { timeoutMs: 1000, pollMs: 1 }), 0);
    assert.equal(i, 4);
  });

  it('with until, resolves to the first value it accepts', async () => {
    let n = 0;
    assert.equal(
      await waitFor('three', async () => ++n, { timeoutMs: 1000, pollMs: 1, until: (v) => v >= 3 }),
      3,
    );
  });

  it('on a timeout, names what it waited for, the last value seen and the detail', async () => {
    let n = 0;
    await assert.rejects(
      waitFor('the count to reach 1000', () => ++n, {
        timeoutMs: 30,
        pollMs: 5,
        until: (v) => v >= 1000,
        detail: () => 'the log says why',
      }),
      (e: Error) => {
        assert.match(
          e.message,
          /^the count to reach 1000: not within 0\.03 s; last seen: \d+\nthe log says why$/,
        );
        assert.ok(e.message.includes(`last seen: ${n}\n`), e.message);
        return true;
      },
    );
  });

  it('shows a string seen last quoted, and a long one cut', async () => {
    await assert.rejects(
      waitFor('text', () => 'x'.repeat(600), { timeoutMs: 0, until: () => false }),
      /last seen: "x{499}…$/,
    );
  });

  it('asks the probe at least once, even with no time to wait', async () => {
    assert.equal(await waitFor('now', () => 'here', { timeoutMs: 0 }), 'here');
  });

  it('ends at once when the probe throws', async () => {
    const t0 = Date.now();
    await assert.rejects(
      waitFor(
        'a process',
        () => {
          throw new Error('it exited');
        },
        { timeoutMs: 10_000 },
      ),
      /it exited/,
    );
    assert.ok(Date.now() - t0 < 1000);
  });
});
