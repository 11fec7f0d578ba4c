/**
 * Typed client of the Gate HTTP/websocket API (spec web-api.md), for remote
 * servers and for the local daemon's Unix socket. node:http is used rather
 * than fetch because calls need response trailers (Gate-Status), streamed
 * request bodies and Unix sockets.
 */
import { createHash } from 'node:crypto';
import { request as httpRequest, STATUS_CODES, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Readable, Writable } from 'node:stream';
import WebSocket from 'ws';
import { ApiError, ConnectionError, ProtocolError, WebSocketCloseError } from './errors.js';
import type { ClientIdentity } from './identity.js';
import { makeToken } from './token.js';
import {
  parseJson,
  parseStatus,
  toInstanceInfo,
  toList,
  toModuleInfo,
  toStatus,
  type InstanceInfo,
  type Json,
  type ModuleInfo,
  type Status,
} from './types.js';

export const API_PATH = '/gate-0/';

/** How requests authenticate. */
export type Auth =
  | { kind: 'none' } // no Authorization (anonymous, or the daemon's implicit local principal)
  | { kind: 'unsigned' } // `alg: none` token for an http loopback server (empty identity file, cli.md §2.2)
  | { kind: 'local' } // `alg: none` token without audience: the local daemon, which knows no address of its own
  | { kind: 'identity'; identity: ClientIdentity }; // EdDSA token signed with the user's key

export interface ClientOptions {
  /** `scheme://authority[/prefix]` of the server; a missing scheme means https. */
  address: string;
  /** Connect to this Unix socket instead (the local daemon); address then only names the audience. */
  socketPath?: string;
  auth?: Auth;
  /** Scopes claimed in every token (spec services.md "scope"). */
  scope?: string[];
}

/** A module on the server: a known module by hash, or a source path such as `/ipfs/Qm…`. */
export type ModuleRef = { id: string } | { source: string };

/** Module bytes sent along with a request; the id (sha256) is computed by moduleId(). */
export interface Upload {
  body: Uint8Array | Readable;
  length: number;
}

export interface InvokeOptions {
  function?: string;
  instanceTags?: string[];
  /** Enable the program's debug log on the server (`log=*`). */
  log?: boolean;
}

export interface CallOptions extends InvokeOptions {
  /** Pin the module (uploads and sources only); needs an identity. */
  pin?: boolean;
  moduleTags?: string[];
  /** Program input (HTTP calls of known modules; websocket calls). */
  input?: Readable;
  /** Program output; not ended by the client. */
  output: Writable;
  /** Aborting closes the connection, which kills the instance. */
  signal?: AbortSignal;
}

export interface CallResult {
  status: Status;
  /** Present for authenticated callers. */
  instance?: string;
  /** Module id when the call pinned it. */
  module?: string;
}

export interface WebSocketCallOptions extends CallOptions {
  /** Called with the instance id as soon as the server has created the instance. */
  onInstance?: (id: string) => void;
  /** Create the instance persistent, so that it is kept when the call ends (authenticated callers). */
  persist?: boolean;
}

export interface LaunchOptions extends InvokeOptions {
  pin?: boolean;
  moduleTags?: string[];
  suspend?: boolean;
  /** Instance id chosen by the client (migration). */
  instance?: string;
}

export interface LaunchResult {
  instance: string;
  module?: string;
}

export interface IoOptions {
  input?: Readable;
  output: Writable;
  /** Receives the program's debug output of a websocket call made with `log` (`{"debug": …}` messages). */
  debug?: Writable;
  signal?: AbortSignal;
}

/** sha256 hex of module bytes: the module's id. */
export function moduleId(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * An unsigned token for the daemon's Unix socket: no `aud` (the daemon is
 * reached by path, so there is no address to name; the claim is optional),
 * the scope sorted as makeToken does.
 */
function localToken(scope: string[]): string {
  const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64url');
  const claims: { exp: number; scope?: string } = { exp: Math.floor(Date.now() / 1000) + 60 };
  const sorted = [...new Set(scope)].sort();
  if (sorted.length > 0) claims.scope = sorted.join(' ');
  return `${b64('{"alg":"none"}')}.${b64(JSON.stringify(claims))}.`;
}

