import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { World } from '../helpers/kagome.js';
import {
  OPEN_LINK_PROGRAM,
  startDesktopPortal,
  type DesktopPortal,
} from '../helpers/desktop-portal.js';
import { waitFor } from '../helpers/wait.js';
import { portalAddressInCage } from '../../lib/bridges/portal-proxy.js';

// Links from SessionBus=portal cages (issue 19, part 2), as the ordinary user against the real
// xdg-desktop-portal and xdg-desktop-portal-gtk on the test's bus and Xvfb:
// - OpenLinks=ask: the host's own "Open With" dialog (xdg-desktop-portal-gtk's AppChooser) asks
//   which cage with a browser opens the link; xdotool picks one, or cancels and nothing opens;
//   one dialog per cage at a time.
// - OpenLinksLimit=: a burst of links, then refused by name; the control has no limit.
// - xdg-open and gio open inside a portal cage go through the portal to the target cage; in a
//   private cage they stay inside that cage.

const BROWSER_ID = 'org.kagome.FakeBrowser.desktop';
// A "browser" that writes its arguments to $HOME/opened.log: where a link arrived.
const FAKE_BROWSER = 'for a in "$@"; do printf \'arg=%s\\n\' "$a"; done >> "$HOME/opened.log"\n';
const browserEntry = (home: string) => `[Desktop Entry]
Type=Application
Name=Fake Browser
Exec=sh ${home}/fakebrowser.sh %u
MimeType=x-scheme-handler/http;x-scheme-handler/https;x-scheme-handler/mailto;
`;
const BROWSER_DEFAULTS = `[Default Applications]\nx-scheme-handler/http=${BROWSER_ID};\nx-scheme-handler/https=${BROWSER_ID};\nx-scheme-handler/mailto=${BROWSER_ID};\n`;

// A hostile program: N links to kagome's cage portal through the proxy, all at once; writes
// each answer, in order, as JSON.
const HAMMER = String.raw`
import json, os, sys
from gi.repository import Gio, GLib
addr, out, prefix, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
conn = Gio.DBusConnection.new_for_address_sync(addr, flags, None, None)
loop = GLib.MainLoop()
res = [None] * n
def done(c, r, i):
    try:
        c.call_finish(r)
        res[i] = 'ok'
    except GLib.Error as e:
        res[i] = 'refused ' + (Gio.DBusError.get_remote_error(e) or '') + ' ' + e.message
    if all(x is not None for x in res):
        loop.quit()
for i in range(n):
    conn.call('io.kagome.Kagome', '/io/kagome/Kagome', 'io.kagome.CagePortal1', 'OpenURI',
              GLib.Variant('(sa{sv})', (prefix + str(i), {})), None, Gio.DBusCallFlags.NONE, 60000, None, done, i)
loop.run()
with open(out + '.tmp', 'w') as f:
    json.dump(res, f)
os.rename(out + '.tmp', out)
`;

