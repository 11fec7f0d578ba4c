/**
 * The `debug` action of an instance (spec extensions.md "Debugging",
 * docs/debugging.md): the original's DebugRequest/DebugResponse JSON, the
 * breakpoint configuration and reads of a stopped instance's globals, memory
 * and stack. This module only decides; InstanceManager.debug applies a new
 * configuration to the instance and its stored snapshot.
 */
import type { Program } from '../runtime/program.js';
import { encodeStack, globalValues, MAX_BREAKPOINTS } from '../snapshot/format.js';
import type { GlobalValue, StackFrame, StackValue } from '../snapshot/state.js';
import { functionAtInstruction, functionNames } from '../wasm/debug-info.js';
import { sourceLocation, type LineRow } from '../wasm/dwarf-line.js';
import { sourceLines, type TrapFrame } from '../runtime/backtrace.js';
import { ExternalKind } from '../wasm/module.js';
import { badRequest } from './errors.js';

export const DEBUG_OPS = ['CONFIG_GET', 'CONFIG_SET', 'CONFIG_UNION', 'CONFIG_COMPLEMENT', 'READ_GLOBALS', 'READ_MEMORY', 'READ_STACK'] as const;
export type DebugOp = (typeof DEBUG_OPS)[number];

/** Most bytes one READ_MEMORY may return. */
export const MAX_DEBUG_READ = 1024 * 1024;

export interface DebugRequest {
  op: DebugOp;
  /** `config.breakpoints` as given (the CONFIG_SET/UNION/COMPLEMENT operand). */
  breakpoints: bigint[];
  addr: bigint;
  size: bigint;
}

const MAX_U64 = 0xffffffffffffffffn;

/** A protobuf-JSON uint64: a non-negative integer as a number or a decimal string. */
function uint64(v: unknown, what: string): bigint {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'string' && /^[0-9]{1,20}$/.test(v)) {
    const b = BigInt(v);
    if (b <= MAX_U64) return b;
  }
  throw badRequest(`debug request: ${what} must be an unsigned 64-bit integer (a number or a decimal string)`);
}

/** Parses a DebugRequest (protobuf JSON: `{op, config: {breakpoints}, addr, size}`); unknown fields are refused. */
export function parseDebugRequest(v: unknown): DebugRequest {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw badRequest('debug request must be a JSON object');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (k !== 'op' && k !== 'config' && k !== 'addr' && k !== 'size') throw badRequest(`debug request: unknown field ${JSON.stringify(k)}`);
  }
  let op: DebugOp = 'CONFIG_GET';
  if (o.op !== undefined) {
    if (typeof o.op === 'number' && Number.isInteger(o.op) && o.op >= 0 && o.op < DEBUG_OPS.length) op = DEBUG_OPS[o.op]!;
    else if (typeof o.op === 'string' && (DEBUG_OPS as readonly string[]).includes(o.op)) op = o.op as DebugOp;
    else throw badRequest(`debug request: op must be one of ${DEBUG_OPS.join(', ')}`);
  }
  const breakpoints: bigint[] = [];
  if (o.config !== undefined && o.config !== null) {
    if (typeof o.config !== 'object' || Array.isArray(o.config)) throw badRequest('debug request: config must be an object');
    const c = o.config as Record<string, unknown>;
    for (const k of Object.keys(c)) if (k !== 'breakpoints') throw badRequest(`debug request: unknown config field ${JSON.stringify(k)}`);
    if (c.breakpoints !== undefined && c.breakpoints !== null) {
      if (!Array.isArray(c.breakpoints)) throw badRequest('debug request: config.breakpoints must be an array');
      if (c.breakpoints.length > MAX_BREAKPOINTS) throw badRequest(`debug request: at most ${MAX_BREAKPOINTS} breakpoints`);
      for (const b of c.breakpoints) breakpoints.push(uint64(b, 'a breakpoint'));
    }
  }
  const addr = o.addr === undefined ? 0n : uint64(o.addr, 'addr');
  const size = o.size === undefined ? 0n : uint64(o.size, 'size');
  return { op, breakpoints, addr, size };
}

