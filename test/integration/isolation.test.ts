import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { World } from '../helpers/kagome.js';
import { hostDisplayAndBusProbe } from '../helpers/probes.js';

// What a cage must never see, checked from inside real cages by programs launched through the
// service: the host X server (by path and by abstract socket, with network off and on), the
// host session bus, the host home, and another cage's files and processes. Each probe prints
// "open" or "closed"; the probes are first run on the host, where everything must be "open",
// so a probe that cannot see anything anywhere cannot pass by accident.

function probeScript(
  hostDisplayNumber: string,
  busPath: string,
  hostSecret: string,
  otherCageFile: string,
  otherRuntime: string,
): string {
  return [
    ...hostDisplayAndBusProbe(hostDisplayNumber, busPath),
    `test -e '${hostSecret}' && echo "home open" || echo "home closed"`,
    `test -e '${otherCageFile}' && echo "other-home open" || echo "other-home closed"`,
    `test -e '${otherRuntime}' && echo "other-runtime open" || echo "other-runtime closed"`,
    `(ps -eo args 2>/dev/null || ls /proc) | grep -q '[o]ther-cage-sleeper' && echo "other-procs open" || echo "other-procs closed"`,
  ].join('\n');
}

function parse(out: string): Record<string, string> {
  return Object.fromEntries(
    out
      .trim()
      .split('\n')
      .map((l) => l.split(' ') as [string, string]),
  );
}

describe('a cage cannot reach the host or other cages', () => {
  let w: World;
  let script: string;
  const results: Record<string, Record<string, string>> = {};

  before(async () => {
    w = await World.create();
    w.writeCage('offline', '[Cage]\nNetwork=none\n');
    w.writeCage('online', '[Cage]\nNetwork=full\n');
    w.writeCage('other', '[Cage]\n');
    const hostSecret = path.join(w.env.HOME!, 'host-secret.txt');
    fs.writeFileSync(hostSecret, 'secret');
    const otherFile = w.homeFile('other', 'other-secret.txt');
    const busPath = w.bus.address.replace(/^unix:path=/, '').replace(/,.*$/, '');
    assert.ok(busPath.startsWith('/'), `expected a path bus address, got ${w.bus.address}`);
    const displayNumber = w.display.replace(/^:/, '');
    script = probeScript(
      displayNumber,
      busPath,
      hostSecret,
      otherFile,
      path.join(w.runtimeDir, 'cages', 'other'),
    );
    await w.startService();
    await w.launchCommand('other', [
      'sh',
      '-c',
      'echo x > "$HOME/other-secret.txt"; cp /bin/sleep "$HOME/other-cage-sleeper"; exec "$HOME/other-cage-sleeper" 600',
    ]);
    await w.readFileWhenWritten(otherFile);

    for (const cage of ['offline', 'online']) {
      await w.launchCommand(cage, [
        'sh',
        '-c',
        `{\n${script}\n} > "$HOME/probe.tmp" 2>&1; mv "$HOME/probe.tmp" "$HOME/probe.out"`,
      ]);
      results[cage] = parse(await w.readFileWhenWritten(w.homeFile(cage, 'probe.out')));
    }
  });

  after(async () => {
    await w?.cleanup();
  });

  it('the probe sees everything when run on the host (so "closed" below means something)', async () => {
    const { execa } = await import('execa');
    const r = await execa('sh', ['-c', script], { env: { ...w.env }, reject: false });
    const host = parse(String(r.stdout));
    assert.equal(host['x-path'], 'open');
    assert.equal(host['x-abstract'], 'open');
    assert.equal(host['x-client'], 'open');
    assert.equal(host.bus, 'open');
    assert.equal(host.home, 'open');
    assert.equal(host['other-home'], 'open');
    assert.equal(host['other-runtime'], 'open');
    assert.equal(host['other-procs'], 'open');
  });

  for (const cage of ['offline', 'online']) {
    describe(`from inside a cage with Network=${cage === 'offline' ? 'none' : 'full'}`, () => {
      it('the host X server is closed, by path, by abstract socket and to an X client', () => {
        assert.equal(results[cage]!['x-path'], 'closed');
        assert.equal(results[cage]!['x-abstract'], 'closed');
        assert.equal(results[cage]!['x-client'], 'closed');
      });
      it('the host session bus is unreachable', () => {
        assert.equal(results[cage]!.bus, 'closed');
      });
      it('the host home is not visible', () => {
        assert.equal(results[cage]!.home, 'closed');
      });
      it("another cage's files, runtime directory and processes are not visible", () => {
        assert.equal(results[cage]!['other-home'], 'closed');
        assert.equal(results[cage]!['other-runtime'], 'closed');
        assert.equal(results[cage]!['other-procs'], 'closed');
      });
    });
  }

  it('Network=full has a network of its own (slirp4netns), Network=none only loopback', async () => {
    for (const cage of ['offline', 'online']) {
      await w.launchCommand(cage, [
        'sh',
        '-c',
        'cat /proc/net/dev > "$HOME/net.tmp"; mv "$HOME/net.tmp" "$HOME/net.out"',
      ]);
    }
    assert.doesNotMatch(await w.readFileWhenWritten(w.homeFile('offline', 'net.out')), /tap0/);
    assert.match(await w.readFileWhenWritten(w.homeFile('online', 'net.out')), /tap0/);
  });
});
