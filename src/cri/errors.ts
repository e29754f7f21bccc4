// The single place where service failures become gRPC statuses. Handlers throw; the server wrapper
// calls toStatus() so every RPC answers with the right code and a message that says what was wrong.
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { BerthError, errnoCode, type ErrorKind } from '../util/errors.ts';

const CODES: Record<ErrorKind, Status> = {
  'invalid-argument': Status.INVALID_ARGUMENT,
  'not-found': Status.NOT_FOUND,
  'already-exists': Status.ALREADY_EXISTS,
  'failed-precondition': Status.FAILED_PRECONDITION,
  'permission-denied': Status.PERMISSION_DENIED,
  unauthenticated: Status.UNAUTHENTICATED,
  unavailable: Status.UNAVAILABLE,
  'resource-exhausted': Status.RESOURCE_EXHAUSTED,
  unimplemented: Status.UNIMPLEMENTED,
  cancelled: Status.CANCELLED,
  'deadline-exceeded': Status.DEADLINE_EXCEEDED,
  internal: Status.INTERNAL,
};

export function toStatus(err: unknown): Partial<ServiceError> & { code: Status; details: string } {
  if (err instanceof BerthError) return { code: CODES[err.kind], details: err.message };
  const message = err instanceof Error ? err.message : String(err);
  const code = errnoCode(err) === 'ENOSPC' ? Status.RESOURCE_EXHAUSTED : Status.UNKNOWN;
  return { code, details: message };
}
