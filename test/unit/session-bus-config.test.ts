import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  busConfig,
  leftOutOfCages,
  serviceName,
  writeBusConfig,
} from '../../lib/bridges/session-bus-config.js';

// A cage's own dbus-daemon: which host services it may start, and its configuration. The
// integration test (test/integration/portals.test.ts) shows a private cage starting no portal.

const service = (name: string, exec = `/usr/libexec/${name}`) =>
  `[D-BUS Service]\nName=${name}\nExec=${exec}\n`;

describe("a cage's session bus configuration", () => {
  it('leaves out the portals, their backends and the desktop session, keeps dconf, GVfs and programs of their own', () => {
    for (const name of [
      'org.freedesktop.portal.Desktop',
      'org.freedesktop.portal.Documents',
      'org.freedesktop.impl.portal.desktop.gtk',
      'org.freedesktop.impl.portal.PermissionStore',
      'org.freedesktop.systemd1',
      'org.freedesktop.Notifications',
      'org.freedesktop.secrets',
      'org.gnome.keyring',
      'org.a11y.Bus',
    ])
      assert.equal(leftOutOfCages(name), true, name);
    for (const name of [
      'ca.desrt.dconf',
      'org.gtk.vfs.Daemon',
      'org.gtk.GLib.PACRunner',
      'org.gnome.Terminal',
      'org.freedesktop.portalish.Example',
    ])
      assert.equal(leftOutOfCages(name), false, name);
  });

  it("reads a service's name from its [D-BUS Service] group only", () => {
    assert.equal(serviceName(service('ca.desrt.dconf')), 'ca.desrt.dconf');
    assert.equal(serviceName('[Other]\nName=x\n[D-BUS Service]\n Name = y \n'), 'y');
    assert.equal(serviceName('[Other]\nName=x\n'), undefined);
  });

  it('has one service folder, no standard ones, nothing included from the cage', () => {
    const conf = busConfig('/run/kagome/session-bus/services');
    assert.match(conf, /<servicedir>\/run\/kagome\/session-bus\/services<\/servicedir>/);
    assert.equal(conf.match(/<servicedir>/g)?.length, 1);
    assert.doesNotMatch(conf, /standard_session_servicedirs|<include/);
  });

  it("links the services kept to the cage's own files, by the name inside the file, and is written again in place", () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-bus-config-'));
    const usr = path.join(root, 'usr');
    const local = path.join(root, 'local');
    fs.mkdirSync(usr);
    fs.mkdirSync(local);
    fs.writeFileSync(path.join(usr, 'ca.desrt.dconf.service'), service('ca.desrt.dconf'));
    fs.writeFileSync(
      path.join(usr, 'org.freedesktop.portal.Desktop.service'),
      service('org.freedesktop.portal.Desktop'),
    );
    // Named like something harmless, but it is the portal.
    fs.writeFileSync(path.join(usr, 'harmless.service'), service('org.freedesktop.portal.Desktop'));
    fs.writeFileSync(path.join(local, 'org.gnome.Terminal.service'), service('org.gnome.Terminal'));
    fs.writeFileSync(path.join(usr, 'notes.txt'), 'not a service');
    const dir = path.join(root, 'out');
    assert.deepEqual(writeBusConfig(dir, [local, usr]), ['org.freedesktop.portal.Desktop']);
    const services = path.join(dir, 'services');
    assert.deepEqual(fs.readdirSync(services).sort(), [
      'ca.desrt.dconf.service',
      'org.gnome.Terminal.service',
    ]);
    assert.equal(
      fs.readlinkSync(path.join(services, 'ca.desrt.dconf.service')),
      path.join(usr, 'ca.desrt.dconf.service'),
    );
    assert.match(fs.readFileSync(path.join(dir, 'session.conf'), 'utf8'), /<busconfig>/);
    // Written again after the host's services changed: the folder is the same one.
    const inode = fs.statSync(services).ino;
    fs.rmSync(path.join(local, 'org.gnome.Terminal.service'));
    writeBusConfig(dir, [local, usr]);
    assert.equal(fs.statSync(services).ino, inode);
    assert.deepEqual(fs.readdirSync(services), ['ca.desrt.dconf.service']);
    fs.rmSync(root, { recursive: true, force: true });
  });
});
