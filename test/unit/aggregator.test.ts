// The aggregator's summary is a pure function of the prefetch and the BerthNodes' entries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { summarize } from '../../src/controller/aggregator.ts';
import type { BerthNode, ImagePrefetch, ImageState } from '../../src/controller/api.ts';

const prefetch: ImagePrefetch = { metadata: { name: 'p', namespace: 'ns', uid: 'u1', generation: 2 }, spec: { images: ['a', 'b'] } };

function node(name: string, states: ImageState[], generation = 2, uid = 'u1'): BerthNode {
  return {
    metadata: { name },
    status: {
      prefetches: [{ namespace: 'ns', name: 'p', uid, observedGeneration: generation, conditions: [], images: states.map((state, i) => ({ image: ['a', 'b'][i] ?? 'x', state, attempts: 1, ...(state === 'Failed' ? { reason: 'Unauthorized', lastError: 'no' } : {}) })) }],
    },
  };
}

const cond = (s: ReturnType<typeof summarize>, type: string): string => `${s.conditions?.find((c) => c.type === type)?.status}/${s.conditions?.find((c) => c.type === type)?.reason}`;

test('counts ready, failed and pulling nodes; stale generations are still pulling', () => {
  const s = summarize(prefetch, [node('n1', ['Present', 'Present']), node('n2', ['Present', 'Failed']), node('n3', ['Present', 'Pulling']), node('n4', ['Present', 'Present'], 1), node('n5', ['Present'], 2, 'other')]);
  assert.deepEqual([s.matched, s.ready, s.failed, s.observedGeneration], [4, 1, 1, 2]);
  assert.equal(cond(s, 'Ready'), 'False/PullFailed');
  assert.equal(cond(s, 'Progressing'), 'True/Pulling');
  assert.equal(cond(s, 'Degraded'), 'True/PullFailed');
  assert.deepEqual(s.failures, [{ node: 'n2', image: 'b', reason: 'Unauthorized', message: 'no' }]);
});

test('all present is Ready; no node at all settles as NoMatchingNodes', () => {
  const ok = summarize(prefetch, [node('n1', ['Present', 'Present'])]);
  assert.equal(cond(ok, 'Ready'), 'True/AllPresent');
  assert.equal(cond(ok, 'Progressing'), 'False/Settled');
  const none = summarize(prefetch, []);
  assert.equal(none.matched, 0);
  assert.equal(cond(none, 'Ready'), 'False/NoMatchingNodes');
  assert.equal(cond(none, 'Progressing'), 'False/Settled');
});

test('at most 10 failures are listed; the counts stay exact', () => {
  const nodes = Array.from({ length: 15 }, (_, i) => node(`n${String(i).padStart(2, '0')}`, ['Failed', 'Failed']));
  const s = summarize(prefetch, nodes);
  assert.equal(s.failed, 15);
  assert.equal(s.failures?.length, 10);
  assert.equal(s.failures?.[0]?.node, 'n00');
});

test('a recomputation keeps transition times of unchanged conditions', () => {
  const first = summarize(prefetch, [node('n1', ['Present', 'Present'])]);
  const again = summarize(prefetch, [node('n1', ['Present', 'Present'])], first.conditions);
  assert.deepEqual(again.conditions, first.conditions);
});