/** Adds the default scheme (https) and drops trailing slashes. */
export function normaliseAddress(address: string): string {
  const withScheme = address.includes('://') ? address : `https://${address}`;
  return withScheme.replace(/\/+$/, '');
}

function modulePath(m: ModuleRef): string {
  if ('id' in m) return `${API_PATH}module/sha256/${encodeURIComponent(m.id)}`;
  if (!m.source.startsWith('/')) throw new ProtocolError(`module source must start with /: ${m.source}`);
  return `${API_PATH}module${m.source.split('/').map(encodeURIComponent).join('/')}`;
}

function instancePath(id: string): string {
  return `${API_PATH}instance/${encodeURIComponent(id)}`;
}

type Query = Array<[string, string]>;

function invokeQuery(q: Query, o: InvokeOptions): void {
  if (o.function) q.push(['function', o.function]);
  for (const t of o.instanceTags ?? []) q.push(['instance-tag', t]);
  if (o.log) q.push(['log', '*']);
}

function moduleTagQuery(q: Query, tags: string[] | undefined): void {
  for (const t of tags ?? []) q.push(['module-tag', t]);
}

function readAll(res: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(Buffer.concat(chunks)));
    res.on('error', reject);
    res.on('aborted', () => reject(new ConnectionError('connection closed before the response was complete')));
  });
}

/** The module id in a `Location: /gate-0/module/sha256/<hex>` header. */
function locationModule(res: IncomingMessage): string | undefined {
  const loc = res.headers['location'];
  if (typeof loc !== 'string') return undefined;
  return loc.slice(loc.lastIndexOf('/') + 1) || undefined;
}

