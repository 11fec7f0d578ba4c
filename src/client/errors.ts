import { GateError } from '../errors.js';

/** The server answered with an error status (anything but 200, 201, 204). */
export class ApiError extends GateError {
  /** HTTP status code, or 0 when a websocket was closed with an error. */
  readonly status: number;
  constructor(status: number, message: string) {
    super('GATE_API', message);
    this.status = status;
  }
}

/**
 * A websocket call or io was ended by the server with a policy (1008) or
 * internal (1011) close; the message is the server's close reason.
 */
export class WebSocketCloseError extends GateError {
  readonly closeCode: number;
  constructor(closeCode: number, message: string) {
    super('GATE_WEBSOCKET', message);
    this.closeCode = closeCode;
  }
}

/** The server could not be reached or answered something this client cannot read. */
export class ConnectionError extends GateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GATE_CONNECT', message, options);
  }
}

/** A response that does not follow the API (missing header, bad JSON). */
export class ProtocolError extends GateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GATE_PROTOCOL', message, options);
  }
}
