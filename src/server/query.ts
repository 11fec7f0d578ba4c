import { badRequest, HttpError } from './errors.js';

/**
 * The query string of an API request, decoded strictly like Go's
 * url.ParseQuery (spec web-api.md §3.2): bad escapes and semicolons are
 * errors, every parameter must be consumed by the handler.
 */
export class Query {
  private readonly values = new Map<string, string[]>();
  /** Whether the request had a query string at all (feature detection, §3.2). */
  readonly present: boolean;

  constructor(raw: string | null) {
    this.present = raw !== null;
    if (!raw) return;
    for (const part of raw.split('&')) {
      if (part === '') continue;
      if (part.includes(';')) throw badRequest('query string decode error');
      const eq = part.indexOf('=');
      const key = decode(eq < 0 ? part : part.slice(0, eq));
      const value = decode(eq < 0 ? '' : part.slice(eq + 1));
      const list = this.values.get(key);
      if (list) list.push(value);
      else this.values.set(key, [value]);
    }
  }

  static fromUrl(url: string): Query {
    const q = url.indexOf('?');
    return new Query(q < 0 ? null : url.slice(q + 1));
  }

  get isEmpty(): boolean {
    return this.values.size === 0;
  }

  has(name: string): boolean {
    return this.values.has(name);
  }

  /** All values of a repeatable parameter (consumes it). */
  all(name: string): string[] {
    const v = this.values.get(name) ?? [];
    this.values.delete(name);
    return v;
  }

  /** A single-valued parameter (consumes it); given twice is an error. */
  one(name: string): string | undefined {
    const v = this.values.get(name);
    if (!v) return undefined;
    if (v.length > 1) throw badRequest('duplicate query parameter');
    this.values.delete(name);
    return v[0];
  }

  /** After a handler took what it understands: anything left is an error. */
  finish(): void {
    if (this.values.size) throw badRequest('unexpected query parameters');
  }
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    throw badRequest('query string decode error');
  }
}

const FUNCTION_NAME = /^[A-Za-z0-9\-._]{1,31}$/;

/**
 * The `function` parameter: empty means none (spec §3.2). The web API's
 * name rule (web-api.md §3.2) is not the daemon's: the original daemon took
 * any name over D-Bus (its ABI test program has exports longer than 31
 * characters), so the local API leaves the check to the module's exports.
 */
export function takeFunction(q: Query, local = false): string | undefined {
  const f = q.one('function');
  if (!f) return undefined;
  if (!local && !FUNCTION_NAME.test(f)) throw badRequest(`invalid function name: ${JSON.stringify(f)}`);
  return f;
}

/** The `log` parameter: only `*` (debug log on) is supported. */
export function takeLog(q: Query): boolean {
  const v = q.one('log');
  if (v === undefined) return false;
  if (v !== '*') throw new HttpError(501, `unsupported log argument: ${JSON.stringify(v)}`);
  return true;
}

/** The set of actions (repetition is harmless, §9.2). */
export function takeActions(q: Query): Set<string> {
  return new Set(q.all('action'));
}
