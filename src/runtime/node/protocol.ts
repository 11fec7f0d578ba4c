/**
 * Encoding of instance specs and snapshots in executor messages: JSON
 * headers for the small fields, binary parts (framing.ts) for the bytes.
 * Values coming back from the executor are checked: it is not trusted.
 */
import type { GlobalValue } from '../../snapshot/state.js';
import { DEBUG_CHUNK_BYTES } from '../debug-limits.js';
import type { RewindSource } from '../rewind-copies.js';
import type { ExecutorSnapshot, InstanceSpec } from '../executor.js';
import { FrameError, packParts, unpackParts } from './framing.js';

type Json = Record<string, unknown>;

/**
 * Bounds on what an executor may send (it is not trusted; the parent checks
 * each message's header, and its payload's size before buffering it).
 */
/** Most bytes of one message's JSON header (a snapshot's lists the calls, whose export names may be long). */
export const MAX_EXECUTOR_HEADER_BYTES = 1024 * 1024;
/** Most bytes of debug output in one message: the executor splits a larger write. */
export const MAX_DEBUG_MESSAGE_BYTES = DEBUG_CHUNK_BYTES;
/**
 * What a snapshot may carry besides the instance's memory: its stack (at most
 * 4 000 000 saved values of 8 bytes, with their frames' headers), unread
 * input and a partly written packet.
 */
export const SNAPSHOT_EXTRA_BYTES = 64 * 1024 * 1024;
export { MAX_SERVICE_CODE, MAX_SERVICE_NAME_LENGTH } from '../executor-checks.js';

/** A global's value as the decimal string of its raw bits (keeps -0 and NaN payloads apart). */
function globalToJson(g: GlobalValue): Json {
  switch (g.type) {
    case 0x7f:
      return { type: g.type, bits: String(g.value | 0) };
    case 0x7e:
      return { type: g.type, bits: String(BigInt.asIntN(64, g.value)) };
    case 0x7d:
      return { type: g.type, bits: String(g.bits >>> 0) };
    default:
      return { type: g.type, bits: String(BigInt.asUintN(64, g.bits)) };
  }
}

function globalFromJson(v: unknown): GlobalValue {
  const o = v as Json;
  if (typeof o !== 'object' || o === null || typeof o.bits !== 'string' || !/^-?\d{1,20}$/.test(o.bits)) throw new FrameError('invalid global value');
  const bits = BigInt(o.bits);
  switch (o.type) {
    case 0x7f:
      return { type: 0x7f, value: Number(BigInt.asIntN(32, bits)) };
    case 0x7e:
      return { type: 0x7e, value: BigInt.asIntN(64, bits) };
    case 0x7d:
      return { type: 0x7d, bits: Number(BigInt.asUintN(32, bits)) };
    case 0x7c:
      return { type: 0x7c, bits: BigInt.asUintN(64, bits) };
    default:
      throw new FrameError('invalid global type');
  }
}

export function encodeSpec(spec: InstanceSpec): { header: Json; payload: Uint8Array[] } {
  const parts: Uint8Array[] = spec.init.data.map((d) => d.bytes);
  const json: Json = {
    ...spec,
    init: { data: spec.init.data.map((d) => d.offset), globals: spec.init.globals.map((g) => ({ index: g.index, value: globalToJson(g.value) })) },
    resume: undefined,
    firstCallReplies: undefined,
  };
  if (spec.resume) {
    const r = spec.resume;
    parts.push(r.stack, r.input, r.outputTail);
    json.resume = { calls: r.calls, monotonicNs: String(r.monotonicNs), services: r.services };
  }
  if (spec.firstCallReplies) {
    // After the data segments and the resume parts.
    parts.push(...spec.firstCallReplies.packets);
    json.firstCallReplies = { service: spec.firstCallReplies.service, count: spec.firstCallReplies.packets.length };
  }
  const { lengths, payload } = packParts(parts);
  return { header: { spec: json, lengths }, payload };
}

/** Executor side: the spec comes from the trusted parent. */
/** A load message's description of the rewind source that follows the prepared module in its payload. */
export function rewindSourceHeader(s: RewindSource): Json {
  return { profile: s.profile, unwindingImports: s.unwindingImports, breakpoints: s.breakpoints, codeOffsetShift: s.codeOffsetShift, fuelChunk: s.fuelChunk, lazyMinBodyBytes: s.lazyMinBodyBytes, length: s.module.length };
}

