import { GateError } from '../errors.js';

/** A failure of the runtime itself (not of the program). */
export class InternalRuntimeError extends GateError {
  constructor(message: string) {
    super('GATE_INTERNAL', message);
  }
}

/** An operation on an instance that its state does not allow. */
export class InstanceStateError extends GateError {
  constructor(message: string) {
    super('GATE_INSTANCE_STATE', message);
  }
}

/** The executor process failed or went away. */
export class ExecutorError extends GateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GATE_EXECUTOR', message, options);
  }
}
