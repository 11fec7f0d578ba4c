/**
 * An executor host for the browser: instances run in a Web Worker, off the
 * page's thread; the page keeps the trusted side (Runtime, services). The
 * worker runs untrusted code, so everything it sends is checked here, as
 * ChildProcessExecutor checks an executor process.
 */
import { DEBUG_CHUNK_BYTES } from '../runtime/debug-limits.js';
import { ExecutorError } from '../runtime/errors.js';
import type { ExecutorSnapshot } from '../runtime/executor.js';
import { RemoteExecutor } from '../runtime/remote-executor.js';
import type { RewindSource } from '../runtime/rewind-copies.js';
import type { GlobalValue } from '../snapshot/state.js';
import type { FromWorker, ToWorker } from './protocol.js';

/** What a snapshot may carry besides the instance's memory (stack, unread input, partial packet). */
const SNAPSHOT_EXTRA_BYTES = 64 * 1024 * 1024;

/** The part of a Web Worker this host uses (a DOM Worker fits). */
export interface WorkerLike {
  postMessage(message: unknown, transfer?: Transferable[]): void;
  addEventListener(type: 'message', listener: (e: MessageEvent) => void): void;
  addEventListener(type: 'error', listener: (e: ErrorEvent) => void): void;
  terminate(): void;
}

export interface WorkerExecutorOptions {
  /**
   * URL of the bundled worker script (gate-executor-worker.js); default: next
   * to the bundle this module is part of.
   */
  workerUrl?: string | URL;
  /** Time slice of CPU-bound instances in milliseconds (default 10). */
  sliceMs?: number;
  /** No instance's memory grows past this many bytes (default: no cap beyond the runtime's limit). */
  instanceMemoryCapBytes?: number;
  /** Told once when the worker is gone (error, protocol violation, close). */
  onExit?(reason: string): void;
}

function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array;
}

function isGlobal(v: unknown): v is GlobalValue {
  if (typeof v !== 'object' || v === null) return false;
  const g = v as Record<string, unknown>;
  switch (g.type) {
    case 0x7f:
      return typeof g.value === 'number' && Number.isInteger(g.value) && g.value >= -(2 ** 31) && g.value < 2 ** 31;
    case 0x7e:
      return typeof g.value === 'bigint' && BigInt.asIntN(64, g.value) === g.value;
    case 0x7d:
      return typeof g.bits === 'number' && Number.isInteger(g.bits) && g.bits >= 0 && g.bits < 2 ** 32;
    case 0x7c:
      return typeof g.bits === 'bigint' && BigInt.asUintN(64, g.bits) === g.bits;
    default:
      return false;
  }
}

/** A snapshot from the worker, checked part by part; throws ExecutorError. */
function checkSnapshot(v: unknown, maxMemoryBytes: number): ExecutorSnapshot {
  const s = v as Partial<Record<keyof ExecutorSnapshot, unknown>> | null;
  if (typeof s !== 'object' || s === null) throw new ExecutorError('worker sent an invalid snapshot');
  if (!isBytes(s.memory) || s.memory.length % 65536 !== 0 || s.memory.length > maxMemoryBytes) {
    throw new ExecutorError('worker sent a snapshot whose memory is not a whole number of pages within the instance limit');
  }
  if (!Array.isArray(s.globals) || !s.globals.every(isGlobal)) throw new ExecutorError('worker sent a snapshot with invalid globals');
  if (s.stack !== undefined && !isBytes(s.stack)) throw new ExecutorError('worker sent a snapshot with an invalid stack');
  if (!Array.isArray(s.calls) || !s.calls.every((c) => typeof c === 'string')) throw new ExecutorError('worker sent a snapshot with invalid calls');
  if (typeof s.monotonicNs !== 'bigint' || s.monotonicNs < 0n || s.monotonicNs >= 2n ** 64n) throw new ExecutorError('worker sent an invalid monotonic time');
  if (!isBytes(s.input) || !isBytes(s.outputTail)) throw new ExecutorError('worker sent a snapshot with invalid buffers');
  const extra = (s.stack?.length ?? 0) + s.input.length + s.outputTail.length;
  if (extra > SNAPSHOT_EXTRA_BYTES) throw new ExecutorError(`worker sent a snapshot with ${extra} bytes besides memory (at most ${SNAPSHOT_EXTRA_BYTES})`);
  // Memory is scanned with wide typed arrays, which need alignment.
  const memory = s.memory.byteOffset % 8 === 0 ? s.memory : s.memory.slice();
  return {
    memory,
    globals: s.globals,
    stack: s.stack,
    calls: s.calls,
    monotonicNs: s.monotonicNs,
    input: s.input,
    outputTail: s.outputTail,
  };
}

