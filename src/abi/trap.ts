import { GateError } from '../errors.js';

/** Trap ids shared with the original runtime (spec abi.md §7.2). */
export const TrapId = {
  Exit: 0,
  NoFunction: 1,
  Suspended: 2,
  Unreachable: 3,
  CallStackExhausted: 4,
  MemoryAccessOutOfBounds: 5,
  IndirectCallIndexOutOfBounds: 6,
  IndirectCallSignatureMismatch: 7,
  IntegerDivideByZero: 8,
  IntegerOverflow: 9,
  Breakpoint: 10,
  AbiDeficiency: 27,
  AbiViolation: 28,
  InternalError: 29,
  Killed: 30,
} as const;
export type TrapIdCode = (typeof TrapId)[keyof typeof TrapId];

/** Names used for `cause` in instance status (abi.md §7.2). */
export const TrapCauseName: Record<number, string> = {
  3: 'UNREACHABLE',
  4: 'CALL_STACK_EXHAUSTED',
  5: 'MEMORY_ACCESS_OUT_OF_BOUNDS',
  6: 'INDIRECT_CALL_INDEX_OUT_OF_BOUNDS',
  7: 'INDIRECT_CALL_SIGNATURE_MISMATCH',
  8: 'INTEGER_DIVIDE_BY_ZERO',
  9: 'INTEGER_OVERFLOW',
  10: 'BREAKPOINT',
  27: 'ABI_DEFICIENCY',
  28: 'ABI_VIOLATION',
  29: 'INTERNAL',
};

/**
 * Thrown by host functions (through the program's frames) to stop an
 * instance with a trap, e.g. an out-of-bounds buffer passed to the ABI.
 */
export class Trap extends GateError {
  constructor(readonly trap: TrapIdCode, message?: string) {
    super('GATE_TRAP', message ?? `trap: ${TrapCauseName[trap] ?? trap}`);
  }
}

/** A packet or protocol violation by the program: the instance is killed with ABI_VIOLATION. */
export class AbiViolation extends Trap {
  constructor(message: string) {
    super(TrapId.AbiViolation, message);
  }
}
