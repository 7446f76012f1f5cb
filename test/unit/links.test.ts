import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkLink,
  LinkOpener,
  LINK_REFILL_MS,
  MAX_LINK_BYTES,
  type LinkDeps,
} from '../../lib/links.js';
import type { LinkQuestion } from '../../lib/link-chooser.js';
import type { CageConfig } from '../../lib/cage/config.js';
import type { Logger } from '../../lib/log.js';

// Links from cages (lib/links.ts): what a hostile cage may send, and where OpenLinks= sends
// what passes. test/integration/portals.test.ts sends them from inside a cage.

const quiet: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
} as unknown as Logger;

describe('checkLink', () => {
  it('lets http, https and mailto links through', () => {
    assert.equal(checkLink('https://example.org/a?b=c#d'), 'https');
    assert.equal(checkLink('HTTP://example.org/'), 'http');
    assert.equal(checkLink('mailto:someone@example.org?subject=hi%20there'), 'mailto');
  });

  it('refuses file: and other schemes, which would hand on host files or reach other handlers', () => {
    for (const uri of [
      'file:///etc/shadow',
      'FILE:///home/u/.ssh/id_rsa',
      'javascript:alert(1)',
      'smb://server/share',
      'x-kagome-evil:1',
      'data:text/html,hi',
    ]) {
      assert.throws(
        () => checkLink(uri),
        (e: Error & { errorName?: string }) => e.errorName === 'NotPermitted',
        uri,
      );
    }
  });

  it('refuses control characters, spaces, non-ASCII, no scheme, no host and overlong links', () => {
    for (const uri of [
      'https://example.org/\n--new-window',
      'https://example.org/\x00',
      'https://example.org/\x1b[2J',
      'https://exa mple.org/',
      'https://example.org/\u202e',
      'https://exämple.org/',
      'example.org',
      'https:///path',
      'https://' + 'a'.repeat(MAX_LINK_BYTES),
    ]) {
      assert.throws(
        () => checkLink(uri),
        (e: Error & { errorName?: string }) => e.errorName === 'InvalidArgument',
        JSON.stringify(uri.slice(0, 40)),
      );
    }
  });
});

