import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { World } from '../helpers/kagome.js';
import { startNotifications } from '../helpers/notifications.js';
import { startPodman, type Engine } from '../helpers/engines.js';

// `kagome image build` for real: mmdebstrap from Debian's mirror, then `podman import`, with a
// recipe of one small package so the test takes seconds, not a minute. The progress printed
// (not a terminal here, so plain lines) must only go up, and the desktop notification is one
// notification updated in place with a progress value, replaced by the outcome.

const NAME = 'kagome/test-hello';

describe('kagome image build', () => {
  let w: World;
  let engine: Engine;
  let notifications: Awaited<ReturnType<typeof startNotifications>>;
  let result: Awaited<ReturnType<World['kagome']>>;

  before(async () => {
    engine = await startPodman();
    w = await World.create();
    notifications = await startNotifications(w.bus.address);
    const recipe = path.join(w.tmp.root, 'hello.packages');
    fs.writeFileSync(recipe, '# just one program\nhello\n');
    await execa('podman', ['rmi', '--force', NAME], {
      env: { ...process.env, ...engine.env },
      reject: false,
    });
    const t0 = Date.now();
    result = await execa(
      process.execPath,
      [
        path.join(process.cwd(), 'bin', 'kagome'),
        'image',
        'build',
        '--engine',
        'podman',
        '--name',
        NAME,
        '--packages',
        recipe,
      ],
      {
        env: { ...w.env, ...engine.env },
        reject: false,
        timeout: 300_000,
      },
    );
    process.stderr.write(`image build took ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  });

  after(async () => {
    await execa('podman', ['rmi', '--force', NAME], {
      env: { ...process.env, ...engine.env },
      reject: false,
    });
    notifications?.stop();
    await w?.cleanup();
    await engine?.stop();
  });

  it('builds and imports an image whose program runs', async () => {
    assert.equal(result.exitCode, 0, String(result.stderr));
    const run = await execa('podman', ['run', '--rm', '--network', 'none', NAME, 'hello'], {
      env: { ...process.env, ...engine.env },
      reject: false,
    });
    assert.equal(run.stdout, 'Hello, world!');
  });

  it('prints progress that only goes up, through downloading and installing, to 100%', () => {
    const pcts = String(result.stdout)
      .split('\n')
      .map((l) => /^(\d+)% /.exec(l))
      .filter(Boolean)
      .map((m) => Number(m![1]));
    assert.ok(pcts.length >= 5, `progress lines: ${result.stdout}`);
    assert.deepEqual(
      pcts,
      [...pcts].sort((a, b) => a - b),
      'never backwards',
    );
    assert.equal(pcts.at(-1), 100);
    assert.match(String(result.stdout), /downloading packages \(\d+\/\d+ packages\)/);
    assert.match(String(result.stdout), /installing packages \(\d+\/\d+ packages\)/);
  });

  it('shows one desktop notification with a progress value, replaced by the outcome', () => {
    const calls = notifications.server.calls.filter((c) =>
      c.summary.startsWith(`kagome image ${NAME}`),
    );
    assert.ok(calls.length >= 2, JSON.stringify(calls));
    assert.equal(calls[0]!.replaces, 0);
    assert.ok(
      calls.slice(1).every((c) => c.replaces === 1),
      'updates replace the first notification',
    );
    assert.ok(
      calls.some((c) => c.progress !== undefined && c.progress < 100),
      'a progress value while building',
    );
    assert.match(calls.at(-1)!.summary, /done$/);
    assert.equal(calls.at(-1)!.progress, 100);
  });

  it('refuses a recipe with a name that is not a Debian package, before downloading anything', async () => {
    const bad = path.join(w.tmp.root, 'bad.packages');
    fs.writeFileSync(bad, 'hello\nrm -rf\n');
    const r = await w.kagome(
      ['image', 'build', '--engine', 'podman', '--name', NAME, '--packages', bad],
      engine.env,
    );
    assert.equal(r.exitCode, 1);
    assert.match(String(r.stderr), /"rm -rf" is not a Debian package name/);
  });
});
