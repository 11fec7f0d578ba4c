/**
 * The `ipfs` module source (spec web-api.md §8, the original's
 * gate/source/ipfs): modules named `/ipfs/<hash>` are fetched through an IPFS
 * node's HTTP API (`source.ipfs.addr`), `POST <addr>/api/v0/cat`.
 */
import { HttpError, moduleNotFound } from './errors.js';
import { readExactly, SourceError, type ModuleSource } from './sources.js';

/** The source's name: module URIs are `/ipfs/<hash>`. */
export const IPFS_SOURCE_NAME = 'ipfs';

/** `source.ipfs.addr`: `http(s)://host[:port]` of an IPFS node's API. */
export function ipfsSource(addr: string): ModuleSource {
  const base = addr.replace(/\/+$/, '');
  return {
    async fetch(hash: string, maxSize: number): Promise<Uint8Array> {
      // The original's canonical form: letters and digits only (a CID), nothing else.
      if (!/^[0-9A-Za-z]+$/.test(hash)) throw moduleNotFound();
      const query = new URLSearchParams({ arg: `/${IPFS_SOURCE_NAME}/${hash}`, length: String(maxSize + 1) });
      let res: Response;
      try {
        res = await fetch(`${base}/api/v0/cat?${query}`, { method: 'POST', redirect: 'error' });
      } catch (e) {
        throw new SourceError('source ipfs could not be reached', { cause: e });
      }
      if (res.status === 404) {
        await res.body?.cancel();
        throw moduleNotFound();
      }
      if (res.status !== 200) {
        await res.body?.cancel();
        throw new SourceError(`source ipfs answered ${res.status}`);
      }
      const declared = res.headers.get('x-content-length');
      if (declared === null || !/^\d+$/.test(declared)) {
        await res.body?.cancel();
        throw new SourceError('source ipfs sent no X-Content-Length');
      }
      const length = Number(declared);
      if (length > maxSize) {
        await res.body?.cancel();
        throw new HttpError(400, 'program size limit exceeded');
      }
      return readExactly(res, length, IPFS_SOURCE_NAME);
    },
  };
}
