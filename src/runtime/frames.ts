/**
 * Frames of the original module (snapshot/state.ts StackFrame) from the raw
 * frames an executor saves, and back, through the transform's frame layouts
 * (prepare/instrument.ts). This is where a snapshot's stack is checked
 * against the code it is to be rewound into: every frame must name a
 * defined function, a site of that function, and exactly the locals and
 * operand values (count and types) the code has there.
 */
import type { FunctionLayout, UnwindLayouts } from '../prepare/instrument.js';
import { SnapshotError } from '../snapshot/errors.js';
import type { StackFrame, StackValue } from '../snapshot/state.js';
import type { RawFrame, RawStack } from './unwinder.js';

const TYPE_NAMES: Record<number, string> = { 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64' };
const is64 = (t: number): boolean => t === 0x7e || t === 0x7c;

function typed(type: number, raw: number | bigint | undefined, what: string): StackValue {
  if (is64(type)) {
    if (typeof raw !== 'bigint') throw new SnapshotError(`${what}: expected a 64-bit value`);
    return { type: type as 0x7e | 0x7c, bits: raw };
  }
  if (typeof raw !== 'number') throw new SnapshotError(`${what}: expected a 32-bit value`);
  return { type: type as 0x7f | 0x7d, bits: raw >>> 0 };
}

function layoutOf(layouts: UnwindLayouts, func: number, i: number): FunctionLayout {
  const l = layouts.get(func);
  if (!l) throw new SnapshotError(`gate.stack frame ${i}: function ${func} is not a defined function that can be on a suspended stack`);
  return l;
}

/** Raw frames (from an executor) as frames of the original module. */
export function framesFromRaw(raw: RawStack, layouts: UnwindLayouts): StackFrame[] {
  return raw.map((f, i) => {
    const l = layoutOf(layouts, f.func, i);
    const site = l.sites[f.site];
    if (!site) throw new SnapshotError(`unwound frame ${i}: function ${f.func} has no site ${f.site}`);
    if (f.values.length !== l.locals.length + l.slots.length) {
      throw new SnapshotError(`unwound frame ${i}: ${f.values.length} values, but function ${f.func} saves ${l.locals.length + l.slots.length}`);
    }
    const locals = l.locals.map((t, j) => typed(t, f.values[j], `unwound frame ${i} local ${j}`));
    const stack = site.stack.map((t, d) => {
      const j = l.slots.findIndex((s) => s.depth === d && s.type === t);
      if (j < 0) throw new SnapshotError(`unwound frame ${i}: no slot for operand ${d} (internal error)`);
      return typed(t, f.values[l.locals.length + j], `unwound frame ${i} operand ${d}`);
    });
    return { func: f.func, kind: site.kind, offset: site.offset, locals, stack };
  });
}

function describe(vs: readonly { type: number }[]): string {
  return `(${vs.map((v) => TYPE_NAMES[v.type] ?? `0x${v.type.toString(16)}`).join(' ')})`;
}

/** Frames of a snapshot as raw frames for an executor; throws SnapshotError when they do not fit the code. */
export function rawFromFrames(frames: StackFrame[], layouts: UnwindLayouts): RawStack {
  return frames.map((f, i): RawFrame => {
    const where = `gate.stack frame ${i} (function ${f.func})`;
    const l = layoutOf(layouts, f.func, i);
    const site = l.sites.findIndex((s) => s.kind === f.kind && s.offset === f.offset);
    if (site < 0) throw new SnapshotError(`${where}: the code has no place where a frame can stop of kind ${f.kind} at offset 0x${f.offset.toString(16)}`);
    const { stack: stackTypes, args } = l.sites[site]!;
    if (args && f.stack.length === stackTypes.length + args.length && args.every((t, j) => f.stack[stackTypes.length + j]!.type === t)) {
      // A snapshot from before a call's arguments were left out of its frame: they are not needed.
      f = { ...f, stack: f.stack.slice(0, stackTypes.length) };
    }
    if (f.locals.length !== l.locals.length || f.locals.some((v, j) => v.type !== l.locals[j])) {
      throw new SnapshotError(`${where}: locals ${describe(f.locals)} do not match the function's ${describe(l.locals.map((type) => ({ type })))}`);
    }
    if (f.stack.length !== stackTypes.length || f.stack.some((v, j) => v.type !== stackTypes[j])) {
      throw new SnapshotError(`${where}: operand stack ${describe(f.stack)} does not match the code's ${describe(stackTypes.map((type) => ({ type })))} at offset 0x${f.offset.toString(16)}`);
    }
    const values: Array<number | bigint> = f.locals.map((v) => v.bits);
    for (const s of l.slots) {
      const v = s.depth < f.stack.length && f.stack[s.depth]!.type === s.type ? f.stack[s.depth]!.bits : undefined;
      values.push(v ?? (is64(s.type) ? 0n : 0));
    }
    return { func: f.func, site, values };
  });
}
