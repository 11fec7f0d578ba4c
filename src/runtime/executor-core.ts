import { TrapId } from '../abi/trap.js';
import { PacketChannel } from './channel.js';
import { DebugOutput } from './debug-output.js';
import { InstanceStateError, InternalRuntimeError } from './errors.js';
import type { ExecutorSnapshot, InstanceEvents, InstanceSpec, KillReason } from './executor.js';
import { Instance } from './instance.js';
import { Scheduler } from './scheduler.js';
import { RewindCopyCompiler, type RewindSource } from './rewind-copies.js';
import { recordCodeLayout } from './trap-frames.js';
import { internalFailure } from './status.js';

interface Entry {
  instance: Instance;
  channel: PacketChannel;
  events: InstanceEvents;
  retain: boolean;
  stopped: boolean;
  debug: DebugOutput | undefined;
  /** Where its memory object may go for reuse once it is gone (undefined: nowhere). */
  memoryKey: string | undefined;
  /** Its memory's size at creation (one that grew is not reused). */
  memoryBytes: number;
  /** A view of its memory left this executor (a snapshot): it is never reused. */
  memoryShared: boolean;
}

/**
 * Memory objects of instances that are gone are kept for the next instance
 * of the same group with the same sizes: making one (and collecting it
 * later) costs more than zeroing a small one. Only memories that never grew
 * and are at most this large are kept (zeroing a large one would cost more
 * than a new one, which the kernel zeroes lazily).
 */
export const MAX_REUSED_MEMORY_BYTES = 1024 * 1024;
/** Memory objects kept per group and size, and in all. */
const MAX_KEPT_MEMORIES_PER_KEY = 8;
const MAX_KEPT_MEMORIES = 64;
/** Random bytes are drawn from the system this many at a time; each instance gets 16 of them, never shared. */
const RANDOM_BATCH_BYTES = 4096;

/**
 * The part of an executor that touches untrusted code: compiled modules,
 * instances and their scheduler. It runs inside the executor process (or in
 * process, for tests and the browser) and talks to the trusted side only
 * through InstanceEvents and the methods below.
 */
export class ExecutorCore {
  private readonly modules = new Map<string, { module: WebAssembly.Module; copies: RewindCopyCompiler | undefined }>();
  private readonly instances = new Map<string, Entry>();
  private readonly scheduler: Scheduler;
  /** Memory objects for reuse, by memoryKey (see MAX_REUSED_MEMORY_BYTES). */
  private readonly keptMemories = new Map<string, WebAssembly.Memory[]>();
  private keptMemoryCount = 0;
  /** How many instances got a reused memory object (tests check that reuse happens). */
  memoriesReused = 0;
  private random = new Uint8Array(0);
  private randomUsed = 0;

  /**
   * `instanceMemoryCapBytes`: no instance's memory may grow past this, so
   * that one program alone cannot exhaust its executor's memory cap (the
   * process would die with all its instances). Undefined: no cap.
   */
  constructor(
    sliceMs = 10,
    private readonly instanceMemoryCapBytes?: number,
    /** The process's CPU milliseconds, where known (see Scheduler's cpuClock). */
    cpuClock?: () => number,
    /** Called with module bytes (prepared modules and rewind copies) before they are compiled (runtime/node/engine-flags.ts). */
    private readonly beforeCompile?: (bytes: Uint8Array) => void,
  ) {
    this.scheduler = new Scheduler((inst, status) => {
      const e = this.instances.get(inst.id);
      if (!e || e.stopped) return;
      e.stopped = true;
      // Its last output goes before its end.
      e.debug?.flush();
      e.channel.close();
      e.events.stopped(status, inst.trapFrames);
      if (!e.retain) this.forget(inst.id, e);
    }, sliceMs, undefined, cpuClock);
  }

  /** The most CPU time any live instance here has had, in milliseconds. */
  get mostCpuMs(): number {
    return this.scheduler.mostCpuMs;
  }

  /** Holds all instances between slices (while the host cannot take more output). */
  pause(): void {
    this.scheduler.pause();
  }

  resume(): void {
    this.scheduler.resume();
  }

  /** Compiles a prepared module; `source` makes its rewind copies (runtime/rewind-copies.ts), needed when it was prepared with lazy rewind. */
  async loadModule(key: string, bytes: Uint8Array, source?: RewindSource): Promise<void> {
    if (this.modules.has(key)) return;
    this.beforeCompile?.(bytes);
    const module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
    recordCodeLayout(module, bytes);
    this.modules.set(key, { module, copies: source && new RewindCopyCompiler(source, this.beforeCompile) });
  }

  hasModule(key: string): boolean {
    return this.modules.has(key);
  }



