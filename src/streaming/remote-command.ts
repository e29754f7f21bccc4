// Exec and attach sessions (the remotecommand protocols): gathers the client's streams over SPDY or
// WebSocket into one SessionIo, runs the backend, and reports how the command ended on the error
// stream before closing everything.
import type { Logger } from 'pino';
import type { SessionIo } from './backend.ts';
import { ResizeDecoder, ResizeQueue, statusPayload, type CommandOutcome } from './protocol.ts';
import type { SpdySession, SpdyStream } from './spdy/session.ts';
import { ChannelSocket } from './websocket/channels.ts';
import { errorMessage } from '../util/errors.ts';

export interface WantedStreams {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

/** A connected session, whatever the transport. */
export interface CommandChannels {
  io: SessionIo;
  /** Fires when the client is gone. */
  gone: AbortSignal;
  /** Reports the outcome on the error stream, ends every stream and closes the connection. */
  finish(outcome: CommandOutcome): Promise<void>;
  /** Cuts the connection without a report. */
  destroy(): void;
}

/** What the client may open: one stream per type, as kubectl and crictl do. */
const STREAM_TYPES = ['error', 'stdin', 'stdout', 'stderr', 'resize'] as const;
type StreamType = (typeof STREAM_TYPES)[number];

function endStream(s: SpdyStream): Promise<void> {
  return new Promise((resolve) => {
    if (s.destroyed || s.writableFinished) return resolve();
    s.once('close', resolve);
    s.end(() => resolve());
  });
}

function resizeFrom(source: NodeJS.ReadableStream, gone: AbortSignal): ResizeQueue {
  const queue = new ResizeQueue();
  const decoder = new ResizeDecoder();
  source.on('data', (chunk: Buffer) => {
    for (const size of decoder.push(chunk)) queue.push(size);
  });
  source.on('end', () => queue.end());
  source.on('close', () => queue.end());
  gone.addEventListener('abort', () => queue.end(), { once: true });
  return queue;
}

/**
 * Waits for the streams a SPDY client opens for this session (kubelet's rule: the error stream,
 * one per requested stdio stream, and resize with a tty from v3 on), answering each. `gone` is
 * there at once, so work may start while the client still opens its streams.
 */
export function acceptSpdyCommand(session: SpdySession, version: number, want: WantedStreams, timeoutMs: number): { gone: AbortSignal; channels: Promise<CommandChannels> } {
  const expected = 1 + Number(want.stdin) + Number(want.stdout) + Number(want.stderr) + Number(want.tty && version >= 3);
  const streams: Partial<Record<StreamType, SpdyStream>> = {};
  const ac = new AbortController();
  session.once('close', () => ac.abort(new Error('the client hung up')));
  const channels = new Promise<CommandChannels>((resolve, reject) => {
    let replied = 0;
    const timer = setTimeout(() => {
      session.destroy(`the client opened ${replied} of ${expected} streams within ${timeoutMs} ms`);
    }, timeoutMs);
    const onClose = (): void => {
      clearTimeout(timer);
      reject(new Error(`the client left before opening its streams: ${session.closeReason ?? 'connection closed'}`));
    };
    session.once('close', onClose);
    const onStream = (s: SpdyStream): void => {
      const type = s.headers.streamtype as StreamType | undefined;
      const known = type !== undefined && STREAM_TYPES.includes(type) && streams[type] === undefined;
      if (known) streams[type] = s;
      // Streams whose input nobody reads would stall the connection: drain them.
      if (!known || (type !== 'stdin' && type !== 'resize')) s.resume();
      s.reply();
      if (!known || ++replied !== expected) return;
      clearTimeout(timer);
      session.off('stream', onStream);
      session.off('close', onClose);
      session.on('stream', (extra: SpdyStream) => extra.reset());
      resolve(channelsFromSpdy(session, streams, version, want.tty, ac.signal));
    };
    session.on('stream', onStream);
  });
  return { gone: ac.signal, channels };
}

function channelsFromSpdy(session: SpdySession, streams: Partial<Record<StreamType, SpdyStream>>, version: number, tty: boolean, gone: AbortSignal): CommandChannels {
  const io: SessionIo = {
    stdin: streams.stdin,
    stdout: streams.stdout,
    stderr: streams.stderr,
    tty,
    resize: streams.resize ? resizeFrom(streams.resize, gone) : undefined,
  };
  return {
    io,
    gone,
    finish: async (outcome) => {
      const all = Object.values(streams);
      const payload = statusPayload(outcome, version);
      if (streams.error && payload.length > 0 && !streams.error.destroyed) streams.error.write(payload);
      await Promise.all(all.map(endStream));
      session.close();
    },
    destroy: () => session.destroy(),
  };
}

/** Channel numbers of the remotecommand WebSocket protocols. */
const WS = { stdin: 0, stdout: 1, stderr: 2, error: 3, resize: 4 } as const;

export function channelsFromWebSocket(socket: ChannelSocket, version: number, want: WantedStreams): CommandChannels {
  const resizeInput = want.tty ? socket.input(WS.resize) : undefined;
  const io: SessionIo = {
    stdin: want.stdin ? socket.input(WS.stdin) : undefined,
    stdout: want.stdout ? socket.output(WS.stdout) : undefined,
    stderr: want.stderr && !want.tty ? socket.output(WS.stderr) : undefined,
    tty: want.tty,
    resize: resizeInput ? resizeFrom(resizeInput, socket.gone) : undefined,
  };
  // An empty message on the lowest output channel tells the client the session is up.
  socket.send(want.stdout ? WS.stdout : want.stderr && !want.tty ? WS.stderr : WS.error, Buffer.alloc(0));
  const flushed = (w: NodeJS.WritableStream | undefined): Promise<void> =>
    new Promise((resolve) => {
      if (!w) return resolve();
      w.end(() => resolve());
    });
  return {
    io,
    gone: socket.gone,
    finish: async (outcome) => {
      await Promise.all([flushed(io.stdout), flushed(io.stderr)]);
      const payload = statusPayload(outcome, version);
      if (payload.length > 0) await new Promise<void>((resolve) => socket.send(WS.error, payload, () => resolve()));
      socket.close();
    },
    destroy: () => socket.destroy(),
  };
}

/**
 * Runs one exec or attach: `run` starts at once with the client's streams still to come (`io`
 * settles when they are open, or rejects when the client left first) and works until the
 * command ends or the client leaves; the outcome goes to the client when it is still there.
 */
export async function serveCommand(
  channels: Promise<CommandChannels>,
  gone: AbortSignal,
  run: (io: Promise<SessionIo>, signal: AbortSignal) => Promise<CommandOutcome>,
  log: Logger,
): Promise<void> {
  const io = channels.then((ch) => ch.io);
  // Both are awaited below (and io by `run`); these only keep an early failure from counting as unhandled.
  io.catch(() => {});
  const running = run(io, gone);
  running.catch(() => {});
  let ch: CommandChannels;
  try {
    ch = await channels;
  } catch (err) {
    await running.catch(() => {});
    log.debug({ err: errorMessage(err) }, 'streaming session ended before it started');
    return;
  }
  let outcome: CommandOutcome;
  try {
    outcome = await running;
  } catch (err) {
    outcome = { error: errorMessage(err) };
    if (!gone.aborted) log.warn({ err: errorMessage(err) }, 'streaming command failed');
  }
  if (gone.aborted) {
    ch.destroy();
    return;
  }
  await ch.finish(outcome);
}
