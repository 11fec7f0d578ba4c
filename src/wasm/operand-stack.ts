/**
 * How many operand values a function body holds across the entries of its
 * blocks, loops and ifs: the sum, over every such construct, of the operand
 * stack's height where it begins. V8's compilers copy the operand stack's
 * state at every construct (Liftoff keeps each copy until the function is
 * compiled), so their memory grows with this number: 8 000 values held
 * across 12 000 `if`s — an 84 KB function — made one compilation take
 * 2.4 GB. Compilers keep values in locals, not on the operand stack, across
 * blocks (clang: none; emscripten's sql.js: 152 at most in a function), so validation can refuse
 * bodies far above that (validate.ts).
 */
import { decodeInstructionList, InstructionList, subopcodeAt } from './code.js';
import { u32At } from './leb128.js';
import { functionType, type WasmModule } from './module.js';
import { FC_POPS, POPS, PUSH } from './stack-effects.js';

/** Reused from body to body (the list only grows). */
const scratch = new InstructionList();

/** The sum of operand stack heights at the entries of the constructs of defined function `index` (see the file comment). */
export function valuesHeldAcrossBlocks(m: WasmModule, index: number): number {
  const bytes = m.bytes;
  const func = m.importedFunctionCount + index;
  const results = functionType(m, func)?.results.length ?? 0;
  // Per open construct: height at its start, its result count, and whether the code after a branch in it is unreachable.
  const base: number[] = [0];
  const arity: number[] = [results];
  const dead: boolean[] = [false];
  let h = 0;
  let held = 0;
  let deadDepth = 0; // constructs opened inside unreachable code
  const { starts, count } = decodeInstructionList(bytes, m.bodies[index]!, scratch, func);
  for (let i = 0; i < count; i++) {
    const pos = starts[i]!;
    const op = bytes[pos]!;
    const top = base.length - 1;
    if (dead[top]) {
      // Unreachable: the stack is polymorphic; only structure matters until this construct's else or end.
      if (op === 0x02 || op === 0x03 || op === 0x04) deadDepth++;
      else if (op === 0x0b && deadDepth > 0) deadDepth--;
      else if (op === 0x05 && deadDepth === 0) {
        dead[top] = false;
        h = base[top]!;
      } else if (op === 0x0b) {
        h = base[top]! + arity[top]!;
        base.pop();
        arity.pop();
        dead.pop();
      }
      continue;
    }
    switch (op) {
      case 0x02:
      case 0x03:
      case 0x04:
        if (op === 0x04) h--;
        held += h;
        base.push(h);
        arity.push(bytes[pos + 1] === 0x40 ? 0 : 1);
        dead.push(false);
        break;
      case 0x05:
        h = base[top]!;
        break;
      case 0x0b:
        if (top === 0) break;
        h = base[top]! + arity[top]!;
        base.pop();
        arity.pop();
        dead.pop();
        break;
      case 0x00: // unreachable
      case 0x0c: // br
      case 0x0e: // br_table
      case 0x0f: // return
        dead[top] = true;
        break;
      case 0x0d: // br_if
      case 0x1a: // drop
      case 0x21: // local.set
      case 0x24: // global.set
        h--;
        break;
      case 0x1b: // select
        h -= 2;
        break;
      case 0x20: // local.get
      case 0x23: // global.get
        h++;
        break;
      case 0x22: // local.tee
      case 0x01: // nop
        break;
      case 0x10:
      case 0x11: {
        const x = u32At(bytes, pos + 1);
        const t = op === 0x10 ? functionType(m, x) : m.types[x];
        if (t) h += t.results.length - t.params.length - (op === 0x11 ? 1 : 0);
        break;
      }
      case 0xfc: {
        const sub = subopcodeAt(bytes, pos);
        if (sub >= 8) h -= FC_POPS[sub - 8] ?? 0; // (0–7, saturating truncations: one value for one)
        break;
      }
      default:
        h += (PUSH[op] ? 1 : 0) - POPS[op]!;
    }
  }
  return held;
}
