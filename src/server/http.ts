/** Request and response helpers shared by the API handlers (spec web-api.md §3.3). */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpError } from './errors.js';

const JSON_TYPES = ['application/json', 'application/*', '*/*'];
const WASM_TYPES = ['application/wasm', 'application/*', '*/*'];
const TEXT_TYPES = ['text/plain', 'text/*', '*/*'];

function mediaTypes(header: string): string[] {
  return header.split(',').map((t) => t.split(';')[0]!.trim().toLowerCase());
}

function accepts(req: IncomingMessage, types: string[]): boolean {
  const h = req.headers.accept;
  if (h === undefined) return true;
  return mediaTypes(h).some((t) => types.includes(t));
}

export const acceptsJson = (req: IncomingMessage): boolean => accepts(req, JSON_TYPES);
export const acceptsWasm = (req: IncomingMessage): boolean => accepts(req, WASM_TYPES);
export const acceptsText = (req: IncomingMessage): boolean => accepts(req, TEXT_TYPES);

export function requireJson(req: IncomingMessage): void {
  if (!acceptsJson(req)) throw new HttpError(406, 'not acceptable');
}

/** The request's media type (parameters stripped), or undefined. */
export function contentType(req: IncomingMessage): string | undefined {
  const all = req.headersDistinct['content-type'];
  if (!all) return undefined;
  if (all.length > 1) throw new HttpError(400, 'duplicate header: Content-Type');
  const t = all[0]!.split(';')[0]!.trim().toLowerCase();
  return t === '' ? undefined : t;
}

export function requireContentType(req: IncomingMessage, type: string | undefined): void {
  if (contentType(req) !== type) throw new HttpError(415, 'unsupported content type');
}

/** Whether the request has a body (a non-zero or unknown length). */
export function hasBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const len = req.headers['content-length'];
  return len !== undefined && len !== '0';
}

export function requireNoBody(req: IncomingMessage): void {
  if (hasBody(req)) throw new HttpError(413, 'request content must be empty');
}

/** Compact JSON of the API data model: zero values omitted (protobuf-JSON, §3.3). */
export function sendJson(res: ServerResponse, value: unknown, status = 200): void {
  const body = JSON.stringify(value) ;
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

/** Tab-indented JSON with a trailing newline (static JSON: API info, source list). */
export function sendStaticJson(res: ServerResponse, value: unknown, headers: Record<string, string> = {}): void {
  const body = `${JSON.stringify(value, null, '\t')}\n`;
  res.writeHead(200, { ...headers, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

export function sendEmpty(res: ServerResponse, status = 200, headers: Record<string, string> = {}): void {
  res.writeHead(status, headers);
  res.end();
}

export function sendError(req: IncomingMessage, res: ServerResponse, e: HttpError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers: Record<string, string> = { ...e.headers };
  if (acceptsText(req) && req.method !== 'HEAD') {
    const body = `${e.message}\n`;
    headers['Content-Type'] = 'text/plain; charset=utf-8';
    headers['Content-Length'] = String(Buffer.byteLength(body));
    res.writeHead(e.status, headers);
    res.end(body);
  } else {
    res.writeHead(e.status, headers);
    res.end();
  }
}

/**
 * Reads a request body of at most `limit` bytes; a longer one fails with
 * `tooLarge` (the spec's size-limit messages) without reading the rest.
 */
export async function readBody(req: IncomingMessage, limit: number, tooLarge: () => HttpError): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) throw tooLarge();
      chunks.push(chunk);
    }
  } catch (e) {
    if (e instanceof HttpError) throw e;
    throw new HttpError(400, 'content decode error', {}, { cause: e });
  }
  return Buffer.concat(chunks, size);
}

/** Resolves when `res` can take more (drain) or is gone (close): what a writer waits for after `write` returned false. */
export function drainedOrClosed(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
