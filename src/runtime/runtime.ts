import { HEADER_SIZE, MAX_PACKET_SIZE } from '../abi/packet.js';
import { Trap, TrapId } from '../abi/trap.js';
import type { PreparedCache } from '../prepare/cache.js';
import { DEFAULT_PROFILE, type Profile } from '../prepare/profile.js';
import { ModuleLimitError } from '../wasm/errors.js';
import type { Executor } from './executor.js';
import type { Program } from './program.js';
import { InstanceStateError } from './errors.js';
import { isFinal, State, type InstanceStatus } from './status.js';

/** The trusted side's services of one instance (implemented by service/session.ts). */
export interface ServiceConnection {
  /** Names the instance may discover. */
  availableNames(): string[];
  bind(code: number, name: string): void;
  /** A packet from the program; may complete asynchronously. */
  handle(packet: Uint8Array): void | Promise<void>;
  shutdown(suspend: boolean): Promise<unknown> | unknown;
}

export interface ServiceHooks {
  instanceId: string;
  /** Sends a packet to the program. */
  send(packet: Uint8Array): void;
  /** A service failed: the instance is killed (ABI_VIOLATION for AbiViolation, else INTERNAL). */
  fail(error: unknown): void;
}

export type ServiceProvider<C extends ServiceConnection = ServiceConnection> = (hooks: ServiceHooks) => C;

export interface RuntimeOptions {
  executor: Executor;
  /** Memory growth limit per instance in 64 KiB pages (spec abi.md §1.5). */
  memoryLimitPages: number;
  /** Time resolution in nanoseconds (spec abi.md §5.1). */
  timeResolutionNs: number;
  profile?: Profile;
  cache?: PreparedCache;
  /** binaryen optimize level used when preparing (see prepare/pipeline.ts). */
  optimizeLevel?: number;
  /** io-suspend: longest computation without a blocking call (default 10 s); see InstanceSpec. */
  computeLimitMs?: number;
}

export const DEFAULT_COMPUTE_LIMIT_MS = 10_000;

export interface LaunchOptions<C extends ServiceConnection> {
  /** Requested entry function (spec abi.md §1.3). */
  entry?: string;
  profile?: Profile;
  /** Receives what the program writes to fds 1 and 2; omitted: discarded. */
  debug?: (data: Uint8Array) => void;
  instanceId?: string;
  services: ServiceProvider<C>;
}

/**
 * The runtime's public face: launches programs in an executor and wires
 * their packets to the trusted side's services.
 */
export class Runtime {
  constructor(private readonly opts: RuntimeOptions) {}

  get executor(): Executor {
    return this.opts.executor;
  }

  async launch<C extends ServiceConnection>(program: Program, launch: LaunchOptions<C>): Promise<RunningInstance<C>> {
    const entry = program.entry(launch.entry);
    const profile = launch.profile ?? this.opts.profile ?? DEFAULT_PROFILE;
    const mem = program.memoryLimits;
    let memoryPages = { initial: 1, maximum: 1 };
    if (mem) {
      const maximum = Math.min(mem.max ?? 65536, this.opts.memoryLimitPages);
      if (mem.min > maximum) throw new ModuleLimitError('initial program memory size exceeds instance memory size limit');
      memoryPages = { initial: mem.min, maximum };
    }
    const prepared = await program.prepare(profile, this.opts.cache, this.opts.optimizeLevel);
    const executor = this.opts.executor;
    await executor.loadModule(prepared.key, prepared.bytes);

    const id = launch.instanceId ?? globalThis.crypto.randomUUID();
    const debug = launch.debug ? new DebugLog(launch.debug) : undefined;
    const inst = new RunningInstance<C>(id, executor, debug);
    const services = launch.services({
      instanceId: id,
      send: (packet) => inst.sendToProgram(packet),
      fail: (error) => inst.serviceFailed(error),
    });
    inst.attach(services);
    executor.createInstance(
      {
        id,
        moduleKey: prepared.key,
        profile,
        entry,
        hasStart: program.hasStart,
        memoryPages,
        timeResolutionNs: this.opts.timeResolutionNs,
        debug: debug !== undefined,
        services: services.availableNames(),
        computeLimitMs: this.opts.computeLimitMs ?? DEFAULT_COMPUTE_LIMIT_MS,
      },
      {
        packet: (p) => inst.fromProgram(p),
        bind: (code, name) => services.bind(code, name),
        debug: (d) => debug?.write(d),
        stopped: (status) => inst.stopped(status),
      },
    );
    return inst;
  }
}

