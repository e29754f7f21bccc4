// The node agent keeps berthd's p2p peers: it resolves the names it is given (here `localhost`,
// which is this host and so dropped, and two loopback literals standing for other nodes), pushes
// the list to a real berthd over berth.v1.Peers, and pushes it again when berthd lost it (berthd
// holds peers in memory only). The API server is the HTTP-level fake; the peers need none of it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeApiServer } from '../helpers/fake-apiserver.ts';
import { freePort } from '../helpers/registry.ts';
import { startDaemon, type TestDaemon } from '../helpers/daemon.ts';
import { startController, waitFor, type RunningController } from '../helpers/controller.ts';

interface PeersView {
  enabled: boolean;
  pushed_peers: string[];
}

describe('node agent: p2p peers', () => {
  let api: FakeApiServer;
  let daemon: TestDaemon;
  let agent: RunningController;
  let port: number;
  const pushed = async (): Promise<string[]> => (await daemon.client.call<PeersView>('peers', 'ListPeers', {})).pushed_peers;
  const explain = (): string => `--- agent\n${agent?.logs().split('\n').slice(-20).join('\n')}`;

  before(async () => {
    api = await FakeApiServer.start({ bookmarkMs: 500 });
    api.apply({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-p', labels: { 'kubernetes.io/hostname': 'node-p' } }, spec: {}, status: {} });
    port = await freePort();
    daemon = await startDaemon({ config: `[p2p]\nlisten = "127.0.0.6:${port}"\n` });
    agent = await startController(api, api.nodeToken('node-p'), [
      '--role', 'node-agent', '--node-name', 'node-p', '--socket', daemon.socket,
      '--p2p-peers', 'localhost,127.0.0.7,127.0.0.8', '--p2p-port', String(port), '--p2p-interval-ms', '200',
    ]);
  });

  after(async () => {
    await agent?.stop();
    await daemon?.dispose();
    await api?.close();
  });

  test('the agent pushes the resolved peers without this node, and pushes them again after berthd lost them', async () => {
    const want = [`127.0.0.7:${port}`, `127.0.0.8:${port}`];
    await waitFor(async () => JSON.stringify(await pushed()) === JSON.stringify(want), 15_000, `pushed peers ${JSON.stringify(want)}`, explain);
    // As after a berthd restart: the list is gone; the agent states it again within a round.
    await daemon.client.call('peers', 'SetPeers', { peers: [] });
    assert.deepEqual(await pushed(), []);
    await waitFor(async () => JSON.stringify(await pushed()) === JSON.stringify(want), 15_000, 'the list pushed again', explain);
    assert.match(agent.logs(), /p2p: peers changed/);
  });
});
