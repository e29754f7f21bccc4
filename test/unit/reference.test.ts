import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  formatDigested,
  formatName,
  formatTagged,
  manifestReference,
  parseReference,
  refString,
  type ImageRef,
} from '../../src/image/reference.ts';
import { BerthError } from '../../src/util/errors.ts';

const D = `sha256:${'a'.repeat(64)}`;

const good: Array<[string, ImageRef]> = [
  ['busybox', { domain: 'docker.io', path: 'library/busybox', tag: 'latest' }],
  ['busybox:1.36', { domain: 'docker.io', path: 'library/busybox', tag: '1.36' }],
  ['library/busybox', { domain: 'docker.io', path: 'library/busybox', tag: 'latest' }],
  ['docker.io/busybox', { domain: 'docker.io', path: 'library/busybox', tag: 'latest' }],
  ['docker.io/library/busybox:latest', { domain: 'docker.io', path: 'library/busybox', tag: 'latest' }],
  ['index.docker.io/busybox', { domain: 'docker.io', path: 'library/busybox', tag: 'latest' }],
  ['index.docker.io/user/app:v2', { domain: 'docker.io', path: 'user/app', tag: 'v2' }],
  ['user/app', { domain: 'docker.io', path: 'user/app', tag: 'latest' }],
  ['user/app/sub', { domain: 'docker.io', path: 'user/app/sub', tag: 'latest' }],
  ['localhost/app', { domain: 'localhost', path: 'app', tag: 'latest' }],
  ['localhost:5000/a/b:t', { domain: 'localhost:5000', path: 'a/b', tag: 't' }],
  ['127.0.0.1:5000/x', { domain: '127.0.0.1:5000', path: 'x', tag: 'latest' }],
  ['registry.k8s.io/pause:3.9', { domain: 'registry.k8s.io', path: 'pause', tag: '3.9' }],
  ['quay.io/coreos/etcd:v3.5.0', { domain: 'quay.io', path: 'coreos/etcd', tag: 'v3.5.0' }],
  ['my-registry.example.com:443/team/app', { domain: 'my-registry.example.com:443', path: 'team/app', tag: 'latest' }],
  ['[::1]:5000/app:t', { domain: '[::1]:5000', path: 'app', tag: 't' }],
  ['Registry.Example.com/app', { domain: 'Registry.Example.com', path: 'app', tag: 'latest' }],
  // An uppercase first component is a domain (Docker's rule), even without a dot.
  ['MyHost/app', { domain: 'MyHost', path: 'app', tag: 'latest' }],
  [`busybox@${D}`, { domain: 'docker.io', path: 'library/busybox', digest: D }],
  [`busybox:1.36@${D}`, { domain: 'docker.io', path: 'library/busybox', tag: '1.36', digest: D }],
  [`localhost:5000/a@${D}`, { domain: 'localhost:5000', path: 'a', digest: D }],
  ['example.com/a_b.c-d__e---f/g', { domain: 'example.com', path: 'a_b.c-d__e---f/g', tag: 'latest' }],
  // A dot in the first component makes it a domain, so Hub paths with dots need the docker.io prefix.
  ['docker.io/a.b/c', { domain: 'docker.io', path: 'a.b/c', tag: 'latest' }],
  ['app:_tag', { domain: 'docker.io', path: 'library/app', tag: '_tag' }],
  ['app:V1.0-RC_2', { domain: 'docker.io', path: 'library/app', tag: 'V1.0-RC_2' }],
  [`app:${'t'.repeat(128)}`, { domain: 'docker.io', path: 'library/app', tag: 't'.repeat(128) }],
];

for (const [input, want] of good) {
  test(`parses ${input.length > 60 ? `${input.slice(0, 60)}…` : input}`, () => {
    assert.deepEqual(parseReference(input), want);
  });
}

const bad: Array<[string, RegExp]> = [
  ['', /empty/],
  [' busybox', /whitespace/],
  ['Busybox', /lowercase/],
  ['user/App', /lowercase/],
  ['example.com/Team/app', /lowercase/],
  ['busybox:', /tag ""/],
  ['busybox:-x', /tag "-x"/],
  ['busybox:.x', /tag ".x"/],
  [`busybox:${'t'.repeat(129)}`, /tag/],
  ['busybox:a/b', /invalid/],
  ['busybox@sha256:abc', /digest "sha256:abc" is malformed/],
  ['busybox@sha256:' + 'A'.repeat(64), /only sha256/],
  ['busybox@sha512:' + 'a'.repeat(128), /only sha256/],
  ['busybox@', /digest "" is malformed/],
  ['a'.repeat(64).replace(/a/g, 'f'), /image ID/],
  ['-app', /path component "-app"/],
  ['app-', /path component "app-"/],
  ['a..b', /path component "a..b"/],
  ['a___b', /path component "a___b"/],
  ['user//app', /empty component/],
  ['user/app/', /empty component/],
  ['example.com/', /empty component/],
  ['example.com/-x', /path component/],
  ['exa_mple.com/app', /registry domain "exa_mple.com"/],
  ['-example.com/app', /registry domain/],
  ['example.com:port/app', /registry domain/],
  [':5000/app', /registry domain/],
  ['a b', /path component/],
  ['@' + D, /repository name is empty/],
  [`example.com/${'a'.repeat(250)}`, /longer than 255/],
];

for (const [input, why] of bad) {
  test(`refuses ${JSON.stringify(input.length > 60 ? `${input.slice(0, 60)}…` : input)}`, () => {
    assert.throws(
      () => parseReference(input),
      (err: unknown) => {
        assert.ok(err instanceof BerthError);
        assert.equal(err.kind, 'invalid-argument');
        assert.match(err.message, why);
        assert.ok(err.message.includes(JSON.stringify(input)), `message names the reference: ${err.message}`);
        return true;
      },
    );
  });
}

test('defaultTag: false leaves a bare name untagged', () => {
  assert.deepEqual(parseReference('busybox', { defaultTag: false }), { domain: 'docker.io', path: 'library/busybox' });
});

test('formatting helpers', () => {
  const both = parseReference(`busybox:1.36@${D}`);
  assert.equal(formatName(both), 'docker.io/library/busybox');
  assert.equal(formatTagged(both), 'docker.io/library/busybox:1.36');
  assert.equal(formatDigested(both), `docker.io/library/busybox@${D}`);
  assert.equal(refString(both), `docker.io/library/busybox:1.36@${D}`);
  assert.equal(manifestReference(both), D, 'a digest wins over the tag');
  assert.equal(manifestReference(parseReference('busybox')), 'latest');

  const digestOnly = parseReference(`localhost:5000/a/b@${D}`);
  assert.equal(refString(digestOnly), `localhost:5000/a/b@${D}`);
  assert.throws(() => formatTagged(digestOnly), /has no tag/);
  assert.throws(() => formatDigested(parseReference('busybox')), /has no digest/);
});

test('canonical strings round-trip', () => {
  for (const [input] of good) {
    const ref = parseReference(input);
    assert.deepEqual(parseReference(refString(ref)), ref, input);
  }
});
