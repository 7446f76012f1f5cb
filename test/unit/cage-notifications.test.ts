import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  CageNotifications,
  MAX_BODY,
  MAX_IDS,
  MAX_SUMMARY,
  cageNotification,
  plainText,
  type NotificationServer,
  type PortalNotification,
  type SentNotification,
} from '../../lib/cage-notifications.js';
import { cageEntryText, cageIconSvg } from '../../lib/desktop/cage-entry.js';
import { Keyfile } from '../../xdg/keyfile.js';

// What kagome makes of a cage's notification (the cage is the attacker): plain text, marked with
// the cage's name, nothing else. The integration test (test/integration/notifications.test.ts)
// sends them from a cage to a notification server.

const s = (value: string) => ({ signature: 's', value });

describe("a cage's notification", () => {
  it("is marked with the cage's name in the summary, the app name and the desktop-entry hint", () => {
    const n = cageNotification('mail', { title: s('System update'), body: s('Reboot now') });
    assert.deepEqual(n, {
      appName: 'mail (kagome cage)',
      summary: '[mail] System update',
      body: 'Reboot now',
      desktopEntry: 'io.kagome.Cage_mail',
      urgency: 1,
    });
    assert.equal(cageNotification('mail', {}).summary, '[mail]');
  });

  it('has no markup a server could read: links, images and tags become look-alike text', () => {
    const n = cageNotification('mail', {
      title: s('<b>Bank</b> & co'),
      body: s('<a href="https://evil.example/">click</a><img src="file:///etc/passwd"/> &amp;'),
    });
    assert.equal(n.summary, '[mail] \u2039b\u203aBank\u2039/b\u203a \uff06 co');
    assert.ok(!/[<>&]/.test(n.summary + n.body), n.body);
    assert.match(n.body, /^\u2039a href="https:\/\/evil.example\/"\u203aclick/);
  });

  it('loses control and direction-override characters; the summary is one line; lengths are capped', () => {
    assert.equal(plainText('a\u202eb\u0007c\u200bd\u001b]0;x', 100), 'abcd]0;x');
    assert.equal(plainText('one\ntwo\r\nthree', 100), 'one two three');
    assert.equal(plainText('one\n\n\n\ntwo', 100, 5), 'one\n\ntwo');
    const long = cageNotification('c', {
      title: s('x'.repeat(10_000)),
      body: s('y\n'.repeat(10_000)),
    });
    assert.equal(Array.from(long.summary).length, '[c] '.length + MAX_SUMMARY);
    assert.ok(long.body.length <= MAX_BODY);
    assert.ok(long.body.split('\n').length <= 12);
  });

  it('drops the icon, buttons and actions; "urgent" is sent as normal', () => {
    const n = cageNotification('c', {
      title: s('t'),
      icon: { signature: '(sv)', value: ['themed', ['system-software-update']] },
      buttons: { signature: 'aa{sv}', value: [] },
      'default-action': s('app.x'),
      priority: s('urgent'),
    });
    assert.equal(n.urgency, 1);
    assert.equal(cageNotification('c', { priority: s('low') }).urgency, 0);
  });

  it('refuses a title that is not text', () => {
    assert.throws(
      () => cageNotification('c', { title: { signature: 'u', value: 3 } }),
      /title is text \(type s\), not type u/,
    );
  });
});

describe("a cage's notification ids", () => {
  const server = () => {
    const sent: { n: SentNotification; replaces: number }[] = [];
    const closed: number[] = [];
    let next = 0;
    const impl: NotificationServer = {
      notify: (n, replaces) => {
        sent.push({ n, replaces });
        return Promise.resolve(replaces || ++next);
      },
      close: (id) => {
        closed.push(id);
        return Promise.resolve();
      },
    };
    return { sent, closed, impl };
  };
  const t = (title: string): PortalNotification => ({ title: s(title) });

  it('the same id replaces, per cage; RemoveNotification closes; another cage cannot touch it', async () => {
    const srv = server();
    const c = new CageNotifications(srv.impl);
    await c.add('a', 'x', t('1'));
    await c.add('a', 'x', t('2'));
    await c.add('b', 'x', t('3'));
    assert.deepEqual(
      srv.sent.map((e) => e.replaces),
      [0, 1, 0],
    );
    await c.remove('b', 'nothing');
    await c.remove('b', 'x');
    assert.deepEqual(srv.closed, [2]);
    await c.remove('a', 'x');
    assert.deepEqual(srv.closed, [2, 1]);
    await assert.rejects(c.add('a', 'i'.repeat(257), t('x')), /at most 256/);
  });

  it('a replacement sent before the first was answered still replaces it', async () => {
    const srv = server();
    const c = new CageNotifications(srv.impl);
    await Promise.all([c.add('a', 'x', t('1')), c.add('a', 'x', t('2')), c.remove('a', 'x')]);
    assert.deepEqual(
      srv.sent.map((e) => e.replaces),
      [0, 1],
    );
    assert.deepEqual(srv.closed, [1]);
  });

  it(`remembers at most ${MAX_IDS} ids per cage`, async () => {
    const srv = server();
    const c = new CageNotifications(srv.impl);
    for (let i = 0; i <= MAX_IDS; i++) await c.add('a', `n${i}`, t('x'));
    await c.remove('a', 'n0');
    assert.deepEqual(srv.closed, []);
    await c.remove('a', `n${MAX_IDS}`);
    assert.deepEqual(srv.closed, [MAX_IDS + 1]);
  });
});

describe("the cage's desktop entry", () => {
  it('is hidden from menus, named after the cage, with its icon', () => {
    const kf = Keyfile.parse(cageEntryText('mail', '/d/kagome/cage-icons/mail.svg'));
    const get = (k: string) => kf.get('Desktop Entry', k);
    assert.equal(get('NoDisplay'), 'true');
    assert.equal(get('Name'), 'mail (kagome cage)');
    assert.equal(get('Icon'), '/d/kagome/cage-icons/mail.svg');
    assert.equal(get('X-Kagome-Cage'), 'mail');
  });

  it("draws the icon in the cage's colour", () => {
    assert.match(cageIconSvg('#3465a4'), /fill="#3465a4"/);
    assert.match(cageIconSvg('dark green'), /fill="darkgreen"/);
    assert.match(cageIconSvg(undefined), /fill="#888888"/);
  });
});
