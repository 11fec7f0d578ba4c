/**
 * The websocket protocols (spec web-api.md §11): `call` of a module (with
 * an optional upload in the second message) and `io` to a running instance.
 * After the setup messages, binary messages carry program input and output;
 * a text message with the final status precedes the close.
 */
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { Program } from '../runtime/program.js';
import type { InstanceStatus } from '../runtime/status.js';
import { OriginClosedError, type OriginOutput } from '../service/origin.js';
import type { Api } from './api.js';
import type { Principal } from './auth/principal.js';
import { AnonymousLimitError, type AnonymousTicket } from './anonymous.js';
import { HttpError, moduleNotFound } from './errors.js';
import { toHttpError } from './error-map.js';
import { instanceIdProblem } from './instance-id.js';
import { statusJson, type InstanceManager, type ServerInstance } from './instances.js';
import { checkModuleKey, sha256Hex } from './modules.js';
import { Query, takeActions } from './query.js';
import { ClientGone } from './stream.js';
import { resolve, type Route } from './routes.js';

const SETUP_MESSAGE_LIMIT = 4096;
/** Unsent data on a call's websocket past which its debug output is dropped (and counted). */
const DEBUG_WEBSOCKET_BACKLOG_BYTES = 1024 * 1024;
/** Input bytes queued from a client before its socket is paused. */
const INPUT_HIGH_WATER = 256 * 1024;

/** Closes with 1008 (the client's mistake) or 1011 (ours), as the spec's setup errors do. */
class CloseError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

export class WebsocketApi {
  private readonly wss: WebSocketServer;

  constructor(
    private readonly api: Api,
    private readonly instances: InstanceManager,
    private readonly log: Logger,
  ) {
    this.wss = new WebSocketServer({ noServer: true, maxPayload: api.maxModuleSize + 1024 });
  }

