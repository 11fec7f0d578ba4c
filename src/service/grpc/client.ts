/**
 * Services offered by a gRPC server speaking the original Gate's protocol
 * (docs/grpc.md): one ServiceFactory per service its Root.Init lists, one
 * remote instance (Instance.Create) per program instance.
 */
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { HEADER_SIZE } from '../../abi/packet.js';
import type { ServiceContext, ServiceFactory, ServiceInstance, ServiceInstanceConfig } from '../api.js';
import { GrpcInstanceClosedError, GrpcProtocolError, GrpcRestoreError, GrpcServiceError } from './errors.js';
import { CALL_DEADLINE_MS, type GateGrpcClient, type ReceiveStream, type ServiceInfo } from './protocol.js';

/**
 * Bytes of packets an instance passes from the service to the program
 * without the program sending anything to the service. Past this the
 * packet stream is paused (gRPC flow control holds the service back) until
 * the program sends the service a packet: a flooding service cannot grow
 * the program's input queue without bound.
 */
export const RECEIVE_BUDGET = 1024 * 1024;

const EMPTY = new Uint8Array(0);

/** How long an UNAVAILABLE call waits for its connection's reason to be gone (a process's exit status). */
const LOST_REASON_WAIT_MS = 1000;

/** One connection to a gRPC server (a dialled target, or one run of a command). */
export class GrpcConnection {
  private readonly instances = new Set<GrpcServiceInstance>();
  private lostReason: string | undefined;
  private lostWaiters: Array<(reason: string) => void> = [];
  services: ServiceInfo[] = [];

  constructor(
    /** The command or address, for messages. */
    readonly label: string,
    readonly client: GateGrpcClient,
    /** Whether the channel's own state counts (dialled targets reconnect by themselves). */
    private readonly watchChannel: boolean,
  ) {}

  /** Root.Init: the services this server offers. */
  async init(): Promise<ServiceInfo[]> {
    this.services = await this.client.init();
    return this.services;
  }

  offers(name: string): ServiceInfo | undefined {
    return this.services.find((s) => s.name === name);
  }

  /** Whether new instances can be created now. */
  up(): boolean {
    if (this.lostReason !== undefined) return false;
    if (!this.watchChannel) return true;
    const s = this.client.state();
    return s !== grpc.connectivityState.TRANSIENT_FAILURE && s !== grpc.connectivityState.SHUTDOWN;
  }

  /** The server went away for good: every instance on it fails with `reason`, and the channel is closed. */
  lost(reason: string): void {
    if (this.lostReason !== undefined) return;
    this.lostReason = reason;
    for (const w of this.lostWaiters) w(reason);
    this.lostWaiters = [];
    for (const inst of this.instances) inst.gone(reason);
    this.instances.clear();
    this.client.close();
  }

  /** Closes the channel (the server stops): instances still running fail. */
  close(): void {
    this.lost('Gate is shutting the service down');
  }

  /** @internal */
  track(inst: GrpcServiceInstance): boolean {
    if (this.lostReason !== undefined) return false;
    this.instances.add(inst);
    return true;
  }

  /** @internal */
  untrack(inst: GrpcServiceInstance): void {
    this.instances.delete(inst);
  }

  /**
   * Why the connection is gone, if it is or becomes so within `ms`: a broken
   * connection is usually seen before the process's exit, which explains it.
   */
  lostWithin(ms: number): Promise<string | undefined> {
    if (this.lostReason !== undefined) return Promise.resolve(this.lostReason);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(undefined), ms);
      this.lostWaiters.push((reason) => {
        clearTimeout(timer);
        resolve(reason);
      });
    });
  }

  /** @internal Why the connection is gone, if it is. */
  get goneReason(): string | undefined {
    return this.lostReason;
  }
}

/** Where a service's instances are created: the current connection of its command or target. */
export interface GrpcEndpoint {
  readonly label: string;
  /** The live connection, or undefined while there is none (a command being restarted). */
  connection(): GrpcConnection | undefined;
}

