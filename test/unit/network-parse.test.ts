// The pure parts of the CNI runtime: config validation, subnets, what each plugin gets on stdin,
// which IPs of a result are the pod's, and /proc/net/dev.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseNetwork } from '../../src/network/cni-config.ts';
import { isNoOp, pluginStdin, resultIps, type PluginCall } from '../../src/network/cni-exec.ts';
import { parseSubnets } from '../../src/network/default-network.ts';
import { parseProcNetDev } from '../../src/network/interface-stats.ts';

test('config lists and single configs are validated with messages naming the problem', () => {
  const list = parseNetwork({ cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'bridge' }, { type: 'portmap', capabilities: { portMappings: true } }] }, true);
  assert.deepEqual(list.plugins.map((p) => p.type), ['bridge', 'portmap']);
  assert.equal(list.disableCheck, false);
  const single = parseNetwork({ cniVersion: '0.4.0', name: 'n', type: 'bridge', bridge: 'b0' }, false);
  assert.equal(single.plugins[0]?.bridge, 'b0');
  assert.throws(() => parseNetwork({ cniVersion: '0.2.0', name: 'n', plugins: [{ type: 'x' }] }, true), /cniVersion "0\.2\.0" is not supported/);
  assert.throws(() => parseNetwork({ cniVersion: '1.0.0', plugins: [{ type: 'x' }] }, true), /"name" is missing/);
  assert.throws(() => parseNetwork({ cniVersion: '1.0.0', name: 'n', plugins: [] }, true), /non-empty array/);
  assert.throws(() => parseNetwork({ cniVersion: '1.0.0', name: 'n', plugins: [{ type: '../../bin/sh' }] }, true), /plugins\[0\] has no valid "type"/);
});

test('subnets: one, or dual-stack IPv4 + IPv6; anything else refused', () => {
  assert.deepEqual(parseSubnets('10.244.1.0/24'), ['10.244.1.0/24']);
  assert.deepEqual(parseSubnets('10.244.1.0/24, fd00:1::/64'), ['10.244.1.0/24', 'fd00:1::/64']);
  for (const bad of ['10.244.1.0', '10.244.1.0/31', '10.244.1.0/24,10.245.0.0/24', 'x/24', '10.0.0.0/8/1', '']) {
    assert.throws(() => parseSubnets(bad), Error, bad);
  }
});

test('a plugin gets runtimeConfig only for the capabilities it declares, and the previous result', () => {
  const call: PluginCall = {
    command: 'ADD',
    network: { name: 'n', cniVersion: '1.0.0', disableCheck: false, plugins: [] },
    plugin: { type: 'portmap', capabilities: { portMappings: true, bandwidth: false } },
    binDirs: [], containerId: 'c', netns: '/x', ifName: 'eth0', args: '', timeoutMs: 1,
    capabilityArgs: { portMappings: [{ hostPort: 80 }], bandwidth: { rate: 1 }, dns: { servers: ['1.1.1.1'] } },
    prevResult: { ips: [] },
  };
  const conf = JSON.parse(pluginStdin(call)) as Record<string, unknown>;
  assert.deepEqual(conf.runtimeConfig, { portMappings: [{ hostPort: 80 }] });
  assert.equal(conf.name, 'n');
  assert.equal(conf.cniVersion, '1.0.0');
  assert.deepEqual(conf.prevResult, { ips: [] });
  const bare = JSON.parse(pluginStdin({ ...call, plugin: { type: 'bridge' }, prevResult: undefined })) as Record<string, unknown>;
  assert.equal('runtimeConfig' in bare, false);
  assert.equal('prevResult' in bare, false);
});

test('portmap without port mappings is skipped on ADD and DEL, run otherwise', () => {
  const call: PluginCall = {
    command: 'ADD',
    network: { name: 'n', cniVersion: '1.0.0', disableCheck: false, plugins: [] },
    plugin: { type: 'portmap', capabilities: { portMappings: true } },
    binDirs: [], containerId: 'c', netns: '/x', ifName: 'eth0', args: '', timeoutMs: 1,
    capabilityArgs: {},
    prevResult: { ips: [] },
  };
  assert.equal(isNoOp(call), true);
  assert.equal(isNoOp({ ...call, command: 'DEL', prevResult: undefined }), true);
  assert.equal(isNoOp({ ...call, command: 'CHECK' }), false);
  assert.equal(isNoOp({ ...call, prevResult: undefined }), false, 'portmap must get to refuse an ADD without prevResult itself');
  assert.equal(isNoOp({ ...call, capabilityArgs: { portMappings: [{ hostPort: 80 }] } }), false);
  assert.equal(isNoOp({ ...call, plugin: { type: 'portmap', runtimeConfig: { portMappings: [{ hostPort: 80 }] } } }), false, 'mappings in the config itself count');
  assert.equal(isNoOp({ ...call, plugin: { type: 'bridge' } }), false);
});

test('the pod\'s IPs are those on its own interface, IPv4 first', () => {
  const result = {
    interfaces: [{ name: 'br0', mac: 'x' }, { name: 'veth1', mac: 'y' }, { name: 'eth0', mac: 'z', sandbox: '/run/netns/p' }],
    ips: [
      { address: 'fd00::5/64', interface: 2 },
      { address: '10.0.0.1/24', interface: 0 },
      { address: '10.0.0.5/24', interface: 2, gateway: '10.0.0.1' },
    ],
  };
  assert.deepEqual(resultIps(result, 'eth0'), ['10.0.0.5', 'fd00::5']);
  assert.deepEqual(resultIps({ ips: [{ address: '10.1.0.2/16' }] }, 'eth0'), ['10.1.0.2'], 'no interface index: taken');
  assert.deepEqual(resultIps({}, 'eth0'), []);
});

test('/proc/net/dev counters, loopback left out', () => {
  const text = [
    'Inter-|   Receive                                                |  Transmit',
    ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
    '    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0',
    '  eth0:    1546      17    3    0    0     0          0         0      868      10    1    0    0     0       0          0',
  ].join('\n');
  assert.deepEqual(parseProcNetDev(text), [{ name: 'eth0', rxBytes: 1546, rxErrors: 3, txBytes: 868, txErrors: 1 }]);
});
