/**
 * An executor host for the browser: instances run in a Web Worker, off the
 * page's thread; the page keeps the trusted side (Runtime, services). The
 * worker runs untrusted code, so everything it sends is checked here, as
 * ChildProcessExecutor checks an executor process.
 */
import { MAX_PACKET_SIZE } from '../abi/packet.js';
import { OUTPUT_WINDOW } from '../runtime/channel.js';
import { DEBUG_CHUNK_BYTES } from '../runtime/debug-limits.js';
import { ExecutorError, InstanceStateError } from '../runtime/errors.js';
import { isValidBinding, parseStatus } from '../runtime/executor-checks.js';
import type { Executor, ExecutorSnapshot, InstanceEvents, InstanceSpec, KillReason } from '../runtime/executor.js';
import { internalFailure } from '../runtime/status.js';
import type { GlobalValue } from '../snapshot/state.js';
import type { FromWorker, ToWorker } from './protocol.js';

/** Packet bytes an instance may have unacknowledged: its output window plus up to two packets (see PacketChannel). */
const MAX_UNACKED_OUTPUT = OUTPUT_WINDOW + 2 * MAX_PACKET_SIZE;

/** What a snapshot may carry besides the instance's memory (stack, unread input, partial packet). */
const SNAPSHOT_EXTRA_BYTES = 64 * 1024 * 1024;

/** How long a killed instance may take to stop before the whole worker is terminated. */
const KILL_GRACE_MS = 5000;

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
export class WorkerExecutor implements Executor {
  private readonly worker: WorkerLike;
  private readonly instances = new Map<string, InstanceEvents>();
  private readonly unacked = new Map<string, number>();
  /** The most memory each instance created here (and not released) may have: bounds its snapshot. */
  private readonly memoryBytes = new Map<string, number>();
  private readonly retained = new Set<string>();
  private readonly loaded = new Set<string>();
  private readonly loading = new Map<number, { resolve(): void; reject(e: Error): void }>();
  private readonly snapshots = new Map<number, { id: string; resolve(s: ExecutorSnapshot): void; reject(e: Error): void }>();
  private readonly killTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly ready: Promise<void>;
  private readonly onExit: WorkerExecutorOptions['onExit'];
  private seq = 0;
  private exited = false;

  /** Starts a worker from `opts.workerUrl`, or wraps a worker the page started itself. */
  constructor(opts: WorkerExecutorOptions & { worker?: WorkerLike } = {}) {
    this.onExit = opts.onExit;
    if (opts.worker) {
      this.worker = opts.worker;
    } else {
      const url = new URL(opts.workerUrl ?? new URL('./gate-executor-worker.js', import.meta.url), globalThis.location?.href);
      if (opts.sliceMs) url.searchParams.set('slice-ms', String(opts.sliceMs));
      if (opts.instanceMemoryCapBytes) url.searchParams.set('instance-memory-cap', String(Math.floor(opts.instanceMemoryCapBytes)));
      this.worker = new Worker(url, { type: 'module', name: 'gate-executor' });
    }
    let markReady!: () => void;
    let failReady!: (e: Error) => void;
    this.ready = new Promise((res, rej) => {
      markReady = res;
      failReady = rej;
    });
    this.ready.catch(() => undefined);
    this.worker.addEventListener('message', (e) => {
      if (this.exited) return;
      const m = e.data as FromWorker;
      if (typeof m === 'object' && m !== null && m.t === 'ready') markReady();
      else this.onMessage(m);
    });
    this.worker.addEventListener('error', (e) => {
      const reason = `executor worker failed: ${e.message || 'the script could not be loaded or threw'}`;
      failReady(new ExecutorError(reason));
      this.fail(reason);
    });
  }

  /** Whether the worker still serves. */
  get alive(): boolean {
    return !this.exited;
  }

  /** Instances running or retained here. */
  get load(): number {
    let n = this.instances.size;
    for (const id of this.retained) if (!this.instances.has(id)) n++;
    return n;
  }

  /** Resolves once the worker is ready for work (rejects if it failed to start). */
  started(): Promise<void> {
    return this.ready;
  }

  async loadModule(key: string, bytes: Uint8Array): Promise<void> {
    if (this.loaded.has(key)) return;
    await this.ready;
    if (this.exited) throw new ExecutorError('executor worker is gone');
    const seq = ++this.seq;
    await new Promise<void>((resolve, reject) => {
      this.loading.set(seq, { resolve, reject });
      this.send({ t: 'load', seq, key, bytes });
    });
    this.loaded.add(key);
  }

  hasModule(key: string): boolean {
    return this.loaded.has(key);
  }

  createInstance(spec: InstanceSpec, events: InstanceEvents): void {
    if (this.exited) {
      queueMicrotask(() => events.stopped(internalFailure('executor worker is gone')));
      return;
    }
    if (this.instances.has(spec.id)) throw new InstanceStateError(`instance ${spec.id} is already running in this executor`);
    this.instances.set(spec.id, events);
    this.memoryBytes.set(spec.id, spec.memoryPages.maximum * 65536);
    if (spec.retain) this.retained.add(spec.id);
    this.send({ t: 'create', spec });
  }

  deliver(id: string, packet: Uint8Array): void {
    this.send({ t: 'deliver', id, packet });
  }