function sortedUnique(bs: Iterable<bigint>): bigint[] {
  return [...new Set(bs)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * The breakpoints after a CONFIG_SET/UNION/COMPLEMENT (sorted, unique), or
 * undefined for the other ops. New breakpoints must be instruction offsets
 * in `program`'s code; more than MAX_BREAKPOINTS is refused.
 */
export function newBreakpoints(program: Program, current: readonly bigint[], req: DebugRequest): bigint[] | undefined {
  let next: bigint[];
  switch (req.op) {
    case 'CONFIG_SET':
      next = sortedUnique(req.breakpoints);
      break;
    case 'CONFIG_UNION':
      next = sortedUnique([...current, ...req.breakpoints]);
      break;
    case 'CONFIG_COMPLEMENT': {
      const remove = new Set(req.breakpoints);
      return current.filter((b) => !remove.has(b));
    }
    default:
      return undefined;
  }
  if (next.length > MAX_BREAKPOINTS) throw badRequest(`too many breakpoints (${next.length}, at most ${MAX_BREAKPOINTS})`);
  const known = new Set(current);
  for (const b of next) {
    if (known.has(b)) continue;
    if (b > BigInt(Number.MAX_SAFE_INTEGER) || functionAtInstruction(program.module, Number(b)) === undefined) {
      throw badRequest(`breakpoint ${b} is not the offset of an instruction in the module's code section`);
    }
  }
  return next;
}

const TYPE_NAMES: Record<number, string> = { 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64' };

/** A value for people: its type, its bit pattern (hex) and its value (integers signed; floats as numbers, NaN and infinities as strings). */
function valueJson(type: number, bits: number | bigint): Record<string, unknown> {
  const out: Record<string, unknown> = { type: TYPE_NAMES[type] ?? `0x${type.toString(16)}` };
  const view = new DataView(new ArrayBuffer(8));
  switch (type) {
    case 0x7f:
      out.bits = `0x${(Number(bits) >>> 0).toString(16)}`;
      out.value = Number(bits) | 0;
      break;
    case 0x7e:
      out.bits = `0x${BigInt.asUintN(64, BigInt(bits)).toString(16)}`;
      out.value = BigInt.asIntN(64, BigInt(bits)).toString();
      break;
    case 0x7d: {
      view.setUint32(0, Number(bits) >>> 0, true);
      out.bits = `0x${(Number(bits) >>> 0).toString(16)}`;
      const f = view.getFloat32(0, true);
      out.value = Number.isFinite(f) ? f : String(f);
      break;
    }
    case 0x7c: {
      view.setBigUint64(0, BigInt.asUintN(64, BigInt(bits)), true);
      out.bits = `0x${BigInt.asUintN(64, BigInt(bits)).toString(16)}`;
      const f = view.getFloat64(0, true);
      out.value = Number.isFinite(f) ? f : String(f);
      break;
    }
  }
  return out;
}

function globalBits(g: GlobalValue): bigint {
  return g.type === 0x7f ? BigInt(g.value >>> 0) : g.type === 0x7e ? BigInt.asUintN(64, g.value) : BigInt(g.bits);
}


const stackValueJson = (v: StackValue): Record<string, unknown> => valueJson(v.type, v.bits);
const SITE_KINDS = ['call', 'entry', 'loop', 'bulk', 'breakpoint'];

function frameJson(f: StackFrame, names: Map<number, string>, lines: readonly LineRow[]): Record<string, unknown> {
  const out: Record<string, unknown> = { function: f.func };
  const name = names.get(f.func);
  if (name !== undefined) out.name = name;
  out.kind = SITE_KINDS[f.kind] ?? f.kind;
  out.offset = f.offset;
  const source = sourceLocation(lines, f.offset);
  if (source) out.source = source;
  out.locals = f.locals.map(stackValueJson);
  out.stack = f.stack.map(stackValueJson);
  return out;
}

/** What a read op returns: `data` (the original's bytes field) and our readable additions. */
export interface DebugRead {
  data?: Uint8Array;
  extra?: Record<string, unknown>;
}

/** A frame of a trap's backtrace: where, without values (a trap does not unwind the stack, so its values are gone). */
function trapFrameJson(f: TrapFrame): Record<string, unknown> {
  const out: Record<string, unknown> = { function: f.function };
  if (f.name !== undefined) out.name = f.name;
  out.kind = 'trap';
  if (f.offset !== undefined) out.offset = f.offset;
  if (f.source) out.source = f.source;
  return out;
}

/**
 * READ_GLOBALS, READ_MEMORY, READ_STACK of a stopped instance whose state is
 * `program` (its latest snapshot, or its module when it has never run);
 * `trap`: where its latest run trapped (READ_STACK's frames when it has no
 * saved stack).
 */
export function readState(program: Program, req: DebugRequest, trap?: readonly TrapFrame[]): DebugRead {
  const m = program.module;
  switch (req.op) {
    case 'READ_GLOBALS': {
      // Every defined global as 8 little-endian bytes of its bit pattern.
      const globals = globalValues(m);
      const data = new Uint8Array(globals.length * 8);
      const view = new DataView(data.buffer);
      globals.forEach((g, i) => view.setBigUint64(i * 8, globalBits(g), true));
      const imported = m.imports.filter((im) => im.kind === ExternalKind.Global).length;
      const list = globals.map((g, i) => ({ index: imported + i, ...valueJson(g.type, globalBits(g)) }));
      return { data, extra: { globals: list } };
    }
    case 'READ_MEMORY': {
      if (req.size > BigInt(MAX_DEBUG_READ)) throw badRequest(`debug read of ${req.size} bytes: at most ${MAX_DEBUG_READ} bytes per request`);
      // Read from the data segments: the whole memory image is never built (it may be gigabytes).
      const memorySize = (m.memories[0]?.min ?? 0) * 65536;
      if (req.addr + req.size > BigInt(memorySize)) {
        throw badRequest(`debug read of ${req.size} bytes at ${req.addr} is outside the instance's memory (${memorySize} bytes)`);
      }
      const start = Number(req.addr);
      const end = start + Number(req.size);
      const data = new Uint8Array(end - start);
      for (const d of m.dataSegments) {
        if (d.passive || d.offset === undefined) continue;
        const from = Math.max(start, d.offset);
        const to = Math.min(end, d.offset + (d.end - d.start));
        if (from < to) data.set(m.bytes.subarray(d.start + (from - d.offset), d.start + (to - d.offset)), from - start);
      }
      return { data };
    }
    case 'READ_STACK': {
      // A trapped run's frames come first: a snapshot's stack may be older than the trap.
      if (trap?.length) return { extra: { frames: trap.map(trapFrameJson) } };
      const stack = program.snapshot?.stack;
      if (!stack) return { extra: { frames: [] } };
      const names = functionNames(m);
      return { data: encodeStack(stack), extra: { frames: stack.frames.map((f) => frameJson(f, names, sourceLines(m))).reverse() } };
    }
    default:
      return {};
  }
}

/** The DebugResponse JSON (`{module, status, config, data}`, protobuf-JSON style: uint64 as strings, bytes as base64, empty fields omitted). */
export function debugResponseJson(module: string, status: Record<string, unknown>, breakpoints: readonly bigint[], read: DebugRead): Record<string, unknown> {
  const out: Record<string, unknown> = { module: `sha256/${module}`, status, config: breakpoints.length ? { breakpoints: breakpoints.map(String) } : {} };
  if (read.data && read.data.length) out.data = Buffer.from(read.data.buffer, read.data.byteOffset, read.data.length).toString('base64');
  return { ...out, ...read.extra };
}
