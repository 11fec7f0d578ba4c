/**
 * Entry point of the preparation Web Worker (bundled as
 * gate-prepare-worker.js): the binary rewrite and our transform run here, so
 * that preparing a large module does not freeze the page. No program runs in
 * this worker. Prepared modules are memoized here by their key.
 */
import { GateError } from '../errors.js';
import { MemoryCache } from '../prepare/cache.js';
import { Program } from '../runtime/program.js';
import type { PrepareReply, PrepareRequest } from './worker-preparer.js';

interface WorkerScope {
  postMessage(message: PrepareReply, transfer: Transferable[]): void;
  addEventListener(type: 'message', listener: (e: MessageEvent<PrepareRequest>) => void): void;
}
const scope = globalThis as unknown as WorkerScope;
const cache = new MemoryCache();

async function handle(job: PrepareRequest): Promise<PrepareReply> {
  try {
    const program = await Program.load(job.bytes, job.limits);
    const p = await program.prepare(job.profile, cache, job.breakpoints);
    // Sent as a copy: the cache keeps the original.
    return { id: job.id, key: p.key, bytes: p.bytes.slice(), profile: p.profile, breakpoints: p.breakpoints };
  } catch (e) {
    return { id: job.id, error: e instanceof Error ? e.message : String(e), code: e instanceof GateError ? e.code : undefined };
  }
}

scope.addEventListener('message', (e) => {
  void handle(e.data).then((reply) => scope.postMessage(reply, 'bytes' in reply ? [reply.bytes.buffer as ArrayBuffer] : []));
});