function header(res: IncomingMessage, name: string): string | undefined {
  const v = res.headers[name];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

interface Req {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT';
  path: string;
  query?: Query;
  headers?: OutgoingHttpHeaders;
  body?: Uint8Array | Readable;
  /** Content-Length of a streamed body (else chunked). */
  length?: number;
  /** Ask for the Gate-Status trailer. */
  trailers?: boolean;
  signal?: AbortSignal;
}

export class GateClient {
  /** The server address with scheme; the audience of tokens is `${address}/gate-0/`. */
  readonly address: string;
  readonly socketPath: string | undefined;
  private readonly auth: Auth;

  /** Requests carry no principal (remote anonymous access): nothing can be pinned or kept. */
  get anonymous(): boolean {
    return this.auth.kind === 'none' && this.socketPath === undefined;
  }
  private readonly scope: string[];
  /** Where requests with a body go after following redirects of the API root (cli.md §2.2). */
  private redirected: Promise<string> | undefined;

  constructor(opts: ClientOptions) {
    this.address = normaliseAddress(opts.address);
    this.socketPath = opts.socketPath;
    this.auth = opts.auth ?? { kind: 'none' };
    this.scope = opts.scope ?? [];
  }

  /** The Authorization header value: a fresh token for every request. */
  authorization(): string | undefined {
    const audience = `${this.address}${API_PATH}`;
    switch (this.auth.kind) {
      case 'none':
        return undefined;
      case 'unsigned':
        return `Bearer ${makeToken(undefined, { audience, scope: this.scope })}`;
      case 'identity':
        return `Bearer ${makeToken(this.auth.identity, { audience, scope: this.scope })}`;
      case 'local':
        return `Bearer ${localToken(this.scope)}`;
    }
  }

  private describeServer(): string {
    return this.socketPath ? `the daemon at ${this.socketPath}` : this.address;
  }

  /** A failed connection, with what the user can do about it. */
  private connectionError(e: NodeJS.ErrnoException): ConnectionError {
    return new ConnectionError(`cannot reach ${this.describeServer()}: ${connectionHint(e, this.address, this.socketPath !== undefined)}`, { cause: e });
  }

  /**
   * Requests with a body first ask for the API root and follow its
   * redirects, so that a body is never sent to a URL that only redirects.
   */
  private base(withBody: boolean): Promise<string> {
    if (!withBody || this.socketPath) return Promise.resolve(this.address);
    this.redirected ??= (async () => {
      let url = `${this.address}${API_PATH}`;
      for (let hops = 0; hops < 10; hops++) {
        const res = await this.raw({ method: 'HEAD', path: '' }, url);
        res.resume();
        const loc = res.headers['location'];
        if (res.statusCode && res.statusCode >= 300 && res.statusCode < 400 && typeof loc === 'string') {
          url = new URL(loc, url).toString();
          continue;
        }
        break;
      }
      return url.endsWith(API_PATH) ? url.slice(0, -API_PATH.length) : this.address;
    })();
    return this.redirected;
  }

  /** Sends a request and resolves with the response, whatever its status. */
  private raw(r: Req, fullUrl?: string, base = this.address): Promise<IncomingMessage> {
    const url = new URL(fullUrl ?? `${base}${r.path}`);
    for (const [k, v] of r.query ?? []) url.searchParams.append(k, v);
    // No `Connection: close` (unlike the original client): a server that
    // closes right after answering can make the end of our request body fail
    // with EPIPE although it has read all of it and answered.
    const headers: OutgoingHttpHeaders = { ...r.headers };
    const auth = this.authorization();
    if (auth) headers['Authorization'] = auth;
    if (r.trailers) headers['TE'] = 'trailers';
    if (r.body instanceof Uint8Array) headers['Content-Length'] = r.body.length;
    else if (r.length !== undefined) headers['Content-Length'] = r.length;
    const opts: RequestOptions = { method: r.method, headers };
    if (r.signal) opts.signal = r.signal;
    let req: ClientRequest;
    if (this.socketPath) {
      req = httpRequest({ ...opts, socketPath: this.socketPath, path: url.pathname + url.search, host: 'localhost' });
    } else {
      req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, opts);
    }
    return new Promise((resolve, reject) => {
      let responded = false;
      req.on('response', (res) => {
        responded = true;
        resolve(res);
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        // Once the server has answered, a failing upload (it closed early) is not our error.
        if (responded) return;
        if (e.name === 'AbortError') reject(e);
        else reject(this.connectionError(e));
      });
      const body = r.body;
      if (body === undefined) req.end();
      else if (body instanceof Uint8Array) req.end(body);
      else {
        body.pipe(req);
        body.on('error', (e) => req.destroy(e));
      }
    });
  }

  /** Sends a request; a status other than 200, 201 or 204 becomes an ApiError with the server's text. */
  private async send(r: Req): Promise<IncomingMessage> {
    const base = await this.base(r.body !== undefined);
    const res = await this.raw(r, undefined, base);
    const status = res.statusCode ?? 0;
    if (status === 200 || status === 201 || status === 204) return res;
    if (r.body !== undefined && typeof (r.body as Readable).unpipe === 'function') (r.body as Readable).unpipe();
    const text = (await readAll(res).catch(() => Buffer.alloc(0))).toString('utf8').trim();
    throw new ApiError(status, text || STATUS_CODES[status] || `HTTP status ${status}`);
  }

  private async sendJson(r: Req, what: string): Promise<Json> {
    // No Accept header: the server checks it only when present, and error
    // texts come only to clients that accept text (spec web-api.md §3.3).
    const res = await this.send(r);
    return parseJson((await readAll(res)).toString('utf8'), what);
  }

  private async sendEmpty(r: Req): Promise<IncomingMessage> {
    const res = await this.send(r);
    await readAll(res);
    return res;
  }

  // ---- modules -------------------------------------------------------------

  /** Modules pinned by the caller, sorted by id. */
  async listModules(): Promise<ModuleInfo[]> {
    const j = await this.sendJson({ method: 'POST', path: `${API_PATH}module/sha256/` }, 'module list');
    return toList(j, 'modules', (x) => toModuleInfo(x), 'module list').sort((a, b) => a.module.localeCompare(b.module));
  }

  async moduleInfo(id: string): Promise<ModuleInfo> {
    return toModuleInfo(await this.sendJson({ method: 'POST', path: modulePath({ id }) }, 'module info'));
  }

  /** Streams a pinned module's bytes; length is the announced Content-Length. */
  async downloadModule(id: string): Promise<{ length: number; body: Readable }> {
    const res = await this.send({ method: 'GET', path: modulePath({ id }) });
    const length = Number(res.headers['content-length']);
    if (!Number.isSafeInteger(length) || length < 0) {
      res.resume();
      throw new ProtocolError('module download without Content-Length');
    }
    return { length, body: res };
  }

  /** Uploads and pins a module under its sha256 id (PUT …?action=pin). */
  async uploadModule(id: string, upload: Upload, moduleTags: string[] = []): Promise<void> {
    const query: Query = [['action', 'pin']];
    moduleTagQuery(query, moduleTags);
    await this.sendEmpty({
      method: 'PUT',
      path: modulePath({ id }),
      query,
      headers: { 'Content-Type': 'application/wasm' },
      body: upload.body,
      length: upload.length,
    });
  }

  /** Pins a known module (or fetches and pins a source); returns the module id when the server says it. */
  async pinModule(m: ModuleRef, moduleTags: string[] = []): Promise<string | undefined> {
    const query: Query = [['action', 'pin']];
    moduleTagQuery(query, moduleTags);
    const res = await this.sendEmpty({ method: 'POST', path: modulePath(m), query });
    return locationModule(res) ?? ('id' in m ? m.id : undefined);
  }

  async unpinModule(id: string): Promise<void> {
    await this.sendEmpty({ method: 'POST', path: modulePath({ id }), query: [['action', 'unpin']] });
  }

  // ---- calls and launches ----------------------------------------------------

  /**
   * Calls a module over HTTP (POST …?action=call, `TE: trailers`): with an
   * upload the body is the module, else it is opts.input. The output is
   * streamed to opts.output; the final status comes from the trailer.
   */
  async call(m: ModuleRef, opts: CallOptions & { upload?: Upload }): Promise<CallResult> {
    const query: Query = [['action', 'call']];
    if (opts.pin) query.push(['action', 'pin']);
    invokeQuery(query, opts);
    if (opts.pin) moduleTagQuery(query, opts.moduleTags);
    const headers: OutgoingHttpHeaders = {};
    let body: Uint8Array | Readable | undefined = opts.input;
    let length: number | undefined;
    if (opts.upload) {
      headers['Content-Type'] = 'application/wasm';
      body = opts.upload.body;
      length = opts.upload.length;
    }
    const req: Req = { method: 'POST', path: modulePath(m), query, headers, trailers: true };
    if (body !== undefined) req.body = body;
    if (length !== undefined) req.length = length;
    if (opts.signal) req.signal = opts.signal;
    const res = await this.send(req);
    const result: CallResult = { status: {} };
    const instance = header(res, 'gate-instance');
    if (instance) result.instance = instance;
    const module = locationModule(res);
    if (module) result.module = module;
    await pump(res, opts.output);
    const trailer = res.trailers['gate-status'] ?? header(res, 'gate-status');
    if (trailer === undefined) throw new ProtocolError('the call ended without a Gate-Status trailer');
    result.status = parseStatus(trailer);
    return result;
  }

  /**
   * Calls a module over a websocket (spec web-api.md §11.1), optionally
   * uploading it: the only way to upload a module and still stream input.
   */
  callWebSocket(m: ModuleRef, opts: WebSocketCallOptions & { upload?: Uint8Array }): Promise<CallResult> {
    const query: Query = [['action', 'call']];
    if (opts.pin) query.push(['action', 'pin']);
    invokeQuery(query, opts);
    if (opts.pin) moduleTagQuery(query, opts.moduleTags);
    const first = {
      authorization: this.authorization() ?? '',
      content_type: opts.upload ? 'application/wasm' : '',
      content_length: opts.upload?.length ?? 0,
      ...(opts.persist ? { persist: true } : {}),
    };
    const result: CallResult = { status: {} };
    return this.webSocket(modulePath(m), query, first, opts.upload, opts, (reply) => {
      if (typeof reply['instance'] === 'string' && reply['instance']) {
        result.instance = reply['instance'];
        opts.onInstance?.(reply['instance']);
      }
      if (typeof reply['location'] === 'string') result.module = reply['location'].slice(reply['location'].lastIndexOf('/') + 1);
      return true;
    }).then((status) => ({ ...result, status }));
  }

  /** Creates a persistent instance (POST …?action=launch); with an upload the body is the module. */
  async launch(m: ModuleRef, opts: LaunchOptions & { upload?: Upload } = {}): Promise<LaunchResult> {
    const query: Query = [['action', 'launch']];
    if (opts.pin) query.push(['action', 'pin']);
    if (opts.suspend) query.push(['action', 'suspend']);
    invokeQuery(query, opts);
    if (opts.instance) query.push(['instance', opts.instance]);
    if (opts.pin) moduleTagQuery(query, opts.moduleTags);
    const req: Req = { method: 'POST', path: modulePath(m), query };
    if (opts.upload) {
      req.headers = { 'Content-Type': 'application/wasm' };
      req.body = opts.upload.body;
      req.length = opts.upload.length;
    }
    const res = await this.sendEmpty(req);
    const instance = header(res, 'gate-instance');
    if (!instance) throw new ProtocolError('launch response without Gate-Instance');
    const module = locationModule(res);
    return module ? { instance, module } : { instance };
  }

  // ---- instances -------------------------------------------------------------

  /** The caller's instances, sorted by id. */
  async listInstances(): Promise<InstanceInfo[]> {
    const j = await this.sendJson({ method: 'POST', path: `${API_PATH}instance/` }, 'instance list');
    return toList(j, 'instances', (x) => toInstanceInfo(x), 'instance list').sort((a, b) => a.instance.localeCompare(b.instance));
  }

  async instanceInfo(id: string): Promise<InstanceInfo> {
    return toInstanceInfo(await this.sendJson({ method: 'POST', path: instancePath(id) }, 'instance info'));
  }

  private async instanceAction(id: string, actions: string[], query: Query = []): Promise<IncomingMessage> {
    return this.sendEmpty({ method: 'POST', path: instancePath(id), query: [...actions.map((a): [string, string] => ['action', a]), ...query] });
  }

  private static gateStatus(res: IncomingMessage): Status {
    const h = header(res, 'gate-status');
    if (h === undefined) throw new ProtocolError('response without Gate-Status');
    return parseStatus(h);
  }

  /** Blocks until the instance is not running; its status. */
  async wait(id: string): Promise<Status> {
    return GateClient.gateStatus(await this.instanceAction(id, ['wait']));
  }

  /** Kills; with wait, also waits and returns the status. */
  async kill(id: string, wait: true): Promise<Status>;
  async kill(id: string, wait?: false): Promise<undefined>;
  async kill(id: string, wait = false): Promise<Status | undefined> {
    const res = await this.instanceAction(id, wait ? ['kill', 'wait'] : ['kill']);
    return wait ? GateClient.gateStatus(res) : undefined;
  }

  /** Suspends (which also makes the instance persistent); with wait, returns the status. */
  async suspend(id: string, wait: true): Promise<Status>;
  async suspend(id: string, wait?: false): Promise<undefined>;
  async suspend(id: string, wait = false): Promise<Status | undefined> {
    const res = await this.instanceAction(id, wait ? ['suspend', 'wait'] : ['suspend']);
    return wait ? GateClient.gateStatus(res) : undefined;
  }

  async resume(id: string, opts: { function?: string; log?: boolean } = {}): Promise<void> {
    const query: Query = [];
    invokeQuery(query, opts);
    await this.instanceAction(id, ['resume'], query);
  }

  /** Snapshots a stopped instance into a new pinned module; its id. */
  async snapshot(id: string, moduleTags: string[] = []): Promise<string> {
    const query: Query = [];
    moduleTagQuery(query, moduleTags);
    const res = await this.instanceAction(id, ['snapshot'], query);
    const module = locationModule(res);
    if (!module) throw new ProtocolError('snapshot response without Location');
    return module;
  }

  /**
   * Clones an instance on this server (POST …?action=clone): a copy of its
   * state now, launched under a new id while the original goes on. Returns
   * the copy's id.
   */
  async clone(id: string, opts: { instance?: string; suspend?: boolean; instanceTags?: string[] } = {}): Promise<string> {
    const query: Query = [];
    if (opts.instance) query.push(['instance', opts.instance]);
    for (const t of opts.instanceTags ?? []) query.push(['instance-tag', t]);
    const res = await this.instanceAction(id, opts.suspend ? ['clone', 'suspend'] : ['clone'], query);
    const copy = header(res, 'gate-instance');
    if (!copy) throw new ProtocolError('clone response without Gate-Instance');
    return copy;
  }

  async deleteInstance(id: string): Promise<void> {
    await this.instanceAction(id, ['delete']);
  }

  /**
   * Makes an instance persistent and/or replaces its tags. The body uses the
   * `persist` key the server reads (the reference client's `transient` key is
   * a known bug, spec web-api.md §9.2).
   */
  async update(id: string, change: { persist: boolean; tags: string[] }): Promise<InstanceInfo | undefined> {
    const res = await this.send({
      method: 'POST',
      path: instancePath(id),
      query: [['action', 'update']],
      // The info comes back only when asked for; text keeps error messages coming.
      headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/plain' },
      body: Buffer.from(JSON.stringify({ persist: change.persist, tags: change.tags })),
    });
    const text = (await readAll(res)).toString('utf8');
    return text.trim() ? toInstanceInfo(parseJson(text, 'instance info')) : undefined;
  }

  /** Raw debug request (spec web-api.md §9.4). */
  async debug(id: string, request: Json): Promise<Json> {
    return this.sendJson(
      {
        method: 'POST',
        path: instancePath(id),
        query: [['action', 'debug']],
        headers: { 'Content-Type': 'application/json' },
        body: Buffer.from(JSON.stringify(request)),
      },
      'debug response',
    );
  }

  /**
   * Connects to a running instance's origin over HTTP (POST …?action=io):
   * opts.input is the request body, the output is streamed. The status is
   * the Gate-Status trailer, when the server sends one.
   */
  async io(id: string, opts: IoOptions): Promise<Status | undefined> {
    const req: Req = { method: 'POST', path: instancePath(id), query: [['action', 'io']], trailers: true };
    if (opts.input) req.body = opts.input;
    if (opts.signal) req.signal = opts.signal;
    const res = await this.send(req);
    await pump(res, opts.output);
    const trailer = res.trailers['gate-status'];
    return trailer ? parseStatus(trailer) : undefined;
  }

  /** Connects to a running instance's origin over a websocket (spec web-api.md §11.2). */
  ioWebSocket(id: string, opts: IoOptions): Promise<Status> {
    return this.webSocket(instancePath(id), [['action', 'io']], { authorization: this.authorization() ?? '' }, undefined, opts, (reply) => {
      if (reply['connected'] !== true) throw new WebSocketCloseError(1008, 'connection rejected');
      return true;
    });
  }

  private wsUrl(path: string, query: Query): string {
    const q = new URLSearchParams(query).toString();
    const pathQ = q ? `${path}?${q}` : path;
    if (this.socketPath) return `ws+unix://${this.socketPath}:${pathQ}`;
    return `${this.address.replace(/^http/, 'ws')}${pathQ}`;
  }

  /**
   * One websocket session: the first JSON message (and the module), the
   * server's JSON reply (handed to onReply), then binary input/output until
   * the final `{"status": …}` message and a normal close.
   */
  private webSocket(
    path: string,
    query: Query,
    first: object,
    upload: Uint8Array | undefined,
    io: IoOptions,
    onReply: (reply: { [key: string]: Json }) => boolean,
  ): Promise<Status> {
    return new Promise<Status>((resolve, reject) => {
      const ws = new WebSocket(this.wsUrl(path, query), { perMessageDeflate: false, maxPayload: 0 });
      ws.binaryType = 'nodebuffer';
      let setupDone = false;
      let status: Status | undefined;
      let failure: Error | undefined;
      let settled = false;
      const finish = (e: Error | undefined): void => {
        if (settled) return;
        settled = true;
        stopInput();
        io.signal?.removeEventListener('abort', onAbort);
        if (e) reject(e);
        else resolve(status ?? {});
      };
      const fail = (e: Error): void => {
        failure ??= e;
        ws.terminate();
      };
      const onAbort = (): void => fail(new ConnectionError('the connection was closed by the client'));
      io.signal?.addEventListener('abort', onAbort);

      // Input: one chunk in flight at a time, so a fast producer does not
      // fill memory; the end of input is an empty binary message.
      const input = io.input;
      const onData = (chunk: Buffer): void => {
        if (chunk.length === 0 || ws.readyState !== WebSocket.OPEN) return;
        input!.pause();
        ws.send(chunk, { binary: true }, () => input!.resume());
      };
      const onEnd = (): void => {
        if (ws.readyState === WebSocket.OPEN) ws.send(Buffer.alloc(0), { binary: true });
      };
      const stopInput = (): void => {
        input?.off('data', onData);
        input?.off('end', onEnd);
        input?.pause();
      };

      ws.on('open', () => {
        ws.send(JSON.stringify(first));
        if (upload) ws.send(upload, { binary: true });
      });
      ws.on('unexpected-response', (_req, res) => {
        void readAll(res)
          .catch(() => Buffer.alloc(0))
          .then((b) => {
            const code = res.statusCode ?? 0;
            fail(new ApiError(code, b.toString('utf8').trim() || STATUS_CODES[code] || `HTTP status ${code}`));
          });
      });
      let waitingForDrain = false;
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        if (!setupDone) {
          if (isBinary) return fail(new ProtocolError('binary websocket message before the setup reply'));
          const reply = parseJson(data.toString('utf8'), 'websocket reply');
          if (typeof reply !== 'object' || reply === null || Array.isArray(reply)) return fail(new ProtocolError('websocket reply: not an object'));
          try {
            onReply(reply);
          } catch (e) {
            return fail(e as Error);
          }
          setupDone = true;
          if (input) {
            input.on('data', onData);
            input.on('end', onEnd);
            input.resume();
          }
          return;
        }
        if (isBinary) {
          // Messages already received keep coming after pause(): one drain listener for them all.
          if (!io.output.write(data) && !waitingForDrain) {
            waitingForDrain = true;
            ws.pause();
            io.output.once('drain', () => {
              waitingForDrain = false;
              ws.resume();
            });
          }
          return;
        }
        const msg = parseJson(data.toString('utf8'), 'websocket message');
        if (typeof msg === 'object' && msg !== null && !Array.isArray(msg) && typeof msg['debug'] === 'string') {
          io.debug?.write(msg['debug']);
          return;
        }
        // `{"status":…,"input":true}` only says the program reads input; the
        // final message has the status alone.
        if (typeof msg === 'object' && msg !== null && !Array.isArray(msg) && msg['status'] !== undefined && msg['input'] !== true) {
          status = toStatus(msg['status'], 'websocket status');
        }
      });
      ws.on('error', (e: NodeJS.ErrnoException) => {
        failure ??= this.connectionError(e);
      });
      ws.on('close', (code: number, reason: Buffer) => {
        if (failure) return finish(failure);
        if (code === 1000 || (code === 1005 && status)) return finish(undefined);
        const text = reason.toString('utf8') || `websocket closed with code ${code}`;
        finish(new WebSocketCloseError(code, text));
      });
    });
  }
}

