/**
 * `gate.computer/localhost` (spec services.md §8): programs make HTTP
 * requests to the operator's own web service. A CALL carries a FlatBuffers
 * `Call{Request}`; the reply, a `Response`, carries the request's position in
 * the queue of unanswered requests as its index, since requests complete out
 * of order. Only the method, path, query, Host (the uri's hostname) and
 * Content-Type reach the server; only the status, Content-Type and body come
 * back.
 */
import { request as httpRequest, Agent as HttpAgent, type IncomingMessage, type ClientRequest } from 'node:http';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import { callPacket, Domain, HEADER_SIZE, MAX_PACKET_SIZE, packetContent, packetDomain, readHeader } from '../../abi/packet.js';
import { AbiViolation } from '../../abi/trap.js';
import type { ServiceFactory, ServiceInstanceConfig } from '../api.js';
import { defineService } from '../extension.js';
import { ServiceStateError, VarintReader, VarintWriter } from '../varint.js';
import { decodeCall, encodeResponse, FlatBufferError, RESPONSE_OVERHEAD, type LocalhostRequest, type LocalhostResponse } from './flat.js';
import { GateError } from '../../errors.js';

export const LOCALHOST_SERVICE_NAME = 'gate.computer/localhost';

/** Requests in flight per program instance; more wait (the program blocks in io). At most 256 (the index is a byte). */
export const MAX_LOCALHOST_REQUESTS = 10;

/**
 * A request not answered completely within this time gets 502: a hung or
 * dripping server holds a program's calls (and its suspension, which waits
 * for a call blocked on a full queue) no longer than this.
 */
export const LOCALHOST_REQUEST_TIMEOUT_MS = 60_000;

/** `service.localhost.addr` is not a usable address. */
export class LocalhostAddressError extends GateError {
  constructor(message: string) {
    super('GATE_CONFIG', `service.localhost.addr: ${message}`);
  }
}

/** Where the requests go. */
export interface LocalhostTarget {
  scheme: 'http' | 'https';
  /** Hostname (IPv6 without brackets); undefined with a socket. */
  hostname?: string;
  port?: number;
  socketPath?: string;
  /** The Host header when a request's uri names none. */
  defaultHost: string;
}

