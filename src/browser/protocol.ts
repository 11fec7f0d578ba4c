/**
 * Messages between the page (WorkerExecutor) and the executor worker
 * (executor-worker.ts). They travel by postMessage (structured clone), so
 * specs and snapshots go as they are: bigints and byte arrays included. The
 * worker runs untrusted code: the page checks everything that comes back.
 */
import type { ExecutorSnapshot, InstanceSpec } from '../runtime/executor.js';

export type ToWorker =
  | { t: 'load'; seq: number; key: string; bytes: Uint8Array }
  | { t: 'create'; spec: InstanceSpec }
  | { t: 'deliver'; id: string; packet: Uint8Array }
  | { t: 'ack'; id: string; bytes: number }
  | { t: 'suspend'; id: string }
  | { t: 'snapshot'; seq: number; id: string }
  | { t: 'release'; id: string }
  | { t: 'kill'; id: string; trap?: number; message?: string };

export type FromWorker =
  | { t: 'ready' }
  | { t: 'loaded'; seq: number; error?: string }
  | { t: 'packet'; id: string; packet: Uint8Array }
  | { t: 'bind'; id: string; code: number; name: string }
  | { t: 'debug'; id: string; data: Uint8Array; dropped: number }
  | { t: 'stopped'; id: string; status: unknown }
  | { t: 'snapshot'; seq: number; snapshot?: ExecutorSnapshot; error?: string }
  | { t: 'fatal'; error: string };
