/**
 * The `endpoint` service (docs/services.md): a program instance receives
 * HTTP requests sent to /gate-0/endpoint/<instance-id>/… as streams. The
 * protocol is the origin service's (accept CALLs, FLOW/DATA streams with the
 * same flow control and close handshake, OriginStream): each request is a
 * stream whose input is the request head (endpoint-head.ts) and body, and
 * whose output is the response head and body.
 *
 * The service knows nothing of HTTP: the server hands it exchanges through
 * the EndpointHub, where listening instances are found by id.
 */
import { settlement, type Settlement } from './settlement.js';
import { GateError } from '../errors.js';
import { callPacket, dataPacket, Domain, flowPacket, packetDomain, readDataPacket, readFlowEntries } from '../abi/packet.js';
import { AbiViolation } from '../abi/trap.js';
import type { ServiceContext, ServiceFactory, ServiceInstance, ServiceInstanceConfig } from './api.js';
import { decodeResponseHead, responseHeadSize, type ResponseHead } from './endpoint-head.js';
import { decodeOriginState, encodeOriginState } from './origin.js';
import { OriginStream, type OriginOutput, type StreamState } from './originstream.js';
import { MAX_VARINT_VALUE, ServiceStateError } from './varint.js';

export const ENDPOINT_SERVICE_NAME = 'endpoint';
/** Program→client buffer of each request stream (the program's response credit is one less). */
export const ENDPOINT_BUFSIZE = 32768;
/** Accept reply error: another principal's instance listens under this instance id. */
export const ENDPOINT_ERROR_ID_TAKEN = 1;

/** One HTTP exchange handed to a listening program. */
export interface EndpointExchange {
  /** What the program reads: the encoded request head, then the body. */
  input: AsyncIterable<Uint8Array>;
  /** The program's response head, complete and valid, before any body byte. */
  head(response: ResponseHead): void;
  /** The response body; `end` when the program closed its side. */
  body: OriginOutput;
}

/** The instance stopped before the program accepted the exchange or answered it (suspended: it may come back). */
export class EndpointClosedError extends GateError {
  constructor(readonly suspended: boolean) {
    super('GATE_ENDPOINT_CLOSED', suspended ? 'the instance was suspended before it answered' : 'the instance stopped before it answered');
  }
}

export interface EndpointListener {
  readonly principal: string;
  /**
   * Hands an exchange to the program (it waits for an accept). Resolves when
   * the exchange is over: the stream closed, `signal` aborted, or the
   * instance ended (its answer drained). Rejects with EndpointClosedError if
   * the instance stops before accepting it, or is suspended before the
   * response head.
   */
  serve(exchange: EndpointExchange, signal: AbortSignal): Promise<void>;
}

/** Where the server finds listening instances by id (one hub per server). */
export class EndpointHub {
  private readonly listening = new Map<string, EndpointListener>();
  /** Instances that were listening when they were suspended, by id: their principal. */
  private readonly suspended = new Map<string, string>();

  /** Starts listening under `id`; false if another principal's instance listens there. */
  listen(id: string, listener: EndpointListener): boolean {
    const current = this.listening.get(id);
    if (current && current.principal !== listener.principal) return false;
    this.listening.set(id, listener);
    this.suspended.delete(id);
    return true;
  }

  /** The instance stopped listening: for good, or suspended (requests then get 503 until it is back). */
  unlisten(id: string, listener: EndpointListener, suspended: boolean): void {
    if (this.listening.get(id) !== listener) return;
    this.listening.delete(id);
    if (suspended) this.suspended.set(id, listener.principal);
  }

  find(id: string): { listener: EndpointListener } | { suspendedFor: string } | undefined {
    const listener = this.listening.get(id);
    if (listener) return { listener };
    const principal = this.suspended.get(id);
    return principal === undefined ? undefined : { suspendedFor: principal };
  }

  /** The suspended instance is gone (deleted, or ended elsewhere). */
  forget(id: string): void {
    this.suspended.delete(id);
  }

  get listeningCount(): number {
    return this.listening.size;
  }
}

export interface EndpointServiceOptions {
  hub: EndpointHub;
}

/** The service factory, registered in a server's registry when endpoints are enabled. */
export function endpointService(options: EndpointServiceOptions): ServiceFactory {
  return {
    name: ENDPOINT_SERVICE_NAME,
    revision: '0',
    streams: true,
    // Requests are counted against the instance's principal: anonymous programs have none (nor an addressable id).
    discoverable: (context: ServiceContext) => context.principalId !== undefined,
    createInstance: (config, snapshot) => new EndpointInstance(options.hub, config, snapshot),
  };
}

