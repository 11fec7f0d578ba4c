/**
 * The trusted side of one program instance's services (spec services.md §1).
 *
 * The executor answers discovery and forwards validated packets; this class
 * keeps the code → service bindings, creates service instances lazily on the
 * first packet for their code, routes packets in order, sends services'
 * packets to the program with the right code, and turns service failures
 * into the trap the instance must be killed with. The executor may be
 * compromised by the program, so everything it says is checked again here.
 */
import { GateError } from '../errors.js';
import { DATA_HEADER_SIZE, Domain, HEADER_SIZE, MAX_PACKET_SIZE, MAX_SERVICES, setPacketCode } from '../abi/packet.js';
import { AbiViolation, Trap, TrapId } from '../abi/trap.js';
import type { ServiceContext, ServiceFactory, ServiceInstance, ServiceInstanceConfig } from './api.js';
import type { ServiceRegistry } from './registry.js';

/** A service (or the executor, about services) failed: the instance is killed with INTERNAL. */
export class ServiceInternalError extends Trap {
  /** Name of the failed service, if one is to blame. */
  readonly service: string | undefined;
  constructor(message: string, service?: string, cause?: unknown) {
    super(TrapId.InternalError, message);
    this.service = service;
    if (cause !== undefined) this.cause = cause;
  }
}

/** A service instance could not be re-created from a snapshot's buffer. */
export class ServiceRestoreError extends GateError {
  constructor(readonly service: string, cause: unknown) {
    super('GATE_SERVICE_RESTORE', `cannot restore the state of service ${JSON.stringify(service)}: ${messageOf(cause)}`, { cause });
  }
}

/** One discovered code's name and state buffer (snapshot.md `gate.buffer` services list). */
export interface ServiceBuffer {
  name: string;
  buffer: Uint8Array;
}

export interface ServiceSessionOptions {
  registry: ServiceRegistry;
  /** The serving context: decides availability and is given to service instances. */
  context: ServiceContext;
  /** Queues a packet (exact size, code set) to the program. */
  sendToProgram(packet: Uint8Array): void;
  /**
   * Called at most once, when the instance must be killed: with the
   * AbiViolation a service threw (kill with ABI_VIOLATION), or with a
   * ServiceInternalError (kill with INTERNAL). Must not throw.
   */
  onError(error: Trap): void;
}

interface Binding {
  readonly code: number;
  readonly name: string;
  /** Undefined: the service is unavailable and its packets are dropped. */
  readonly factory: ServiceFactory | undefined;
  instance: ServiceInstance | undefined;
  /** Packets waiting while an asynchronous handle() of this service runs. */
  queue: Queued[];
  busy: boolean;
}

/** A packet handed to a service, and who waits until it has been handled. */
interface Queued {
  readonly packet: Uint8Array;
  handled: boolean;
  onHandled?: () => void;
}

const EMPTY = new Uint8Array(0);

export class ServiceSession {
  private readonly registry: ServiceRegistry;
  private readonly context: ServiceContext;
  private readonly sendToProgram: (packet: Uint8Array) => void;
  private readonly onError: (error: Trap) => void;
  private readonly available: ReadonlySet<string>;
  private readonly bindings: Binding[] = [];
  private readonly boundAvailable = new Set<string>();
  private state: 'running' | 'stopping' | 'stopped' = 'running';
  private failed = false;
  private idleWaiters: Array<() => void> = [];
  private shutdownResult: Promise<ServiceBuffer[]> | undefined;
  private restoring: Array<{ name: string; ready: Promise<void> }> = [];

  constructor(options: ServiceSessionOptions) {
    this.registry = options.registry;
    this.context = options.context;
    this.sendToProgram = options.sendToProgram;
    this.onError = options.onError;
    // Decided once per run: the executor's discovery answers from this list.
    this.available = options.registry.discoverableNames(options.context);
  }

  /** Names the program may discover in this run (give these to the executor's ServiceDiscovery). */
  availableNames(): string[] {
    return [...this.available].sort();
  }

  /** Number of codes bound so far. */
  get count(): number {
    return this.bindings.length;
  }

  /**
   * Records a code allocated by discovery. Every code must be bound, in
   * order, available or not (its name is part of a suspended instance's
   * service list); availability is decided here, not taken from the executor.
   */
  bind(code: number, name: string): void {
    if (this.state !== 'running' || this.failed) return;
    if (code !== this.bindings.length || code >= MAX_SERVICES) {
      this.fail(new ServiceInternalError(`executor bound service code ${code} out of order (expected ${this.bindings.length})`));
      return;
    }
    this.addBinding(name);
  }

