/**
 * Instances as HTTP endpoints (docs/server.md "Endpoints"): requests to
 * /gate-0/endpoint/<instance-id>/… go to the instance listening there
 * through the `endpoint` service, as a stream carrying the request head
 * and body; the program's response head and body come back the same way.
 *
 * Nothing after the instance id is interpreted: it goes to the program as
 * sent, so no path reaches the server's own routes. The server keeps the
 * framing (Content-Length, chunked), refuses requests it cannot bound, and
 * counts the requests in progress per principal.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { encodeRequestHead, type HeaderList, type ResponseHead } from '../service/endpoint-head.js';
import { EndpointClosedError, type EndpointExchange, type EndpointHub } from '../service/endpoint.js';
import { HttpError } from './errors.js';
import { drainedOrClosed, sendError } from './http.js';
import { instanceIdProblem } from './instance-id.js';

export const ENDPOINT_PATH = '/gate-0/endpoint';

export interface EndpointLimits {
  /** Requests in progress at once (waiting for the program included) for all endpoints of one principal. */
  maxRequests: number;
  /** Largest request body (bytes, declared by Content-Length). */
  maxBodySize: number;
  /** How long one exchange may take from its arrival to the end of the response (ms). */
  timeoutMs: number;
}

export const DEFAULT_ENDPOINT_LIMITS: EndpointLimits = { maxRequests: 16, maxBodySize: 1024 * 1024, timeoutMs: 30_000 };

/**
 * Set on every endpoint response: its page runs in an opaque origin (not
 * the server's, which serves the API), and its type is not sniffed.
 */
const ENDPOINT_RESPONSE_HEADERS: HeaderList = [
  ['Content-Security-Policy', 'sandbox allow-scripts allow-forms'],
  ['X-Content-Type-Options', 'nosniff'],
];

/** Hop-by-hop request headers: about this connection, not for the program. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-connection', 'http2-settings']);

const RETRY_AFTER_S = '1';

export interface EndpointHttpOptions {
  hub: EndpointHub;
  /** The server's identity: tokens for it are never passed to programs. */
  identity: string;
  limits: EndpointLimits;
  /** Whether the principal's instance `id` exists and is not running (a suspended listener's requests get 503 then). */
  stopped(principal: string, id: string): boolean;
}

export class EndpointHttp {
  private readonly inProgress = new Map<string, number>();

  constructor(private readonly o: EndpointHttpOptions) {}

