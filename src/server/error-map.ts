import { EntryError } from '../abi/entry.js';
import { InstanceStateError } from '../runtime/errors.js';
import { PreparationError } from '../runtime/node/prepare-pool.js';
import { OriginClosedError } from '../service/origin.js';
import { SnapshotError } from '../snapshot/errors.js';
import { DuplicateInstanceError } from '../store/errors.js';
import { ModuleError } from '../wasm/errors.js';
import { AuthError } from './auth/errors.js';
import { HttpError } from './errors.js';
import { SourceError } from './sources.js';

/**
 * The HTTP answer for an error (spec web-api.md §3.4). Anything not known to
 * be the client's mistake is a 500 with a generic text; `internal` tells the
 * caller to log it.
 */
export function toHttpError(e: unknown): { error: HttpError; internal: boolean } {
  if (e instanceof HttpError) return { error: e, internal: e.status >= 500 && e.status !== 501 && e.status !== 503 };
  if (e instanceof AuthError) {
    return { error: new HttpError(e.status, e.message, e.wwwAuthenticate ? { 'WWW-Authenticate': e.wwwAuthenticate } : {}), internal: false };
  }
  if (e instanceof EntryError) return { error: new HttpError(404, e.message), internal: false };
  if (e instanceof ModuleError || e instanceof SnapshotError) return { error: new HttpError(400, e.message), internal: false };
  // A module that cannot be prepared within the time limit is treated as too complex.
  if (e instanceof PreparationError) return { error: new HttpError(400, e.message), internal: false };
  if (e instanceof InstanceStateError) return { error: new HttpError(409, e.message), internal: false };
  if (e instanceof DuplicateInstanceError) return { error: new HttpError(409, 'duplicate instance id'), internal: false };
  // The source's fault, not the client's nor ours: logged, and named in the answer.
  if (e instanceof SourceError) return { error: new HttpError(502, e.message), internal: true };
  if (e instanceof OriginClosedError) return { error: new HttpError(409, ''), internal: false };
  return { error: new HttpError(500, 'internal error', {}, { cause: e }), internal: true };
}
