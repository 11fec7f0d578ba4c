/**
 * Preparation off the page's thread: a Runtime `preparer` that sends each
 * program to a Web Worker (prepare-worker.ts), where the binary rewrite and
 * our transform run. Results are memoized per Program and profile.
 */
import { GateError } from '../errors.js';
import type { PreparedModule } from '../prepare/pipeline.js';
import type { Profile } from '../prepare/profile.js';
import type { Program } from '../runtime/program.js';
import { preparationReplyError } from '../prepare/reply-error.js';
import type { ModuleLimits } from '../wasm/validate.js';
import type { WorkerLike } from './worker-executor.js';

export interface PrepareRequest {
  id: number;
  bytes: Uint8Array;
  limits: ModuleLimits;
  profile: Profile;
  /** Debugger breakpoints to instrument (sorted). */
  breakpoints: readonly number[];
}

export type PrepareReply =
  | { id: number; key: string; bytes: Uint8Array; profile: Profile; breakpoints: readonly number[] }
  | { id: number; error: string; code: string | undefined };

/** Preparation failed for a reason other than the module (e.g. its worker died). */
export class BrowserPreparationError extends GateError {
  constructor(message: string) {
    super('GATE_PREPARATION', message);
  }
}

export interface WorkerPreparerOptions {
  /** URL of gate-prepare-worker.js; default: next to the bundle this module is part of. */
  workerUrl?: string | URL;
  /** Acceptance limits the worker loads programs with (give the Runtime's). */
  limits: ModuleLimits;
  /** Or a worker the page started itself. */
  worker?: WorkerLike;
}

/**
 * Use as `new Runtime({ ..., preparer: preparer.prepare })` (the method is
 * bound). `close()` terminates the worker; pending preparations fail.
 */
export class WorkerPreparer {
  private readonly worker: WorkerLike;
  private readonly pending = new Map<number, { resolve(p: PreparedModule): void; reject(e: Error): void }>();
  /** By program, then by profile and breakpoint set. */
  private readonly memo = new WeakMap<Program, Map<string, Promise<PreparedModule>>>();
  private seq = 0;
  private failed: Error | undefined;

  constructor(private readonly opts: WorkerPreparerOptions) {
    this.worker =
      opts.worker ??
      new Worker(new URL(opts.workerUrl ?? new URL('./gate-prepare-worker.js', import.meta.url), globalThis.location?.href), { type: 'module', name: 'gate-prepare' });
    this.worker.addEventListener('message', (e) => {
      const reply = e.data as PrepareReply;
      const p = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if (!p) return;
      if ('error' in reply) p.reject(preparationReplyError(reply, (m) => new BrowserPreparationError(m)));
      else p.resolve({ key: reply.key, bytes: reply.bytes, profile: reply.profile, breakpoints: reply.breakpoints, fromCache: false });
    });
    this.worker.addEventListener('error', (e) => this.fail(new BrowserPreparationError(`the preparation worker failed: ${e.message || 'its script could not be loaded'}`)));
  }

  readonly prepare = (program: Program, profile: Profile, breakpoints: readonly number[] = []): Promise<PreparedModule> => {
    let byKey = this.memo.get(program);
    if (!byKey) this.memo.set(program, (byKey = new Map()));
    const key = `${profile} ${breakpoints.join(',')}`;
    let p = byKey.get(key);
    if (!p) {
      p = this.send(program, profile, breakpoints);
      byKey.set(key, p);
      // A failure is not memoized: the next launch tries again.
      p.catch(() => byKey!.delete(key));
    }
    return p;
  };

  close(): void {
    this.fail(new BrowserPreparationError('the preparation worker was closed'));
  }

  private send(program: Program, profile: Profile, breakpoints: readonly number[]): Promise<PreparedModule> {
    if (this.failed) return Promise.reject(this.failed);
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const job: PrepareRequest = { id, bytes: program.bytes, limits: this.opts.limits, profile, breakpoints };
      this.worker.postMessage(job);
    });
  }

  private fail(error: Error): void {
    if (this.failed) return;
    this.failed = error;
    this.worker.terminate();
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
  }
}