interface Client extends Settlement {
  exchange: EndpointExchange;
  stream: OriginStream | undefined;
  /** Reads the response head out of the program's first bytes; undefined once the answer is not wanted. */
  reader: ResponseReader | undefined;
}

/** Parses the response head from the program's DATA payloads as they arrive (so that a malformed one fails `handle`). */
class ResponseReader {
  private parts: Uint8Array[] = [];
  private got = 0;
  /** The head's size once its first four bytes are in; 0 before. */
  size = 0;
  done = false;

  constructor(private readonly deliver: (head: ResponseHead) => void) {}

  take(data: Uint8Array): void {
    if (this.done) return;
    if (data.length === 0) throw new AbiViolation('endpoint response stream ended before its head was complete');
    this.parts.push(data);
    this.got += data.length;
    if (this.size === 0 && this.got >= 4) this.size = responseHeadSize(concat(this.parts, this.got).subarray(0, 4));
    if (this.size === 0 || this.got < this.size) return;
    const all = concat(this.parts, this.got);
    this.parts = [];
    this.done = true;
    this.deliver(decodeResponseHead(all.subarray(0, this.size)));
  }
}

const FLAG_LISTENING = 1;

class EndpointInstance implements ServiceInstance, EndpointListener {
  readonly principal: string;
  private readonly id: string;
  private listening = false;
  private stopped = false;
  private accepting = 0;
  private readonly waiting: Client[] = [];
  private readonly active = new Map<number, { stream: OriginStream; client: Client | undefined }>();

  constructor(
    private readonly hub: EndpointHub,
    private readonly config: ServiceInstanceConfig,
    snapshot: Uint8Array | undefined,
  ) {
    this.principal = config.context.principalId ?? '';
    this.id = config.context.instanceId;
    if (snapshot && snapshot.length > 0) {
      const flags = snapshot[0]!;
      if (flags > FLAG_LISTENING) throw new ServiceStateError(`endpoint state has invalid flags ${flags}`);
      const state = decodeOriginState(snapshot.subarray(1), ENDPOINT_BUFSIZE, config.maxSendSize);
      this.accepting = state.accepting;
      // Requests in flight when the state was taken have no client now: driven to closure and forgotten.
      for (const { id, state: s } of state.streams) this.active.set(id, { stream: this.newStream(id, undefined, s), client: undefined });
      for (const { id } of state.streams) this.active.get(id)?.stream.start();
      // Listening carries over (to the copy's own id after a clone).
      if (flags & FLAG_LISTENING) this.startListening();
    }
  }

  serve(exchange: EndpointExchange, signal: AbortSignal): Promise<void> {
    if (this.stopped) return Promise.reject(new EndpointClosedError(false));
    return new Promise<void>((resolve, reject) => {
      const client: Client = Object.assign(settlement(resolve, reject), { exchange, stream: undefined, reader: undefined });
      const onAbort = (): void => {
        client.reader = undefined;
        if (client.stream) {
          client.stream.abort();
          client.resolve();
        } else {
          const i = this.waiting.indexOf(client);
          if (i >= 0) this.waiting.splice(i, 1);
          client.resolve();
        }
      };
      if (signal.aborted) return void onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      client.detach = () => signal.removeEventListener('abort', onAbort);
      this.waiting.push(client);
      this.attachWaiting();
    });
  }

  handle(packet: Uint8Array): void {
    if (this.stopped) return;
    switch (packetDomain(packet)) {
      case Domain.Call:
        // Content is ignored; each call is one accept, the first one also starts listening.
        if (!this.listening && !this.startListening()) {
          this.config.send(callPacket(this.config.code, acceptReply(-1, ENDPOINT_ERROR_ID_TAKEN)));
          return;
        }
        if (this.accepting >= MAX_VARINT_VALUE) throw new AbiViolation('too many simultaneous endpoint accept calls');
        this.accepting++;
        this.attachWaiting();
        return;
      case Domain.Info:
        return;
      case Domain.Flow:
        for (const { id, value } of readFlowEntries(packet)) this.entry(id, 'flow').stream.flow(value);
        return;
      case Domain.Data: {
        const { id, data } = readDataPacket(packet);
        const entry = this.entry(id, 'data');
        entry.client?.reader?.take(data);
        entry.stream.data(data);
        return;
      }
    }
  }

