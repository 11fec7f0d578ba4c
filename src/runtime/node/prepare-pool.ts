/**
 * Preparation (binary rewrite + our transform) in worker threads. It is
 * CPU-heavy, synchronous code: tens of seconds for a large module. In a
 * server's own thread it would stall every request; here it costs a worker,
 * is bounded in time, and the results are memoized per Program.
 */
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { GateError } from '../../errors.js';
import type { PreparedModule } from '../../prepare/pipeline.js';
import type { Profile } from '../../prepare/profile.js';
import { preparationReplyError } from '../../prepare/reply-error.js';
import type { Program } from '../program.js';
import type { PrepareJob, PrepareReply } from './prepare-worker-main.js';

const WORKER_MAIN = fileURLToPath(new URL('./prepare-worker-main.js', import.meta.url));

export interface PreparePoolOptions {
  /** Worker threads (default 1: preparation is rare and cached). */
  workers?: number;
  /** A preparation that takes longer fails and its worker is replaced (default 5 minutes). */
  timeoutMs?: number;
  /** Prepared modules on disk (a FileCache directory), shared with other processes. */
  cacheDir?: string;
}

/** Preparation failed in its worker; the message says why (the module's problem unless it timed out). */
export class PreparationError extends GateError {
  constructor(message: string) {
    super('GATE_PREPARATION', message);
  }
}

interface Pending {
  resolve(p: PreparedModule): void;
  reject(e: Error): void;
}

interface Slot {
  worker: Worker;
  busy: number | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
}

export class PreparePool {
  private readonly slots: Slot[] = [];
  private readonly queue: Array<{ job: PrepareJob } & Pending> = [];
  private readonly pending = new Map<number, Pending>();
  private readonly memo = new WeakMap<Program, Map<string, Promise<PreparedModule>>>();
  private seq = 0;
  private closed = false;

  constructor(private readonly opts: PreparePoolOptions = {}) {
    // Started now rather than on the first job: a thread and its modules
    // take a good part of a second on a busy machine, which a newcomer's
    // first call would otherwise wait for.
    this.startWorker();
  }

  /** The program's prepared module (memoized per Program and profile). */
  prepare(program: Program, profile: Profile, breakpoints: readonly number[] = []): Promise<PreparedModule> {
    let byOptions = this.memo.get(program);
    if (!byOptions) this.memo.set(program, (byOptions = new Map()));
    const key = breakpoints.length ? `${profile}:${breakpoints.join(',')}` : profile;
    let p = byOptions.get(key);
    if (!p) {
      p = this.run(program.bytes, profile, [...breakpoints]);
      byOptions.set(key, p);
      p.catch(() => byOptions.delete(key));
    }
    return p;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const q of this.queue.splice(0)) q.reject(new PreparationError('the server is shutting down'));
    await Promise.all(this.slots.splice(0).map((s) => s.worker.terminate()));
  }

  private run(bytes: Uint8Array, profile: Profile, breakpoints: number[]): Promise<PreparedModule> {
    if (this.closed) return Promise.reject(new PreparationError('the server is shutting down'));
    return new Promise((resolve, reject) => {
      const job: PrepareJob = { id: ++this.seq, bytes, profile, cacheDir: this.opts.cacheDir, breakpoints };
      this.queue.push({ job, resolve, reject });
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.queue.length) {
      let slot = this.slots.find((s) => s.busy === undefined);
      if (!slot && this.slots.length < (this.opts.workers ?? 1)) slot = this.startWorker();
      if (!slot) return;
      const { job, resolve, reject } = this.queue.shift()!;
      this.pending.set(job.id, { resolve, reject });
      slot.busy = job.id;
      const timeoutMs = this.opts.timeoutMs ?? 300_000;
      slot.timer = setTimeout(() => this.fail(slot!, new PreparationError(`preparing the module took longer than ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
      slot.worker.postMessage(job);
    }
  }

  private startWorker(): Slot {
    const worker = new Worker(WORKER_MAIN);
    const slot: Slot = { worker, busy: undefined, timer: undefined };
    worker.on('message', (reply: PrepareReply) => {
      const pending = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      clearTimeout(slot.timer);
      slot.busy = undefined;
      if (pending) {
        if ('error' in reply) pending.reject(preparationReplyError(reply, (m) => new PreparationError(m)));
        else pending.resolve({ key: reply.key, bytes: reply.bytes, profile: reply.profile, fromCache: false, breakpoints: reply.breakpoints });
      }
      this.dispatch();
    });
    worker.on('error', (e) => this.fail(slot, new PreparationError(`the preparation worker failed: ${e.message}`)));
    worker.on('exit', () => {
      if (slot.busy !== undefined) this.fail(slot, new PreparationError('the preparation worker exited'));
    });
    worker.unref();
    this.slots.push(slot);
    return slot;
  }

  /** The job of a slot failed as a whole (timeout, crash): reject it and replace the worker. */
  private fail(slot: Slot, error: Error): void {
    clearTimeout(slot.timer);
    const id = slot.busy;
    slot.busy = undefined;
    const index = this.slots.indexOf(slot);
    if (index >= 0) this.slots.splice(index, 1);
    void slot.worker.terminate();
    if (id !== undefined) {
      this.pending.get(id)?.reject(error);
      this.pending.delete(id);
    }
    if (!this.closed) this.dispatch();
  }
}

