import { TrapId } from '../abi/trap.js';
import { PacketChannel } from './channel.js';
import { DebugOutput } from './debug-output.js';
import { InstanceStateError, InternalRuntimeError } from './errors.js';
import type { ExecutorSnapshot, InstanceEvents, InstanceSpec, KillReason } from './executor.js';
import { Instance } from './instance.js';
import { Scheduler } from './scheduler.js';
import { recordCodeLayout } from './trap-frames.js';
import { internalFailure } from './status.js';

interface Entry {
  instance: Instance;
  channel: PacketChannel;
  events: InstanceEvents;
  retain: boolean;
  stopped: boolean;
  debug: DebugOutput | undefined;
}

/**
 * The part of an executor that touches untrusted code: compiled modules,
 * instances and their scheduler. It runs inside the executor process (or in
 * process, for tests and the browser) and talks to the trusted side only
 * through InstanceEvents and the methods below.
 */
export class ExecutorCore {
  private readonly modules = new Map<string, WebAssembly.Module>();
  private readonly instances = new Map<string, Entry>();
  private readonly scheduler: Scheduler;

  /**
   * `instanceMemoryCapBytes`: no instance's memory may grow past this, so
   * that one program alone cannot exhaust its executor's memory cap (the
   * process would die with all its instances). Undefined: no cap.
   */
  constructor(
    sliceMs = 10,
    private readonly instanceMemoryCapBytes?: number,
  ) {
    this.scheduler = new Scheduler((inst, status) => {
      const e = this.instances.get(inst.id);
      if (!e || e.stopped) return;
      e.stopped = true;
      if (!e.retain) this.instances.delete(inst.id);
      // Its last output goes before its end.
      e.debug?.flush();
      e.channel.close();
      e.events.stopped(status, inst.trapFrames);
    }, sliceMs);
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

  async loadModule(key: string, bytes: Uint8Array): Promise<void> {
    if (this.modules.has(key)) return;
    const module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
    recordCodeLayout(module, bytes);
    this.modules.set(key, module);
  }

  hasModule(key: string): boolean {
    return this.modules.has(key);
  }



  createInstance(spec: InstanceSpec, events: InstanceEvents): void {
    if (this.instances.has(spec.id)) throw new InstanceStateError(`instance ${spec.id} already exists in this executor`);
    const module = this.modules.get(spec.moduleKey);
    if (!module) throw new InternalRuntimeError(`module ${spec.moduleKey} is not loaded in this executor`);
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
    const random = new Uint8Array(16);
    globalThis.crypto.getRandomValues(random);
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
      );
      instance = new Instance({
        id: spec.id,
        profile: spec.profile,
        module,
        memoryPages,
        hasStart: spec.hasStart,
        entry: spec.entry,
        timeResolutionNs: spec.timeResolutionNs,
        channel,
        debug: debug ? (d) => debug.write(d) : undefined,
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
    this.instances.set(spec.id, { instance, channel, events, retain: spec.retain, stopped: false, debug });
    this.scheduler.add(instance);
  }

  snapshot(id: string): ExecutorSnapshot {
    const e = this.instances.get(id);
    if (!e) throw new InstanceStateError(`instance ${id} is not in this executor (or was not retained)`);
    if (!e.stopped) throw new InstanceStateError(`instance ${id} is running`);
    return e.instance.snapshotState();
  }

  release(id: string): void {
    const e = this.instances.get(id);
    if (e?.stopped) this.instances.delete(id);
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
