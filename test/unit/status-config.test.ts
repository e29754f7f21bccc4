// Verbose Status shows the config by allow-list: secrets in the registry section, and any key added
// to the config later, stay out of `crictl info` unless someone lists them on purpose.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultConfig, shownConfig, type BerthConfig } from '../../src/config/config.ts';

test('verbose Status shows what the allow-list names and nothing else', () => {
  const config: BerthConfig = defaultConfig();
  config.registry.hosts['registry.example'] = { mirrors: ['https://m.example'], username: 'alice', password: 'hunter2-password', identityToken: 'hunter2-token', keyFile: '/etc/key.pem' };
  // A key some later change adds to the config, which nobody has thought to redact.
  Object.assign(config, { metrics: { bearerToken: 'hunter2-future' } });
  // What src/cri/status.ts puts in info.config (the e2e daemon test checks it over the socket).
  const text = JSON.stringify(shownConfig(config));
  assert.doesNotMatch(text, /hunter2/);
  assert.doesNotMatch(text, /alice|key\.pem/);
  const shown = JSON.parse(text) as { root: string; registry: { hosts: Record<string, { mirrors: string[]; credentials: boolean }> } };
  assert.equal(shown.root, config.root);
  assert.deepEqual(shown.registry.hosts['registry.example']?.mirrors, ['https://m.example']);
  assert.equal(shown.registry.hosts['registry.example']?.credentials, true);
  // The [node] keys the node agent's kubelet switch relies on are shown.
  assert.deepEqual((JSON.parse(text) as { node: unknown }).node, { systemdRun: config.node.systemdRun, installCommand: config.node.installCommand, switchTimeoutSeconds: config.node.switchTimeoutSeconds });
});