  close(): void {
    for (const ws of this.wss.clients) ws.terminate();
    this.wss.close();
  }

  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // The HTTP server hands the socket over without its error listener: a
    // reset by the client must not become an uncaught exception.
    socket.on('error', () => socket.destroy());
    let target: { kind: 'call'; route: Route; params: ReturnType<Api['launchParams']>; pin: boolean } | { kind: 'io'; id: string };
    try {
      target = this.target(req);
    } catch (e) {
      const { error, internal } = toHttpError(e);
      if (internal) this.log.error({ err: e, url: req.url }, 'websocket upgrade failed');
      const body = `${error.message}\n`;
      const extra = Object.entries(error.headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
      const reason = STATUS_CODES[error.status] ?? 'Error';
      if (socket.writable) socket.end(`HTTP/1.1 ${error.status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}Connection: close\r\n\r\n${body}`);
      else socket.destroy();
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      // Protocol errors (invalid UTF-8, unmasked or oversized frames) close
      // the connection with the matching code; without a listener they would
      // be thrown.
      ws.on('error', (e: Error) => this.log.debug({ err: e }, 'websocket protocol error'));
      const run = target.kind === 'call' ? this.call(ws, target.route, target.params, target.pin, req.socket.remoteAddress) : this.io(ws, target.id);
      run.catch((e: unknown) => {
        const { error, internal } = toHttpError(e);
        if (internal) this.log.error({ err: e }, 'websocket failed');
        const code = e instanceof CloseError ? e.code : error.status >= 500 ? 1011 : 1008;
        if (ws.readyState === WebSocket.OPEN) ws.close(code, truncate(e instanceof CloseError ? e.message : error.message));
      });
    });
  }

  private target(req: IncomingMessage) {
    if (req.method !== 'GET') throw new HttpError(405, 'method not allowed');
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    let path: string;
    try {
      path = decodeURIComponent(q < 0 ? url : url.slice(0, q));
    } catch {
      throw new HttpError(400, 'invalid URL path encoding');
    }
    const r = resolve(path, this.api.sourceNames);
    if (!('route' in r)) throw new HttpError(404, '404 page not found');
    if (!this.api.originAllowed(req)) throw new HttpError(403, 'forbidden');
    const query = Query.fromUrl(url);
    const actions = takeActions(query);
    const route = r.route;
    if (route.kind === 'instance') {
      const problem = instanceIdProblem(route.id);
      if (problem) throw new HttpError(404, problem);
      if (actions.size !== 1 || !actions.has('io')) throw new HttpError(501, 'unsupported action');
      query.finish();
      return { kind: 'io' as const, id: route.id };
    }
    if (route.kind !== 'known' && route.kind !== 'source') throw new HttpError(404, '404 page not found');
    if (route.kind === 'known') checkModuleKey(route.key);
    const pin = actions.has('pin');
    const rest = [...actions].filter((a) => a !== 'pin');
    if (rest.length !== 1 || rest[0] !== 'call') throw new HttpError(501, 'unsupported action');
    const params = this.api.launchParams(query, pin, false);
    query.finish();
    return { kind: 'call' as const, route, params, pin };
  }

  private async call(ws: WebSocket, route: Route, params: ReturnType<Api['launchParams']>, pin: boolean, address: string | undefined): Promise<void> {
    const messages = new MessageQueue(ws);
    const setup = parseSetup(await messages.next('text'));
    const contentType = typeof setup.content_type === 'string' ? setup.content_type : '';
    if (contentType !== '' && contentType !== 'application/wasm') throw new CloseError(1008, 'unsupported content type');
    const auth = typeof setup.authorization === 'string' && setup.authorization !== '' ? [setup.authorization] : undefined;
    const p = await this.api.principalOf(auth, pin);
    let hash: string;
    let program: Program;
    if (route.kind === 'source') {
      if (contentType !== '') throw new CloseError(1008, 'content not supported by action');
      ({ hash, program } = await this.api.fetchSource(route.source, route.key));
      if (pin) await this.api.pinModule(p!.id, hash, params.moduleTags);
    } else if (route.kind === 'known') {
      hash = route.key;
      if (contentType === 'application/wasm') {
        const bytes = await messages.next('binary');
        const length = Number(setup.content_length);
        if (bytes.length !== length || sha256Hex(bytes) !== hash) throw new CloseError(1008, 'module hash does not match content');
        program = await this.api.modules.program(hash, bytes);
        if (pin) {
          await this.api.modules.store(hash, [bytes]);
          await this.api.pinModule(p!.id, hash, params.moduleTags);
        }
      } else {
        if (!p) throw new CloseError(1008, 'anonymous access not supported');
        await this.api.modules.requirePinned(p.id, hash);
        const stored = await this.api.modules.storedProgram(hash);
        if (!stored) throw moduleNotFound();
        program = stored;
      }
    } else {
      throw new CloseError(1008, 'not found');
    }
    let ticket: AnonymousTicket | undefined;
    try {
      if (!p) ticket = this.api.anonymous.admit(address, hash);
    } catch (e) {
      // 1013: try again later (the HTTP API answers 429 with Retry-After).
      if (e instanceof AnonymousLimitError) throw new CloseError(1013, e.message);
      throw e;
    }
    try {
      await this.callAdmitted(ws, messages, hash, program, p, params, pin, setup.persist === true, ticket?.group);
    } finally {
      ticket?.release();
    }
  }

  private async callAdmitted(ws: WebSocket, messages: MessageQueue, hash: string, program: Program, p: Principal | undefined, params: ReturnType<Api['launchParams']>, pin: boolean, persist: boolean, executorGroup: string | undefined): Promise<void> {
    const inst = await this.instances.launch({
      executorGroup,
      principal: p?.id,
      scope: p?.scope,
      module: hash,
      program,
      function: params.fn,
      // `"persist": true` in the setup (our extension, `gate call -p`): kept from the start, so
      // that a program that ends at once is not gone before an update could keep it.
      transient: !persist,
      suspend: false,
      tags: params.instanceTags,
      debugLog: params.debugLog,
      // stream() connects right after this.
      clientConnects: true,
      // With log=*, the program's debug output comes to this client as text
      // messages (our extension); a client that does not read them in time
      // misses some (the log then says how many bytes), rather than the server
      // queueing them without end.
      debugSink: (data) => {
        if (ws.readyState !== WebSocket.OPEN) return true;
        if (ws.bufferedAmount > DEBUG_WEBSOCKET_BACKLOG_BYTES) return false;
        ws.send(JSON.stringify({ debug: Buffer.from(data).toString('utf8') }));
        return true;
      },
    });
    const reply: Record<string, string> = {};
    if (p && pin) reply.location = `/gate-0/module/sha256/${hash}`;
    if (p) reply.instance = inst.id;
    ws.send(JSON.stringify(reply));
    await this.stream(ws, messages, inst, true);
  }

  private async io(ws: WebSocket, id: string): Promise<void> {
    const messages = new MessageQueue(ws);
    const setup = parseSetup(await messages.next('text'));
    const auth = typeof setup.authorization === 'string' && setup.authorization !== '' ? [setup.authorization] : undefined;
    const p = (await this.api.principalOf(auth, true)) as Principal;
    const inst = await this.instances.ready(p.id, id);
    if (!inst.run) {
      ws.send(JSON.stringify({ connected: false }));
      throw new CloseError(1008, 'not connected');
    }
    ws.send(JSON.stringify({ connected: true }));
    await this.stream(ws, messages, inst, false);
  }

  /** The data phase: binary input and output, then the status and a normal close. */
  private async stream(ws: WebSocket, messages: MessageQueue, inst: ServerInstance, call: boolean): Promise<void> {
    const abort = new ClientGone();
    const gone = (): void => {
      abort.abort(new Error('client disconnected'));
      if (call) this.instances.kill(inst);
    };
    ws.on('close', gone);
    // The client may have left while the instance was being launched.
    if (ws.readyState !== WebSocket.OPEN) gone();
    let announced = false;
    const input: AsyncIterable<Uint8Array> = {
      [Symbol.asyncIterator]: () => ({
        next: async () => {
          if (!announced) {
            announced = true;
            if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ status: { state: 'RUNNING' }, input: true }));
          }
          const data = await messages.nextData();
          return data === undefined ? { done: true, value: undefined } : { done: false, value: data };
        },
      }),
    };
    const output: OriginOutput = {
      write: (chunk) =>
        new Promise<void>((resolve) => {
          if (ws.readyState !== WebSocket.OPEN) return resolve();
          ws.send(chunk, { binary: true }, () => resolve());
        }),
      end() {},
    };
    try {
      await this.instances.connect(inst, input, output, abort);
    } catch (e) {
      if (!abort.aborted && !(e instanceof HttpError && e.status === 409) && !(e instanceof OriginClosedError)) {
        // Nobody can reach a call's transient instance any more.
        if (call) this.instances.kill(inst);
        throw e;
      }
    }
    const status: InstanceStatus = call ? await this.instances.wait(inst) : inst.status;
    if (ws.readyState !== WebSocket.OPEN) return;
    ws.send(`${JSON.stringify({ status: statusJson(status) }, null, '\t')}\n`);
    ws.close(1000);
  }
}

