/**
 * The original Gate's gRPC service protocol (package gate.grpc,
 * proto/gate/grpc/service.proto), as a small typed client over grpc-js.
 * Messages are plain objects; bytes fields are Buffers.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** The protocol definition shipped with Gate (operators and service authors use the same file). */
export const SERVICE_PROTO = fileURLToPath(new URL('../../../../proto/gate/grpc/service.proto', import.meta.url));

export interface ServiceInfo {
  name: string;
  revision: string;
  requirePrincipal: boolean;
}

export interface InstanceConfigMessage {
  maxSendSize: number;
  processKey: Buffer;
  principalId: string;
  instanceUuid: Buffer;
}

export interface CreateResponseMessage {
  id: Buffer;
  restorationError: string;
}

interface MethodSerialization {
  path: string;
  requestSerialize(value: object): Buffer;
  responseDeserialize(bytes: Buffer): object;
}

let definition: protoLoader.PackageDefinition | undefined;

function method(service: 'Root' | 'Instance', name: string): MethodSerialization {
  definition ??= protoLoader.loadSync(SERVICE_PROTO, { keepCase: false, longs: Number, defaults: true, oneofs: true });
  const svc = definition[`gate.grpc.${service}`] as protoLoader.ServiceDefinition;
  const m = svc[name];
  if (!m) throw new Error(`gate.grpc.${service}.${name} is not in ${SERVICE_PROTO}`);
  return m as unknown as MethodSerialization;
}

/** A packet stream from Instance.Receive: 'data' events carry each packet's bytes. */
export interface ReceiveStream {
  on(event: 'data', listener: (packet: Buffer) => void): this;
  on(event: 'end', listener: () => void): this;
  on(event: 'error', listener: (error: grpc.ServiceError) => void): this;
  pause(): void;
  resume(): void;
  cancel(): void;
}

/** Deadline of every call but Receive: a service that never answers fails the call (and its program). */
export const CALL_DEADLINE_MS = 10_000;

/** The Root and Instance services of one connection. */
export class GateGrpcClient {
  private readonly client: grpc.Client;

  constructor(target: string, credentials: grpc.ChannelCredentials, options: grpc.ChannelOptions = {}) {
    this.client = new grpc.Client(target, credentials, options);
  }

  init(): Promise<ServiceInfo[]> {
    return this.unary<{ services: ServiceInfo[] }>('Root', 'Init', {}).then((r) => r.services);
  }

  create(serviceName: string, config: InstanceConfigMessage, snapshot: Uint8Array | undefined): Promise<CreateResponseMessage> {
    return this.unary<CreateResponseMessage>('Instance', 'Create', { serviceName, config, snapshot: snapshot ? Buffer.from(snapshot) : Buffer.alloc(0) });
  }

  receive(id: Buffer): ReceiveStream {
    const m = method('Instance', 'Receive');
    const call = this.client.makeServerStreamRequest(m.path, m.requestSerialize, (b: Buffer) => (m.responseDeserialize(b) as { value: Buffer }).value, { id });
    return call as unknown as ReceiveStream;
  }

  async handle(id: Buffer, data: Uint8Array): Promise<void> {
    await this.unary('Instance', 'Handle', { id, data: Buffer.from(data.buffer, data.byteOffset, data.byteLength) });
  }

  async suspend(id: Buffer): Promise<void> {
    await this.unary('Instance', 'Suspend', { id });
  }

  async snapshot(id: Buffer, outgoing: Uint8Array, incoming: Uint8Array): Promise<Buffer> {
    const r = await this.unary<{ value: Buffer }>('Instance', 'Snapshot', { id, outgoing: Buffer.from(outgoing), incoming: Buffer.from(incoming) });
    return r.value;
  }

  async shutdown(id: Buffer): Promise<void> {
    await this.unary('Instance', 'Shutdown', { id });
  }

  /** Connectivity without triggering a connection attempt. */
  state(): grpc.connectivityState {
    return this.client.getChannel().getConnectivityState(false);
  }

  close(): void {
    this.client.close();
  }

  private unary<R>(service: 'Root' | 'Instance', name: string, request: object): Promise<R> {
    const m = method(service, name);
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        m.path,
        m.requestSerialize,
        m.responseDeserialize,
        request,
        { deadline: Date.now() + CALL_DEADLINE_MS },
        (error: grpc.ServiceError | null, response?: object) => (error ? reject(error) : resolve(response as R)),
      );
    });
  }
}
