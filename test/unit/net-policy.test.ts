import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { NetworkInterfaceInfo } from 'node:os';
import {
  hostAddresses,
  internetRuleset,
  refuseInternet,
  REFUSED_V4,
  REFUSED_V6,
} from '../../lib/backends/net-policy.js';
import { missingProgramError } from '../../lib/requirements.js';
import { KagomeError } from '../../lib/errors.js';

// The ruleset is read back here the way nft applies it: the egress chain's rules in order,
// the first that matches a destination decides. So the tests ask what happens to a packet,
// not which strings the text holds.

function bits(address: string): { v6: boolean; value: bigint } {
  if (address.includes(':')) {
    const [head = '', tail = ''] = address.split('::');
    const h = head ? head.split(':') : [];
    const t = address.includes('::') ? (tail ? tail.split(':') : []) : [];
    const groups = address.includes('::')
      ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t]
      : h;
    assert.equal(groups.length, 8, address);
    return {
      v6: true,
      value: groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n),
    };
  }
  return {
    v6: false,
    value: address.split('.').reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n),
  };
}

function inPrefix(address: string, prefix: string): boolean {
  const [base = '', len] = prefix.split('/');
  const a = bits(address);
  const b = bits(base);
  if (a.v6 !== b.v6) return false;
  const width = a.v6 ? 128n : 32n;
  const shift = width - BigInt(len ?? width);
  return a.value >> shift === b.value >> shift;
}

/** What the egress chain does with a packet to address:port over proto. */
function verdict(
  ruleset: string,
  address: string,
  proto: 'tcp' | 'udp',
  port: number,
): 'accept' | 'refuse' | 'pass' {
  const chain = /chain egress \{\n([^}]*(?:\{[^}]*\}[^}]*)*)\n\t\}/.exec(ruleset)?.[1];
  assert.ok(chain, 'the ruleset has an egress chain');
  for (const rule of chain.split('\n').map((l) => l.trim())) {
    if (rule === 'oifname "lo" accept') continue;
    const m =
      /^(ip6?) daddr (\{ [^}]+ \}|\S+)(?: (tcp|udp) dport (\d+))? (accept|jump refuse)$/.exec(rule);
    assert.ok(m, `a rule this reader knows: ${rule}`);
    const [, family, target = '', p, dport, action] = m;
    if ((family === 'ip6') !== address.includes(':')) continue;
    const prefixes = target.startsWith('{') ? target.slice(2, -2).split(', ') : [target];
    if (!prefixes.some((x) => inPrefix(address, x))) continue;
    if (p && (p !== proto || Number(dport) !== port)) continue;
    return action === 'accept' ? 'accept' : 'refuse';
  }
  return 'pass';
}

const iface = (address: string, family: 'IPv4' | 'IPv6', internal = false): NetworkInterfaceInfo =>
  ({
    address,
    family,
    internal,
    netmask: '',
    mac: '00:00:00:00:00:00',
    cidr: null,
    ...(family === 'IPv6' ? { scopeid: 0 } : {}),
  }) as NetworkInterfaceInfo;

describe('Network=internet: the host addresses', () => {
  it('takes every non-loopback address of every interface once, v4 and v6, without zones', () => {
    const found = hostAddresses({
      lo: [iface('127.0.0.1', 'IPv4', true), iface('::1', 'IPv6', true)],
      eth0: [
        iface('192.0.2.7', 'IPv4'),
        iface('2001:DB8::7', 'IPv6'),
        iface('fe80::1%eth0', 'IPv6'),
      ],
      wlan0: [iface('10.1.2.3', 'IPv4'), iface('192.0.2.7', 'IPv4')],
      down: undefined,
    });
    assert.deepEqual(found, ['10.1.2.3', '192.0.2.7', '2001:db8::7', 'fe80::1']);
  });
});

