import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkState, readState, writeState, type CageState } from '../../lib/runtime/state.js';
import { parseCageFile } from '../../lib/cage/config.js';

// A state file is read back through validation: what another kagome wrote, or a person
// damaged, is refused with the reason, never cast into a record that lacks its fields.

function sample(): CageState {
  const config = parseCageFile('[Cage]\n', 'web.cage', 'web', {
    hostHome: '/home/alice',
    homesDir: '/home/alice/.local/share/kagome/homes',
    totalMemory: 8 * 2 ** 30,
  });
  return {
    version: 1,
    name: 'web',
    backend: config.backend,
    display: config.display,
    startedAt: '2026-11-27T12:00:00.000Z',
    sandbox: { init: { pid: 4242, start: '123' } },
    displayState: { server: { pid: 4243, start: '124' } },
    bridges: { sound: { down: 'no sound server' } },
    owner: { pid: 4000, start: '99' },
    config,
    programs: [{ pid: 4300, start: '130' }],
    hostSession: '0123456789abcdef0123456789abcdef',
  };
}

describe('cage state files', () => {
  it('reads back what it wrote', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-state-'));
    try {
      const file = path.join(dir, 'web.json');
      await writeState(file, sample());
      // Fields the cage file left unset (undefined) are not written: JSON has no undefined.
      assert.deepEqual(await readState(file), { state: JSON.parse(JSON.stringify(sample())) });
      assert.equal(await readState(path.join(dir, 'none.json')), undefined);
      fs.writeFileSync(file, '{"version": 1, "name": ');
      const broken = await readState(file);
      assert.ok(broken && 'problem' in broken && /not JSON/.test(broken.problem));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names what is wrong with a state it cannot use', () => {
    const cases: [string, (s: Record<string, unknown>) => void, RegExp][] = [
      ['a newer version', (s) => (s.version = 2), /newer kagome \(state version 2/],
      ['no version', (s) => delete s.version, /no state version/],
      ['no configuration (older kagome)', (s) => delete s.config, /no configuration/],
      [
        'a configuration of another cage',
        (s) => ((s.config as Record<string, unknown>).name = 'mail'),
        /not the cage it names/,
      ],
      [
        'a program that is not a process',
        (s) => (s.programs = [{ pid: -1, start: 'x' }]),
        /programs/,
      ],
      ['a sandbox that is not an object', (s) => (s.sandbox = 'bwrap'), /sandbox is not an object/],
      ['an owner without a start time', (s) => (s.owner = { pid: 1 }), /owner/],
      ['a bridge record that is a string', (s) => (s.bridges = { sound: 'up' }), /bridge record/],
    ];
    for (const [what, damage, expected] of cases) {
      const s = structuredClone(sample()) as unknown as Record<string, unknown>;
      damage(s);
      const r = checkState(s);
      assert.equal(typeof r, 'string', `${what} was accepted`);
      assert.match(r as string, expected, what);
    }
    assert.equal(typeof checkState(sample()), 'object');
    assert.equal(checkState(null), 'it is not an object');
  });
});
