/**
 * Messages between the page (WorkerExecutor) and the executor worker
 * (executor-worker.ts). They travel by postMessage (structured clone), so
 * specs and snapshots go as they are: bigints and byte arrays included. The
 * worker runs untrusted code: the page checks everything that comes back.
 */
import type { ExecutorSnapshot } from '../runtime/executor.js';
import type { ExecutorRequest } from '../runtime/remote-executor.js';

/** The requests of RemoteExecutor, as they are (structured clone keeps their bytes and bigints). */
export type ToWorker = ExecutorRequest;

export type FromWorker =
  | { t: 'ready' }
  | { t: 'loaded'; seq: number; error?: string }
  | { t: 'packet'; id: string; packet: Uint8Array }
  | { t: 'bind'; id: string; code: number; name: string }
  | { t: 'debug'; id: string; data: Uint8Array; dropped: number }
  | { t: 'stopped'; id: string; status: unknown; trapFrames?: unknown }
  | { t: 'snapshot'; seq: number; snapshot?: ExecutorSnapshot; error?: string }
  | { t: 'fatal'; error: string };
