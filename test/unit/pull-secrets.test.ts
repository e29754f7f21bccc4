// Which docker config entry covers an image, matched as the kubelet matches them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { keyMatches } from '../../src/controller/pull-secrets.ts';
import { parseReference } from '../../src/image/reference.ts';

const matches = (key: string, image: string): boolean => keyMatches(key, parseReference(image));

test('hosts, ports, globs and path prefixes', () => {
  assert.ok(matches('registry.example:5000', 'registry.example:5000/team/app:v1'));
  assert.ok(matches('https://registry.example:5000', 'registry.example:5000/team/app:v1'));
  assert.ok(!matches('registry.example', 'registry.example:5000/team/app:v1'), 'a port must match');
  assert.ok(!matches('registry.example:5001', 'registry.example:5000/team/app:v1'));
  assert.ok(matches('*.example', 'registry.example/app'));
  assert.ok(!matches('*.example', 'a.registry.example/app'), 'a glob covers one label');
  assert.ok(matches('registry.example/team', 'registry.example/team/app'));
  assert.ok(!matches('registry.example/team', 'registry.example/teamx/app'), 'path prefixes end at a slash');
  assert.ok(!matches('other.example', 'registry.example/app'));
});

test("Docker Hub's legacy key covers docker.io images", () => {
  assert.ok(matches('https://index.docker.io/v1/', 'busybox'));
  assert.ok(matches('docker.io', 'library/busybox:1.36'));
  assert.ok(!matches('https://index.docker.io/v1/', 'quay.io/x/y'));
});
