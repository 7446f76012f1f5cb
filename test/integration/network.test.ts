import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { World, REPO } from '../helpers/kagome.js';
import { waitFor } from '../helpers/wait.js';

// Network=internet from inside real cages, as a hostile program would try it: the host's own
// addresses, a LAN and slirp4netns's gateway are refused, the internet and DNS are not, and
// the cage cannot take the rules away. The same probes from a Network=full cage reach the host
// and the LAN, so these tests fail when the rules are missing.
//
// The "internet" and the "LAN" are a veth pair that test/as-user makes as root (see there):
// this side holds the host's test addresses, the far side, in a namespace of its own, a web
// server standing for a host on the internet and one on the LAN. Without root there is no such
// network: the tests then skip, except under CI, where they fail.

const VARS = {
  server: 'KAGOME_TEST_INET_SERVER',
  lanServer: 'KAGOME_TEST_INET_LAN_SERVER',
  host: 'KAGOME_TEST_INET_HOST',
  hostLan: 'KAGOME_TEST_INET_HOST_LAN',
  token: 'KAGOME_TEST_INET_TOKEN',
} as const;
const NET = Object.fromEntries(Object.entries(VARS).map(([k, v]) => [k, process.env[v]])) as Record<
  keyof typeof VARS,
  string | undefined
>;
const missing = Object.values(VARS).filter((v) => !process.env[v]);
const WHY_SKIPPED = `no test network (${missing.join(', ')} unset): test/as-user makes it when started as root`;

/**
 * Each attempt prints one JSON line {name: result}: what came back ("token", "banner",
 * "reply", "sent"), or the errno's name. Timeouts are only there so that a broken case ends;
 * no result depends on how long anything took.
 */
const PROBE = String.raw`
import errno, json, socket, sys
cfg = json.loads(sys.argv[1])
def name(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else 'timeout'
def report(key, fn):
    try:
        r = fn()
    except OSError as e:
        r = name(e)
    print(json.dumps({key: r}), flush=True)
def http(host):
    s = socket.create_connection((host, 80), timeout=20)
    s.sendall(b'GET /token HTTP/1.0\r\nHost: x\r\n\r\n')
    data = b''
    while True:
        b = s.recv(4096)
        if not b:
            break
        data += b
    return 'token' if cfg['token'].encode() in data else 'other: ' + data[:80].decode('latin-1')
def tcp(host, port, tag):
    s = socket.create_connection((host, port), timeout=20)
    s.sendall(tag.encode() + b'\n')
    return 'banner' if s.recv(64).startswith(b'kagome-host') else 'no banner'
def udp(host, port, tag):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    s.send(tag.encode())
    return 'sent'
def dns(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.connect(('10.0.2.3', port))
    s.send(b'\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x09localhost\x00\x00\x01\x00\x01')
    s.recv(512)
    return 'reply'
report('internet', lambda: http(cfg['server']))
report('lan', lambda: http(cfg['lanServer']))
for a in cfg['hostAddresses']:
    report('host-tcp ' + a, lambda: tcp(a, cfg['tcpPort'], cfg['tag'] + ' tcp ' + a))
    report('host-udp ' + a, lambda: udp(a, cfg['udpPort'], cfg['tag'] + ' udp ' + a))
report('gateway', lambda: tcp('10.0.2.2', cfg['tcpPort'], cfg['tag'] + ' tcp gateway'))
report('dns', lambda: dns(53))
report('dns-other-port', lambda: dns(54))
`;

type Results = Record<string, string>;

