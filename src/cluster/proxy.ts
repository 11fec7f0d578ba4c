/**
 * Forwarding a request to the server of the cluster that owns its instance
 * (docs/cluster.md): HTTP requests are replayed with their body streamed
 * both ways (io included) and trailers passed on; websocket upgrades are
 * spliced at the TCP level after the upgrade request is replayed. Every
 * forwarded request carries HOP_HEADER, and a request that has it is never
 * forwarded again (no loops while ownership changes).
 */
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { ED25519_PREFIX, decodeBase64Url } from '../server/auth/principal.js';

export const HOP_HEADER = 'gate-cluster-hop';

/** Hop-by-hop headers (RFC 9110 §7.6.1) that are not forwarded. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te'];

/**
 * The principal a request's bearer token names, read without verifying it:
 * for choosing where to forward only. The owner verifies the token (and
 * records its nonce) as for any request, so a forged token gains nothing.
 */
export function claimedPrincipal(authorization: string | undefined): string | undefined {
  const m = /^Bearer\s+([A-Za-z0-9_-]+)\./i.exec(authorization ?? '');
  if (!m) return undefined;
  const bytes = decodeBase64Url(m[1]!);
  if (!bytes) return undefined;
  try {
    const header = JSON.parse(Buffer.from(bytes).toString('utf8')) as { jwk?: { x?: unknown } } | null;
    const x = header?.jwk?.x;
    return typeof x === 'string' && /^[A-Za-z0-9_-]{43}$/.test(x) ? ED25519_PREFIX + x : undefined;
  } catch {
    return undefined;
  }
}

/** The instance id of `/gate-0/instance/<id>` (undefined for other paths). */
export function instancePathId(url: string | undefined): string | undefined {
  const path = (url ?? '/').split('?')[0]!;
  const m = /^\/gate-0\/instance\/([^/]+)$/.exec(path);
  if (!m) return undefined;
  try {
    return decodeURIComponent(m[1]!);
  } catch {
    return undefined;
  }
}

/** The instance id of `/gate-0/endpoint/<id>/…` (undefined for other paths). */
export function endpointPathId(url: string | undefined): string | undefined {
  const m = /^\/gate-0\/endpoint\/([^/?]+)(?:[/?]|$)/.exec(url ?? '/');
  if (!m) return undefined;
  try {
    return decodeURIComponent(m[1]!);
  } catch {
    return undefined;
  }
}

/** A request that creates a persistent instance: POST /gate-0/module/<source>/<key> with action=launch. */
export function isLaunch(req: IncomingMessage): boolean {
  if (req.method !== 'POST') return false;
  const url = req.url ?? '/';
  if (!url.startsWith('/gate-0/module/')) return false;
  const q = url.indexOf('?');
  return q >= 0 && new URLSearchParams(url.slice(q + 1)).getAll('action').includes('launch');
}

/** Replays `req` on `base` (a server's advertised URL) and streams its answer back; resolves when the exchange is over. */
export function forwardHttp(req: IncomingMessage, res: ServerResponse, base: string, from: string): Promise<void> {
  const target = new URL(req.url ?? '/', base);
  const headers: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP_BY_HOP.includes(k)) headers[k] = v;
  headers[HOP_HEADER] = from;
  return new Promise<void>((resolve) => {
    const upstream = (target.protocol === 'https:' ? httpsRequest : httpRequest)(target, { method: req.method, headers }, (answer) => {
      const back: OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(answer.headers)) if (v !== undefined && !HOP_BY_HOP.includes(k)) back[k] = v;
      res.writeHead(answer.statusCode ?? 502, back);
      res.flushHeaders();
      answer.pipe(res, { end: false });
      answer.on('end', () => {
        if (Object.keys(answer.trailers).length > 0) res.addTrailers(answer.trailers as Record<string, string>);
        res.end();
        resolve();
      });
      answer.on('error', () => {
        res.destroy();
        resolve();
      });
    });
    upstream.on('error', () => {
      if (!res.headersSent) {
        res.writeHead(502, { 'Content-Type': 'text/plain; charset=utf-8', 'Retry-After': '1' });
        res.end('the server running this instance cannot be reached; retry\n');
      } else res.destroy();
      resolve();
    });
    // The client went away: so does the forwarded request (an io stream ends at the owner too).
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
      resolve();
    });
    upstream.flushHeaders();
    req.pipe(upstream);
  });
}

/** Splices a websocket upgrade request to `base`: the upgrade request is replayed there and the two connections joined. */
export function forwardUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, base: string, from: string): void {
  const target = new URL(base);
  const port = Number(target.port || (target.protocol === 'https:' ? 443 : 80));
  const upstream = target.protocol === 'https:' ? tlsConnect({ host: target.hostname, port, servername: target.hostname }) : netConnect(port, target.hostname);
  const lines = [`${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1`];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (req.rawHeaders[i]!.toLowerCase() === HOP_HEADER) continue;
    lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
  }
  lines.push(`${HOP_HEADER}: ${from}`);
  upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
  if (head.length > 0) upstream.write(head);
  const end = (): void => {
    upstream.destroy();
    socket.destroy();
  };
  upstream.on('error', () => {
    if (socket.writable) socket.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    end();
  });
  socket.on('error', end);
  upstream.on('close', end);
  socket.on('close', end);
  upstream.pipe(socket);
  socket.pipe(upstream);
}
