// Runs inside a pod's network namespace (started by netns-dial.ts under `nsenter --net`): connects
// to 127.0.0.1:<port> there on request and hands the connected socket back to berthd over the
// IPC channel. The socket stays in the pod's namespace; berthd then moves bytes on it directly.
import { connect } from 'node:net';

interface DialRequest {
  id: number;
  port: number;
}

function isRequest(m: unknown): m is DialRequest {
  const r = m as DialRequest;
  return typeof r === 'object' && r !== null && Number.isInteger(r.id) && Number.isInteger(r.port) && r.port >= 1 && r.port <= 65535;
}

process.on('message', (m: unknown) => {
  if (!isRequest(m)) return;
  const socket = connect({ host: '127.0.0.1', port: m.port });
  socket.once('connect', () => {
    process.send?.({ id: m.id }, socket, { keepOpen: false });
  });
  socket.once('error', (err: NodeJS.ErrnoException) => {
    process.send?.({ id: m.id, error: `connect ${err.code ?? err.message} 127.0.0.1:${m.port} in the pod's network namespace` });
  });
});
// berthd went away or let us go: nothing more to do here.
process.on('disconnect', () => process.exit(0));
