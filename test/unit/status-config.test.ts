// Verbose Status shows the config by allow-list: secrets in the registry section, and any key added
// to the config later, stay out of `crictl info` unless someone lists them on purpose.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { defaultConfig, type BerthConfig } from '../../src/config/config.ts';
import { status } from '../../src/cri/status.ts';
import type { CriContext } from '../../src/cri/rpc.ts';
import { RuntimeProbe } from '../../src/runtime-probe.ts';

test('verbose Status shows what the allow-list names and nothing else', async () => {
  const config: BerthConfig = defaultConfig();
  config.registry.hosts['registry.example'] = { mirrors: ['https://m.example'], username: 'alice', password: 'hunter2-password', identityToken: 'hunter2-token', keyFile: '/etc/key.pem' };
  // A key some later change adds to the config, which nobody has thought to redact.
  Object.assign(config, { metrics: { bearerToken: 'hunter2-future' } });
  const ctx = { config, log: pino({ level: 'silent' }), probe: new RuntimeProbe(config) } as unknown as CriContext;
  const res = await status({ verbose: true }, ctx, new AbortController().signal);
  const text = res.info?.config ?? '';
  assert.doesNotMatch(text, /hunter2/);
  assert.doesNotMatch(text, /alice|key\.pem/);
  const shown = JSON.parse(text) as { root: string; registry: { hosts: Record<string, { mirrors: string[]; credentials: boolean }> } };
  assert.equal(shown.root, config.root);
  assert.deepEqual(shown.registry.hosts['registry.example']?.mirrors, ['https://m.example']);
  assert.equal(shown.registry.hosts['registry.example']?.credentials, true);
});