describe('Network=internet: the ruleset', () => {
  const host = ['198.51.100.20', '10.44.0.9', '2001:db8::7'];
  const rules = internetRuleset(host);

  it("refuses the host's own addresses, even public ones and ones inside a refused range", () => {
    for (const a of host)
      for (const proto of ['tcp', 'udp'] as const)
        assert.equal(verdict(rules, a, proto, 443), 'refuse', a);
  });

  it('refuses loopback, the private, CGNAT, link-local, multicast and reserved ranges, at both ends', () => {
    const samples = [
      '127.0.0.1',
      '127.255.255.254',
      '0.0.0.0',
      '0.1.2.3',
      '10.0.0.1',
      '10.255.255.255',
      '172.16.0.1',
      '172.31.255.254',
      '192.168.0.1',
      '192.168.255.255',
      '100.64.0.1',
      '100.127.255.254',
      '169.254.169.254',
      '224.0.0.251',
      '239.255.255.250',
      '240.0.0.1',
      '255.255.255.255',
      '::1',
      'fc00::1',
      'fd12:3456::1',
      'fe80::1',
      'febf::1',
      'ff02::1',
    ];
    for (const a of samples) assert.equal(verdict(rules, a, 'tcp', 80), 'refuse', a);
  });

  it("refuses slirp4netns's gateway, which stands for the host, on every port, DNS's too", () => {
    for (const port of [53, 80, 6000])
      assert.equal(verdict(rules, '10.0.2.2', 'tcp', port), 'refuse');
    assert.equal(verdict(rules, '10.0.2.2', 'udp', 53), 'refuse');
  });

  it("lets DNS through to slirp4netns's forwarder, over UDP and TCP, and nothing else there", () => {
    assert.equal(verdict(rules, '10.0.2.3', 'udp', 53), 'accept');
    assert.equal(verdict(rules, '10.0.2.3', 'tcp', 53), 'accept');
    assert.equal(verdict(rules, '10.0.2.3', 'tcp', 80), 'refuse');
    assert.equal(verdict(rules, '10.0.2.3', 'udp', 54), 'refuse');
  });

  it('leaves the internet, the documentation ranges included, alone', () => {
    const samples = [
      '1.1.1.1',
      '8.8.8.8',
      '192.0.2.1',
      '198.51.100.1',
      '203.0.113.2',
      '172.15.255.255',
      '172.32.0.1',
      '100.63.255.255',
      '100.128.0.1',
      '11.0.0.1',
      '192.169.0.1',
      '223.255.255.255',
      '2001:db8::1',
      '2a00:1450::1',
      'fbff::1',
      'fec0::1',
    ];
    for (const a of samples) assert.equal(verdict(rules, a, 'tcp', 443), 'pass', a);
  });

  it("keeps the cage's own loopback and resets first, and refuses with a reset or an ICMP error, never a silent drop", () => {
    assert.match(rules, /chain egress \{\n\t\toifname "lo" accept\n/);
    assert.match(
      rules,
      /chain refuse \{\n\t\tmeta l4proto tcp reject with tcp reset\n\t\treject with icmpx admin-prohibited\n\t\}/,
    );
    assert.doesNotMatch(rules, /\bdrop\b/);
    for (const hook of ['output', 'forward'])
      assert.match(
        rules,
        new RegExp(
          `chain ${hook} \\{\\n\\t\\ttype filter hook ${hook} priority filter; policy accept;\\n\\t\\tjump egress\\n`,
        ),
      );
  });

  it('has no IPv6 host rule for a host without IPv6, and is the same for the same host', () => {
    const v4only = internetRuleset(['198.51.100.20']);
    assert.equal(v4only.match(/ip6 daddr/g)?.length, 1);
    assert.equal(internetRuleset(['198.51.100.20']), v4only);
  });

  it('takes nothing but addresses into the ruleset', () => {
    for (const bad of [
      '1.2.3.4 } accept; {',
      '',
      'example.org',
      '10.0.0.0/8',
      '1.2.3.4\nflush ruleset',
    ])
      assert.throws(() => internetRuleset([bad]), /not an IP address/);
  });

  it('keeps the fixed ranges apart, since nft refuses overlapping elements in one set', () => {
    for (const list of [REFUSED_V4, REFUSED_V6]) {
      for (const a of list)
        for (const b of list)
          if (a !== b) assert.ok(!inPrefix(a.split('/')[0]!, b), `${a} inside ${b}`);
    }
  });
});

describe('Network=internet elsewhere', () => {
  it('is refused by the container backends, never run as full', () => {
    assert.throws(
      () => refuseInternet({ name: 'web', network: 'internet' }, 'podman'),
      (e: unknown) =>
        e instanceof KagomeError &&
        e.errorName === 'NotSupported' &&
        /bubblewrap/.test(e.message) &&
        /Network=full/.test(e.message),
    );
    refuseInternet({ name: 'web', network: 'full' }, 'podman');
  });

  it('names nftables when nft is missing', () => {
    assert.match(
      missingProgramError('nft', 'for cages with Network=internet').message,
      /Debian package 'nftables'/,
    );
  });
});