  /**
   * Re-creates the bindings of a suspended instance (services.md §1
   * "Restore"): code i is bound to entries[i].name; available services are
   * created at once with their saved buffer (and may send packets to the
   * program immediately — queue the discovery state INFO packet first).
   * Must be called before anything is bound. Throws ServiceRestoreError.
   */
  restore(entries: readonly ServiceBuffer[]): void {
    if (this.bindings.length > 0) throw new GateError('GATE_SERVICE_RESTORE', 'services can be restored only before any is bound');
    if (entries.length > MAX_SERVICES) {
      throw new GateError('GATE_SERVICE_RESTORE', `cannot restore ${entries.length} services: at most ${MAX_SERVICES} are allowed`);
    }
    for (const entry of entries) {
      const b = this.addBinding(entry.name);
      if (!b.factory) continue;
      try {
        this.createInstance(b, entry.buffer);
        const ready = b.instance!.ready?.();
        if (ready) this.restoring.push({ name: entry.name, ready });
      } catch (e) {
        this.state = 'stopped';
        for (const other of this.bindings) void Promise.resolve().then(() => other.instance?.shutdown(false)).catch(() => {});
        throw new ServiceRestoreError(entry.name, e);
      }
    }
  }

  /**
   * Settles when the service instances restore() created are ready (see
   * ServiceInstance.ready). Rejects with ServiceRestoreError naming the first
   * that failed; every instance is then shut down.
   */
  async restored(): Promise<void> {
    const pending = this.restoring;
    this.restoring = [];
    const results = await Promise.allSettled(pending.map((p) => p.ready));
    const i = results.findIndex((r) => r.status === 'rejected');
    if (i < 0) return;
    this.state = 'stopped';
    for (const other of this.bindings) void Promise.resolve().then(() => other.instance?.shutdown(false)).catch(() => {});
    throw new ServiceRestoreError(pending[i]!.name, (results[i] as PromiseRejectedResult).reason);
  }

  /**
   * A packet from the program (exact size, validated by the executor). Never
   * throws: problems are reported through onError. Returns a promise when the
   * packet is not handled yet (its service is busy with an asynchronous
   * handle()), which settles once it has been handled or dropped: the
   * caller acknowledges the packet to the executor then, so that a slow
   * service holds the program back instead of letting packets queue here
   * without bound.
   */
  handle(packet: Uint8Array): void | Promise<void> {
    if (this.state !== 'running' || this.failed) return;
    const problem = checkIncoming(packet, this.bindings.length);
    if (problem) {
      this.fail(new ServiceInternalError(`executor forwarded an invalid packet: ${problem}`));
      return;
    }
    const b = this.bindings[(packet[4]! | (packet[5]! << 8)) << 16 >> 16]!;
    if (!b.factory) return; // Unavailable: dropped (abi.md §8.2).
    const domain = packet[6]! & 0x0f;
    if ((domain === Domain.Flow || domain === Domain.Data) && !b.factory.streams) {
      // The original reports this as an internal error ([BUG?] in abi.md
      // §8.2); it is the program's fault, so we kill with ABI_VIOLATION as
      // the original's service documentation intends.
      this.fail(new AbiViolation(`${domain === Domain.Flow ? 'flow' : 'data'} packet sent to service ${JSON.stringify(b.name)} which does not support streams`));
      return;
    }
    if (!b.instance) {
      try {
        this.createInstance(b, undefined);
      } catch (e) {
        this.fail(e, b);
        return;
      }
    }
    const queued: Queued = { packet, handled: false };
    b.queue.push(queued);
    this.pump(b);
    if (queued.handled) return;
    return new Promise((resolve) => (queued.onHandled = resolve));
  }

  /** Resolves when every packet handed to handle() so far has been handled. */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Stops every service instance (after the packets already received have
   * been handled) and returns one entry per bound code in code order; with
   * `suspend` the buffers are the instances' saved states, otherwise empty.
   * A failing instance is reported through onError and gets an empty buffer.
   * Packets services send after this resolves are dropped.
   */
  shutdown(suspend: boolean): Promise<ServiceBuffer[]> {
    this.shutdownResult ??= this.doShutdown(suspend);
    return this.shutdownResult;
  }

  /** Whether checkpoint() can be used now: running, and every service created so far supports it. */
  canCheckpoint(): boolean {
    return this.state === 'running' && !this.failed && this.bindings.every((b) => !b.instance || b.instance.checkpoint !== undefined);
  }

  /**
   * Each bound code's state as `shutdown(true)` would give it, without
   * stopping anything (after the packets already received have been
   * handled). A service that fails to give it is reported through onError
   * and gets an empty buffer, as in shutdown.
   */
  async checkpoint(): Promise<ServiceBuffer[]> {
    await this.idle();
    const buffers = await Promise.all(
      this.bindings.map(async (b): Promise<Uint8Array> => {
        if (!b.instance?.checkpoint) return EMPTY;
        try {
          return (await b.instance.checkpoint()) ?? EMPTY;
        } catch (e) {
          this.fail(e, b);
          return EMPTY;
        }
      }),
    );
    return this.bindings.map((b, i) => ({ name: b.name, buffer: buffers[i]! }));
  }