  ack(id: string, bytes: number): void {
    const left = (this.unacked.get(id) ?? 0) - bytes;
    if (left > 0) this.unacked.set(id, left);
    else this.unacked.delete(id);
    this.send({ t: 'ack', id, bytes });
  }

  suspend(id: string): void {
    this.send({ t: 'suspend', id });
  }

  snapshot(id: string): Promise<ExecutorSnapshot> {
    if (this.exited) return Promise.reject(new ExecutorError('executor worker is gone'));
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.snapshots.set(seq, { id, resolve, reject });
      this.send({ t: 'snapshot', seq, id });
    });
  }

  release(id: string): void {
    this.retained.delete(id);
    if (!this.instances.has(id)) this.memoryBytes.delete(id);
    this.send({ t: 'release', id });
  }

  kill(id: string, reason?: KillReason): void {
    // A program that never reaches a check point cannot hold the worker forever.
    if (this.instances.has(id) && !this.killTimers.has(id)) {
      this.killTimers.set(id, setTimeout(() => this.fail(`instance ${id} did not stop within ${KILL_GRACE_MS} ms of being killed`), KILL_GRACE_MS));
    }
    this.send(reason === undefined ? { t: 'kill', id } : { t: 'kill', id, trap: reason.trap, message: reason.message });
  }

  /** Terminates the worker: its instances end KILLED (INTERNAL), retained ones are lost. */
  async close(): Promise<void> {
    this.fail('executor closed');
  }

  private send(m: ToWorker): void {
    if (!this.exited) this.worker.postMessage(m);
  }

  private onMessage(m: FromWorker): void {
    if (typeof m !== 'object' || m === null) return this.fail('executor worker sent a malformed message', true);
    switch (m.t) {
      case 'loaded': {
        const pending = this.loading.get(m.seq);
        this.loading.delete(m.seq);
        if (typeof m.error === 'string') pending?.reject(new ExecutorError(`executor could not compile the module: ${m.error.slice(0, 1000)}`));
        else pending?.resolve();
        return;
      }
      case 'snapshot': {
        const pending = this.snapshots.get(m.seq);
        this.snapshots.delete(m.seq);
        if (!pending) return this.fail('executor worker sent a snapshot that was not asked for', true);
        if (typeof m.error === 'string') return pending.reject(new InstanceStateError(m.error.slice(0, 1000)));
        try {
          pending.resolve(checkSnapshot(m.snapshot, this.memoryBytes.get(pending.id) ?? 0));
        } catch (e) {
          pending.reject(e as Error);
          this.fail('executor worker sent an invalid snapshot', true);
        }
        return;
      }
      case 'fatal':
        return this.fail(`executor worker failed: ${String(m.error).slice(0, 1000)}`);
      case 'packet':
      case 'bind':
      case 'debug':
      case 'stopped':
        break;
      default:
        return this.fail('executor worker sent an unknown message type', true);
    }
    const id = String(m.id);
    const ev = this.instances.get(id);
    if (!ev) return;
    switch (m.t) {
      case 'packet': {
        if (!isBytes(m.packet) || m.packet.length > MAX_PACKET_SIZE) return this.fail('executor worker sent an invalid packet', true);
        const unacked = (this.unacked.get(id) ?? 0) + m.packet.length;
        if (unacked > MAX_UNACKED_OUTPUT) return this.fail(`executor worker sent ${unacked} bytes of packets not yet acknowledged (at most ${MAX_UNACKED_OUTPUT})`, true);
        this.unacked.set(id, unacked);
        ev.packet(m.packet);
        return;
      }
      case 'bind':
        if (!isValidBinding(m.code, m.name)) return this.fail('executor worker sent an invalid service binding', true);
        ev.bind(m.code, m.name);
        return;
      case 'debug':
        if (!isBytes(m.data) || m.data.length > DEBUG_CHUNK_BYTES || !Number.isSafeInteger(m.dropped) || m.dropped < 0) {
          return this.fail('executor worker sent invalid debug output', true);
        }
        ev.debug(m.data, m.dropped);
        return;
      case 'stopped': {
        this.instances.delete(id);
        this.unacked.delete(id);
        if (!this.retained.has(id)) this.memoryBytes.delete(id);
        clearTimeout(this.killTimers.get(id));
        this.killTimers.delete(id);
        const status = parseStatus(m.status);
        if (!status) {
          ev.stopped(internalFailure('executor reported an invalid status'));
          return this.fail('executor worker sent an invalid status', true);
        }
        ev.stopped(status);
        return;
      }
    }
  }

  private fail(reason: string, violation = false): void {
    if (this.exited) return;
    this.exited = true;
    this.worker.terminate();
    try {
      this.onExit?.(violation ? `${reason} (protocol violation)` : reason);
    } catch {
      // a logger's failure is not ours
    }
    this.retained.clear();
    for (const p of this.loading.values()) p.reject(new ExecutorError(reason));
    this.loading.clear();
    for (const p of this.snapshots.values()) p.reject(new ExecutorError(reason));
    this.snapshots.clear();
    this.memoryBytes.clear();
    this.unacked.clear();
    for (const t of this.killTimers.values()) clearTimeout(t);
    this.killTimers.clear();
    const lost = [...this.instances.values()];
    this.instances.clear();
    for (const ev of lost) ev.stopped(internalFailure(reason));
  }
}
