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

export class SourceError extends GateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GATE_SOURCE', message, options);
  }
}

const PRINTABLE = /^[\x21-\x7e]+$/;

/** `source.http = [{name, addr}]`: GET `<addr>/<name>/<path>` with a Range header. */
export function httpSource(name: string, addr: string): ModuleSource {
  const base = addr.replace(/\/+$/, '');
  return {
    async fetch(path: string, maxSize: number): Promise<Uint8Array> {
      if (!PRINTABLE.test(path)) throw moduleNotFound();
      let res: Response;
      try {
        res = await fetch(`${base}/${name}/${path}`, { headers: { Range: `bytes=0-${maxSize - 1}` }, redirect: 'error' });
      } catch (e) {
        throw new SourceError(`source ${name} could not be reached`, { cause: e });
      }
      if (res.status === 404) {
        await res.body?.cancel();
        throw moduleNotFound();
      }
      const tooLarge = () => new HttpError(400, 'program size limit exceeded');
      if (res.status === 200) {
        const len = res.headers.get('content-length');
        if (len === null) throw new SourceError(`source ${name} sent no Content-Length`);
        if (Number(len) > maxSize) {
          await res.body?.cancel();
          throw tooLarge();
        }
      } else if (res.status === 206) {
        const m = /^bytes 0-(\d+)\/(\d+)$/.exec(res.headers.get('content-range') ?? '');
        if (!m || Number(m[1]) + 1 !== Number(m[2])) {
          await res.body?.cancel();
          if (m && Number(m[2]) > maxSize) throw tooLarge();
          throw new SourceError(`source ${name} sent a partial module`);
        }
      } else {
        await res.body?.cancel();
        throw new SourceError(`source ${name} answered ${res.status}`);
      }
      const body = new Uint8Array(await res.arrayBuffer());
      if (body.length > maxSize) throw tooLarge();
      return body;
    },
  };
}