  /** Whether a request path (raw, as sent) is an endpoint's. */
  static matches(url: string): boolean {
    return url === ENDPOINT_PATH || url.startsWith(`${ENDPOINT_PATH}/`) || url.startsWith(`${ENDPOINT_PATH}?`);
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      await this.exchange(req, res);
    } catch (e) {
      if (!(e instanceof HttpError)) throw e;
      // An unread body is not waited for: the connection closes after the answer.
      if (!req.complete) res.setHeader('Connection', 'close');
      sendError(req, res, e);
    }
  }

  private async exchange(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const rest = url.slice(ENDPOINT_PATH.length + 1);
    const cut = rest.search(/[/?]/);
    const id = cut < 0 ? rest : rest.slice(0, cut);
    const target = cut < 0 ? '' : rest.slice(cut);
    if (id === '' || instanceIdProblem(id) !== undefined) throw notFound();
    if (!target.startsWith('/')) {
      res.writeHead(301, { Location: `${ENDPOINT_PATH}/${id}/${target}` });
      res.end();
      return;
    }
    const found = this.o.hub.find(id);
    if (!found) throw notFound();
    if ('suspendedFor' in found) {
      if (this.o.stopped(found.suspendedFor, id)) throw new HttpError(503, 'the instance is suspended; retry when it runs', { 'Retry-After': RETRY_AFTER_S });
      this.o.hub.forget(id);
      throw notFound();
    }
    if (req.headers['transfer-encoding'] !== undefined) throw new HttpError(411, 'an endpoint request body needs a Content-Length');
    const bodySize = Number(req.headers['content-length'] ?? '0');
    if (bodySize > this.o.limits.maxBodySize) throw new HttpError(413, `an endpoint request body may have at most ${this.o.limits.maxBodySize} bytes`);
    const head = encodeRequestHead({ method: req.method ?? 'GET', target, headers: requestHeaders(req.rawHeaders, this.o.identity), bodySize });
    if (!head) throw new HttpError(431, 'request header fields too large');

    const principal = found.listener.principal;
    const n = this.inProgress.get(principal) ?? 0;
    if (n >= this.o.limits.maxRequests) throw new HttpError(503, 'too many requests in progress for this endpoint\'s owner; retry', { 'Retry-After': RETRY_AFTER_S });
    this.inProgress.set(principal, n + 1);
    try {
      await this.serve(found.listener.serve.bind(found.listener), head, req, res);
    } finally {
      const left = (this.inProgress.get(principal) ?? 1) - 1;
      if (left > 0) this.inProgress.set(principal, left);
      else this.inProgress.delete(principal);
    }
  }

  private async serve(serve: (x: EndpointExchange, signal: AbortSignal) => Promise<void>, head: Uint8Array, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const abort = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      abort.abort(new Error('endpoint exchange timed out'));
    }, this.o.limits.timeoutMs);
    const onClose = (): void => {
      if (!res.writableFinished) abort.abort(new Error('client disconnected'));
    };
    res.on('close', onClose);
    let answered = false;
    let ended = false;
    const exchange: EndpointExchange = {
      input: requestInput(head, req),
      head: (h: ResponseHead) => {
        if (res.headersSent || res.destroyed) return;
        try {
          res.writeHead(h.status, [...h.headers, ...ENDPOINT_RESPONSE_HEADERS].flat());
          answered = true;
        } catch {
          // Checked by the service already; should Node still refuse the head, this client alone gets nothing.
          res.destroy();
        }
      },
      body: {
        write(chunk: Uint8Array): Promise<void> | void {
          if (res.destroyed || !answered) return;
          if (res.write(chunk)) return;
          return drainedOrClosed(res);
        },
        end() {
          if (!answered || res.destroyed) return;
          ended = true;
          res.end();
        },
      },
    };
    try {
      await serve(exchange, abort.signal);
    } catch (e) {
      if (!(e instanceof EndpointClosedError)) throw e;
      if (res.headersSent) return void res.destroy();
      throw e.suspended
        ? new HttpError(503, 'the instance was suspended before it answered; retry when it runs', { 'Retry-After': RETRY_AFTER_S })
        : new HttpError(503, 'the instance stopped before it answered');
    } finally {
      clearTimeout(timer);
      res.off('close', onClose);
    }
    if (res.destroyed) return;
    if (!answered) throw timedOut ? new HttpError(504, 'the program did not answer in time') : new HttpError(502, 'the program did not answer');
    // Timed out, or the instance ended, in the middle of the body: the client must not take it as complete.
    if (!ended) res.destroy();
  }
}

function notFound(): HttpError {
  return new HttpError(404, 'endpoint not found');
}

/**
 * The request's header fields for the program: lower-case names, in order;
 * hop-by-hop ones left out, and so is an Authorization with a token for this
 * server's API (a client that sends its API credentials to everything under
 * the server's address must not hand them to a program).
 */
function requestHeaders(raw: string[], identity: string): HeaderList {
  const out: HeaderList = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    if (HOP_BY_HOP.has(name) || (name === 'authorization' && isTokenFor(value, identity))) continue;
    out.push([name, value]);
  }
  return out;
}

/** Whether an Authorization value is a bearer JWT whose audience is `identity` (its signature is not checked: it is dropped either way). */
function isTokenFor(value: string, identity: string): boolean {
  const m = /^\s*bearer\s+[A-Za-z0-9_-]+\.([A-Za-z0-9_-]+)\.[A-Za-z0-9_-]*\s*$/i.exec(value);
  if (!m) return false;
  try {
    const aud = (JSON.parse(Buffer.from(m[1]!, 'base64url').toString('utf8')) as { aud?: unknown }).aud;
    return aud === identity || (Array.isArray(aud) && aud.includes(identity));
  } catch {
    return false;
  }
}

/** The program's input: the request head, then the body as the client sends it (pulled only as the program grants credit). */
async function* requestInput(head: Uint8Array, req: IncomingMessage): AsyncGenerator<Uint8Array> {
  yield head;
  for await (const chunk of req as AsyncIterable<Buffer>) yield new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}
