// The kubelet endpoint edits on their own: flag spellings, a JSON KubeletConfiguration, and that
// nothing else in a file changes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { editConfig, editFlags, setFlag } from '../../src/installer/kubelet-config.ts';

const BERTH = 'unix:///run/berth/berth.sock';

test('flags: both spellings, quotes kept, the image flag added after the runtime flag when missing', () => {
  assert.deepEqual(editFlags('ARGS="--v=2 --container-runtime-endpoint unix:///run/crio/crio.sock --max-pods=9"\n', BERTH), {
    text: `ARGS="--v=2 --container-runtime-endpoint ${BERTH} --image-service-endpoint=${BERTH} --max-pods=9"\n`,
    old: 'unix:///run/crio/crio.sock',
  });
  assert.equal(
    editFlags("X='--image-service-endpoint=unix:///a.sock --container-runtime-endpoint=unix:///a.sock'", BERTH)?.text,
    `X='--image-service-endpoint=${BERTH} --container-runtime-endpoint=${BERTH}'`,
  );
  assert.equal(editFlags('KUBELET_EXTRA_ARGS=--node-ip=10.0.0.5\n', BERTH), undefined, 'a file without the flags is left alone');
  assert.equal(setFlag('--container-runtime-endpoints=x', 'container-runtime-endpoint', BERTH), undefined, 'a longer flag name is not this flag');
});

test('KubeletConfiguration: YAML keys replaced or appended, JSON rewritten with both keys', () => {
  assert.deepEqual(editConfig('kind: KubeletConfiguration\nimageServiceEndpoint: x\nfoo: 1', BERTH), {
    text: `kind: KubeletConfiguration\nimageServiceEndpoint: ${BERTH}\nfoo: 1\ncontainerRuntimeEndpoint: ${BERTH}\n`,
    old: undefined,
  });
  // Indented keys belong to something else and stay.
  assert.equal(editConfig('nested:\n  containerRuntimeEndpoint: x\n', BERTH).text, `nested:\n  containerRuntimeEndpoint: x\ncontainerRuntimeEndpoint: ${BERTH}\nimageServiceEndpoint: ${BERTH}\n`);
  const json = editConfig('{"kind":"KubeletConfiguration","containerRuntimeEndpoint":"unix:///run/containerd/containerd.sock"}', BERTH);
  assert.equal(json.old, 'unix:///run/containerd/containerd.sock');
  assert.deepEqual(JSON.parse(json.text), { kind: 'KubeletConfiguration', containerRuntimeEndpoint: BERTH, imageServiceEndpoint: BERTH });
});
