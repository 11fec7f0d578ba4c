/**
 * What simple instructions (numeric, memory, constants) take from and put
 * on the operand stack: POPS[op] values popped, PUSH[op] the type of the
 * value pushed (0: none). Control, variable, call and 0xFC instructions are
 * left to their users, which know their immediates.
 */
import { ValType } from './module.js';

const { i32: I32, i64: I64, f32: F32, f64: F64 } = ValType;

export const POPS = new Uint8Array(256);
export const PUSH = new Uint8Array(256);

function sig(from: number, to: number, pops: number, push: number): void {
  for (let op = from; op <= to; op++) {
    POPS[op] = pops;
    PUSH[op] = push;
  }
}
sig(0x28, 0x28, 1, I32);
sig(0x29, 0x29, 1, I64);
sig(0x2a, 0x2a, 1, F32);
sig(0x2b, 0x2b, 1, F64);
sig(0x2c, 0x2f, 1, I32);
sig(0x30, 0x35, 1, I64);
sig(0x36, 0x3e, 2, 0);
sig(0x3f, 0x3f, 0, I32);
sig(0x40, 0x40, 1, I32);
sig(0x41, 0x41, 0, I32);
sig(0x42, 0x42, 0, I64);
sig(0x43, 0x43, 0, F32);
sig(0x44, 0x44, 0, F64);
sig(0x45, 0x45, 1, I32);
sig(0x46, 0x4f, 2, I32);
sig(0x50, 0x50, 1, I32);
sig(0x51, 0x66, 2, I32);
sig(0x67, 0x69, 1, I32);
sig(0x6a, 0x78, 2, I32);
sig(0x79, 0x7b, 1, I64);
sig(0x7c, 0x8a, 2, I64);
sig(0x8b, 0x91, 1, F32);
sig(0x92, 0x98, 2, F32);
sig(0x99, 0x9f, 1, F64);
sig(0xa0, 0xa6, 2, F64);
sig(0xa7, 0xab, 1, I32);
sig(0xac, 0xb1, 1, I64);
sig(0xb2, 0xb6, 1, F32);
sig(0xb7, 0xbb, 1, F64);
sig(0xbc, 0xbc, 1, I32);
sig(0xbd, 0xbd, 1, I64);
sig(0xbe, 0xbe, 1, F32);
sig(0xbf, 0xbf, 1, F64);
sig(0xc0, 0xc1, 1, I32);
sig(0xc2, 0xc4, 1, I64);

/** Saturating truncations 0xFC 0–7: result types. */
export const SAT_PUSH = [I32, I32, I32, I32, I64, I64, I64, I64];

/** Values 0xFC sub-opcodes 8–14 pop (memory.init, data.drop, memory.copy, memory.fill, table.init, elem.drop, table.copy); they push none. */
export const FC_POPS = [3, 0, 3, 3, 3, 0, 3];
