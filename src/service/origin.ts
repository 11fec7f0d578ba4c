/**
 * The `origin` service (spec services.md §3): byte streams between the
 * program and whoever is "at the origin" of the instance — the CLI's
 * stdin/stdout, an HTTP request/response body pair, a websocket.
 *
 * One OriginService serves one run of one program instance: it is both the
 * service factory registered in that instance's registry and the connector
 * clients attach through. The program accepts connections with CALLs; each
 * client that connects is given a stream id and the oldest pending accept is
 * answered.
 */
import { settlement, type Settlement } from './settlement.js';
import { GateError } from '../errors.js';
import { callPacket, dataPacket, Domain, flowPacket, packetDomain, readDataPacket, readFlowEntries } from '../abi/packet.js';
import { AbiViolation } from '../abi/trap.js';
import type { ServiceContext, ServiceFactory, ServiceInstance, ServiceInstanceConfig } from './api.js';
import {
  FLAG_READ_WRITING,
  FLAG_SEND_RECEIVING,
  OriginStream,
  type HalfState,
  type OriginInput,
  type OriginOutput,
  type StreamState,
} from './originstream.js';
import { MAX_VARINT_VALUE, ServiceStateError, VarintReader, VarintWriter } from './varint.js';

export type { OriginInput, OriginOutput } from './originstream.js';

export const DEFAULT_ORIGIN_BUFSIZE = 32768;

/** The reply to a first accept: i32 stream id 0, i32 error 0 (code field 0). */
const ACCEPT_STREAM_0 = callPacket(0, new Uint8Array(8));

export interface OriginOptions {
  /** Per-stream program→client buffer (`service.origin.bufsize`): a power of two, default 32768. */
  bufsize?: number;
}

/**
 * What connect needs of an AbortSignal (an AbortSignal is one): the server
 * gives each call a cheaper one of its own (server/stream.ts).
 */
export interface AbortLike {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/** How clients attach to a program instance's origin. */
export interface OriginConnector {
  /**
   * Connects a client. Waits until the program accepts (CALL to origin),
   * then transfers bytes both ways: `input` (null: none) to the program,
   * the program's bytes to `output.write`; `output.end` is called when the
   * program closes its sending side. Resolves when the stream is fully
   * closed, when `signal` aborts after the connection was accepted (the
   * stream is then closed from the client side), or when the instance stops.
   * Rejects with OriginClosedError if the instance stops (or the connector is
   * closed) before accepting, with OriginAbortedError if `signal` aborts
   * before that. The iterator of `input` is never closed by the origin (so
   * that, e.g., an HTTP request body can be wired without tearing down the
   * socket); its owner releases it after the promise settles.
   */
  connect(input: OriginInput, output: OriginOutput, signal?: AbortLike): Promise<void>;
  /** No more clients: waiting and future connects are rejected (established streams continue). */
  close(): void;
}

/** The instance stopped before the program accepted the connection (HTTP `io` answers 409). */
export class OriginClosedError extends GateError {
  constructor() {
    super('GATE_ORIGIN_CLOSED', 'the program instance stopped before it accepted the connection');
  }
}

/** The client gave up (its AbortSignal fired) before the program accepted the connection. */
export class OriginAbortedError extends GateError {
  constructor(reason: unknown) {
    super('GATE_ORIGIN_ABORTED', 'the connection attempt was aborted before the program accepted it', { cause: reason });
  }
}

interface Client extends Settlement {
  input: AsyncIterator<Uint8Array> | undefined;
  output: OriginOutput;
  /** Set once attached. */
  stream: OriginStream | undefined;
}

export class OriginService implements ServiceFactory, OriginConnector {
  readonly name = 'origin';
  readonly revision = '0';
  readonly streams = true;

  private readonly bufsize: number;
  private config: ServiceInstanceConfig | undefined;
  private closed = false;
  private stopped = false;
  private accepting = 0;
  /** The executor answers the program's first accept (answerFirstAccept); cleared when that accept arrives. */
  private firstAnswered = false;
  private readonly waiting: Client[] = [];
  private readonly active = new Map<number, { stream: OriginStream; client: Client | undefined }>();

  constructor(options: OriginOptions = {}) {
    const bufsize = options.bufsize ?? DEFAULT_ORIGIN_BUFSIZE;
    if (!Number.isInteger(bufsize) || bufsize < 2 || bufsize > 1 << 30 || (bufsize & (bufsize - 1)) !== 0) {
      throw new GateError('GATE_CONFIG', `service.origin.bufsize must be a power of two between 2 and 2^30, not ${bufsize}`);
    }
    this.bufsize = bufsize;
  }

  discoverable(_context: ServiceContext): boolean {
    return true;
  }