/** A registry entry for one service of a gRPC server. */
export function grpcServiceFactory(info: ServiceInfo, endpoint: GrpcEndpoint): ServiceFactory {
  const name = info.name;
  return {
    name,
    revision: info.revision,
    // The original's gRPC services always accept stream packets; the service decides what to do with them.
    streams: true,
    discoverable(context: ServiceContext): boolean {
      const conn = endpoint.connection();
      const offered = conn?.up() ? conn.offers(name) : undefined;
      return offered !== undefined && (!offered.requirePrincipal || context.principalId !== undefined);
    },
    createInstance(config: ServiceInstanceConfig, snapshot?: Uint8Array): ServiceInstance {
      return new GrpcServiceInstance(name, endpoint, config, snapshot);
    },
  };
}

/** The program-side half of one remote service instance. */
export class GrpcServiceInstance implements ServiceInstance {
  private readonly conn: GrpcConnection | undefined;
  private readonly created: Promise<Buffer>;
  private stream: ReceiveStream | undefined;
  private streamEnded = false;
  private endWaiters: Array<() => void> = [];
  private closed = false;
  private suspending = false;
  private budget = RECEIVE_BUDGET;
  private paused = false;
  /** Whether ready() was asked for: then it reports a failed Create, not fail(). */
  private readyAsked = false;

  constructor(
    private readonly name: string,
    endpoint: GrpcEndpoint,
    private readonly config: ServiceInstanceConfig,
    snapshot: Uint8Array | undefined,
  ) {
    const conn = endpoint.connection();
    this.conn = conn;
    if (!conn || !conn.track(this)) {
      const why = conn?.goneReason ?? `${endpoint.label} is not running`;
      this.created = Promise.reject(new GrpcServiceError(name, `unavailable: ${why}`));
    } else {
      this.created = this.create(conn, snapshot);
    }
    // Create fails without the program waiting for anything: end it now.
    this.created.catch((e: unknown) => {
      if (!this.readyAsked) this.fail(e);
    });
  }

  /** Settles once Create has succeeded (restore waits for it: a restoration error fails the restore). */
  ready(): Promise<void> {
    this.readyAsked = true;
    return this.created.then(() => undefined);
  }

  async handle(packet: Uint8Array): Promise<void> {
    const id = await this.created;
    // The program spoke: the service may send it another budget's worth.
    this.budget = RECEIVE_BUDGET;
    if (this.paused) {
      this.paused = false;
      this.stream?.resume();
    }
    try {
      await this.conn!.client.handle(id, packet);
    } catch (e) {
      throw await this.explained('Handle', e);
    }
  }

  async shutdown(suspend: boolean): Promise<Uint8Array | void> {
    if (this.closed) throw new GrpcInstanceClosedError(this.name);
    this.closed = true;
    try {
      const id = await this.created;
      const client = this.conn!.client;
      if (!suspend) {
        this.stream?.cancel();
        try {
          await client.shutdown(id);
        } catch (e) {
          throw this.callError('Shutdown', e);
        }
        return;
      }
      this.suspending = true;
      // Packets sent until the stream ends go to the program's snapshot; one more budget of them.
      this.budget = RECEIVE_BUDGET;
      if (this.paused) {
        this.paused = false;
        this.stream?.resume();
      }
      try {
        await client.suspend(id);
      } catch (e) {
        throw this.callError('Suspend', e);
      }
      await this.streamEnd();
      try {
        // Packets in flight were delivered to the program (they are in its snapshot): nothing is left over here.
        return await client.snapshot(id, EMPTY, EMPTY);
      } catch (e) {
        throw this.callError('Snapshot', e);
      }
    } finally {
      this.stream?.cancel();
      this.conn?.untrack(this);
    }
  }

  /** @internal The connection is gone. */
  gone(reason: string): void {
    this.fail(new GrpcServiceError(this.name, `the service went away: ${reason}`, grpc.status.UNAVAILABLE));
  }