  checkpoint(): Uint8Array {
    return this.state();
  }

  async shutdown(suspend: boolean): Promise<Uint8Array | undefined> {
    this.stopped = true;
    if (this.listening) this.hub.unlisten(this.id, this, suspend);
    for (const client of this.waiting.splice(0)) client.reject(new EndpointClosedError(suspend));
    if (!suspend) {
      // What the program answered before it ended still reaches its clients.
      await Promise.all(
        [...this.active.values()].map(async ({ stream, client }) => {
          await stream.drain();
          client?.resolve();
        }),
      );
      return undefined;
    }
    const state = this.state();
    for (const { stream, client } of this.active.values()) {
      stream.stop();
      if (client?.reader?.done === false) client.reject(new EndpointClosedError(true));
      else client?.resolve();
    }
    return state;
  }

  /** `u8 flags` (1: listening) then the origin service's stream state; empty when there is nothing to keep. */
  private state(): Uint8Array {
    const streams = [...this.active.entries()].sort(([a], [b]) => a - b).map(([id, { stream }]) => ({ id, state: stream.state() }));
    const rest = encodeOriginState({ accepting: this.accepting, streams });
    if (!this.listening && rest.length === 0) return new Uint8Array(0);
    const out = new Uint8Array(1 + Math.max(rest.length, 1));
    out[0] = this.listening ? FLAG_LISTENING : 0;
    out.set(rest.length ? rest : [0], 1);
    return out;
  }

  private startListening(): boolean {
    this.listening = this.hub.listen(this.id, this);
    if (!this.listening) {
      // Restored accepts cannot be served here either: answer them with the error.
      for (; this.accepting > 0; this.accepting--) this.config.send(callPacket(this.config.code, acceptReply(-1, ENDPOINT_ERROR_ID_TAKEN)));
    }
    return this.listening;
  }

  private entry(id: number, kind: string): { stream: OriginStream; client: Client | undefined } {
    const entry = this.active.get(id);
    if (!entry) throw new AbiViolation(`${kind} packet for unknown endpoint stream: ${id}`);
    return entry;
  }

  private attachWaiting(): void {
    while (!this.stopped && this.accepting > 0 && this.waiting.length > 0) {
      const client = this.waiting.shift()!;
      let id = 0;
      while (this.active.has(id)) id++;
      this.accepting--;
      client.reader = new ResponseReader((head) => client.exchange.head(head));
      const stream = this.newStream(id, client, undefined);
      client.stream = stream;
      this.active.set(id, { stream, client });
      this.config.send(callPacket(this.config.code, acceptReply(id, 0)));
      stream.start();
    }
  }

  private newStream(id: number, client: Client | undefined, restored: StreamState | undefined): OriginStream {
    const config = this.config;
    let input: AsyncIterator<Uint8Array> | undefined;
    let output: OriginOutput | undefined;
    if (client) {
      input = client.exchange.input[Symbol.asyncIterator]();
      // The program's bytes are its response head (read by the ResponseReader in handle) and then the body.
      let position = 0;
      output = {
        write: (chunk) => {
          const reader = client.reader;
          const headEnd = reader?.done ? reader.size : Infinity;
          const skip = Math.max(0, Math.min(chunk.length, headEnd - position));
          position += chunk.length;
          if (skip < chunk.length && reader?.done) return client.exchange.body.write(chunk.subarray(skip));
        },
        end: () => client.exchange.body.end(),
      };
    }
    return new OriginStream({
      id,
      bufsize: ENDPOINT_BUFSIZE,
      maxSendSize: config.maxSendSize,
      sender: {
        flow: (sid, value) => config.send(flowPacket(config.code, [{ id: sid, value }])),
        data: (sid, data) => config.send(dataPacket(config.code, sid, data)),
      },
      client: input && output ? { input, output } : undefined,
      restored,
      onClosed: () => {
        this.active.delete(id);
        client?.resolve();
      },
    });
  }
}

/** `i32 stream id, i32 error` (origin's accept reply, with an error code). */
function acceptReply(id: number, error: number): Uint8Array {
  const reply = new Uint8Array(8);
  const view = new DataView(reply.buffer);
  view.setInt32(0, id, true);
  view.setInt32(4, error, true);
  return reply;
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
