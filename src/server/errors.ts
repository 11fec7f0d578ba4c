import { GateError } from '../errors.js';

/**
 * A request the server answers with an error status: `message` is the public
 * text (spec web-api.md §3.4), sent as the text/plain body when the client
 * accepts text.
 */
export class HttpError extends GateError {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
    options?: { cause?: unknown },
  ) {
    super(`GATE_HTTP_${status}`, message, options);
  }
}

export const badRequest = (message: string): HttpError => new HttpError(400, message);
export const notFound = (message: string): HttpError => new HttpError(404, message);
export const conflict = (message: string): HttpError => new HttpError(409, message);

/** 501 for unknown actions and disallowed combinations; cacheable like the original's. */
export function unsupported(message = 'unsupported action'): HttpError {
  return new HttpError(501, message, { 'Cache-Control': 'public, max-age=3600' });
}

export const moduleNotFound = (): HttpError => notFound('module not found');
export const instanceNotFound = (): HttpError => notFound('instance not found');
