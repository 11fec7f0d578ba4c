import { GateError } from '../errors.js';

/** The module bytes are not a well-formed or acceptable WebAssembly module. */
export class ModuleError extends GateError {
  /** Byte offset in the module where the problem was found, if known. */
  readonly offset: number | undefined;
  constructor(message: string, offset?: number, code = 'GATE_BAD_MODULE') {
    super(code, offset === undefined ? message : `${message} (at byte offset ${offset})`);
    this.offset = offset;
  }
}

/** The module is well-formed but exceeds a configured limit. */
export class ModuleLimitError extends ModuleError {
  constructor(message: string, offset?: number) {
    super(message, offset, 'GATE_MODULE_LIMIT');
  }
}