describe(
  'Network=internet in bubblewrap cages',
  { skip: missing.length > 0 && !process.env.CI ? WHY_SKIPPED : false },
  () => {
    let w: World;
    let tcpServer: net.Server;
    let udpServer: dgram.Socket;
    /** the tags the host's own services received, from whichever cage */
    const received: string[] = [];
    /** the host's addresses the probes try: the test network's and the machine's other IPv4 ones */
    let hostAddresses: string[];
    const results: Record<string, Results> = {};
    let attempts = '';

    async function probe(cage: string, tag: string, before = ''): Promise<Results> {
      const cfg = JSON.stringify({
        ...NET,
        hostAddresses,
        tcpPort: (tcpServer.address() as net.AddressInfo).port,
        udpPort: udpServer.address().port,
        tag,
      });
      const script = `${before}python3 -c '${PROBE.replace(/'/g, `'\\''`)}' '${cfg}' > "$HOME/net.tmp" 2>&1; mv "$HOME/net.tmp" "$HOME/net.out"`;
      fs.rmSync(w.homeFile(cage, 'net.out'), { force: true });
      await w.launchCommand(cage, ['sh', '-c', script]);
      const out = await w.readFileWhenWritten(w.homeFile(cage, 'net.out'), 120000);
      const parsed: Results = {};
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue;
        Object.assign(parsed, JSON.parse(line) as Results);
      }
      assert.ok(
        parsed.internet !== undefined && parsed['dns-other-port'] !== undefined,
        `every probe ran in ${cage}:\n${out}`,
      );
      return parsed;
    }

    before(async () => {
      if (missing.length) assert.fail(`${WHY_SKIPPED}; under CI these tests must run, not skip`);
      tcpServer = net.createServer((s) => {
        s.on('error', () => undefined);
        s.write('kagome-host\n');
        s.once('data', (d) => received.push(d.toString().trim()));
      });
      await new Promise<void>((resolve) => tcpServer.listen(0, '0.0.0.0', resolve));
      udpServer = dgram.createSocket('udp4');
      udpServer.on('message', (m) => received.push(m.toString()));
      await new Promise<void>((resolve) => udpServer.bind(0, '0.0.0.0', resolve));
      // Other runs' test links (kgiPID) come and go while this one runs: a cage holds the
      // addresses there were when it started.
      const others = Object.entries(os.networkInterfaces())
        .filter(([name]) => !name.startsWith('kgi'))
        .flatMap(([, l]) => l ?? [])
        .filter((i) => !i.internal && i.family === 'IPv4')
        .map((i) => i.address);
      hostAddresses = [...new Set([NET.host!, NET.hostLan!, ...others])];

      w = await World.create();
      w.writeCage('inet', '[Cage]\nNetwork=internet\n');
      w.writeCage('full', '[Cage]\nNetwork=full\n');
      await w.startService();
      results.full = await probe('full', 'from-full');
      // What a program in the cage would try first: list the rules, flush them, and flush them
      // again from a user namespace of its own, where it holds every capability. Then the probes.
      const tries = [
        '/usr/sbin/nft list ruleset',
        '/usr/sbin/nft flush ruleset',
        'unshare -r /usr/sbin/nft flush ruleset',
        'unshare -r id -u',
      ];
      const before = tries
        .map(
          (t) =>
            `{ ${t}; echo "exit $?"; } > "$HOME/try.tmp" 2>&1; cat "$HOME/try.tmp" >> "$HOME/tries.out"; echo "== ${t}" >> "$HOME/tries.out"; `,
        )
        .join('');
      results.inet = await probe('inet', 'from-inet', before);
      attempts = fs.readFileSync(w.homeFile('inet', 'tries.out'), 'utf8');
    });

    after(async () => {
      await w?.cleanup();
      tcpServer?.close();
      udpServer?.close();
    });

    it('control: a Network=full cage reaches the host on its own addresses and the LAN', async () => {
      const r = results.full!;
      // slirp4netns relays a datagram after the send has returned.
      const heard = () => hostAddresses.every((a) => received.includes(`from-full udp ${a}`));
      await waitFor("the full cage's datagrams on every host address", heard, {
        timeoutMs: 10000,
        pollMs: 25,
        detail: () => `heard: ${JSON.stringify(received)}; the cage's probe: ${JSON.stringify(r)}`,
      });
      assert.equal(r.internet, 'token', JSON.stringify(r));
      assert.equal(r.lan, 'token', JSON.stringify(r));
      for (const a of hostAddresses) {
        assert.equal(r[`host-tcp ${a}`], 'banner', `${a}: ${JSON.stringify(r)}`);
        for (const proto of ['tcp', 'udp'])
          assert.ok(
            received.includes(`from-full ${proto} ${a}`),
            `the host's ${proto} service heard the full cage on ${a}: ${JSON.stringify(received)}`,
          );
      }
    });

    it('a Network=internet cage reaches the internet', () => {
      assert.equal(results.inet!.internet, 'token', JSON.stringify(results.inet));
    });

    it("refuses the host's own addresses at once, TCP with a reset and UDP at the send, and nothing arrives", () => {
      const r = results.inet!;
      for (const a of hostAddresses) {
        assert.equal(r[`host-tcp ${a}`], 'ECONNREFUSED', `${a}: ${JSON.stringify(r)}`);
        assert.equal(r[`host-udp ${a}`], 'EPERM', `${a}: ${JSON.stringify(r)}`);
      }
      assert.deepEqual(
        received.filter((t) => t.startsWith('from-inet')),
        [],
        "the host's services heard nothing from the internet cage",
      );
    });

    it("refuses a host on the private LAN and slirp4netns's gateway", () => {
      const r = results.inet!;
      assert.equal(r.lan, 'ECONNREFUSED', JSON.stringify(r));
      assert.equal(r.gateway, 'ECONNREFUSED', JSON.stringify(r));
    });

    it("lets DNS through to slirp4netns's forwarder, and nothing else there", () => {
      const r = results.inet!;
      assert.ok(
        r.dns === 'reply' || r.dns === 'timeout',
        `the DNS query was sent, not refused: ${JSON.stringify(r)}`,
      );
      assert.equal(r['dns-other-port'], 'EPERM', JSON.stringify(r));
    });

    it('the cage can neither read nor remove its rules, not even from a user namespace of its own', () => {
      const exits = [...attempts.matchAll(/exit (\d+)\n== (.*)/g)].map((m) => [m[2], m[1]]);
      assert.deepEqual(
        exits,
        [
          ['/usr/sbin/nft list ruleset', '1'],
          ['/usr/sbin/nft flush ruleset', '1'],
          ['unshare -r /usr/sbin/nft flush ruleset', '1'],
          // Control: the cage may make user namespaces, so the flush above had its capabilities.
          ['unshare -r id -u', '0'],
        ],
        attempts,
      );
      assert.doesNotMatch(attempts, /table inet kagome/, 'the cage listed the rules');
    });

    it('the rules are in the cage, seen from its outer user namespace, with the DNS exception first', async () => {
      const state = w.cageState('inet') as { sandbox: { init: { pid: number; start: string } } };
      const listed = await execa(
        path.join(REPO, 'dist', 'libexec', 'kagome-enter'),
        [
          '--outer-userns',
          '--net',
          String(state.sandbox.init.pid),
          state.sandbox.init.start,
          '--',
          '/usr/sbin/nft',
          'list',
          'ruleset',
        ],
        { reject: false },
      );
      assert.equal(listed.exitCode, 0, listed.stderr);
      const egress = /chain egress \{([^]*?)\n\t\}/.exec(listed.stdout)?.[1] ?? '';
      const lines = egress
        .trim()
        .split('\n')
        .map((l) => l.trim());
      assert.deepEqual(
        lines.slice(0, 3),
        [
          'oifname "lo" accept',
          'ip daddr 10.0.2.3 udp dport 53 accept',
          'ip daddr 10.0.2.3 tcp dport 53 accept',
        ],
        listed.stdout,
      );
      for (const a of [NET.host!, NET.hostLan!, '10.0.2.2'])
        assert.match(
          egress,
          new RegExp(`ip daddr \\{[^}]*\\b${a.replace(/\./g, '\\.')}\\b[^}]*\\} jump refuse`),
          a,
        );
    });

    it('kagome cage show says internet', async () => {
      const shown = await w.kagome(['cage', 'show', 'inet']);
      assert.match(shown.stdout, /^network: internet$/m, shown.stderr);
    });
  },
);