describe('links from cages: ask on the host, a rate limit, xdg-open and gio open', () => {
  let w: World;
  let portal: DesktopPortal | undefined;
  let n = 0;

  const log = (cage: string): string => {
    try {
      return fs.readFileSync(w.homeFile(cage, 'opened.log'), 'utf8');
    } catch {
      return '';
    }
  };
  const arrived = (cage: string, uri: string) =>
    waitFor(`${uri} in the cage ${cage}`, () => log(cage).includes(`arg=${uri}\n`), {
      timeoutMs: 60_000,
      detail: () => w.service!.log(),
    });
  const run = (cage: string, script: string) => w.runShell(cage, script, 60_000);
  /** Starts a program that opens `uri` through the portal; `response()` waits for its answer. */
  const openLink = async (cage: string, uri: string) => {
    const out = `link-${++n}.out`;
    await w.launchCommand(cage, ['python3', '-c', OPEN_LINK_PROGRAM, uri, `${w.env.HOME}/${out}`]);
    return {
      response: async () =>
        Number(
          /^response=(\d+)/.exec(
            await w.readFileWhenWritten(w.homeFile(cage, out), 90_000).catch((e: Error) => {
              throw new Error(
                `${e.message}\n${w.programLog(cage, 'python3')}\n${w.service!.log()}`,
              );
            }),
          )?.[1],
        ),
    };
  };
  const x = (args: string[]) => execa('xdotool', args, { env: { DISPLAY: w.display } });
  /** The ids of the visible "Open With…" dialogs (xdotool search exits 1 when there is none). */
  const dialogsShown = async (): Promise<string[]> =>
    (
      await execa('xdotool', ['search', '--onlyvisible', '--name', '^Open With'], {
        env: { DISPLAY: w.display },
        reject: false,
      })
    ).stdout
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
  const answered = new Set<string>();
  /** the cage picked in the first dialog */
  let picked = '';
  /** The host's "Open With" dialog, with the keyboard. */
  const dialog = async () => {
    // A new one: the last one answered may still be on its way out.
    const d = {
      id: await waitFor(
        'a new "Open With…" dialog',
        async () => (await dialogsShown()).find((id) => !answered.has(id)),
        { timeoutMs: 60_000, detail: () => w.service!.log() },
      ),
    };
    answered.add(d.id);
    // No window manager on the test display: the test gives the dialog the keyboard.
    await waitFor(
      'the dialog has the keyboard',
      async () => {
        await x(['windowfocus', d.id]);
        return Number((await x(['getwindowfocus'])).stdout.trim()) === Number(d.id);
      },
      { timeoutMs: 10_000, pollMs: 200 },
    );
    return d;
  };
  const dialogGone = (id: string) =>
    waitFor('the dialog to close', async () => !(await dialogsShown()).includes(id), {
      timeoutMs: 30_000,
    });

  before(async () => {
    w = await World.create({ documentPortal: true, systemData: true });
    fs.writeFileSync(path.join(w.env.HOME!, 'fakebrowser.sh'), FAKE_BROWSER);
    fs.writeFileSync(path.join(w.systemApps, BROWSER_ID), browserEntry(w.env.HOME!));
    // Two cages with a browser, each its own default for links; and a private cage with one.
    for (const cage of ['web', 'work', 'quiet']) {
      w.writeCage(cage, cage === 'quiet' ? '[Cage]\nSessionBus=private\n' : '[Cage]\n');
      fs.mkdirSync(w.homeFile(cage, '.config'), { recursive: true });
      fs.mkdirSync(w.homeFile(cage, '.local/share/applications'), { recursive: true });
      fs.writeFileSync(w.homeFile(cage, 'fakebrowser.sh'), FAKE_BROWSER);
      fs.writeFileSync(
        w.homeFile(cage, `.local/share/applications/${BROWSER_ID}`),
        browserEntry(w.env.HOME!),
      );
      fs.writeFileSync(w.homeFile(cage, '.config/mimeapps.list'), BROWSER_DEFAULTS);
    }
    // No rate limit here: the dialog tests send links in bursts; the limit has its own test.
    w.writeCage(
      'mail',
      '[Cage]\nSessionBus=portal\nOpenLinks=ask\nOpenLinksLimit=none\nNotifications=none\n',
    );
    w.writeCage('news', '[Cage]\nSessionBus=portal\nOpenLinks=cage:web\nNotifications=none\n');
    w.writeCage(
      'spam',
      '[Cage]\nSessionBus=portal\nOpenLinks=cage:web\nOpenLinksLimit=2\nNotifications=none\n',
    );
    portal = await startDesktopPortal(w.env);
    await w.startService();
    // The browser of each browser cage on the host's menu: shadow entries, what ask offers.
    for (const cage of ['web', 'work']) {
      const r = await w.kagome(['app', 'add', cage, BROWSER_ID]);
      assert.equal(r.exitCode, 0, String(r.stderr));
    }
  });

  after(async () => {
    await w?.cleanup();
    await portal?.stop();
  });

  /** The shadow entries the dialog lists, in its order, as [desktop id, cage]. */
  const offered = (): [string, string][] => {
    const cache = fs.readFileSync(path.join(w.userApps, 'mimeinfo.cache'), 'utf8');
    const ids = /^x-scheme-handler\/https=(.*)$/m.exec(cache)![1]!.split(';').filter(Boolean);
    return ids.map((id) => [
      id,
      /^X-Kagome-Cage=(.*)$/m.exec(fs.readFileSync(path.join(w.userApps, id), 'utf8'))?.[1] ?? '',
    ]);
  };

  it('OpenLinks=ask: the host dialog names the link and the cage; the cage picked there opens it', async () => {
    const choices = offered();
    assert.equal(choices.length, 2, JSON.stringify(choices));
    const [, second] = choices[1]!;
    const [, first] = choices[0]!;
    // What the dialog is asked to show, as the host's bus carries it.
    const monitor = execa(
      'dbus-monitor',
      ['--address', w.bus.address, "interface='org.freedesktop.impl.portal.AppChooser'"],
      { reject: false, buffer: true },
    );
    try {
      const uri = 'https://example.org/asked?n=1';
      const link = await openLink('mail', uri);
      const d = await dialog();
      // The second row: Down moves from the first, selecting as it goes; Return opens it.
      await x(['key', 'Down', 'Down', 'Return']);
      await dialogGone(d.id);
      assert.equal(await link.response(), 0, w.service!.log());
      await arrived(second, uri);
      picked = second;
      assert.ok(!log(first).includes(uri), log(first));
    } finally {
      monitor.kill();
      await monitor;
    }
    const seen = String((await monitor).stdout);
    assert.match(seen, /string "example\.org, a link from the cage mail"/, seen);
    for (const [id] of choices)
      assert.ok(seen.includes(`string "${id.replace(/\.desktop$/, '')}"`));
  });

  it('OpenLinks=ask: cancelled, the link opens nowhere; one dialog per cage at a time', async () => {
    const uri = 'https://example.org/cancelled';
    const link = await openLink('mail', uri);
    const d = await dialog();
    // A second link from the same cage while the dialog is open: refused, no second dialog.
    const hammer = `hammer-${++n}.json`;
    await w.launchCommand('mail', [
      'python3',
      '-c',
      HAMMER,
      portalAddressInCage(),
      `${w.env.HOME}/${hammer}`,
      'https://example.org/meanwhile-',
      '3',
    ]);
    const meanwhile = JSON.parse(
      await w.readFileWhenWritten(w.homeFile('mail', hammer), 60_000),
    ) as string[];
    for (const r of meanwhile)
      assert.match(r, /^refused io\.kagome\.Error\.LimitReached .*one dialog at a time/, r);
    assert.deepEqual(await dialogsShown(), [d.id]);
    await x(['key', 'Escape']);
    await dialogGone(d.id);
    assert.equal(await link.response(), 2);
    assert.match(
      w.service!.log(),
      /the link from cage mail was not opened: the person chose nowhere/,
    );
    // A link that did open since shows the cancelled one would have arrived by now: none did.
    const after = 'https://example.org/after-the-cancel';
    const next = await openLink('mail', after);
    const d2 = await dialog();
    // The cage chosen last time is preselected: Return opens it there.
    await x(['key', 'Return']);
    await dialogGone(d2.id);
    assert.equal(await next.response(), 0);
    await arrived(picked, after);
    for (const cage of ['web', 'work']) {
      assert.ok(!log(cage).includes(uri), log(cage));
      assert.ok(!log(cage).includes('meanwhile'), log(cage));
    }
  });

  it('OpenLinksLimit=: a burst of links, then refused naming the limit; the control without a limit opens them all', async () => {
    const hammer = async (prefix: string, count: number): Promise<string[]> => {
      const out = `hammer-${++n}.json`;
      await w.launchCommand('spam', [
        'python3',
        '-c',
        HAMMER,
        portalAddressInCage(),
        `${w.env.HOME}/${out}`,
        prefix,
        String(count),
      ]);
      return JSON.parse(
        await w.readFileWhenWritten(w.homeFile('spam', out), 90_000).catch((e: Error) => {
          throw new Error(`${e.message}\n${w.programLog('spam', 'python3')}\n${w.service!.log()}`);
        }),
      ) as string[];
    };
    const limited = await hammer('https://example.org/limited-', 6);
    assert.equal(limited.filter((r) => r === 'ok').length, 2, JSON.stringify(limited));
    for (const r of limited.filter((r) => r !== 'ok'))
      assert.match(r, /^refused io\.kagome\.Error\.LimitReached .*OpenLinksLimit=2/, r);
    // The control: the limit off (read at each link), every link of the same burst opens.
    w.writeCage(
      'spam',
      '[Cage]\nSessionBus=portal\nOpenLinks=cage:web\nOpenLinksLimit=none\nNotifications=none\n',
    );
    const unlimited = await hammer('https://example.org/unlimited-', 6);
    assert.deepEqual(unlimited, Array(6).fill('ok'));
    for (let i = 0; i < 6; i++) await arrived('web', `https://example.org/unlimited-${i}`);
    // Of the limited burst, the two let through arrived, and by now no other.
    const got = log('web').match(/arg=https:\/\/example\.org\/limited-\d+\n/g) ?? [];
    assert.equal(got.length, 2, log('web'));
  });

  it('xdg-open and gio open in a portal cage go through the portal, to the cage its OpenLinks= names', async () => {
    for (const tool of ['xdg-open', 'gio open']) {
      const uri = `https://example.org/by-${tool.replace(' ', '-')}`;
      const out = await run('news', `${tool} ${uri}; echo "exit=$?"`);
      assert.match(out, /exit=0\n$/, out);
      await arrived('web', uri);
    }
    // What they are in the cage: flatpak-xdg-utils' xdg-open, and kagome's entry as the default.
    const which = await run(
      'news',
      'command -v xdg-open; gio mime x-scheme-handler/https | head -1',
    );
    assert.match(which, /^\/usr\/libexec\/flatpak-xdg-utils\/xdg-open\n/, which);
    assert.match(which, /io\.kagome\.OpenLink\.desktop/, which);
  });

  it('in a SessionBus=private cage they stay in the cage: its own browser opens the link, nothing reaches the host or another cage', async () => {
    for (const tool of ['xdg-open', 'gio open']) {
      const uri = `https://example.org/private-${tool.replace(' ', '-')}`;
      const out = await run('quiet', `${tool} ${uri}; echo "exit=$?"`);
      assert.match(out, /exit=0\n$/, out);
      await arrived('quiet', uri);
      for (const cage of ['web', 'work']) assert.ok(!log(cage).includes(uri));
    }
    assert.equal(fs.existsSync(path.join(w.env.HOME!, 'opened.log')), false);
    const which = await run('quiet', 'command -v xdg-open; ls /run/kagome/links 2>&1 | head -1');
    assert.match(which, /^\/usr\/bin\/xdg-open\n/, which);
    assert.ok(!w.service!.log().includes('cage quiet: opens'), w.service!.log());
  });
});