/**
 * Runs instances in one Web Worker. Several WorkerExecutors (several
 * workers) can serve one page; each is independent. If the worker fails,
 * its instances end KILLED (INTERNAL).
 */
export class WorkerExecutor extends RemoteExecutor {
  private readonly worker: WorkerLike;
  private readonly onExit: WorkerExecutorOptions['onExit'];

  /** Starts a worker from `opts.workerUrl`, or wraps a worker the page started itself. */
  constructor(opts: WorkerExecutorOptions & { worker?: WorkerLike } = {}) {
    super({ sender: 'executor worker', gone: 'executor worker is gone' });
    this.onExit = opts.onExit;
    if (opts.worker) {
      this.worker = opts.worker;
    } else {
      const url = new URL(opts.workerUrl ?? new URL('./gate-executor-worker.js', import.meta.url), globalThis.location?.href);
      if (opts.sliceMs) url.searchParams.set('slice-ms', String(opts.sliceMs));
      if (opts.instanceMemoryCapBytes) url.searchParams.set('instance-memory-cap', String(Math.floor(opts.instanceMemoryCapBytes)));
      this.worker = new Worker(url, { type: 'module', name: 'gate-executor' });
    }
    this.worker.addEventListener('message', (e) => {
      if (!this.alive) return;
      const m = e.data as FromWorker;
      if (typeof m === 'object' && m !== null && m.t === 'ready') this.markReady();
      else this.onMessage(m);
    });
    this.worker.addEventListener('error', (e) => {
      const reason = `executor worker failed: ${e.message || 'the script could not be loaded or threw'}`;
      this.failReady(new ExecutorError(reason));
      this.fail(reason);
    });
  }

  async loadModule(key: string, bytes: Uint8Array, source?: RewindSource): Promise<void> {
    if (this.hasModule(key)) return;
    await this.ready;
    if (!this.alive) throw new ExecutorError('executor worker is gone');
    await this.requestLoad(key, bytes, source);
  }

  /** Terminates the worker: its instances end KILLED (INTERNAL), retained ones are lost. */
  async close(): Promise<void> {
    this.fail('executor closed');
  }

  protected send(m: ToWorker): void {
    if (this.alive) this.worker.postMessage(m);
  }

  private onMessage(m: FromWorker): void {
    if (typeof m !== 'object' || m === null) return this.fail('executor worker sent a malformed message', true);
    switch (m.t) {
      case 'loaded':
        return this.loadedReply(m.seq, m.error);
      case 'snapshot':
        if (!this.snapshotReply(m.seq, m.error, (maxMemoryBytes) => checkSnapshot(m.snapshot, maxMemoryBytes))) this.violation('a snapshot that was not asked for');
        return;
      case 'fatal':
        return this.fail(`executor worker failed: ${String(m.error).slice(0, 1000)}`);
      case 'packet':
      case 'bind':
      case 'debug':
      case 'stopped':
        return this.instanceReply(m.id, m);
      default:
        return this.violation('an unknown message type');
    }
  }

  protected invalidDebug(data: unknown, dropped: unknown): string | undefined {
    return isBytes(data) && data.length <= DEBUG_CHUNK_BYTES && Number.isSafeInteger(dropped) && (dropped as number) >= 0 ? undefined : 'invalid debug output';
  }

  protected shutDown(reason: string, violation: boolean): void {
    this.worker.terminate();
    try {
      this.onExit?.(violation ? `${reason} (protocol violation)` : reason);
    } catch {
      // a logger's failure is not ours
    }
  }
}