describe('Network=internet where it cannot hold', () => {
  let w: World;
  let bin: string;

  before(async () => {
    w = await World.create();
    // An nft that fails as a real one does on a kernel without nf_tables.
    bin = path.join(w.tmp.root, 'fake-bin');
    fs.mkdirSync(bin);
    fs.writeFileSync(
      path.join(bin, 'nft'),
      '#!/bin/sh\ncat >/dev/null\necho "Error: Could not process rule: Operation not supported (kagome test)" >&2\nexit 1\n',
      { mode: 0o755 },
    );
    w.writeCage('inet', '[Cage]\nNetwork=internet\n');
    w.writeCage('pod', '[Cage]\nBackend=podman\nNetwork=internet\n');
    await w.startService({ env: { PATH: `${bin}:${w.env.PATH}` } });
  });

  after(async () => {
    await w?.cleanup();
  });

  it('a cage whose rules nft cannot install does not start, and the error quotes nft', async () => {
    const e = await w.rejection(w.dbus.Launcher1.LaunchCommand('inet', ['true'], {}));
    assert.equal(e.type, 'io.kagome.Error.BackendFailed');
    assert.match(e.text, /Network=internet rules of cage "inet"/);
    assert.match(e.text, /Operation not supported \(kagome test\)/);
    const info = await w.dbus.Cages1.Get('inet');
    assert.notEqual(info.State?.value, 'running');
    assert.equal(w.cageState('inet'), undefined, 'no cage is left behind');
  });

  it('a podman cage with Network=internet is an invalid cage file naming the key, not a cage with the full network', async () => {
    const e = await w.rejection(w.dbus.Launcher1.LaunchCommand('pod', ['true'], {}));
    assert.equal(e.type, 'io.kagome.Error.InvalidCageFile');
    assert.match(e.text, /pod\.cage:3: Network: "internet" is for bubblewrap cages only/);
    assert.match(e.text, /Network=full/);
  });
});
