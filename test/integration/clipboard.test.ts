import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { World } from '../helpers/kagome.js';
import { startNotifications } from '../helpers/notifications.js';
import { waitFor } from '../helpers/wait.js';

// The clipboard bridge with xclip on the real host display (Xvfb) and inside real cages (xpra's
// X server in the cage, or Xephyr). What must cross is waited for; what must not cross is
// checked after something that had to cross at the same moment did (a control), and after a
// pause, so a slow bridge cannot pass a "nothing crossed" check by being slow.

const PROBE = 'clip.txt';
const SETTLE_MS = 1500;

type Sel = 'clipboard' | 'primary';

async function inCage(w: World, cage: string, script: string): Promise<string> {
  const out = w.homeFile(cage, PROBE);
  fs.rmSync(out, { force: true });
  // xclip -i forks and keeps serving the selection; its output goes nowhere, so the probe file is complete.
  await w.launchCommand(cage, [
    'sh',
    '-c',
    `{ ${script}\n} > "$HOME/${PROBE}.tmp" 2>/dev/null; mv "$HOME/${PROBE}.tmp" "$HOME/${PROBE}"`,
  ]);
  return w.readFileWhenWritten(out, 20000);
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

async function cageCopy(
  w: World,
  cage: string,
  text: string,
  sel: Sel = 'clipboard',
): Promise<void> {
  await inCage(
    w,
    cage,
    `printf %s ${quote(text)} | xclip -selection ${sel} -i >/dev/null 2>&1; echo ok`,
  );
}

async function cagePaste(w: World, cage: string, sel: Sel = 'clipboard'): Promise<string> {
  return inCage(w, cage, `xclip -selection ${sel} -o`);
}

async function hostCopy(
  w: World,
  text: string | Buffer,
  sel: Sel = 'clipboard',
  target?: string,
): Promise<void> {
  await execa('xclip', ['-selection', sel, ...(target ? ['-t', target] : []), '-i'], {
    env: w.env,
    input: text,
    stdout: 'ignore',
    stderr: 'ignore',
  });
  // xclip forks to serve the selection: wait until that child owns it.
  const owned = async () =>
    (
      await execa('xclip', ['-selection', sel, '-o', '-t', 'TARGETS'], {
        env: w.env,
        reject: false,
      })
    ).stdout.includes(target ?? 'UTF8_STRING');
  await waitFor('the host copy', owned, { timeoutMs: 5000, pollMs: 25 });
}

async function hostPaste(w: World, sel: Sel = 'clipboard'): Promise<string> {
  const r = await execa('xclip', ['-selection', sel, '-o'], { env: w.env, reject: false });
  return r.exitCode === 0 ? r.stdout : '';
}

async function eventually(read: () => Promise<string>, want: string, what: string): Promise<void> {
  await waitFor(what, read, { timeoutMs: 10000, pollMs: 25, until: (text) => text === want });
}

// A sleep, not a wait: a direction the policy forbids has no watcher, so nothing happens that
// could be waited for; the pause is what lets a slow leak show itself (see the top).
const settle = () => new Promise((r) => setTimeout(r, SETTLE_MS));

describe('clipboard bridge', () => {
  let w: World;
  let notifications: Awaited<ReturnType<typeof startNotifications>>;

  before(async () => {
    w = await World.create();
    w.writeCage('tocage', '[Cage]\nClipboard=to-cage\n');
    w.writeCage('tohost', '[Cage]\nClipboard=to-host\n');
    w.writeCage('both', '[Cage]\nClipboard=both\nClipboardMaxSize=1K\n');
    w.writeCage('sealed', '[Cage]\nClipboard=none\n');
    w.writeCage('asking', '[Cage]\nClipboardMaxSize=1K\n');
    w.writeCage('middle', '[Cage]\nClipboard=both\nClipboardPrimary=true\n');
    w.writeCage('nested', '[Cage]\nDisplay=xephyr\nClipboard=both\n');
    notifications = await startNotifications(w.bus.address);
    await w.startService();
  });

  after(async () => {
    if (process.env.KAGOME_TEST_DEBUG) console.log(w?.service?.log());
    notifications?.stop();
    await w?.cleanup();
  });

  it('to-cage: host copies appear in the cage, copies in the cage never reach the host', async () => {
    await hostCopy(w, 'before the cage started');
    await cageCopy(w, 'tocage', 'placeholder');
    // What was copied before the cage started is there too... once the bridge has run: the first
    // launch started the cage and its bridge, which carried the host's clipboard over.
    await hostCopy(w, 'host → tocage 1');
    await eventually(
      () => cagePaste(w, 'tocage'),
      'host → tocage 1',
      'the host copy inside the cage',
    );
    await cageCopy(w, 'tocage', 'cage secret');
    await settle();
    assert.equal(await hostPaste(w), 'host → tocage 1');
    await w.dbus.Cages1.Stop('tocage');
  });

  it('to-host: cage copies reach the host, host copies never reach the cage', async () => {
    await cageCopy(w, 'tohost', 'from tohost');
    await eventually(() => hostPaste(w), 'from tohost', 'the cage copy on the host');
    await hostCopy(w, 'host secret for tohost');
    await settle();
    assert.equal(await cagePaste(w, 'tohost'), 'from tohost');
    await w.dbus.Cages1.Stop('tohost');
  });

  it('both: either way, and nothing over ClipboardMaxSize', async () => {
    await hostCopy(w, 'host → both');
    await eventually(() => cagePaste(w, 'both'), 'host → both', 'host copy in the cage');
    await cageCopy(w, 'both', 'both → host');
    await eventually(() => hostPaste(w), 'both → host', 'cage copy on the host');
    // 2 KiB with a 1 KiB limit: not carried, not even cut short.
    const big = 'x'.repeat(2048);
    await hostCopy(w, big);
    // The bridge says when it refuses a copy: wait for that, then look in the cage.
    await waitFor(
      'the refusal of the big copy, in the service log',
      () => /larger than ClipboardMaxSize \(1024 bytes\)/.test(w.service!.log()),
      { timeoutMs: 10000, pollMs: 25 },
    );
    assert.equal(await cagePaste(w, 'both'), 'both → host');
    // Just under the limit crosses.
    const fits = 'y'.repeat(1000);
    await hostCopy(w, fits);
    await eventually(() => cagePaste(w, 'both'), fits, 'a copy under the limit');
  });

  it('PRIMARY stays on its side unless ClipboardPrimary=true', async () => {
    await cagePaste(w, 'middle'); // starts it
    await hostCopy(w, 'selected on the host', 'primary');
    await hostCopy(w, 'control for primary');
    await eventually(
      () => cagePaste(w, 'middle', 'primary'),
      'selected on the host',
      'PRIMARY in the middle cage',
    );
    await eventually(() => cagePaste(w, 'both'), 'control for primary', 'the clipboard control');
    assert.equal(
      await cagePaste(w, 'both', 'primary'),
      '',
      'PRIMARY reached a cage without ClipboardPrimary',
    );
    await w.dbus.Cages1.Stop('middle');
  });

  it('Xephyr cages get the same bridge, between the host display and the nested one', async () => {
    await hostCopy(w, 'host → nested');
    await eventually(() => cagePaste(w, 'nested'), 'host → nested', 'host copy in the Xephyr cage');
    await cageCopy(w, 'nested', 'nested → host');
    await eventually(() => hostPaste(w), 'nested → host', 'Xephyr cage copy on the host');
    await w.dbus.Cages1.Stop('nested');
  });

  it('none: nothing crosses, and explicit copies are refused', async () => {
    await cageCopy(w, 'sealed', 'sealed secret');
    await hostCopy(w, 'host text for sealed');
    await eventually(() => cagePaste(w, 'both'), 'host text for sealed', 'the control cage');
    await settle();
    assert.equal(await cagePaste(w, 'sealed'), 'sealed secret');
    assert.equal(await hostPaste(w), 'host text for sealed');
    for (const dir of ['to-host', 'to-cage']) {
      const r = await w.kagome(['clipboard', dir, 'sealed']);
      assert.equal(r.exitCode, 1, r.stderr);
      assert.match(r.stderr, /Clipboard=none, which does not allow copies/);
    }
  });

  it('ask: nothing crosses by itself; each explicit copy crosses once and is announced', async () => {
    await cageCopy(w, 'asking', 'asked from cage');
    await hostCopy(w, 'asked from host');
    await eventually(() => cagePaste(w, 'both'), 'asked from host', 'the control cage');
    await settle();
    assert.equal(await cagePaste(w, 'asking'), 'asked from cage');
    assert.equal(await hostPaste(w), 'asked from host');

    const toCage = await w.kagome(['clipboard', 'to-cage', 'asking']);
    assert.equal(toCage.exitCode, 0, toCage.stderr);
    assert.match(toCage.stdout, /copied 15 bytes of text from the host into cage asking/);
    assert.equal(await cagePaste(w, 'asking'), 'asked from host');
    await waitFor(
      'the notification',
      () => notifications.server.calls.find((c) => c.summary === 'Clipboard copied into asking'),
      { timeoutMs: 5000, pollMs: 25 },
    );

    await cageCopy(w, 'asking', 'second from cage');
    const [kind, bytes] = await w.dbus.Clipboard1.CopyToHost('asking');
    assert.deepEqual([kind, bytes], ['text', 16]);
    assert.equal(await hostPaste(w), 'second from cage');
    assert.ok(
      notifications.server.calls.some(
        (c) => c.summary === 'Clipboard copied from asking' && c.body.includes('16 bytes of text'),
      ),
    );
  });

  it('ask: over the size limit, images in a text-only cage, and an empty clipboard are errors that say so', async () => {
    await hostCopy(w, 'z'.repeat(4096));
    let e = await w.rejection(w.dbus.Clipboard1.CopyToCage('asking'));
    assert.equal(e.type, 'io.kagome.Error.NotPermitted');
    assert.match(e.text, /larger than ClipboardMaxSize \(1024 bytes\)/);
    const png = (
      await execa('convert', ['-size', '4x4', 'xc:red', 'png:-'], { encoding: 'buffer' })
    ).stdout as unknown as Uint8Array;
    await hostCopy(w, Buffer.from(png), 'clipboard', 'image/png');
    e = await w.rejection(w.dbus.Clipboard1.CopyToCage('asking'));
    assert.equal(e.type, 'io.kagome.Error.NotPermitted');
    assert.match(
      e.text,
      /holds an image; this cage allows text only \(ClipboardImages=true allows images\)/,
    );
    e = await w.rejection(w.dbus.Clipboard1.CopyToHost('sealed'));
    assert.equal(e.type, 'io.kagome.Error.NotPermitted');
    e = await w.rejection(w.dbus.Clipboard1.CopyToHost('tocage'));
    assert.equal(e.type, 'io.kagome.Error.NotRunning');
    e = await w.rejection(w.dbus.Clipboard1.CopyToHost('nosuch'));
    assert.equal(e.type, 'io.kagome.Error.NoSuchCage');
  });

  it('two cages: a copy in one reaches the other only through the host, as both policies allow', async () => {
    // tohost may give to the host; sealed takes nothing: what tohost copies never reaches sealed.
    await cageCopy(w, 'sealed', 'sealed own');
    await cageCopy(w, 'tohost', 'from tohost to everyone?');
    await eventually(() => hostPaste(w), 'from tohost to everyone?', 'the tohost copy on the host');
    await settle();
    assert.equal(await cagePaste(w, 'sealed'), 'sealed own');
    // both takes from the host: the same copy arrives there, through the host.
    await eventually(
      () => cagePaste(w, 'both'),
      'from tohost to everyone?',
      'the copy in the both cage, via the host',
    );
    // The cages' own displays are separate: xclip in one cage cannot name the other's display.
    const other = await inCage(
      w,
      'sealed',
      'ls /run/kagome/xpra; xclip -display :100 -selection clipboard -o; echo "rc=$?"',
    );
    assert.doesNotMatch(other, /from tohost/);
  });

  it('the cages show their clipboard policy and bridge state', async () => {
    const list = await w.kagome(['list']);
    assert.match(list.stdout, /^both\trunning\t.*clipboard=both\(up\)/m, list.stdout);
    assert.match(list.stdout, /^sealed\trunning\t.*clipboard=none(\t|$)/m, list.stdout);
    assert.match(list.stdout, /^asking\trunning\t.*clipboard=ask\(up\)/m, list.stdout);
    assert.match(list.stdout, /^tocage\tstopped\t.*clipboard=to-cage(\t|$)/m, list.stdout);
    const props = await w.dbus.Cages1.Get('both');
    assert.equal(props.Clipboard?.value, 'both');
    assert.equal(props.ClipboardBridge?.value, 'up');
    void path;
  });
});
