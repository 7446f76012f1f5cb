import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import sinon from 'sinon';
import { unixPathAddress } from '../../lib/bus.js';
import { toUri } from '../../lib/launcher.js';
import { BusNotifier, escapeMarkup, type NotifyCall } from '../../lib/notify.js';
import type { Logger } from '../../lib/log.js';

describe('unixPathAddress', () => {
  it('keeps a unix:path= address with its parameters', () => {
    assert.equal(unixPathAddress('unix:path=/run/user/1000/bus'), 'unix:path=/run/user/1000/bus');
    assert.equal(
      unixPathAddress('unix:guid=0123abcd,path=/tmp/bus'),
      'unix:guid=0123abcd,path=/tmp/bus',
    );
  });

  it('picks the unix:path= one of several addresses', () => {
    assert.equal(
      unixPathAddress('tcp:host=localhost,port=1234;unix:path=/b/bus,guid=1'),
      'unix:path=/b/bus,guid=1',
    );
    assert.equal(unixPathAddress('unix:abstract=/tmp/dbus-x;unix:path=/a/bus'), 'unix:path=/a/bus');
  });

  it('refuses abstract-only and tcp addresses, naming the address', () => {
    assert.throws(
      () => unixPathAddress('unix:abstract=/tmp/dbus-x,guid=9'),
      /unix:abstract=\/tmp\/dbus-x,guid=9 has no unix:path=/,
    );
    assert.throws(() => unixPathAddress('tcp:host=localhost,port=1234'), /no unix:path= socket/);
  });

  it('does not take a path that merely contains "path=" for the key', () => {
    assert.throws(() => unixPathAddress('unix:abstract=/tmp/path=x/bus'), /no unix:path=/);
  });
});

describe('toUri', () => {
  it('turns an absolute path into a percent-encoded file URI', () => {
    assert.equal(toUri('/home/u/a.txt', '/'), 'file:///home/u/a.txt');
    assert.equal(toUri('/home/u/my file.txt', '/'), 'file:///home/u/my%20file.txt');
    assert.equal(toUri('/home/u/100%.txt', '/'), 'file:///home/u/100%25.txt');
    assert.equal(toUri('/home/u/a#b', '/'), 'file:///home/u/a%23b');
    assert.equal(toUri('/home/u/a\nb', '/'), 'file:///home/u/a%0Ab');
    assert.equal(toUri('/home/u/a?b', '/'), 'file:///home/u/a%3Fb');
  });

  it('round-trips through URL to the original path', () => {
    const p = '/home/u/ä b%#?\n.txt';
    assert.equal(decodeURIComponent(new URL(toUri(p, '/')).pathname), p);
  });

  it('resolves a relative path against the working directory', () => {
    assert.equal(toUri('doc.txt', '/home/u/docs'), 'file:///home/u/docs/doc.txt');
    assert.equal(toUri('../x y', '/home/u/docs'), 'file:///home/u/x%20y');
    assert.equal(toUri('doc.txt', undefined), 'file:///doc.txt');
  });

  it('leaves URIs unchanged', () => {
    assert.equal(toUri('https://x', '/home/u'), 'https://x');
    assert.equal(toUri('mailto:a@b', '/home/u'), 'mailto:a@b');
    assert.equal(toUri('file:///etc/hosts', '/home/u'), 'file:///etc/hosts');
  });
});

function fakeLog(): Logger & { debug: sinon.SinonStub } {
  return { debug: sinon.stub(), info: sinon.stub(), warn: sinon.stub(), error: sinon.stub() };
}

describe('BusNotifier', () => {
  it('escapes markup in the body and passes the rest on', async () => {
    const call = sinon.stub<Parameters<NotifyCall>, ReturnType<NotifyCall>>().resolves(17);
    const n = new BusNotifier(call, fakeLog());
    const id = await n.notify({ summary: 'Launch failed', body: '<b>x</b> & "y"' });
    assert.equal(id, 17);
    assert.equal(call.callCount, 1);
    const args = call.firstCall.args[0];
    assert.equal(args.body, '&lt;b&gt;x&lt;/b&gt; &amp; "y"');
    assert.equal(args.summary, 'Launch failed');
    assert.equal(args.appName, 'kagome');
    assert.equal(args.replacesId, 0);
    assert.equal(args.urgency, 1);
    assert.deepEqual(args.actions, []);
  });

  it('maps urgency and replaces', async () => {
    const call = sinon.stub<Parameters<NotifyCall>, ReturnType<NotifyCall>>().resolves(1);
    const n = new BusNotifier(call, fakeLog());
    await n.notify({ summary: 's', body: 'b', urgency: 'low' });
    await n.notify({ summary: 's', body: 'b', urgency: 'normal' });
    await n.notify({ summary: 's', body: 'b', urgency: 'critical', replaces: 42 });
    assert.deepEqual(
      call.getCalls().map((c) => c.args[0].urgency),
      [0, 1, 2],
    );
    assert.equal(call.thirdCall.args[0].replacesId, 42);
  });

  it('resolves to undefined when there is no notification server', async () => {
    const call = sinon
      .stub<Parameters<NotifyCall>, ReturnType<NotifyCall>>()
      .rejects(new Error('org.freedesktop.DBus.Error.ServiceUnknown'));
    const log = fakeLog();
    const n = new BusNotifier(call, log);
    assert.equal(await n.notify({ summary: 's', body: 'b' }), undefined);
    assert.equal(call.callCount, 1);
    assert.ok(log.debug.calledOnce);
    assert.match(String(log.debug.firstCall.args[0]), /ServiceUnknown/);
  });

  it('escapeMarkup escapes & first', () => {
    assert.equal(escapeMarkup('&lt;'), '&amp;lt;');
    assert.equal(escapeMarkup('a<b>c'), 'a&lt;b&gt;c');
  });
});