  private async create(conn: GrpcConnection, snapshot: Uint8Array | undefined): Promise<Buffer> {
    let r;
    try {
      r = await conn.client.create(
        this.name,
        {
          maxSendSize: this.config.maxSendSize,
          // The original identifies the executor process; each instance is reported as its own process here.
          processKey: randomBytes(16),
          principalId: this.config.context.principalId ?? '',
          instanceUuid: uuidBytes(this.config.context.instanceId),
        },
        snapshot,
      );
    } catch (e) {
      throw this.callError('Create', e);
    }
    if (r.restorationError !== '') throw new GrpcRestoreError(this.name, r.restorationError);
    if (this.closed) return r.id;
    const stream = conn.client.receive(r.id);
    this.stream = stream;
    stream.on('data', (packet) => this.received(packet));
    stream.on('end', () => this.ended());
    stream.on('error', (e) => {
      this.ended();
      if (e.code === grpc.status.CANCELLED && this.closed) return;
      void this.explained('Receive', e).then((error) => this.fail(error));
    });
    return r.id;
  }

  private received(packet: Buffer): void {
    if (packet.length < HEADER_SIZE) {
      this.fail(new GrpcProtocolError(this.name, `Receive gave a packet of ${packet.length} bytes (at least ${HEADER_SIZE} with the header)`));
      this.stream?.cancel();
      return;
    }
    this.budget -= packet.length;
    if (this.budget < 0) {
      if (this.suspending) {
        this.fail(new GrpcProtocolError(this.name, `kept sending packets after Suspend (more than ${RECEIVE_BUDGET} bytes)`));
        this.stream?.cancel();
        return;
      }
      this.paused = true;
      this.stream?.pause();
    }
    // The session fixes the size field and sets the program's code for this service.
    this.config.send(new Uint8Array(packet.buffer, packet.byteOffset, packet.length));
  }

  private ended(): void {
    this.streamEnded = true;
    const waiters = this.endWaiters;
    this.endWaiters = [];
    for (const w of waiters) w();
  }

  /** After Suspend the service ends the packet stream (everything it sent before is then delivered). */
  private streamEnd(): Promise<void> {
    if (this.streamEnded || !this.stream) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.stream?.cancel();
        reject(new GrpcServiceError(this.name, `did not end its packet stream within ${CALL_DEADLINE_MS / 1000} s of Suspend`, grpc.status.DEADLINE_EXCEEDED));
      }, CALL_DEADLINE_MS);
      this.endWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private fail(error: unknown): void {
    this.config.fail?.(error);
  }

  /** callError, waiting a moment for the reason when the service became unavailable. */
  private async explained(call: string, e: unknown): Promise<Error> {
    if ((e as Partial<grpc.ServiceError>).code === grpc.status.UNAVAILABLE && this.conn) await this.conn.lostWithin(LOST_REASON_WAIT_MS);
    return this.callError(call, e);
  }

  private callError(call: string, e: unknown): Error {
    if (e instanceof GrpcServiceError || e instanceof GrpcProtocolError || e instanceof GrpcRestoreError) return e;
    const reason = this.conn?.goneReason;
    if (reason !== undefined) return new GrpcServiceError(this.name, `the service went away: ${reason}`, grpc.status.UNAVAILABLE, e);
    const se = e as Partial<grpc.ServiceError>;
    const code = typeof se.code === 'number' ? se.code : undefined;
    const status = code === undefined ? '' : `${grpc.status[code] ?? code}: `;
    const what =
      code === grpc.status.DEADLINE_EXCEEDED
        ? `did not answer ${call} within ${CALL_DEADLINE_MS / 1000} s`
        : code === grpc.status.UNAVAILABLE
          ? `the service went away during ${call} (${status}${se.details ?? se.message ?? ''})`
          : `${call} failed (${status}${se.details ?? (e instanceof Error ? e.message : String(e))})`;
    return new GrpcServiceError(this.name, what, code, e);
  }
}

function uuidBytes(id: string): Buffer {
  const hex = id.replace(/-/g, '');
  return /^[0-9a-f]{32}$/i.test(hex) ? Buffer.from(hex, 'hex') : Buffer.alloc(0);
}
