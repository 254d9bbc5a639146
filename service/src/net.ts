// Which peers may speak for the client (X-Forwarded-*): a list of addresses and CIDRs, checked with
// node's BlockList. IPv4-mapped IPv6 peers (::ffff:127.0.0.1) are matched as the IPv4 address they carry.
import net from 'node:net';
import { PEER_ANSWERS_CACHED } from './limits.js';

export type AddressMatcher = (address: string | undefined) => boolean;

/** Parses "127.0.0.0/8,::1,10.1.2.3"; returns a matcher, or a problem description. */
export function parseTrustedProxies(text: string): AddressMatcher | string {
  const list = new net.BlockList();
  for (const entry of text.split(',').map((e) => e.trim()).filter(Boolean)) {
    const [address, prefixText] = entry.split('/') as [string, string | undefined];
    const family = net.isIPv4(address) ? 'ipv4' : net.isIPv6(address) ? 'ipv6' : undefined;
    if (!family) return `"${entry}" is not an IP address or CIDR`;
    if (prefixText === undefined) {
      list.addAddress(address, family);
      continue;
    }
    const prefix = Number(prefixText);
    const max = family === 'ipv4' ? 32 : 128;
    if (!/^\d+$/.test(prefixText) || prefix > max) return `"${entry}" has a bad prefix length (0-${max})`;
    list.addSubnet(address, prefix, family);
  }
  // Peers are few (the HAProxy nodes): remember each answer instead of asking the BlockList per request.
  const answers = new Map<string, boolean>();
  return (address) => {
    if (!address) return false;
    const known = answers.get(address);
    if (known !== undefined) return known;
    const plain = address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
    const family = net.isIPv4(plain) ? 'ipv4' : net.isIPv6(plain) ? 'ipv6' : undefined;
    const trusted = family !== undefined && list.check(plain, family);
    if (answers.size < PEER_ANSWERS_CACHED) answers.set(address, trusted);
    return trusted;
  };
}
