import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { checkLink, LinkOpener, MAX_LINK_BYTES, type LinkDeps } from '../../lib/links.js';
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
  const opener = (
    openLinks: string,
    hostDefault?: { id: string; cage?: string; entry?: string },
  ) => {
    const calls: string[] = [];
    const deps: LinkDeps = {
      config: async () => ({ openLinks }) as CageConfig,
      openInCage: async (cage, uri) => calls.push(`cage ${cage} ${uri}`),
      launchShadow: async (cage, entry, uri) => calls.push(`shadow ${cage} ${entry} ${uri}`),
      hostDefault: async () => hostDefault,
      openOnHost: (uri) => void calls.push(`host ${uri}`),
      log: quiet,
    };
    return { links: new LinkOpener(deps), calls };
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
});
