/**
 * Program I/O over an HTTP exchange (spec web-api.md §7.4 `call`, §9.2
 * `io`): the request body is the program's input, its output is the response
 * body, and the final status goes in the `Gate-Status` trailer.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AbortLike, OriginInput, OriginOutput } from '../service/origin.js';
import { OriginClosedError } from '../service/origin.js';
import { statusHeader, type InstanceManager, type ServerInstance } from './instances.js';
import { drainedOrClosed } from './http.js';

/**
 * A writer to a response that honours backpressure; `head` writes the response head before the first byte.
 *
 * What is written in one turn of the event loop leaves at its end (after its
 * I/O callbacks), not at the end of the tick: a call's program usually sends
 * its output and stops in one message batch, and the response's end then
 * goes in the same write as its head and body (each write wakes the client).
 */
export function responseOutput(res: ServerResponse, head: () => void): OriginOutput {
  let corked = false;
  return {
    write(chunk: Uint8Array): Promise<void> | void {
      if (res.destroyed) return;
      if (!res.headersSent) head();
      if (!corked) {
        corked = true;
        res.cork();
        setImmediate(() => {
          corked = false;
          // end() has uncorked the connection fully.
          if (!res.writableEnded) res.uncork();
        });
      }
      if (res.write(chunk)) return;
      return drainedOrClosed(res);
    },
    end() {},
  };
}

/**
 * The client of one exchange went away: the abort signal of its origin
 * connection (an AbortController and its EventTarget cost a call more than
 * this; listeners are called once, in order).
 */
export class ClientGone implements AbortLike {
  aborted = false;
  reason: unknown = undefined;
  private listeners: Array<() => void> = [];

  addEventListener(_type: 'abort', listener: () => void): void {
    if (!this.aborted) this.listeners.push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const i = this.listeners.indexOf(listener);
    if (i >= 0) this.listeners.splice(i, 1);
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const listeners = this.listeners;
    this.listeners = [];
    for (const l of listeners) l();
  }
}

export function wantsTrailers(req: IncomingMessage): boolean {
  return String(req.headers.te ?? '').split(',').some((t) => t.trim().toLowerCase() === 'trailers');
}

export interface ExchangeOptions {
  instances: InstanceManager;
  inst: ServerInstance;
  req: IncomingMessage;
  res: ServerResponse;
  input: OriginInput;
  /** Wait for the instance to stop before the trailer (call); io reports the status at the end of the stream. */
  untilStopped: boolean;
  /** The client went away: kill the instance (transient call). */
  killOnDisconnect: boolean;
  /** Writes the response head (called once the program has accepted or produced output, or before the trailer). */
  head: () => void;
  /** Whether the client takes the status as a trailer (wantsTrailers), which the caller has found out already. */
  trailers: boolean;
}

/**
 * Runs the exchange. An `io` whose instance stops before the program
 * accepts rejects with OriginClosedError before any head is written (409).
 */
export async function exchange(o: ExchangeOptions): Promise<void> {
  const gone = new ClientGone();
  const onClose = (): void => {
    if (o.res.writableFinished) return;
    gone.abort(new Error('client disconnected'));
    if (o.killOnDisconnect) o.instances.kill(o.inst);
  };
  o.res.on('close', onClose);
  // The client may have hung up while the instance was being launched: its
  // close event has passed, and a call's program must not run on for nobody.
  if (o.res.destroyed || o.req.socket.destroyed) onClose();
  try {
    await o.instances.connect(o.inst, o.input, responseOutput(o.res, o.head), gone).catch((e: unknown) => {
      // A call's program may never accept (it stopped first); the status says the rest.
      if (gone.aborted) return;
      if (!(e instanceof OriginClosedError) || !o.untilStopped) throw e;
    });
    const status = o.untilStopped ? await o.instances.wait(o.inst) : o.inst.status;
    if (o.res.destroyed) return;
    if (!o.res.headersSent) o.head();
    if (o.trailers) o.res.addTrailers({ 'Gate-Status': statusHeader(status) });
    o.res.end();
  } finally {
    o.res.off('close', onClose);
  }
}