describe('LinkOpener', () => {
  type Handler = { id: string; cage?: string; entry?: string };
  const opener = (
    openLinks: string,
    hostDefault?: Handler,
    more: {
      limit?: number;
      handlers?: Handler[];
      answer?: (q: LinkQuestion) => Promise<string | undefined>;
    } = {},
  ) => {
    const calls: string[] = [];
    const asked: LinkQuestion[] = [];
    const clock = { now: 0 };
    const deps: LinkDeps = {
      config: async () => ({ openLinks, openLinksLimit: more.limit ?? 0 }) as CageConfig,
      openInCage: async (cage, uri) => calls.push(`cage ${cage} ${uri}`),
      launchShadow: async (cage, entry, uri) => calls.push(`shadow ${cage} ${entry} ${uri}`),
      hostDefault: async () => hostDefault,
      hostHandlers: async () => more.handlers ?? (hostDefault ? [hostDefault] : []),
      choose: async (q) => {
        asked.push(q);
        return more.answer ? more.answer(q) : undefined;
      },
      now: () => clock.now,
      openOnHost: (uri) => void calls.push(`host ${uri}`),
      log: quiet,
    };
    return { links: new LinkOpener(deps), calls, asked, clock };
  };
  const caged = { id: 'firefox-esr.desktop', cage: 'web', entry: 'firefox-esr.desktop' };
  const uncaged = { id: 'firefox-esr.desktop' };

  it('caged-default: into the cage of the host default, never to an uncaged one', async () => {
    const a = opener('caged-default', caged);
    assert.equal(await a.links.open('mail', 'https://example.org/'), 'web');
    assert.deepEqual(a.calls, ['shadow web firefox-esr.desktop https://example.org/']);
    const b = opener('caged-default', uncaged);
    await assert.rejects(b.links.open('mail', 'https://example.org/'), /not in one/);
    assert.deepEqual(b.calls, []);
  });

  it('host: the host default, caged or not; cage:NAME: that cage; none: nowhere', async () => {
    const a = opener('host', uncaged);
    await a.links.open('mail', 'https://example.org/');
    assert.deepEqual(a.calls, ['host https://example.org/']);
    const b = opener('cage:web', uncaged);
    assert.equal(await b.links.open('mail', 'mailto:x@example.org'), 'web');
    assert.deepEqual(b.calls, ['cage web mailto:x@example.org']);
    const c = opener('none', caged);
    await assert.rejects(c.links.open('mail', 'https://example.org/'), /OpenLinks=none/);
    assert.deepEqual(c.calls, []);
  });

  it('checks the link before any policy: a bad one goes nowhere', async () => {
    const a = opener('host', uncaged);
    await assert.rejects(a.links.open('mail', 'file:///etc/shadow'), /file: links/);
    assert.deepEqual(a.calls, []);
  });

  it('a cage opens OpenLinksLimit= links in a row, then one each LINK_REFILL_MS; other cages are not counted', async () => {
    const a = opener('cage:web', undefined, { limit: 2 });
    await a.links.open('mail', 'https://example.org/1');
    await a.links.open('mail', 'https://example.org/2');
    await assert.rejects(
      a.links.open('mail', 'https://example.org/3'),
      (e: Error & { errorName?: string }) =>
        e.errorName === 'LimitReached' && /OpenLinksLimit=2/.test(e.message),
    );
    await a.links.open('chat', 'https://example.org/other-cage');
    a.clock.now += LINK_REFILL_MS;
    await a.links.open('mail', 'https://example.org/4');
    await assert.rejects(a.links.open('mail', 'https://example.org/5'), /OpenLinksLimit=2/);
    assert.deepEqual(
      a.calls.map((c) => c.split('/').at(-1)),
      ['1', '2', 'other-cage', '4'],
    );
    // The control: no limit.
    const b = opener('cage:web', undefined, { limit: 0 });
    for (let i = 0; i < 20; i++) await b.links.open('mail', `https://example.org/${i}`);
    assert.equal(b.calls.length, 20);
  });

  const web = { id: 'kagome-web-firefox.desktop', cage: 'web', entry: 'firefox-esr.desktop' };
  const work = { id: 'kagome-work-chromium.desktop', cage: 'work', entry: 'chromium.desktop' };
  const hostFirefox = { id: 'firefox-esr.desktop' };

  it('ask: offers the cages with a program for the scheme, opens the one chosen, nothing on cancel', async () => {
    const a = opener('ask', undefined, {
      handlers: [hostFirefox, web, work],
      answer: async (q) => q.choices[1],
    });
    assert.equal(await a.links.open('mail', 'https://example.org/page'), 'work');
    assert.deepEqual(a.asked[0]!.choices, [web.id, work.id]);
    assert.equal(a.asked[0]!.location, 'example.org, a link from the cage mail');
    assert.deepEqual(a.calls, ['shadow work chromium.desktop https://example.org/page']);
    // The last choice is preselected next time.
    await a.links.open('mail', 'https://example.org/again');
    assert.equal(a.asked[1]!.last, work.id);
    const b = opener('ask', undefined, { handlers: [web], answer: async () => undefined });
    await assert.rejects(b.links.open('mail', 'https://example.org/'), /chose nowhere/);
    // An answer that was not offered is not followed.
    const c = opener('ask', undefined, { handlers: [web], answer: async () => 'evil.desktop' });
    await assert.rejects(c.links.open('mail', 'https://example.org/'), /chose nowhere/);
    assert.deepEqual([...b.calls, ...c.calls], []);
  });

  it("ask-with-host: the host's default is offered only when the person said so, and only when it is uncaged", async () => {
    const a = opener('ask-with-host', undefined, {
      handlers: [hostFirefox, web],
      answer: async () => hostFirefox.id,
    });
    assert.equal(await a.links.open('mail', 'mailto:me@example.org?subject=x'), '');
    assert.deepEqual(a.asked[0]!.choices, [web.id, hostFirefox.id]);
    assert.equal(a.asked[0]!.location, 'me@example.org, a link from the cage mail');
    assert.deepEqual(a.calls, ['host mailto:me@example.org?subject=x']);
    const b = opener('ask', undefined, { handlers: [hostFirefox] });
    await assert.rejects(b.links.open('mail', 'https://example.org/'), /no cage has a program/);
    assert.equal(b.asked.length, 0);
  });

  it('ask: one dialog per cage at a time; another cage may ask meanwhile', async () => {
    const answers: ((id: string | undefined) => void)[] = [];
    const a = opener('ask', undefined, {
      handlers: [web],
      answer: () => new Promise((r) => answers.push(r)),
    });
    const first = a.links.open('mail', 'https://example.org/1');
    await new Promise((r) => setImmediate(r));
    await assert.rejects(
      a.links.open('mail', 'https://example.org/2'),
      (e: Error & { errorName?: string }) => e.errorName === 'LimitReached',
    );
    const other = a.links.open('chat', 'https://example.org/3');
    await new Promise((r) => setImmediate(r));
    assert.equal(a.asked.length, 2);
    for (const answer of answers) answer(web.id);
    assert.deepEqual(await Promise.all([first, other]), ['web', 'web']);
    // Answered, the cage may ask again.
    const again = a.links.open('mail', 'https://example.org/4');
    await new Promise((r) => setImmediate(r));
    answers.at(-1)!(undefined);
    await assert.rejects(again, /chose nowhere/);
  });
});
