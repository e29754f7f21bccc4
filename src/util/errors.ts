// Typed failures that services throw. The CRI layer maps each kind to one gRPC status code, so the
// services never import gRPC and the mapping lives in a single place (src/cri/errors.ts).

export type ErrorKind =
  | 'invalid-argument'
  | 'not-found'
  | 'already-exists'
  | 'failed-precondition'
  | 'permission-denied'
  | 'unauthenticated'
  | 'unavailable'
  | 'resource-exhausted'
  | 'unimplemented'
  | 'cancelled'
  | 'deadline-exceeded'
  | 'internal';

export class BerthError extends Error {
  readonly kind: ErrorKind;
  constructor(kind: ErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
    this.name = 'BerthError';
  }
}

export const invalidArgument = (msg: string): BerthError => new BerthError('invalid-argument', msg);
export const notFound = (msg: string): BerthError => new BerthError('not-found', msg);
export const alreadyExists = (msg: string): BerthError => new BerthError('already-exists', msg);
export const unavailable = (msg: string, cause?: unknown): BerthError => new BerthError('unavailable', msg, { cause });
export const permissionDenied = (msg: string): BerthError => new BerthError('permission-denied', msg);
export const unauthenticated = (msg: string): BerthError => new BerthError('unauthenticated', msg);
export const failedPrecondition = (msg: string): BerthError => new BerthError('failed-precondition', msg);
export const resourceExhausted = (msg: string, cause?: unknown): BerthError =>
  new BerthError('resource-exhausted', msg, { cause });

/** The errno code (`ENOENT`, `EBUSY`, …) of a failed system call; undefined for any other error. */
export function errnoCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** What `op` gives, or undefined when it failed because its path does not exist (ENOENT). */
export async function unlessMissing<T>(op: Promise<T>): Promise<T | undefined> {
  try {
    return await op;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/** Text of any thrown value, for log lines and error messages. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Of several failures from stages of one job, the one that explains the others. When one stage
 * fails the rest fail too, with a bland "premature close" or "aborted"; the cause is a BerthError,
 * else a system error (ENOSPC, EACCES), else anything that is not such an echo.
 */
export function mostTellingError(errors: readonly unknown[]): unknown {
  const isEcho = (e: unknown): boolean =>
    (e as NodeJS.ErrnoException)?.code === 'ERR_STREAM_PREMATURE_CLOSE' || (e as Error)?.name === 'AbortError';
  return (
    errors.find((e) => e instanceof BerthError) ??
    errors.find((e) => typeof (e as NodeJS.ErrnoException)?.syscall === 'string') ??
    errors.find((e) => !isEcho(e)) ??
    errors[0]
  );
}

/** Throws the most telling rejection among settled results, if any rejected. */
export function throwMostTelling(results: readonly PromiseSettledResult<unknown>[]): void {
  const errors = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as unknown);
  if (errors.length > 0) throw mostTellingError(errors);
}
