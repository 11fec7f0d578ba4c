/**
 * A worker thread that prepares modules (runtime/node/prepare-pool.ts):
 * the transform runs here, so that a large or hostile module costs this thread's
 * time, not the server's event loop.
 */
import { parentPort } from 'node:worker_threads';
import type { Profile } from '../../prepare/profile.js';
import { GateError } from '../../errors.js';
import { Program } from '../program.js';
import { FileCache } from './file-cache.js';

export interface PrepareJob {
  id: number;
  /** The bytes of a Program (validated by Program.load where it was made). */
  bytes: Uint8Array;
  profile: Profile;
  cacheDir: string | undefined;
  /** Debugger breakpoints to instrument (code offsets). */
  breakpoints: number[];
}

export type PrepareReply =
  | { id: number; key: string; bytes: Uint8Array; profile: Profile; breakpoints: number[] }
  | { id: number; error: string; code: string | undefined; name: string };

const caches = new Map<string, FileCache>();

parentPort!.on('message', (job: PrepareJob) => {
  void (async (): Promise<PrepareReply> => {
    try {
      const program = Program.loaded(job.bytes);
      let cache: FileCache | undefined;
      if (job.cacheDir !== undefined) {
        cache = caches.get(job.cacheDir);
        if (!cache) caches.set(job.cacheDir, (cache = new FileCache(job.cacheDir)));
      }
      const p = await program.prepare(job.profile, cache, job.breakpoints);
      // Transferred below: it must own its whole buffer.
      const bytes = p.bytes.byteOffset === 0 && p.bytes.byteLength === p.bytes.buffer.byteLength ? p.bytes : p.bytes.slice();
      return { id: job.id, key: p.key, bytes, profile: p.profile, breakpoints: [...p.breakpoints] };
    } catch (e) {
      return { id: job.id, error: e instanceof Error ? e.message : String(e), code: e instanceof GateError ? e.code : undefined, name: e instanceof Error ? e.name : 'Error' };
    }
  })().then((reply) => parentPort!.postMessage(reply, 'bytes' in reply ? [reply.bytes.buffer as ArrayBuffer] : []));
});