  createInstance(config: ServiceInstanceConfig, snapshot?: Uint8Array): ServiceInstance {
    if (this.config) {
      throw new GateError('GATE_ORIGIN_REUSED', 'an origin service serves a single program instance run; create a new OriginService for each');
    }
    const restored = snapshot && snapshot.length > 0 ? decodeOriginState(snapshot, this.bufsize, config.maxSendSize) : undefined;
    this.config = config;
    if (restored) {
      this.accepting = restored.accepting;
      // Restored streams have no client; they are driven to closure and forgotten.
      for (const { id, state } of restored.streams) this.active.set(id, { stream: this.newStream(id, undefined, state), client: undefined });
      for (const { id } of restored.streams) this.active.get(id)?.stream.start();
    }
    this.attachWaiting();
    return {
      handle: (packet) => this.handle(packet),
      shutdown: (suspend) => this.shutdown(suspend),
      checkpoint: () => this.state(),
    };
  }

  connect(input: OriginInput, output: OriginOutput, signal?: AbortLike): Promise<void> {
    if (this.closed) return Promise.reject(new OriginClosedError());
    if (signal?.aborted) return Promise.reject(new OriginAbortedError(signal.reason));
    // Opened here so that a broken iterable fails this connect, never the program.
    let iterator: AsyncIterator<Uint8Array> | undefined;
    try {
      iterator = input ? input[Symbol.asyncIterator]() : undefined;
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<void>((resolve, reject) => {
      const client: Client = Object.assign(settlement(resolve, reject), { input: iterator, output, stream: undefined });
      if (signal) {
        const onAbort = (): void => {
          if (client.stream) {
            client.stream.abort();
            client.resolve();
          } else {
            const i = this.waiting.indexOf(client);
            if (i >= 0) this.waiting.splice(i, 1);
            client.reject(new OriginAbortedError(signal.reason));
          }
        };
        signal.addEventListener('abort', onAbort, { once: true });
        client.detach = () => signal.removeEventListener('abort', onAbort);
      }
      this.waiting.push(client);
      this.attachWaiting();
    });
  }

  /**
   * For a run whose client connects at once (a call): the replies to the
   * program's first accept (stream 0 and its send credit, code field left
   * 0), for the executor to give without waiting for this side. The service
   * instance then sends them no more, and pairs that accept with the first
   * client to connect; if there is none by then (it gave up), the stream
   * closes at once, as if its client had left. Undefined once the service
   * instance exists (a restored run).
   */
  answerFirstAccept(): Uint8Array[] | undefined {
    if (this.config || this.firstAnswered || this.closed) return undefined;
    this.firstAnswered = true;
    // Copies: the executor sets their code fields.
    return [ACCEPT_STREAM_0.slice(), flowPacket(0, [{ id: 0, value: this.bufsize - 1 }])];
  }

  /**
   * The run continues from a checkpoint, in a new executor instance that
   * answers nothing ahead: an accept the program has not made yet is
   * answered here again.
   */
  forgetAnswerAhead(): void {
    this.firstAnswered = false;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const client of this.waiting.splice(0)) client.reject(new OriginClosedError());
  }

  /** Number of accept calls the program has pending. */
  get pendingAccepts(): number {
    return this.accepting;
  }

  /** Ids of the streams currently open. */
  streamIds(): number[] {
    return [...this.active.keys()].sort((a, b) => a - b);
  }

  private handle(packet: Uint8Array): void {
    if (this.stopped) return;
    switch (packetDomain(packet)) {
      case Domain.Call:
        // Content is ignored; each call is one pending accept.
        if (this.accepting >= MAX_VARINT_VALUE) throw new GateError('GATE_ORIGIN_ACCEPTS', 'too many simultaneous origin accept calls');
        this.accepting++;
        this.attachWaiting();
        return;
      case Domain.Info:
        return; // Ignored (services.md §3.1).
      case Domain.Flow:
        for (const { id, value } of readFlowEntries(packet)) this.stream(id, 'flow').flow(value);
        return;
      case Domain.Data: {
        const { id, data } = readDataPacket(packet);
        // The decoder hands us an owned copy; the client may keep `data`.
        this.stream(id, 'data').data(data);
        return;
      }
    }
  }

  private stream(id: number, kind: string): OriginStream {
    const entry = this.active.get(id);
    if (!entry) throw new AbiViolation(`${kind} packet for unknown origin stream: ${id}`);
    return entry.stream;
  }

  /** Pairs waiting clients with pending accepts, oldest first. */
  private attachWaiting(): void {
    const config = this.config;
    if (!config) return;
    while (!this.stopped && this.accepting > 0 && (this.waiting.length > 0 || this.firstAnswered)) {
      // Answered by the executor: stream 0 (nothing is active before the first accept) and its credit are the program's already.
      const answered = this.firstAnswered;
      this.firstAnswered = false;
      const client = this.waiting.shift();
      let id = 0;
      while (this.active.has(id)) id++;
      this.accepting--;
      const stream = this.newStream(id, client, undefined);
      if (client) client.stream = stream;
      this.active.set(id, { stream, client });
      if (!answered) {
        const reply = new Uint8Array(8);
        new DataView(reply.buffer).setInt32(0, id, true); // i32 stream id, i32 error (always 0)
        config.send(callPacket(config.code, reply));
      }
      stream.start(answered);
    }
  }

