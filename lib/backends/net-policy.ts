import net from 'node:net';
import type { NetworkInterfaceInfo } from 'node:os';
import { KagomeError } from '../errors.js';
import type { SandboxSpec } from '../sandbox.js';

// Network=internet: a cage that reaches the internet but not the machine it runs on nor the
// networks around it. slirp4netns alone (Network=full) opens a connection from the host to
// whatever address a cage names, so a cage reaches every service bound to the host's own
// addresses (an X server on TCP, a database, a printer's admin page) and the whole LAN; its
// --disable-host-loopback covers only 127.0.0.1. These rules live in the cage's network
// namespace, installed by nft run in the cage's outer user namespace (kagome-enter
// --outer-userns --net), which owns that namespace and in which the cage's programs have no
// capability: they can neither list nor change them.
//
// Refused, not dropped: a TCP reset and an ICMP "administratively prohibited" make a program
// fail at once (ECONNREFUSED, or EPERM on a datagram's send) instead of waiting for a timeout.

/** slirp4netns's gateway: it stands for the host (the host's loopback, unless disabled). */
export const SLIRP_GATEWAY = '10.0.2.2';
/** slirp4netns's DNS forwarder, the cage's only nameserver (its resolv.conf names it). */
export const SLIRP_DNS = '10.0.2.3';

/**
 * Loopback, "this network", the private ranges (RFC 1918), carrier-grade NAT (RFC 6598, which
 * some ISPs and VPNs such as Tailscale put hosts in), link-local (cloud metadata services at
 * 169.254.169.254), multicast and the reserved range with broadcast. Not overlapping: nft
 * refuses overlapping intervals in one set.
 */
export const REFUSED_V4 = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '224.0.0.0/4',
  '240.0.0.0/4',
];
/** Loopback, unique local (the private ranges of IPv6), link-local and multicast. */
export const REFUSED_V6 = ['::1', 'fc00::/7', 'fe80::/10', 'ff00::/8'];

/**
 * The host's own addresses: every non-loopback address of every interface, IPv4 and IPv6
 * (link-local ones without their zone), each once, sorted so that the same machine gives the
 * same rules.
 */
export function hostAddresses(interfaces: NodeJS.Dict<NetworkInterfaceInfo[]>): string[] {
  const found = new Set<string>();
  for (const list of Object.values(interfaces)) {
    for (const info of list ?? []) {
      if (info.internal) continue;
      const address = info.address.replace(/%.*$/, '');
      if (net.isIP(address)) found.add(address.toLowerCase());
    }
  }
  return [...found].sort();
}

/**
 * The nftables ruleset of a Network=internet cage, for `nft -f -` in the cage's own, empty
 * network namespace. Throws on anything in `host` that is not an IP address, so that nothing
 * but addresses reaches nft's input.
 */
export function internetRuleset(host: string[]): string {
  for (const a of host)
    if (!net.isIP(a)) throw new Error(`not an IP address: ${JSON.stringify(a)}`);
  // A host address may lie in a refused range (10.x on a LAN): exact addresses are a set of
  // their own, since nft refuses a set whose elements overlap.
  const exactV4 = [...new Set([SLIRP_GATEWAY, ...host.filter((a) => net.isIPv4(a))])];
  const exactV6 = [...new Set(host.filter((a) => net.isIPv6(a)))];
  const set = (items: string[]) => `{ ${items.join(', ')} }`;
  return [
    'table inet kagome {',
    '\tchain refuse {',
    '\t\tmeta l4proto tcp reject with tcp reset',
    '\t\treject with icmpx admin-prohibited',
    '\t}',
    '\tchain egress {',
    // The cage's own loopback and its own address, which never leave the namespace. Refusing
    // them would also swallow the resets and ICMP errors of the rules below, which are sent
    // to the cage's own address (10.0.2.100, in 10.0.0.0/8), and programs would hang.
    '\t\toifname "lo" accept',
    `\t\tip daddr ${SLIRP_DNS} udp dport 53 accept`,
    `\t\tip daddr ${SLIRP_DNS} tcp dport 53 accept`,
    `\t\tip daddr ${set(REFUSED_V4)} jump refuse`,
    `\t\tip6 daddr ${set(REFUSED_V6)} jump refuse`,
    `\t\tip daddr ${set(exactV4)} jump refuse`,
    ...(exactV6.length ? [`\t\tip6 daddr ${set(exactV6)} jump refuse`] : []),
    '\t}',
    '\tchain output {',
    '\t\ttype filter hook output priority filter; policy accept;',
    '\t\tjump egress',
    '\t}',
    // Nothing in the cage can attach a namespace of its own to this one (that takes a
    // capability in the outer user namespace), but whatever is ever forwarded meets the same rules.
    '\tchain forward {',
    '\t\ttype filter hook forward priority filter; policy accept;',
    '\t\tjump egress',
    '\t}',
    '}',
    '',
  ].join('\n');
}

/**
 * For the container backends, whose engines own their cages' network namespaces: the cage file
 * parser already refuses Network=internet for them, and this makes sure such a cage is never
 * started with the full network instead.
 */
export function refuseInternet(spec: Pick<SandboxSpec, 'name' | 'network'>, backend: string): void {
  if (spec.network === 'internet') {
    throw new KagomeError(
      'NotSupported',
      `cage "${spec.name}": Network=internet is for bubblewrap cages only, not ${backend}; set Backend=bubblewrap, or Network=full`,
    );
  }
}
