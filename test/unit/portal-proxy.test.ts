import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  busSocketPath,
  flatpakInfo,
  portalProxyArgs,
  portalProxyRules,
} from '../../lib/bridges/portal-proxy.js';

// The host side of SessionBus=portal as data: what the proxy lets through, and what its own
// sandbox holds. The integration test (test/integration/portals.test.ts) shows each refusal
// from inside a cage.

describe('the portal proxy', () => {
  it("filters, and lets through calls to the file chooser and kagome's cage portal (links, notifications), nothing else: no name to own, see or talk to", () => {
    const rules = portalProxyRules();
    assert.equal(rules[0], '--filter');
    assert.deepEqual(rules.slice(1), [
      '--call=org.freedesktop.portal.Desktop=org.freedesktop.portal.FileChooser.*@/org/freedesktop/portal/desktop',
      '--call=org.freedesktop.portal.Desktop=org.freedesktop.portal.Request.Close@/org/freedesktop/portal/desktop/request/*',
      '--call=io.kagome.Kagome=io.kagome.CagePortal1.OpenURI@/io/kagome/Kagome',
      '--call=io.kagome.Kagome=io.kagome.CagePortal1.AddNotification@/io/kagome/Kagome',
      '--call=io.kagome.Kagome=io.kagome.CagePortal1.RemoveNotification@/io/kagome/Kagome',
    ]);
    // Not the host's Notification portal: kagome sends cages' notifications itself.
    assert.ok(!rules.some((r) => r.includes('org.freedesktop.portal.Notification')));
    assert.ok(!rules.some((r) => /^--(own|talk|see|broadcast)=/.test(r)));
    // Notifications=none: that rule alone is left out.
    assert.deepEqual(
      portalProxyRules({ notifications: false }),
      rules.filter((r) => !r.includes('Notification')),
    );
  });

  it('runs in a sandbox with the host bus socket, its own folder and the cage named in /.flatpak-info, nothing more', () => {
    const args = portalProxyArgs({
      program: '/usr/bin/xdg-dbus-proxy',
      hostBusSocket: '/run/user/1000/bus',
      socketDir: '/run/user/1000/kagome/cages/web/portal',
      infoFd: 3,
      appInfoFd: 4,
    });
    const end = args.indexOf('--');
    const sandbox = args.slice(0, end);
    for (const flag of ['--unshare-all', '--unshare-user', '--new-session', '--clearenv'])
      assert.ok(sandbox.includes(flag), flag);
    assert.ok(!sandbox.includes('--share-net'));
    const binds = sandbox.flatMap((a, i) =>
      /^--(ro-)?bind$/.test(a) ? [`${sandbox[i + 1]}:${sandbox[i + 2]}`] : [],
    );
    assert.deepEqual(binds, [
      '/usr:/usr',
      '/run/user/1000/bus:/run/host/bus',
      '/run/user/1000/kagome/cages/web/portal:/run/portal',
    ]);
    assert.deepEqual(
      sandbox.slice(sandbox.indexOf('--ro-bind-data'), sandbox.indexOf('--ro-bind-data') + 3),
      ['--ro-bind-data', '4', '/.flatpak-info'],
    );
    assert.deepEqual(args.slice(end + 1, end + 4), [
      '/usr/bin/xdg-dbus-proxy',
      'unix:path=/run/host/bus',
      '/run/portal/bus',
    ]);
    assert.deepEqual(args.slice(end + 4), portalProxyRules());
    assert.equal(flatpakInfo('io.kagome.Cage_web'), '[Application]\nname=io.kagome.Cage_web\n');
  });

  it('finds the socket of a unix:path= address, escapes undone', () => {
    assert.equal(busSocketPath('unix:path=/run/user/1000/bus'), '/run/user/1000/bus');
    assert.equal(busSocketPath('unix:path=/tmp/a%20b/bus,guid=0123'), '/tmp/a b/bus');
    assert.equal(busSocketPath('unix:abstract=/tmp/dbus-x'), undefined);
  });
});