/** TLS errors of a handshake with a server that answers plain HTTP (OpenSSL: "wrong version number"). */
const NOT_TLS = new Set(['EPROTO', 'ERR_SSL_WRONG_VERSION_NUMBER']);

/** Why a connection failed, and what to try (the error code stays in the text for searching). */
export function connectionHint(e: NodeJS.ErrnoException, address: string, local: boolean): string {
  const code = e.code ?? e.message;
  let url: URL | undefined;
  try {
    url = new URL(address);
  } catch {
    url = undefined;
  }
  if (local) {
    if (code === 'ECONNREFUSED' || code === 'ENOENT') return `nobody listens there (${code}); is gate-daemon running?`;
    return code;
  }
  switch (code) {
    case 'ECONNREFUSED':
      return `connection refused (${code}); is gate-server running at ${url?.host ?? address}?`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `unknown host ${url?.hostname ?? address} (${code})`;
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `no route or no answer (${code}); check the address and the network`;
    case 'ECONNRESET':
      return `the server closed the connection (${code})`;
  }
  if (url?.protocol === 'https:' && NOT_TLS.has(code)) {
    return `TLS handshake failed (${code}): the server may not speak TLS; for a plain HTTP server use http://${url.host}${url.pathname === '/' ? '' : url.pathname}`;
  }
  return code;
}

/** Copies a response body to an output that is not ended, with backpressure. */
function pump(res: IncomingMessage, output: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    res.on('data', (c: Buffer) => {
      if (!output.write(c)) {
        res.pause();
        output.once('drain', () => res.resume());
      }
    });
    res.on('end', () => resolve());
    res.on('error', reject);
    res.on('aborted', () => reject(new ConnectionError('connection closed before the response was complete')));
  });
}