function parseSetup(data: Uint8Array): Record<string, unknown> {
  if (data.length > SETUP_MESSAGE_LIMIT) throw new CloseError(1008, 'setup message too large');
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(data).toString('utf8'));
  } catch {
    throw new CloseError(1008, 'setup message is not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new CloseError(1008, 'setup message is not a JSON object');
  return v as Record<string, unknown>;
}

/** Close reasons must fit in a control frame (123 bytes): a longer one is cut, and ends with '…' to say so. */
function truncate(s: string): string {
  const b = Buffer.from(s, 'utf8');
  // (toString drops a character cut in half: U+FFFD would take 3 bytes)
  return b.length <= 123 ? s : `${b.subarray(0, 120).toString('utf8').replace(/\uFFFD$/, '')}…`;
}

/** Messages of a websocket, pulled in order; the socket is paused while too much input waits. */
class MessageQueue {
  private readonly queue: Array<{ data: Uint8Array; binary: boolean }> = [];
  private queued = 0;
  private closed = false;
  private inputEnded = false;
  private waiter: (() => void) | undefined;

  constructor(private readonly ws: WebSocket) {
    ws.on('message', (data: RawData, binary: boolean) => {
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      this.queue.push({ data: buf, binary });
      this.queued += buf.length;
      if (this.queued > INPUT_HIGH_WATER) ws.pause();
      this.wake();
    });
    ws.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  /** The next setup message, which must be of the given kind. */
  async next(kind: 'text' | 'binary'): Promise<Uint8Array> {
    const m = await this.take();
    if (!m) throw new CloseError(1008, 'connection closed during setup');
    if (m.binary !== (kind === 'binary')) throw new CloseError(1003, kind === 'binary' ? 'module content must be a binary message' : 'setup message must be text');
    return m.data;
  }

  /** The next input bytes (text messages are ignored), or undefined at the end. */
  async nextData(): Promise<Uint8Array | undefined> {
    while (!this.inputEnded) {
      const m = await this.take();
      if (!m) return undefined;
      if (!m.binary) continue;
      // The spec has no end-of-input message: an empty binary message is
      // ours (the connection stays open for the program's output).
      if (m.data.length === 0) this.inputEnded = true;
      else return m.data;
    }
    return undefined;
  }

  private async take(): Promise<{ data: Uint8Array; binary: boolean } | undefined> {
    while (this.queue.length === 0) {
      if (this.closed) return undefined;
      await new Promise<void>((r) => (this.waiter = r));
    }
    const m = this.queue.shift()!;
    this.queued -= m.data.length;
    if (this.queued <= INPUT_HIGH_WATER) this.ws.resume();
    return m;
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }
}