  createInstance(spec: InstanceSpec, events: InstanceEvents): void {
    if (this.instances.has(spec.id)) throw new InstanceStateError(`instance ${spec.id} already exists in this executor`);
    const loaded = this.modules.get(spec.moduleKey);
    if (!loaded) throw new InternalRuntimeError(`module ${spec.moduleKey} is not loaded in this executor`);
    let instance: Instance | undefined;
    let memoryPages = spec.memoryPages;
    if (this.instanceMemoryCapBytes !== undefined) {
      const capPages = Math.floor(this.instanceMemoryCapBytes / 65536);
      if (memoryPages.maximum > capPages) memoryPages = { initial: memoryPages.initial, maximum: Math.max(capPages, memoryPages.initial) };
      if (memoryPages.initial > capPages) {
        queueMicrotask(() => events.stopped(internalFailure(`the program's initial memory (${memoryPages.initial} pages) does not fit in its executor's memory`)));
        return;
      }
    }
    const random = this.randomBytes(16);
    const memoryKey = this.memoryKeyOf(spec.memoryGroup, memoryPages);
    let memory = memoryKey !== undefined ? this.keptMemories.get(memoryKey)?.pop() : undefined;
    if (memory !== undefined) {
      this.keptMemoryCount--;
      // What the previous instance left is gone before this one can see it.
      new Uint8Array(memory.buffer).fill(0);
      this.memoriesReused++;
    }
    let channel: PacketChannel;
    const debug = spec.debug ? new DebugOutput((data, dropped) => events.debug(data, dropped), spec.debugLimits) : undefined;
    try {
      channel = new PacketChannel(
        spec.services,
        {
          packet: (p) => events.packet(p),
          bind: (code, name) => events.bind(code, name),
          inputReady: () => instance && this.scheduler.wake(instance),
        },
        spec.resume,
        spec.firstCallReplies,
      );
      instance = new Instance({
        id: spec.id,
        profile: spec.profile,
        module: loaded.module,
        rewindCopies: loaded.copies,
        memoryPages,
        hasStart: spec.hasStart,
        entry: spec.entry,
        timeResolutionNs: spec.timeResolutionNs,
        channel,
        debug: debug ? (d) => debug.write(d) : undefined,
        memory,
        randomPool: random,
        computeLimitMs: spec.computeLimitMs,
        cpuBudgetMs: typeof spec.cpuBudgetMs === 'number' && spec.cpuBudgetMs > 0 ? spec.cpuBudgetMs : undefined,
        globalTypes: spec.globalTypes,
        init: spec.init,
        resume: spec.resume,
        breakpoints: Array.isArray(spec.breakpoints) ? new Set(spec.breakpoints) : undefined,
      });
    } catch (e) {
      // Instantiation failures (e.g. memory cannot be allocated) end the instance, not the executor.
      const message = e instanceof Error ? e.message : String(e);
      queueMicrotask(() => events.stopped(internalFailure(`instantiation failed: ${message}`)));
      return;
    }
    this.instances.set(spec.id, { instance, channel, events, retain: spec.retain, stopped: false, debug, memoryKey, memoryBytes: memoryPages.initial * 65536, memoryShared: false });
    this.scheduler.add(instance);
  }

  snapshot(id: string): ExecutorSnapshot {
    const e = this.instances.get(id);
    if (!e) throw new InstanceStateError(`instance ${id} is not in this executor (or was not retained)`);
    if (!e.stopped) throw new InstanceStateError(`instance ${id} is running`);
    // The snapshot holds a view of the memory (it may not have been written out yet).
    e.memoryShared = true;
    return e.instance.snapshotState();
  }

  release(id: string): void {
    const e = this.instances.get(id);
    if (e?.stopped) this.forget(id, e);
  }

  /** A stopped instance is gone: its memory is kept for reuse when it may be. */
  private forget(id: string, e: Entry): void {
    this.instances.delete(id);
    if (e.memoryKey === undefined || e.memoryShared || this.keptMemoryCount >= MAX_KEPT_MEMORIES) return;
    const memory = e.instance.memoryObjectInUse;
    if (memory.buffer.byteLength !== e.memoryBytes) return;
    const kept = this.keptMemories.get(e.memoryKey) ?? [];
    if (kept.length >= MAX_KEPT_MEMORIES_PER_KEY) return;
    kept.push(memory);
    this.keptMemories.set(e.memoryKey, kept);
    this.keptMemoryCount++;
  }

  /** `initial/maximum/group`, or undefined when such a memory is not reused. */
  private memoryKeyOf(group: string | undefined, pages: { initial: number; maximum: number }): string | undefined {
    if (group === undefined || pages.initial * 65536 > MAX_REUSED_MEMORY_BYTES) return undefined;
    return `${pages.initial}/${pages.maximum}/${group}`;
  }

  /** `n` fresh random bytes (drawn from the system in batches: each call of getRandomValues costs as much as many bytes). */
  private randomBytes(n: number): Uint8Array {
    if (this.randomUsed + n > this.random.length) {
      this.random = new Uint8Array(RANDOM_BATCH_BYTES);
      globalThis.crypto.getRandomValues(this.random);
      this.randomUsed = 0;
    }
    const out = this.random.slice(this.randomUsed, this.randomUsed + n);
    // Nobody else gets these bytes.
    this.random.fill(0, this.randomUsed, this.randomUsed + n);
    this.randomUsed += n;
    return out;
  }

  deliver(id: string, packet: Uint8Array): void {
    this.instances.get(id)?.channel.deliver(packet);
  }

  ack(id: string, bytes: number): void {
    this.instances.get(id)?.channel.ack(bytes);
  }

  suspend(id: string): void {
    const e = this.instances.get(id);
    if (!e || e.stopped) return;
    e.instance.requestSuspend();
    this.scheduler.wake(e.instance);
  }

  kill(id: string, reason?: KillReason): void {
    const e = this.instances.get(id);
    if (!e || e.stopped) return;
    if (reason !== undefined) {
      const trap = reason.trap === TrapId.AbiViolation ? TrapId.AbiViolation : TrapId.InternalError;
      // While it runs (a service failed synchronously inside a host call), it
      // stops at its next check point or host call.
      if (e.instance.isRunning) e.instance.requestKill({ trap, message: reason.message });
      else this.scheduler.stop(e.instance, trap, reason.message);
      return;
    }
    e.instance.requestKill();
    this.scheduler.wake(e.instance);
  }
}
