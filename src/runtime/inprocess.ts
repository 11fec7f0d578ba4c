import { ExecutorCore } from './executor-core.js';
import type { RewindSource } from './rewind-copies.js';
import type { Executor, ExecutorSnapshot, InstanceEvents, InstanceSpec, KillReason } from './executor.js';

/**
 * Runs instances in the calling process. For tests and the browser only: the
 * server and CLI use a separate executor process for untrusted code.
 */
export class InProcessExecutor implements Executor {
  private readonly core: ExecutorCore;
  constructor(opts: { sliceMs?: number } = {}) {
    this.core = new ExecutorCore(opts.sliceMs);
  }
  loadModule(key: string, bytes: Uint8Array, source?: RewindSource): Promise<void> {
    return this.core.loadModule(key, bytes, source);
  }
  hasModule(key: string): boolean {
    return this.core.hasModule(key);
  }
  createInstance(spec: InstanceSpec, events: InstanceEvents): void {
    this.core.createInstance(spec, events);
  }
  deliver(id: string, packet: Uint8Array): void {
    this.core.deliver(id, packet);
  }
  ack(id: string, bytes: number): void {
    this.core.ack(id, bytes);
  }
  suspend(id: string): void {
    this.core.suspend(id);
  }
  async snapshot(id: string): Promise<ExecutorSnapshot> {
    return this.core.snapshot(id);
  }
  release(id: string): void {
    this.core.release(id);
  }
  kill(id: string, reason?: KillReason): void {
    this.core.kill(id, reason);
  }
  async close(): Promise<void> {}
}
