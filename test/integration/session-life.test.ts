import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { World } from '../helpers/kagome.js';
import { stopChild } from '../helpers/daemons.js';
import { waitForWindow, countWindows } from '../helpers/x11.js';
import { waitFor } from '../helpers/wait.js';

// A desktop session's end and the next login, with a real X server that ends (as a logout ends
// the session's server) and a new one on the same display (the next login). A cage's OnLogout
// decides: stop (the default) closes its programs as a logout does; keep runs on unseen and
// shows its windows in the next session. Also when the service itself was stopped meanwhile, as
// systemd stops its unit with the graphical session.

/**
 * An xterm whose shell writes `closed` into the cage's home when xterm hangs it up: xterm does
 * that when asked to close its window (WM_DELETE_WINDOW) or sent SIGTERM, not when it is killed.
 */
const CLOSABLE = [
  'xterm',
  '-e',
  'sh',
  '-c',
  'trap "echo closed > $HOME/closed; exit 0" HUP TERM; while :; do sleep 1; done',
];

describe('the desktop session ends and comes back', () => {
  let w: World;

  const stateOf = async (cage: string): Promise<string> =>
    String((await w.dbus.Cages1.Get(cage)).State!.value);
  const programsOf = async (cage: string): Promise<number> =>
    Number((await w.dbus.Cages1.Get(cage)).Programs!.value);
  const stopped = (cage: string, what: string) =>
    waitFor(what, () => stateOf(cage), {
      timeoutMs: 60000,
      pollMs: 100,
      until: (state) => state === 'stopped',
    });

  /** A default cage running a closable xterm and a kept one running xeyes, both shown. */
  const twoCages = async (stop: string, keep: string): Promise<void> => {
    w.writeCage(stop, '[Cage]\n');
    w.writeCage(keep, '[Cage]\nOnLogout=keep\n');
    await w.launchCommand(stop, CLOSABLE);
    await w.launchCommand(keep, ['xeyes']);
    await waitForWindow(w.display, { wmClass: 'XTerm' });
    await waitForWindow(w.display, { wmClass: 'XEyes' });
  };

  before(async () => {
    w = await World.create();
    await w.startService();
  });

  after(async () => {
    await w?.cleanup();
  });

  it('a logout closes the programs of a default cage and stops it; a kept cage is shown again at the next login', async () => {
    await twoCages('work', 'music');

    await w.endDisplay();
    await stopped('work', 'the default cage stopping');
    assert.equal(
      await w.readFileWhenWritten(w.homeFile('work', 'closed')),
      'closed\n',
      'the program was killed, not closed',
    );
    assert.equal(w.cageState('work'), undefined);
    assert.equal(await stateOf('music'), 'running');
    assert.equal(
      await programsOf('music'),
      1,
      "the kept cage's program did not survive the logout",
    );
    assert.match(w.service!.log(), /cage music: kept running after the logout/);

    // Nothing can be shown while no one is logged in: a launch says so.
    const refused = await w.rejection(w.dbus.Launcher1.LaunchCommand('music', ['xlogo'], {}));
    assert.equal(refused.type, 'io.kagome.Error.DisplayFailed');
    assert.match(refused.text, /desktop session .* has ended/);

    await w.newDisplay();
    // The window of the program that ran on is on the new session's display, drawn by a new client.
    await waitForWindow(w.display, { wmClass: 'XEyes' }, { timeoutMs: 60000 });
    await w.launchCommand('music', ['xlogo']);
    await waitForWindow(w.display, { wmClass: 'XLogo' });
    assert.equal(await countWindows(w.display, 'XTerm'), 0, "the stopped cage's window came back");
    await w.dbus.Cages1.Stop('music');
  });

  it('a service stopped at logout settles the cages when it starts in the next session; a restart in the same one does not', async () => {
    await twoCages('office', 'radio');

    // A restart in the same session (an upgrade): both cages are adopted as they were.
    await stopChild(w.service!.child);
    await w.startService();
    assert.equal(await stateOf('office'), 'running');
    assert.equal(await stateOf('radio'), 'running');
    assert.equal(
      fs.existsSync(w.homeFile('office', 'closed')),
      false,
      'a restart in the same session closed a program',
    );
    assert.equal(await countWindows(w.display, 'XTerm'), 1);

    // systemd stops the unit at logout, here before the server ends, so the service cannot tell.
    await stopChild(w.service!.child);
    await w.endDisplay();
    await w.newDisplay();
    await w.startService();
    await stopped('office', 'the default cage stopping at the start in a new session');
    assert.equal(
      await w.readFileWhenWritten(w.homeFile('office', 'closed')),
      'closed\n',
      'the program was killed, not closed',
    );
    assert.equal(await stateOf('radio'), 'running');
    await waitForWindow(w.display, { wmClass: 'XEyes' }, { timeoutMs: 60000 });
    assert.equal(
      await countWindows(w.display, 'XTerm'),
      0,
      "the stopped cage's program was shown in the new session",
    );
  });
});
