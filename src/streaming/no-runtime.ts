// The backend berthd streams against until it runs containers: there is nothing to exec into,
// attach to or forward into yet, so every lookup answers NOT_FOUND. The adapter to the runtime's
// container service replaces this when pods and containers land.
import type { StreamingBackend } from './backend.ts';
import { notFound } from '../util/errors.ts';

const none = (what: string, id: string): never => {
  throw notFound(`${what} ${id} not found: this berthd does not run pods or containers yet`);
};

export const noRuntimeBackend: StreamingBackend = {
  resolveContainer: (id) => none('container', id),
  resolveSandbox: (id) => none('pod sandbox', id),
  exec: (id) => Promise.resolve(none('container', id)),
  attach: (id) => Promise.resolve(none('container', id)),
  portForward: (id) => Promise.resolve(none('pod sandbox', id)),
};