  private async doShutdown(suspend: boolean): Promise<ServiceBuffer[]> {
    if (this.state === 'running') this.state = 'stopping';
    await this.idle();
    const buffers = await Promise.all(
      this.bindings.map(async (b): Promise<Uint8Array> => {
        if (!b.instance) return EMPTY;
        try {
          const r = await b.instance.shutdown(suspend);
          return suspend && r instanceof Uint8Array ? r : EMPTY;
        } catch (e) {
          this.fail(e, b);
          return EMPTY;
        }
      }),
    );
    this.state = 'stopped';
    return this.bindings.map((b, i) => ({ name: b.name, buffer: buffers[i]! }));
  }

  private addBinding(name: string): Binding {
    const factory = this.available.has(name) && !this.boundAvailable.has(name) ? this.registry.lookup(name) : undefined;
    if (factory) this.boundAvailable.add(name);
    const b: Binding = { code: this.bindings.length, name, factory, instance: undefined, queue: [], busy: false };
    this.bindings.push(b);
    return b;
  }

  private createInstance(b: Binding, snapshot: Uint8Array | undefined): void {
    const config: ServiceInstanceConfig = {
      code: b.code,
      maxSendSize: MAX_PACKET_SIZE,
      context: this.context,
      send: (packet) => this.sendFrom(b, packet),
      fail: (error) => {
        if (this.state !== 'stopped') this.fail(error, b);
      },
    };
    b.instance = b.factory!.createInstance(config, snapshot);
  }

  /** Routes a service's packet to the program, checking what the service may send. */
  private sendFrom(b: Binding, packet: Uint8Array): void {
    if (this.state === 'stopped' || this.failed) return;
    const n = packet.length;
    if (n < HEADER_SIZE || n > MAX_PACKET_SIZE) {
      this.fail(new ServiceInternalError(`service ${JSON.stringify(b.name)} sent a packet of ${n} bytes (must be 8–${MAX_PACKET_SIZE})`, b.name), b);
      return;
    }
    const view = new DataView(packet.buffer, packet.byteOffset, HEADER_SIZE);
    const domain = packet[6]!;
    const streamDomain = domain === Domain.Flow || domain === Domain.Data;
    if (domain > Domain.Data || (streamDomain && !b.factory!.streams) || (domain === Domain.Data && n < DATA_HEADER_SIZE)) {
      this.fail(new ServiceInternalError(`service ${JSON.stringify(b.name)} sent a packet with invalid domain ${domain} (${n} bytes)`, b.name), b);
      return;
    }
    // Like the original, fix the size field rather than trusting every service to set it.
    if (view.getUint32(0, true) !== n) view.setUint32(0, n, true);
    setPacketCode(packet, b.code);
    this.sendToProgram(packet);
  }

  private pump(b: Binding): void {
    while (!b.busy && b.queue.length > 0 && !this.failed) {
      const queued = b.queue.shift()!;
      let result: void | Promise<void>;
      try {
        result = b.instance!.handle(queued.packet);
      } catch (e) {
        settle(queued);
        this.fail(e, b);
        break;
      }
      if (isPromiseLike(result)) {
        b.busy = true;
        result.then(
          () => {
            b.busy = false;
            settle(queued);
            this.pump(b);
          },
          (e: unknown) => {
            b.busy = false;
            settle(queued);
            this.fail(e, b);
            this.checkIdle();
          },
        );
        return;
      }
      settle(queued);
    }
    this.checkIdle();
  }

  private fail(error: unknown, b?: Binding): void {
    if (this.failed) return;
    this.failed = true;
    for (const other of this.bindings) {
      for (const queued of other.queue) settle(queued);
      other.queue = [];
    }
    const trap =
      error instanceof AbiViolation || error instanceof ServiceInternalError
        ? error
        : new ServiceInternalError(b ? `service ${JSON.stringify(b.name)} failed: ${messageOf(error)}` : messageOf(error), b?.name, error);
    this.onError(trap);
    this.checkIdle();
  }

  private isIdle(): boolean {
    return this.bindings.every((b) => !b.busy && b.queue.length === 0);
  }

  private checkIdle(): void {
    if (this.idleWaiters.length === 0 || !this.isIdle()) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}

/** Re-checks what the executor guarantees (abi.md §8.2); returns a problem description or undefined. */
function checkIncoming(p: Uint8Array, count: number): string | undefined {
  const n = p.length;
  if (n < HEADER_SIZE || n > MAX_PACKET_SIZE) return `length ${n}`;
  const size = new DataView(p.buffer, p.byteOffset, HEADER_SIZE).getUint32(0, true);
  if (size !== n) return `size field ${size} does not match length ${n}`;
  const code = (p[4]! | (p[5]! << 8)) << 16 >> 16;
  if (code < 0 || code >= count) return `code ${code} is not bound`;
  const domain = p[6]! & 0x0f;
  if (domain > Domain.Data) return `domain ${domain}`;
  if (domain === Domain.Data && n < DATA_HEADER_SIZE) return `data packet of ${n} bytes`;
  return undefined;
}

function settle(queued: Queued): void {
  queued.handled = true;
  queued.onHandled?.();
}

function isPromiseLike(x: unknown): x is PromiseLike<void> {
  return typeof x === 'object' && x !== null && typeof (x as { then?: unknown }).then === 'function';
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