/** A launched instance, seen from the trusted side. */
export class RunningInstance<C extends ServiceConnection = ServiceConnection> {
  private current: InstanceStatus = { state: State.Running };
  private servicesRef: C | undefined;
  private readonly done: Promise<InstanceStatus>;
  private resolveDone!: (s: InstanceStatus) => void;

  constructor(
    readonly id: string,
    private readonly executor: Executor,
    private readonly debug: DebugLog | undefined,
  ) {
    this.done = new Promise((res) => (this.resolveDone = res));
  }

  get services(): C {
    return this.servicesRef!;
  }

  get status(): InstanceStatus {
    return this.current;
  }

  /** Resolves with the status the instance stopped with. */
  wait(): Promise<InstanceStatus> {
    return this.done;
  }

  suspend(): void {
    if (this.current.state !== State.Running) throw new InstanceStateError(`instance is ${this.current.state}, not RUNNING`);
    this.executor.suspend(this.id);
  }

  kill(): void {
    if (isFinal(this.current.state)) return;
    this.executor.kill(this.id);
  }

  /** @internal */
  attach(services: C): void {
    this.servicesRef = services;
  }

  /** @internal */
  sendToProgram(packet: Uint8Array): void {
    if (this.current.state !== State.Running) return;
    const size = packet.length >= HEADER_SIZE ? new DataView(packet.buffer, packet.byteOffset).getUint32(0, true) : -1;
    if (size !== packet.length || size > MAX_PACKET_SIZE) {
      this.serviceFailed(new Error(`a service sent a malformed packet (size field ${size}, length ${packet.length})`));
      return;
    }
    this.executor.deliver(this.id, packet);
  }

  /** @internal */
  fromProgram(packet: Uint8Array): void {
    let result: void | Promise<void>;
    try {
      result = this.servicesRef!.handle(packet);
    } catch (e) {
      this.serviceFailed(e);
      return;
    }
    if (result instanceof Promise) {
      result.then(
        () => this.executor.ack(this.id, packet.length),
        (e: unknown) => this.serviceFailed(e),
      );
    } else {
      this.executor.ack(this.id, packet.length);
    }
  }

  /** @internal */
  serviceFailed(error: unknown): void {
    if (this.current.state !== State.Running) return;
    const message = error instanceof Error ? error.message : String(error);
    const trap = error instanceof Trap && error.trap === TrapId.AbiViolation ? TrapId.AbiViolation : TrapId.InternalError;
    this.executor.kill(this.id, { trap, message });
  }

  /** @internal */
  stopped(status: InstanceStatus): void {
    this.current = status;
    this.debug?.end();
    Promise.resolve(this.servicesRef?.shutdown(status.state === State.Suspended))
      .catch(() => undefined)
      .then(() => this.resolveDone(status));
  }
}

/**
 * The debug log of one run: passes bytes on, and at the end adds a newline
 * if the last byte written was not one (spec abi.md §7.5: "ping" → "ping\n").
 */
class DebugLog {
  private last = 0x0a;
  constructor(private readonly sink: (data: Uint8Array) => void) {}

  write(data: Uint8Array): void {
    if (data.length === 0) return;
    this.last = data[data.length - 1]!;
    this.sink(data);
  }

  end(): void {
    if (this.last !== 0x0a) this.write(Uint8Array.of(0x0a));
  }
}
