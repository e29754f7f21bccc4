// berth's own network for nodes with no CNI config: a bridge with host-local IPAM and portmap, on
// the subnet from config or, once the kubelet sent one, the node's pod CIDR.
import { isIPv4, isIPv6 } from 'node:net';
import type { NetworkList } from './cni-config.ts';

export const DEFAULT_NETWORK_NAME = 'berth';

/**
 * Validates a subnet list as the kubelet sends pod CIDRs: `10.244.1.0/24` or dual-stack
 * `10.244.1.0/24,fd00:1::/64`. Returns the subnets, or throws a message saying what is wrong.
 */
export function parseSubnets(text: string): string[] {
  const subnets = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (subnets.length === 0 || subnets.length > 2) throw new Error(`${JSON.stringify(text)} must be one subnet or an IPv4 and an IPv6 subnet separated by a comma`);
  for (const subnet of subnets) {
    const [addr = '', bits = '', extra] = subnet.split('/');
    const prefix = Number(bits);
    const v4 = isIPv4(addr);
    if (extra !== undefined || !/^\d+$/.test(bits) || (!v4 && !isIPv6(addr)) || prefix < 8 || prefix > (v4 ? 30 : 126)) {
      throw new Error(`${JSON.stringify(subnet)} is not a subnet in CIDR notation (like 10.88.0.0/16) with room for pods`);
    }
  }
  if (subnets.length === 2 && isIPv4(subnets[0]?.split('/')[0] ?? '') === isIPv4(subnets[1]?.split('/')[0] ?? '')) {
    throw new Error(`${JSON.stringify(text)}: two subnets must be one IPv4 and one IPv6`);
  }
  return subnets;
}

export interface DefaultNetworkOptions {
  subnets: string[];
  bridge: string;
  /** host-local keeps its leases here (under berth's root, not the system-wide /var/lib/cni). */
  ipamDataDir: string;
}

/**
 * The network list. Loopback is not in the chain: createNetns brings `lo` up already, which saves
 * one plugin run per pod.
 */
export function renderDefaultNetwork(opts: DefaultNetworkOptions): NetworkList {
  const routes = opts.subnets.map((s) => ({ dst: isIPv4(s.split('/')[0] ?? '') ? '0.0.0.0/0' : '::/0' }));
  return {
    name: DEFAULT_NETWORK_NAME,
    cniVersion: '1.0.0',
    disableCheck: false,
    plugins: [
      {
        type: 'bridge',
        bridge: opts.bridge,
        isGateway: true,
        // Masquerading is one rule per subnet (masquerade.ts), not the plugin's per-pod chains.
        ipMasq: false,
        hairpinMode: true,
        // A new pod CIDR moves the gateway address: without this the bridge refuses the new one.
        // Pods started before the change lose their gateway, but the kubelet sends the CIDR first.
        forceAddress: true,
        ipam: {
          type: 'host-local',
          ranges: opts.subnets.map((subnet) => [{ subnet }]),
          routes,
          dataDir: opts.ipamDataDir,
        },
      },
      { type: 'portmap', capabilities: { portMappings: true }, snat: true },
    ],
  };
}