/** Parses `http://host[:port][/]`, `https://host[:port][/]` or `unix:/path` (as the original's New). */
export function parseLocalhostAddr(addr: string): LocalhostTarget {
  if (addr.startsWith('unix:')) {
    const path = addr.slice('unix:'.length);
    if (path.startsWith('//')) throw new LocalhostAddressError(`a unix address has no host: ${JSON.stringify(addr)} (use unix:/path/to/socket)`);
    if (!path.startsWith('/')) throw new LocalhostAddressError(`a unix address needs an absolute socket path: ${JSON.stringify(addr)}`);
    return { scheme: 'http', socketPath: path, defaultHost: 'localhost' };
  }
  let u: URL;
  try {
    u = new URL(addr);
  } catch {
    throw new LocalhostAddressError(`not an absolute URL: ${JSON.stringify(addr)} (use http://host[:port], https://host[:port] or unix:/path)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new LocalhostAddressError(`unsupported scheme ${JSON.stringify(u.protocol)} (use http, https or unix)`);
  if (u.hostname === '') throw new LocalhostAddressError(`no host in ${JSON.stringify(addr)}`);
  if (u.pathname !== '/' || u.search !== '' || u.hash !== '' || u.username !== '' || u.password !== '') {
    throw new LocalhostAddressError(`an address with a path, query or user is not supported: ${JSON.stringify(addr)}`);
  }
  return {
    scheme: u.protocol === 'https:' ? 'https' : 'http',
    hostname: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: u.port === '' ? undefined : Number(u.port),
    defaultHost: u.host,
  };
}

/** What a request's uri becomes: Host and request target, or undefined for 400 (the original's rules). */
export function splitUri(uri: string): { host: string | undefined; path: string } | undefined {
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(uri)) return undefined; // absolute
  let rest = uri.replace(/#.*$/s, '');
  let host: string | undefined;
  if (rest.startsWith('//')) {
    const end = rest.slice(2).search(/[/?]/);
    const authority = end < 0 ? rest.slice(2) : rest.slice(2, 2 + end);
    rest = end < 0 ? '' : rest.slice(2 + end);
    // A bare hostname: no port, no user, no brackets (it becomes the Host header).
    if (!/^[A-Za-z0-9._~!$&'()*+,;=-]*$/.test(authority)) return undefined;
    host = authority === '' ? undefined : authority;
  }
  const q = rest.indexOf('?');
  let path = q < 0 ? rest : rest.slice(0, q);
  const query = q < 0 ? '' : rest.slice(q);
  if (!path.startsWith('/')) path = `/${path}`;
  const target = path + query;
  // What may appear in a request line (no spaces, controls or non-ASCII: they would have to be escaped).
  if (!/^[\x21-\x7e]*$/.test(target)) return undefined;
  return { host, path: target };
}

/** HTTP token characters (a method). */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Performs requests for every instance of the service (one agent: connections are reused). */
export class LocalhostClient {
  private readonly agent: HttpAgent;
  private readonly timeoutMs: number;

  /** `timeoutMs`: see LOCALHOST_REQUEST_TIMEOUT_MS (shorter in tests). */
  constructor(readonly target: LocalhostTarget, options: { timeoutMs?: number } = {}) {
    this.timeoutMs = options.timeoutMs ?? LOCALHOST_REQUEST_TIMEOUT_MS;
    const opts = { keepAlive: true, maxFreeSockets: 16 };
    this.agent = target.scheme === 'https' ? new HttpsAgent(opts) : new HttpAgent(opts);
  }

  /** The Response for a request; never throws (failures are 400 or 502 as in the original). */
  async perform(req: LocalhostRequest, maxResponseSize: number, signal: AbortSignal): Promise<LocalhostResponse> {
    const method = req.method === '' ? 'GET' : req.method;
    const split = splitUri(req.uri);
    if (!split || !TOKEN.test(method) || /[\r\n\0]/.test(req.contentType)) return { statusCode: 400 };
    const headers: Record<string, string> = { Host: split.host ?? this.target.defaultHost };
    if (req.contentType !== '') headers['Content-Type'] = req.contentType;
    if (req.body.length > 0 || !['GET', 'HEAD', 'DELETE', 'OPTIONS'].includes(method)) headers['Content-Length'] = String(req.body.length);
    let creq: ClientRequest | undefined;
    const deadline = setTimeout(() => creq?.destroy(new Error('the server did not answer in time')), this.timeoutMs);
    try {
      return await this.exchange(req, method, split.path, headers, maxResponseSize, signal, (r) => (creq = r));
    } finally {
      clearTimeout(deadline);
    }
  }

  private async exchange(req: LocalhostRequest, method: string, path: string, headers: Record<string, string>, maxResponseSize: number, signal: AbortSignal, started: (r: ClientRequest) => void): Promise<LocalhostResponse> {
    let res: IncomingMessage;
    try {
      res = await new Promise<IncomingMessage>((resolve, reject) => {
        const request = this.target.scheme === 'https' ? httpsRequest : httpRequest;
        const creq = request({
          method,
          path,
          headers,
          agent: this.agent,
          signal,
          ...(this.target.socketPath !== undefined ? { socketPath: this.target.socketPath } : { hostname: this.target.hostname, port: this.target.port }),
        });
        started(creq);
        creq.on('response', resolve);
        creq.on('error', reject);
        creq.end(req.body.length > 0 ? req.body : undefined);
      });
    } catch {
      return { statusCode: 502 };
    }
    const contentType = res.headers['content-type'];
    const space = maxResponseSize - (contentType ? Buffer.byteLength(contentType) + 1 : 0);
    const declared = res.headers['content-length'];
    if (declared !== undefined && Number(declared) > space) {
      res.destroy();
      return { statusCode: 502 };
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        size += chunk.length;
        // More than fits in a reply: stop reading at once (the server may send without end).
        if (size > space) {
          res.destroy();
          return { statusCode: 502 };
        }
        chunks.push(chunk);
      }
    } catch {
      return { statusCode: 502 };
    }
    if (!res.complete) return { statusCode: 502 };
    return { statusCode: res.statusCode ?? 502, contentType: contentType || undefined, body: Buffer.concat(chunks, size) };
  }

  close(): void {
    this.agent.destroy();
  }
}

interface InFlight {
  /** The program's whole CALL packet (kept for the snapshot). */
  packet: Uint8Array;
  abort: AbortController;
}

/**
 * Snapshot buffer (as the original): uvarint count of requests in flight,
 * those CALL packets, uvarint count of replies not yet sent, those packets.
 * This implementation hands replies over at once, so it writes none; it
 * reads them (an original's snapshot) and sends them first.
 */
function encodeState(requests: readonly Uint8Array[]): Uint8Array {
  if (requests.length === 0) return new Uint8Array(0);
  const w = new VarintWriter().varint(requests.length);
  for (const r of requests) w.bytes(r);
  return w.varint(0).finish();
}

function readPackets(r: VarintReader, what: string): Uint8Array[] {
  const n = r.varint();
  if (n > MAX_LOCALHOST_REQUESTS) throw new ServiceStateError(`localhost state has ${n} ${what}, more than ${MAX_LOCALHOST_REQUESTS}`);
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    if (r.remaining < HEADER_SIZE) throw new ServiceStateError(`localhost state: ${what} ${i} is truncated`);
    const { size, domain } = readHeader(r.bytes, r.pos);
    if (size < HEADER_SIZE || size > MAX_PACKET_SIZE || domain !== Domain.Call) throw new ServiceStateError(`localhost state: ${what} ${i} is not a CALL packet`);
    out.push(r.bytesView(size).slice());
  }
  return out;
}

export function decodeState(state: Uint8Array): { requests: Uint8Array[]; replies: Uint8Array[] } {
  if (state.length === 0) return { requests: [], replies: [] };
  const r = new VarintReader(state);
  const requests = readPackets(r, 'requests');
  const replies = readPackets(r, 'replies');
  if (r.remaining !== 0) throw new ServiceStateError('localhost state has trailing bytes');
  return { requests, replies };
}

function decodeRequest(packet: Uint8Array): LocalhostRequest | undefined {
  try {
    return decodeCall(packetContent(packet));
  } catch (e) {
    if (e instanceof FlatBufferError) throw new AbiViolation(`${LOCALHOST_SERVICE_NAME}: the call is not a FlatBuffers Call: ${e.message}`);
    throw e;
  }
}

/** The service for `client`'s server. */
export function localhostService(client: LocalhostClient): ServiceFactory {
  return defineService({
    name: LOCALHOST_SERVICE_NAME,
    revision: '0',
    create(config: ServiceInstanceConfig, snapshot) {
      const saved = snapshot ? decodeState(snapshot) : { requests: [], replies: [] };
      const inFlight: InFlight[] = [];
      let stopped = false;
      let room: (() => void) | undefined;
      /** A call waiting for room: it was sent, so it belongs in the snapshot too. */
      let waiting: Uint8Array | undefined;
      const state = (): Uint8Array => encodeState([...inFlight.map((r) => r.packet), ...(waiting ? [waiting] : [])]);
      const maxResponseSize = config.maxSendSize - HEADER_SIZE - RESPONSE_OVERHEAD;

      const start = (packet: Uint8Array, req: LocalhostRequest | undefined): void => {
        const entry: InFlight = { packet, abort: new AbortController() };
        inFlight.push(entry);
        const done = (content: Uint8Array): void => {
          if (stopped) return; // suspended: the request stays in the snapshot
          const index = inFlight.indexOf(entry);
          inFlight.splice(index, 1);
          config.send(callPacket(config.code, content, index));
          const wake = room;
          room = undefined;
          wake?.();
        };
        if (req === undefined) {
          // A Call without a Request: an empty reply (as the original), in order with the others.
          queueMicrotask(() => done(new Uint8Array(0)));
          return;
        }
        void client.perform(req, maxResponseSize, entry.abort.signal).then((res) => done(encodeResponse(res)));
      };

      for (const p of saved.replies) config.send(callPacket(config.code, packetContent(p), readHeader(p).index));
      for (const p of saved.requests) start(p, decodeRequest(p));

      return {
        handle(packet) {
          if (stopped || packetDomain(packet) !== Domain.Call) return;
          const req = decodeRequest(packet);
          const copy = packet.slice();
          if (inFlight.length < MAX_LOCALHOST_REQUESTS) return start(copy, req);
          // Full: the packet is held until one completes, which holds the program's output back.
          waiting = copy;
          return (async () => {
            while (inFlight.length >= MAX_LOCALHOST_REQUESTS && !stopped) await new Promise<void>((r) => (room = r));
            if (stopped) return;
            waiting = undefined;
            start(copy, req);
          })();
        },
        checkpoint() {
          return state();
        },
        shutdown(suspend) {
          stopped = true;
          for (const r of inFlight) r.abort.abort();
          room?.();
          return suspend ? state() : undefined;
        },
      };
    },
  });
}
