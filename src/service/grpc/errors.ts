/**
 * Errors of gRPC services (docs/grpc.md). Those that end a program instance
 * are ServiceInternalErrors: the session kills the instance with INTERNAL and
 * this message, which names the service and what went wrong with it.
 */
import { GateError } from '../../errors.js';
import { ServiceInternalError } from '../session.js';

/** The process or server behind a service went away, or a call to it failed. */
export class GrpcServiceError extends ServiceInternalError {
  constructor(
    service: string,
    message: string,
    /** The gRPC status code, when a call failed with one. */
    readonly grpcCode?: number,
    cause?: unknown,
  ) {
    super(`gRPC service ${JSON.stringify(service)}: ${message}`, service, cause);
  }
}

/** The service sent something the protocol does not allow (a packet shorter than its header, …). */
export class GrpcProtocolError extends ServiceInternalError {
  constructor(service: string, message: string) {
    super(`gRPC service ${JSON.stringify(service)} broke the protocol: ${message}`, service);
  }
}

/** The service refused to restore an instance from its snapshot (CreateResponse.restoration_error). */
export class GrpcRestoreError extends ServiceInternalError {
  constructor(service: string, reason: string) {
    super(`gRPC service ${JSON.stringify(service)} cannot restore the instance's state: ${reason}`, service);
  }
}

/** shutdown() of an instance that has already been shut down or suspended. */
export class GrpcInstanceClosedError extends GateError {
  constructor(service: string) {
    super('GATE_GRPC_INSTANCE_CLOSED', `gRPC service ${JSON.stringify(service)}: the instance has already been shut down`);
  }
}

/** A configured gRPC command or target could not be started, reached or initialized. */
export class GrpcStartError extends GateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GATE_GRPC_START', message, options);
  }
}