  private newStream(id: number, client: Client | undefined, restored: StreamState | undefined): OriginStream {
    const config = this.config!;
    return new OriginStream({
      id,
      bufsize: this.bufsize,
      maxSendSize: config.maxSendSize,
      sender: {
        flow: (sid, value) => config.send(flowPacket(config.code, [{ id: sid, value }])),
        data: (sid, data) => config.send(dataPacket(config.code, sid, data)),
      },
      client: client ? { input: client.input, output: client.output } : undefined,
      restored,
      onClosed: () => {
        // Fully closed: forget it so that the id can be reused.
        this.active.delete(id);
        client?.resolve();
      },
    });
  }

  private async shutdown(suspend: boolean): Promise<Uint8Array | undefined> {
    this.stopped = true;
    this.close();
    if (!suspend) {
      // What the program sent before it ended still reaches its clients.
      await Promise.all(
        [...this.active.values()].map(async ({ stream, client }) => {
          await stream.drain();
          client?.resolve();
        }),
      );
      return undefined;
    }
    for (const { stream, client } of this.active.values()) {
      stream.stop();
      client?.resolve();
    }
    return this.state();
  }

  /**
   * The suspended state: pending accepts and each open stream's state. A
   * checkpoint takes it without stopping anything: the clients stay
   * connected (the streams are the server's), and a restore from it sees
   * the streams as disconnected, as after a suspension.
   */
  private state(): Uint8Array {
    const streams = [...this.active.entries()]
      .sort(([a], [b]) => a - b)
      .map(([id, { stream }]) => ({ id, state: stream.state() }));
    return encodeOriginState({ accepting: this.accepting, streams });
  }
}


/** The origin service's suspended state (services.md §3.4). */
export interface OriginState {
  accepting: number;
  streams: Array<{ id: number; state: StreamState }>;
}

/** Empty if nothing is pending; otherwise `varint accepting [varint n, n × {varint id, read, write}]`. */
export function encodeOriginState(state: OriginState): Uint8Array {
  if (state.accepting === 0 && state.streams.length === 0) return new Uint8Array(0);
  const w = new VarintWriter().varint(state.accepting);
  if (state.streams.length > 0) {
    w.varint(state.streams.length);
    for (const { id, state: s } of state.streams) {
      w.varint(id);
      writeHalf(w, s.read);
      writeHalf(w, s.write);
    }
  }
  return w.finish();
}

function writeHalf(w: VarintWriter, h: HalfState): void {
  w.varint(h.flags).varint(h.subscribed).varint(h.data.length).bytes(h.data);
}

/**
 * Decodes and checks a saved origin state. Throws ServiceStateError for
 * truncated data, out-of-range values, duplicate stream ids, data larger
 * than its limit (read: maxSendSize; write: bufsize) or impossible states.
 */
export function decodeOriginState(buffer: Uint8Array, bufsize: number, maxSendSize: number): OriginState {
  const r = new VarintReader(buffer);
  const state: OriginState = { accepting: r.varint(), streams: [] };
  if (r.remaining > 0) {
    const n = r.varint();
    const ids = new Set<number>();
    for (let i = 0; i < n; i++) {
      const id = r.varint();
      if (ids.has(id)) throw new ServiceStateError(`origin state has duplicate stream id ${id}`);
      ids.add(id);
      const read = readHalf(r, maxSendSize);
      const write = readHalf(r, bufsize);
      if (write.subscribed >= bufsize) throw new ServiceStateError('origin state: write stream credit exceeds the buffer size');
      state.streams.push({ id, state: { read, write } });
    }
  }
  if (r.remaining > 0) throw new ServiceStateError(`origin state has ${r.remaining} trailing bytes`);
  return state;
}

function readHalf(r: VarintReader, maxData: number): HalfState {
  const flags = r.varint();
  const subscribed = r.varint();
  const size = r.varint();
  if (flags > 7) throw new ServiceStateError(`origin state has invalid stream flags ${flags}`);
  if (size > maxData) throw new ServiceStateError('serialized buffer state size limit exceeded');
  const data = r.bytesView(size).slice();
  // Data or an open connection side while the channel side is closed cannot happen.
  if ((flags & FLAG_SEND_RECEIVING) === 0 && ((flags & FLAG_READ_WRITING) !== 0 || size !== 0)) {
    throw new ServiceStateError('origin state describes an impossible stream state');
  }
  return { flags, subscribed, data };
}
