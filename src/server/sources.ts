/**
 * Module sources (spec web-api.md §8): modules fetched by URI from a
 * configured origin, then known by their hash. The `http` kind is built in.
 */
import { GateError } from '../errors.js';
import { HttpError, moduleNotFound } from './errors.js';

export interface ModuleSource {
  /** Fetches the module at `path` (below the source's name), at most `maxSize` bytes. */
  fetch(path: string, maxSize: number): Promise<Uint8Array>;
}

/** The source failed or answered something that is not a module (502). */
export class SourceError extends GateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GATE_SOURCE', message, options);
  }
}

const PRINTABLE = /^[\x21-\x7e]+$/;

/**
 * The URL of `path` below `<addr>/<name>/`, or undefined when it would not
 * stay there. `path` is already decoded (the API decoded the request path),
 * so every segment is encoded again: a `%2e%2e`, `?`, `#` or `\` the client
 * sent encoded reaches the source as the literal characters it named, never
 * as a dot segment, query or separator the URL parser would act on. The
 * resolved URL is checked too, whatever the encoding did.
 */
export function sourceUrl(addr: string, name: string, path: string): URL | undefined {
  const base = new URL(`${addr.replace(/\/+$/, '')}/${encodeURIComponent(name)}/`);
  const segments = path.split('/');
  if (segments.some((s) => s === '.' || s === '..')) return undefined;
  // './' first: a first segment like `http:` is a path, never a scheme.
  const url = new URL(`./${segments.map(encodeURIComponent).join('/')}`, base);
  if (url.origin !== base.origin || !url.pathname.startsWith(base.pathname) || url.pathname === base.pathname) return undefined;
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') return undefined;
  return url;
}

/** `source.http = [{name, addr}]`: GET `<addr>/<name>/<path>` with a Range header. */
export function httpSource(name: string, addr: string): ModuleSource {
  return {
    async fetch(path: string, maxSize: number): Promise<Uint8Array> {
      if (!PRINTABLE.test(path)) throw moduleNotFound();
      const url = sourceUrl(addr, name, path);
      if (!url) throw moduleNotFound();
      let res: Response;
      try {
        res = await fetch(url, { headers: { Range: `bytes=0-${maxSize - 1}` }, redirect: 'error' });
      } catch (e) {
        throw new SourceError(`source ${name} could not be reached`, { cause: e });
      }
      if (res.status === 404) {
        await res.body?.cancel();
        throw moduleNotFound();
      }
      const tooLarge = () => new HttpError(400, 'program size limit exceeded');
      let length: number;
      if (res.status === 200) {
        const len = res.headers.get('content-length');
        if (len === null || !/^\d+$/.test(len)) {
          await res.body?.cancel();
          throw new SourceError(`source ${name} sent no Content-Length`);
        }
        length = Number(len);
      } else if (res.status === 206) {
        const m = /^bytes 0-(\d+)\/(\d+)$/.exec(res.headers.get('content-range') ?? '');
        if (!m || Number(m[1]) + 1 !== Number(m[2])) {
          await res.body?.cancel();
          if (m && Number(m[2]) > maxSize) throw tooLarge();
          throw new SourceError(`source ${name} sent a partial module`);
        }
        length = Number(m[2]);
      } else {
        await res.body?.cancel();
        throw new SourceError(`source ${name} answered ${res.status}`);
      }
      if (length > maxSize) {
        await res.body?.cancel();
        throw tooLarge();
      }
      return readExactly(res, length, name);
    },
  };
}

/**
 * Reads a response body of exactly `length` bytes into one buffer, stopping
 * (and dropping the connection) as soon as it has more: a source cannot make
 * the server buffer more than it declared, whatever it sends.
 */
export async function readExactly(res: Response, length: number, source: string): Promise<Uint8Array> {
  const mismatch = (): SourceError => new SourceError(`source ${source} sent a body that does not match its declared length ${length}`);
  const out = new Uint8Array(length);
  let size = 0;
  const reader = res.body?.getReader();
  if (!reader) {
    if (length === 0) return out;
    throw mismatch();
  }
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (size + value.length > length) throw mismatch();
      out.set(value, size);
      size += value.length;
    }
  } catch (e) {
    await reader.cancel().catch(() => undefined);
    if (e instanceof SourceError) throw e;
    throw new SourceError(`source ${source}: the module could not be read`, { cause: e });
  } finally {
    reader.releaseLock();
  }
  if (size !== length) throw mismatch();
  return out;
}
