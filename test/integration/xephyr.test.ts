import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { World } from '../helpers/kagome.js';
import { waitForWindow } from '../helpers/x11.js';
import { waitFor } from '../helpers/wait.js';

// Display=xephyr: a nested X server on the host (one window titled after the cage); programs of
// the cage draw inside it and nowhere else, and the cage still cannot reach the host display.

describe('a cage with Display=xephyr', () => {
  let w: World;

  before(async () => {
    w = await World.create();
    w.writeCage('nested', '[Cage]\nDisplay=xephyr\n');
    await w.startService();
  });

  after(async () => {
    await w?.cleanup();
  });

  it('shows one Xephyr window on the host and runs the program inside it', async () => {
    await w.launchCommand('nested', ['xeyes']);
    const outer = await waitForWindow(w.display, { name: 'nested (kagome)' });
    assert.ok(outer.id);
    const state = w.cageState('nested') as { displayState: { number: number; authFile: string } };
    const nested = `:${state.displayState.number}`;
    assert.notEqual(nested, w.display);
    // xeyes is a client of the nested server, not of the host one.
    const nestedTree = async () =>
      String(
        (
          await execa('xwininfo', ['-root', '-tree'], {
            env: { DISPLAY: nested, XAUTHORITY: state.displayState.authFile },
            reject: false,
          })
        ).stdout,
      );
    const tree = await waitFor('xeyes on the nested display', nestedTree, {
      timeoutMs: 15000,
      pollMs: 50,
      until: (t) => /xeyes/i.test(t),
    });
    assert.match(tree, /xeyes/i);
    const hostTree = String(
      (await execa('xwininfo', ['-root', '-tree'], { env: { DISPLAY: w.display } })).stdout,
    );
    assert.doesNotMatch(hostTree, /"xeyes"/);
  });

  it('the nested display needs its cookie: without it a client is refused', async () => {
    const state = w.cageState('nested') as { displayState: { number: number } };
    const r = await execa('xwininfo', ['-root'], {
      env: { DISPLAY: `:${state.displayState.number}`, XAUTHORITY: path.join(w.tmp.root, 'none') },
      reject: false,
    });
    assert.notEqual(r.exitCode, 0);
  });

  it('from inside, only the nested display is there: the host display is closed', async () => {
    const n = w.display.replace(/^:/, '');
    await w.launchCommand('nested', [
      'sh',
      '-c',
      `{ xwininfo -root >/dev/null 2>&1 && echo nested-open || echo nested-closed; xwininfo -root -display :${n} >/dev/null 2>&1 && echo host-open || echo host-closed; python3 -c 'import socket; s = socket.socket(socket.AF_UNIX); print("abstract-open" if s.connect_ex("\\0/tmp/.X11-unix/X${n}") == 0 else "abstract-closed")'; } > "$HOME/x.tmp"; mv "$HOME/x.tmp" "$HOME/x.out"`,
    ]);
    const [nestedSeen, hostByPath, hostAbstract] = (
      await w.readFileWhenWritten(w.homeFile('nested', 'x.out'))
    )
      .trim()
      .split('\n');
    assert.equal(nestedSeen, 'nested-open');
    // Inside, the nested server is display :0; when the host is :0 too, that name means the nested one.
    if (n !== '0') assert.equal(hostByPath, 'host-closed');
    // The host server's abstract socket is in the host's network namespace, never the cage's.
    assert.equal(hostAbstract, 'abstract-closed');
  });

  it('stopping the cage stops its Xephyr', async () => {
    const state = w.cageState('nested') as { displayState: { server: { pid: number } } };
    await w.dbus.Cages1.Stop('nested');
    const st = fs.existsSync(`/proc/${state.displayState.server.pid}/status`)
      ? fs.readFileSync(`/proc/${state.displayState.server.pid}/status`, 'utf8')
      : 'State:\tZ';
    assert.match(st, /State:\s+Z/);
  });
});