/** The rewind source of a load message (undefined: none), its module the last `length` bytes of the payload. */
export function decodeRewindSource(header: unknown, payload: Uint8Array): RewindSource | undefined {
  if (header === undefined) return undefined;
  const h = header as Json;
  const ints = (v: unknown): v is number[] => Array.isArray(v) && v.every((x) => Number.isInteger(x) && x >= 0);
  const length = h.length;
  if (
    (h.profile !== 'suspend-anywhere' && h.profile !== 'io-suspend') ||
    !ints(h.unwindingImports) ||
    !ints(h.breakpoints) ||
    !Number.isInteger(h.codeOffsetShift) ||
    (h.fuelChunk !== undefined && !(Number.isInteger(h.fuelChunk) && (h.fuelChunk as number) > 0)) ||
    (h.lazyMinBodyBytes !== undefined && !(Number.isInteger(h.lazyMinBodyBytes) && (h.lazyMinBodyBytes as number) >= 0)) ||
    !Number.isInteger(length) ||
    (length as number) < 0 ||
    (length as number) > payload.length
  ) {
    throw new FrameError('invalid rewind source');
  }
  return {
    module: payload.subarray(payload.length - (length as number)),
    profile: h.profile,
    unwindingImports: h.unwindingImports,
    breakpoints: h.breakpoints,
    codeOffsetShift: h.codeOffsetShift as number,
    fuelChunk: h.fuelChunk as number | undefined,
    lazyMinBodyBytes: h.lazyMinBodyBytes as number | undefined,
  };
}

export function decodeSpec(header: Json, payload: Uint8Array | undefined): InstanceSpec {
  const parts = unpackParts(header.lengths, payload);
  const json = header.spec as Json & {
    init: { data: number[]; globals: Array<{ index: number; value: unknown }> };
    resume?: Json;
    firstCallReplies?: { service: string; count: number };
  };
  const data = json.init.data.map((offset, i) => ({ offset, bytes: parts[i]! }));
  const spec = {
    ...json,
    init: { data, globals: json.init.globals.map((g) => ({ index: g.index, value: globalFromJson(g.value) })) },
    resume: undefined,
    firstCallReplies: undefined,
  } as unknown as InstanceSpec;
  let next = data.length;
  if (json.resume) {
    const r = json.resume as { calls: string[]; monotonicNs: string; services: string[] };
    const [stack, input, outputTail] = parts.slice(next, next + 3);
    next += 3;
    spec.resume = { calls: r.calls, monotonicNs: BigInt(r.monotonicNs), services: r.services, stack: stack!, input: input!, outputTail: outputTail! };
  }
  if (json.firstCallReplies) {
    const f = json.firstCallReplies;
    spec.firstCallReplies = { service: f.service, packets: parts.slice(next, next + f.count) };
  }
  return spec;
}

export function encodeSnapshot(s: ExecutorSnapshot): { header: Json; payload: Uint8Array[] } {
  const parts = [s.memory, s.stack ?? new Uint8Array(0), s.input, s.outputTail];
  const { lengths, payload } = packParts(parts);
  return {
    header: { lengths, hasStack: s.stack !== undefined, globals: s.globals.map(globalToJson), calls: s.calls, monotonicNs: String(s.monotonicNs) },
    payload,
  };
}

/** Parent side: everything is checked, the executor is not trusted. */
export function decodeSnapshot(header: Json, payload: Uint8Array | undefined): ExecutorSnapshot {
  const parts = unpackParts(header.lengths, payload);
  if (parts.length !== 4) throw new FrameError('snapshot has the wrong number of parts');
  const [memory, stack, input, outputTail] = parts as [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
  if (memory.length % 65536 !== 0) throw new FrameError('snapshot memory is not a whole number of pages');
  if (!Array.isArray(header.globals) || !Array.isArray(header.calls) || !header.calls.every((c) => typeof c === 'string')) {
    throw new FrameError('invalid snapshot header');
  }
  if (typeof header.monotonicNs !== 'string' || !/^\d{1,20}$/.test(header.monotonicNs)) throw new FrameError('invalid monotonic time');
  // The parts are views of this message's own buffer: nothing else uses it.
  // Memory is scanned with wide typed arrays, which need alignment.
  return {
    memory: memory.byteOffset % 8 === 0 ? memory : Uint8Array.prototype.slice.call(memory),
    globals: header.globals.map(globalFromJson),
    stack: header.hasStack === true ? stack : undefined,
    calls: header.calls as string[],
    monotonicNs: BigInt(header.monotonicNs),
    input,
    outputTail,
  };
}
