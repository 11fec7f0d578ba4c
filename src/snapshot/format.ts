/**
 * The snapshot module format (spec snapshot.md; our layout and `gate.stack`
 * encoding are documented in docs/snapshot.md).
 *
 * A snapshot is the program's own code plus its current memory, globals and
 * Gate custom sections. `writeSnapshot` builds one from a parsed program and
 * a SnapshotState; `readSnapshot` checks the Gate sections of a parsed
 * module and decodes them. Memory and globals are not decoded by
 * readSnapshot: a restored snapshot is instantiated like any module, from
 * its memory, global and data sections (`memoryImage` and `globalValues`
 * give the same values for tests and tools).
 *
 * No Node built-ins: this also runs in browsers.
 */
import type { Profile } from '../prepare/profile.js';
import { findDataSegmentUse } from '../wasm/code.js';
import { ByteWriter } from '../wasm/leb128.js';
import type { Export, Section, WasmModule } from '../wasm/module.js';
import { ExternalKind, SectionId } from '../wasm/module.js';
import type { DataSegments } from './data.js';
import { dataPayloadSize, dataSectionParts, findDataSegments, memoryImage, PAGE_SIZE, ulebSize, writeDataSection } from './data.js';
import { SnapshotError, SnapshotUnsupportedError } from './errors.js';
import type { GlobalValue, ServiceState, SnapshotState, StackFrame, StackState, StackValue } from './state.js';
import { Reader } from './reader.js';

export { memoryImage };

export const SectionName = {
  Snapshot: 'gate.snapshot',
  Export: 'gate.export',
  Buffer: 'gate.buffer',
  Stack: 'gate.stack',
} as const;

/** Spec §3: more breakpoints than this make a snapshot invalid. */
export const MAX_BREAKPOINTS = 100;
/** Spec §4: service names are 1..127 bytes (their length is a single byte). */
export const MAX_SERVICE_NAME_LENGTH = 127;
/** The version of gate.snapshot we write; readers accept any (spec §3). */
export const SNAPSHOT_VERSION = 0;
/** First four bytes of our gate.stack content: "Gate-TS stack, layout 2" (frames of the original module). */
export const STACK_MAGIC = 'GTS2';
/** Layout 1 held Asyncify data of one prepared module; it cannot be rewound by the current transform. */
const OLD_STACK_MAGIC = 'GTS1';
const STACK_MAGIC_BYTES = new TextEncoder().encode(STACK_MAGIC);
const MAX_MEMORY_PAGES = 65536;

const PROFILE_CODES: readonly Profile[] = ['suspend-anywhere', 'io-suspend'];

/** What readSnapshot finds in a snapshot module besides memory and globals. */
export interface SnapshotInfo {
  trap: number;
  result: number;
  final: boolean;
  monotonicNs: bigint;
  breakpoints: bigint[];
  input: Uint8Array;
  output: Uint8Array;
  services: ServiceState[];
  stack: StackState | undefined;
  /** From gate.export if present (hidden while execution is in progress), else the module's own. */
  exports: Export[];
  /** Payload (count and entries) of the export section in effect, if there is one. */
  exportSection: Uint8Array | undefined;
}

const utf8Encoder = new TextEncoder();

// ---------------------------------------------------------------------------
// Writing

/** Pieces of the output module, concatenated once at the end (the data section is written in place). */
/** A code section of no functions: id, size 1, count 0. */
const EMPTY_CODE_SECTION = new Uint8Array([SectionId.Code, 1, 0]);

class Parts {
  readonly list: Uint8Array[] = [];
  size = 0;
  push(b: Uint8Array): void {
    this.list.push(b);
    this.size += b.length;
  }
}

function putUleb64(w: ByteWriter, v: bigint): void {
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) b |= 0x80;
    w.u8(b);
  } while (v !== 0n);
}

/** Frame of a custom section holding `contentSize` bytes after its name. */
function customHeader(name: string, contentSize: number): Uint8Array {
  const n = utf8Encoder.encode(name);
  const w = new ByteWriter(16 + n.length);
  w.u8(SectionId.Custom).u32(ulebSize(n.length) + n.length + contentSize).u32(n.length).bytes(n);
  return w.finish();
}

function sectionOf(m: WasmModule, id: number): Section | undefined {
  return m.sections.find((s) => s.id === id);
}

function customOf(m: WasmModule, name: string): Section | undefined {
  return m.sections.find((s) => s.id === SectionId.Custom && s.name === name);
}

function isUint32(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}

function isUint64(v: bigint): boolean {
  return typeof v === 'bigint' && v >= 0n && v <= 0xffffffffffffffffn;
}

/**
 * The complete export section (id, size, payload) in effect for `program`:
 * the content of its gate.export section if it is itself a snapshot with
 * hidden exports, else its export section, else undefined.
 */
function effectiveExportSection(program: WasmModule): Uint8Array | undefined {
  const wrapped = customOf(program, SectionName.Export);
  const plain = sectionOf(program, SectionId.Export);
  if (wrapped && plain) throw new SnapshotError('wasm module has both an export section and a gate.export section');
  if (wrapped) {
    const content = program.bytes.subarray(wrapped.payloadStart, wrapped.end);
    parseWrappedExports(content); // throws if it is not one well-formed export section
    return content;
  }
  return plain ? program.bytes.subarray(plain.start, plain.end) : undefined;
}

/**
 * Module bytes already found snapshottable. An instance is snapshotted many
 * times (each suspension), and decoding its code each time would cost more
 * than the rest of a small snapshot. Keyed by the bytes, which stay the same
 * object when callers copy the parsed module with a spread.
 */
const snapshottable = new WeakSet<Uint8Array>();

/**
 * Refuses programs whose data segment indices matter: regenerating the data
 * section renumbers segments, so passive segments and the instructions that
 * name them (memory.init, data.drop) would break.
 */
function checkSnapshottable(program: WasmModule): void {
  if (snapshottable.has(program.bytes)) return;
  if (program.imports.some((i) => i.kind === ExternalKind.Memory)) {
    throw new SnapshotUnsupportedError('programs that import their memory cannot be snapshotted');
  }
  if (program.memories.length > 1) throw new SnapshotUnsupportedError('programs with multiple memories cannot be snapshotted');
  const data = sectionOf(program, SectionId.Data);
  if (data) {
    const r = new Reader(program.bytes, data.payloadStart, data.end, 'data');
    const count = r.u32();
    for (let i = 0; i < count; i++) {
      const flags = r.u32();
      if (flags === 1) {
        throw new SnapshotUnsupportedError(`programs with passive data segments cannot be snapshotted (data segment ${i} is passive)`);
      }
      if (flags !== 0) r.fail(`data segment ${i} has unsupported kind ${flags}`);
      skipConst(r);
      r.skip(r.u32());
    }
  }
  const use = findDataSegmentUse(program);
  if (use) throw new SnapshotUnsupportedError(`programs that use ${use.op} cannot be snapshotted (function ${use.func})`);
  snapshottable.add(program.bytes);
}

function skipConst(r: Reader): void {
  const op = r.u8();
  switch (op) {
    case 0x41:
      r.s32();
      break;
    case 0x42:
      r.s64();
      break;
    case 0x43:
      r.skip(4);
      break;
    case 0x44:
      r.skip(8);
      break;
    case 0x23:
      r.u32();
      break;
    default:
      r.fail(`unsupported constant expression opcode 0x${op.toString(16)}`);
  }
  if (r.u8() !== 0x0b) r.fail('constant expression is not terminated by end');
}

function memorySection(pages: number, maxPages: number | undefined): Uint8Array {
  const p = new ByteWriter(16);
  p.u32(1).u8(maxPages === undefined ? 0 : 1).u32(pages);
  if (maxPages !== undefined) p.u32(maxPages);
  return new ByteWriter(24).section(SectionId.Memory, p.finish()).finish();
}

function globalSection(program: WasmModule, globals: GlobalValue[]): Uint8Array {
  if (globals.length !== program.globals.length) {
    throw new SnapshotError(`state has ${globals.length} global values but the program defines ${program.globals.length} globals`);
  }
  const p = new ByteWriter(16 + globals.length * 12);
  const scratch = new DataView(new ArrayBuffer(8));
  p.u32(globals.length);
  globals.forEach((g, i) => {
    const def = program.globals[i]!;
    if (g.type !== def.type) {
      throw new SnapshotError(`global ${i}: state value has type 0x${g.type.toString(16)} but the program declares 0x${def.type.toString(16)}`);
    }
    p.u8(def.type).u8(def.mutable ? 1 : 0);
    switch (g.type) {
      case 0x7f:
        if (!Number.isInteger(g.value) || g.value < -0x80000000 || g.value > 0x7fffffff) {
          throw new SnapshotError(`global ${i}: i32 value ${g.value} is not a signed 32-bit integer`);
        }
        p.u8(0x41).s32(g.value);
        break;
      case 0x7e:
        if (typeof g.value !== 'bigint' || BigInt.asIntN(64, g.value) !== g.value) {
          throw new SnapshotError(`global ${i}: i64 value ${String(g.value)} is not a signed 64-bit bigint`);
        }
        p.u8(0x42).s64(g.value);
        break;
      case 0x7d:
        scratch.setUint32(0, g.bits >>> 0, true);
        p.u8(0x43).bytes(new Uint8Array(scratch.buffer, 0, 4));
        break;
      case 0x7c:
        scratch.setBigUint64(0, BigInt.asUintN(64, g.bits), true);
        p.u8(0x44).bytes(new Uint8Array(scratch.buffer, 0, 8));
        break;
      default:
        throw new SnapshotError(`global ${i}: unknown value type 0x${(g as { type: number }).type.toString(16)}`);
    }
    p.u8(0x0b);
  });
  return new ByteWriter(p.length + 8).section(SectionId.Global, p.finish()).finish();
}

function snapshotContent(state: SnapshotState): Uint8Array {
  if (!isUint32(state.trap)) throw new SnapshotError(`trap id ${state.trap} is not an unsigned 32-bit integer`);
  if (!Number.isInteger(state.result) || state.result < -0x80000000 || state.result > 0xffffffff) {
    throw new SnapshotError(`result ${state.result} is not a 32-bit integer`);
  }
  if (!isUint64(state.monotonicNs)) throw new SnapshotError(`monotonic time ${String(state.monotonicNs)} is not an unsigned 64-bit bigint`);
  for (const b of state.breakpoints) {
    if (!isUint64(b)) throw new SnapshotError(`breakpoint ${String(b)} is not an unsigned 64-bit bigint`);
  }
  // Spec §3: ascending and unique.
  const breakpoints = [...new Set(state.breakpoints)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (breakpoints.length > MAX_BREAKPOINTS) {
    throw new SnapshotError(`snapshot has too many breakpoints (${breakpoints.length}, limit ${MAX_BREAKPOINTS})`);
  }
  const w = new ByteWriter(32 + breakpoints.length * 4);
  w.u32(SNAPSHOT_VERSION).u32(state.final ? 1 : 0).u32(state.trap);
  // The original writes the sign-extended 64-bit value, which its own reader
  // (uleb32) rejects for negative results; the 32-bit pattern reads back.
  w.u32(state.result >>> 0);
  putUleb64(w, state.monotonicNs);
  w.u32(breakpoints.length);
  for (const b of breakpoints) putUleb64(w, b);
  return w.finish();
}

function bufferParts(state: SnapshotState, parts: Parts): void {
  const { input, output, services } = state;
  // The services list is kept even when every buffer is empty: it records
  // which service each discovered code means (the original does the same).
  if (input.length === 0 && output.length === 0 && services.length === 0) return;
  if (input.length > 0xffffffff || output.length > 0xffffffff) throw new SnapshotError('buffered input or output is too large for a snapshot');
  const h = new ByteWriter(32 + services.length * 24);
  h.u32(input.length).u32(output.length).u32(services.length);
  let dataSize = input.length + output.length;
  for (const s of services) {
    const name = utf8Encoder.encode(s.name);
    if (name.length < 1 || name.length > MAX_SERVICE_NAME_LENGTH) {
      throw new SnapshotError(`service name ${JSON.stringify(s.name)} must be 1 to ${MAX_SERVICE_NAME_LENGTH} bytes long`);
    }
    h.u8(name.length).bytes(name).u32(s.buffer.length);
    dataSize += s.buffer.length;
  }
  const header = h.finish();
  parts.push(customHeader(SectionName.Buffer, header.length + dataSize));
  parts.push(header);
  parts.push(input);
  parts.push(output);
  for (const s of services) parts.push(s.buffer);
}

const VALUE_TYPES = new Set([0x7f, 0x7e, 0x7d, 0x7c]);
/** Most frames a stack may hold (far more than V8's native stack allows). */
export const MAX_STACK_FRAMES = 1_000_000;

/** Our gate.stack content (docs/snapshot.md "gate.stack"). */
export function encodeStack(s: StackState): Uint8Array {
  const profile = PROFILE_CODES.indexOf(s.profile);
  if (profile < 0) throw new SnapshotError(`unknown profile ${JSON.stringify(s.profile)} in stack state`);
  if (s.startFunction !== undefined && !(isUint32(s.startFunction) && s.startFunction < 0xffffffff)) {
    throw new SnapshotError(`start function index ${s.startFunction} is out of range`);
  }
  if (s.startPending && s.startFunction === undefined) throw new SnapshotError('stack state has a pending start function but no start function index');
  if (s.entry === '') throw new SnapshotError('entry function name must not be empty (omit it for none)');
  if (s.frames.length > MAX_STACK_FRAMES) throw new SnapshotError(`the stack has ${s.frames.length} frames; at most ${MAX_STACK_FRAMES} can be saved`);
  const entry = s.entry === undefined ? new Uint8Array(0) : utf8Encoder.encode(s.entry);
  const w = new ByteWriter(64 + entry.length + s.frames.length * 32);
  w.bytes(STACK_MAGIC_BYTES).u8(profile);
  w.u32(s.startFunction === undefined ? 0 : s.startFunction + 1);
  w.u8(s.startPending ? 1 : 0);
  w.u32(entry.length).bytes(entry);
  w.u32(s.frames.length);
  const values = (vs: StackValue[], what: string): void => {
    w.u32(vs.length);
    for (const v of vs) {
      if (!VALUE_TYPES.has(v.type)) throw new SnapshotError(`${what}: unknown value type 0x${Number(v.type).toString(16)}`);
      w.u8(v.type);
      if (v.type === 0x7f || v.type === 0x7d) w.u32le(Number(v.bits) >>> 0);
      else w.u64le(BigInt(v.bits));
    }
  };
  s.frames.forEach((f, i) => {
    if (!isUint32(f.func) || !isUint32(f.offset) || !(f.kind >= 0 && f.kind <= 4 && Number.isInteger(f.kind))) {
      throw new SnapshotError(`frame ${i}: function ${f.func}, site kind ${f.kind} or offset ${f.offset} out of range`);
    }
    w.u32(f.func).u8(f.kind).u32(f.offset);
    values(f.locals, `frame ${i} locals`);
    values(f.stack, `frame ${i} operand stack`);
  });
  while (w.length % 8 !== 0) w.u8(0);
  return w.finish();
}

/** A snapshot module as pieces to be concatenated (writeSnapshotParts). */
export interface SnapshotParts {
  parts: Uint8Array[];
  /** Total length in bytes. */
  size: number;
}

/** Everything but the data section's bytes: the parts before and after it, and its segments. */
interface Layout {
  before: Parts;
  after: Parts;
  memory: Uint8Array;
  segments: DataSegments;
  dataPayload: number;
  dataSize: number;
}

function layout(program: WasmModule, state: SnapshotState): Layout {
  checkSnapshottable(program);
  const bytes = program.bytes;
  const memory = state.memory;
  if (memory.length % PAGE_SIZE !== 0) throw new SnapshotError(`memory size ${memory.length} is not a multiple of the 64 KiB page size`);
  const pages = memory.length / PAGE_SIZE;
  if (pages > MAX_MEMORY_PAGES) throw new SnapshotError(`memory of ${pages} pages is larger than 4 GiB`);
  const maxPages = state.memoryMaxPages;
  if (maxPages !== undefined && !(Number.isInteger(maxPages) && maxPages >= pages && maxPages <= MAX_MEMORY_PAGES)) {
    throw new SnapshotError(`memory maximum ${maxPages} pages is invalid for a memory of ${pages} pages`);
  }

  const parts = new Parts();
  const verbatim = (id: number): void => {
    const s = sectionOf(program, id);
    if (s) parts.push(bytes.subarray(s.start, s.end));
  };

  parts.push(bytes.subarray(0, 8));
  verbatim(SectionId.Type);
  verbatim(SectionId.Import);
  verbatim(SectionId.Function);
  verbatim(SectionId.Table);
  parts.push(memorySection(pages, maxPages));
  if (program.globals.length > 0 || state.globals.length > 0) parts.push(globalSection(program, state.globals));

  const snap = snapshotContent(state);
  parts.push(customHeader(SectionName.Snapshot, snap.length));
  parts.push(snap);

  const exportSection = effectiveExportSection(program);
  if (exportSection) {
    // Hidden while execution is in progress: no entry function may be
    // picked for it, and the engine sees no exports until restore.
    if (state.stack) {
      // The engine never sees a wrapped section: check what it would have.
      checkExports(program, parseWrappedExports(exportSection).exports);
      parts.push(customHeader(SectionName.Export, exportSection.length));
    }
    parts.push(exportSection);
  }

  verbatim(SectionId.Element);
  const segments = findDataSegments(memory);
  if (sectionOf(program, SectionId.DataCount)) {
    parts.push(new ByteWriter(8).section(SectionId.DataCount, new ByteWriter(5).u32(segments.count).finish()).finish());
  }
  const tail = new Parts();
  bufferParts(state, tail);
  if (state.stack) {
    const stack = encodeStack(state.stack);
    tail.push(customHeader(SectionName.Stack, stack.length));
    tail.push(stack);
  }
  // gate.buffer and gate.stack go after the code section (spec §2): a
  // module without functions gets an empty one (count 0, valid wasm).
  if (sectionOf(program, SectionId.Code)) verbatim(SectionId.Code);
  else if (tail.size > 0) parts.push(EMPTY_CODE_SECTION);
  for (const b of tail.list) parts.push(b);

  const dataPayload = dataPayloadSize(segments);
  const dataSize = 1 + ulebSize(dataPayload) + dataPayload;

  // Trailing custom sections (name, producers, debug info…) of the program,
  // but not stale Gate sections.
  const after = new Parts();
  let last = -1;
  program.sections.forEach((s, i) => {
    if (s.id !== SectionId.Custom) last = i;
  });
  for (const s of program.sections.slice(last + 1)) {
    if (!s.name!.startsWith('gate.')) after.push(bytes.subarray(s.start, s.end));
  }
  return { before: parts, after, memory, segments, dataPayload, dataSize };
}

/**
 * Builds the snapshot module of `program` (the module the instance runs,
 * possibly itself a restored snapshot) in the state `state`. Section order
 * is spec snapshot.md §2; see docs/snapshot.md. Throws SnapshotError for an
 * inconsistent state and SnapshotUnsupportedError for programs that cannot
 * be snapshotted.
 */
export function writeSnapshot(program: WasmModule, state: SnapshotState): Uint8Array {
  const l = layout(program, state);
  const out = new Uint8Array(l.before.size + l.dataSize + l.after.size);
  let pos = 0;
  for (const b of l.before.list) {
    out.set(b, pos);
    pos += b.length;
  }
  pos = writeDataSection(out, pos, l.memory, l.segments, l.dataPayload);
  for (const b of l.after.list) {
    out.set(b, pos);
    pos += b.length;
  }
  if (pos !== out.length) throw new Error(`internal error: snapshot size ${pos} != ${out.length}`);
  return out;
}

/**
 * Same module as writeSnapshot, as a list of pieces whose concatenation is
 * the module: memory contents are views of `state.memory`, not copies. For
 * writing to a file or a hash without a large intermediate buffer (a fresh
 * 32 MiB allocation costs more in page faults than the copy itself). The
 * pieces are only valid while `state.memory`, the state's buffers and
 * `program.bytes` are unchanged.
 */
export function writeSnapshotParts(program: WasmModule, state: SnapshotState): SnapshotParts {
  const l = layout(program, state);
  const parts = [...l.before.list, ...dataSectionParts(l.memory, l.segments, l.dataPayload), ...l.after.list];
  return { parts, size: l.before.size + l.dataSize + l.after.size };
}

// ---------------------------------------------------------------------------
// Reading

function decodeSnapshotSection(m: WasmModule, s: Section): Pick<SnapshotInfo, 'trap' | 'result' | 'final' | 'monotonicNs' | 'breakpoints'> {
  const r = new Reader(m.bytes, s.payloadStart, s.end, SectionName.Snapshot);
  r.u64(); // version: any value is accepted (spec §3)
  const flags = r.u64();
  const trap = r.u32();
  const result = r.u32() | 0;
  const monotonicNs = r.u64();
  const count = r.u32();
  if (count > MAX_BREAKPOINTS) throw new SnapshotError('snapshot has too many breakpoints');
  const breakpoints: bigint[] = [];
  for (let i = 0; i < count; i++) breakpoints.push(r.u64());
  // Bytes after the breakpoints are ignored, as by the original: a later
  // version may append fields.
  return { trap, result, final: (flags & 1n) !== 0n, monotonicNs, breakpoints };
}

function decodeBufferSection(m: WasmModule, s: Section): Pick<SnapshotInfo, 'input' | 'output' | 'services'> {
  const r = new Reader(m.bytes, s.payloadStart, s.end, SectionName.Buffer);
  const invalid = (): never => {
    throw new SnapshotError('invalid buffer section in wasm module');
  };
  try {
    const inputSize = r.u32();
    const outputSize = r.u32();
    const count = r.u32();
    // Each service header takes at least 3 bytes: a cheap bound before allocating.
    if (count > r.remaining / 3) invalid();
    const names: string[] = [];
    const sizes: number[] = [];
    let dataSize = inputSize + outputSize;
    for (let i = 0; i < count; i++) {
      const len = r.u8();
      if (len === 0 || len > MAX_SERVICE_NAME_LENGTH) throw new SnapshotError('service name length out of bounds');
      names.push(r.utf8(len, `service ${i} name`));
      const size = r.u32();
      sizes.push(size);
      dataSize += size;
    }
    if (dataSize > r.remaining) invalid();
    // Copies: the buffers become the new instance's own (services may keep them).
    const input = r.bytes(inputSize).slice();
    const output = r.bytes(outputSize).slice();
    const services = names.map((name, i) => ({ name, buffer: r.bytes(sizes[i]!).slice() }));
    return { input, output, services };
  } catch (e) {
    // A header that runs past the section is the same error as data that does.
    if (e instanceof SnapshotError && e.message.startsWith('invalid gate.buffer section: unexpected end')) invalid();
    throw e;
  }
}

/** Decodes our gate.stack content (`encodeStack`'s output). */
export function decodeStack(content: Uint8Array): StackState {
  const r = new Reader(content, 0, content.length, SectionName.Stack);
  if (content.length % 8 !== 0) r.fail(`size ${content.length} is not a multiple of 8`);
  const magic = content.length >= 4 ? new TextDecoder().decode(content.subarray(0, 4)) : '';
  if (magic === OLD_STACK_MAGIC) {
    r.fail('the stack was saved by an earlier Gate-TS (Asyncify, layout GTS1), which this version cannot continue; resume it with the version that suspended it, or start the program anew');
  }
  if (magic !== STACK_MAGIC) {
    r.fail(`not a ${STACK_MAGIC} stack (a stack written by another Gate implementation cannot be resumed here)`);
  }
  r.skip(4);
  const profileCode = r.u8();
  const profile = PROFILE_CODES[profileCode];
  if (profile === undefined) r.fail(`unknown profile ${profileCode}`);
  const start = r.u32();
  const flags = r.u8();
  if (flags & ~1) r.fail(`unknown flags 0x${flags.toString(16)}`);
  const startFunction = start === 0 ? undefined : start - 1;
  const startPending = (flags & 1) !== 0;
  if (startPending && startFunction === undefined) r.fail('start function is pending but there is none');
  const entryLength = r.u32();
  const entry = entryLength === 0 ? undefined : r.utf8(entryLength, 'entry function name');
  const count = r.u32();
  // Each frame takes at least 4 bytes: a cheap bound before allocating.
  if (count > MAX_STACK_FRAMES || count > r.remaining / 4) r.fail(`${count} frames do not fit in the section`);
  const values = (what: string): StackValue[] => {
    const n = r.u32();
    if (n > r.remaining / 5) r.fail(`${what}: ${n} values do not fit in the section`);
    const out: StackValue[] = [];
    for (let i = 0; i < n; i++) {
      const type = r.u8();
      if (type === 0x7f || type === 0x7d) out.push({ type, bits: r.u32le() });
      else if (type === 0x7e || type === 0x7c) out.push({ type, bits: r.u64le() });
      else r.fail(`${what}: unknown value type 0x${type.toString(16)}`);
    }
    return out;
  };
  const frames: StackFrame[] = [];
  for (let i = 0; i < count; i++) {
    const func = r.u32();
    const kind = r.u8();
    if (kind > 4) r.fail(`frame ${i}: unknown site kind ${kind}`);
    const offset = r.u32();
    const locals = values(`frame ${i} locals`);
    const stack = values(`frame ${i} operand stack`);
    frames.push({ func, kind, offset, locals, stack });
  }
  if (r.remaining >= 8) r.fail(`${r.remaining} bytes after the frames (padding is less than 8)`);
  while (r.remaining > 0) if (r.u8() !== 0) r.fail('padding is not zero');
  return { profile, startFunction, startPending, entry, frames };
}

/** Parses gate.export content (a complete export section) into its payload and entries. */
function parseWrappedExports(content: Uint8Array): { payload: Uint8Array; exports: Export[] } {
  const r = new Reader(content, 0, content.length, SectionName.Export);
  r.u8(); // id 7, checked by the caller
  const size = r.u32();
  if (size !== r.remaining) r.fail(`export section size ${size} does not match the ${r.remaining} bytes that follow`);
  const payload = content.subarray(r.pos);
  const count = r.u32();
  if (count > r.remaining / 3) r.fail(`export count ${count} is too large for the section`);
  const exports: Export[] = [];
  for (let i = 0; i < count; i++) {
    const name = r.utf8(r.u32(), `export ${i} name`);
    const kind = r.u8();
    if (kind > 3) r.fail(`export ${JSON.stringify(name)} has invalid kind ${kind}`);
    exports.push({ name, kind, index: r.u32() });
  }
  if (r.remaining !== 0) r.fail(`${r.remaining} unexpected bytes after the exports`);
  return { payload, exports };
}

/** Checks what the engine would check if the wrapped exports were a standard section. */
function checkExports(m: WasmModule, exports: Export[]): void {
  const imported = [0, 0, 0, 0];
  for (const i of m.imports) imported[i.kind] = (imported[i.kind] ?? 0) + 1;
  const limit = [
    imported[ExternalKind.Function]! + m.functions.length,
    imported[ExternalKind.Table]! + m.tables.length,
    imported[ExternalKind.Memory]! + m.memories.length,
    imported[ExternalKind.Global]! + m.globals.length,
  ];
  const kinds = ['function', 'table', 'memory', 'global'];
  const names = new Set<string>();
  for (const e of exports) {
    if (names.has(e.name)) throw new SnapshotError(`invalid gate.export section: duplicate export name ${JSON.stringify(e.name)}`);
    names.add(e.name);
    if (e.index >= limit[e.kind]!) {
      throw new SnapshotError(`invalid gate.export section: export ${JSON.stringify(e.name)} refers to unknown ${kinds[e.kind]} ${e.index}`);
    }
  }
}

/** Standard section ids in module order (data count sits between element and code). */
function orderOf(id: number): number {
  return id === SectionId.DataCount ? 9.5 : id;
}

/**
 * Checks and decodes the Gate sections of `m`. Returns undefined for a module
 * that is not a snapshot (no gate.snapshot section); throws SnapshotError if
 * the Gate sections are misplaced, repeated or malformed (spec §7).
 */
export function readSnapshot(m: WasmModule): SnapshotInfo | undefined {
  let snapshot: Section | undefined;
  let exportWrap: Section | undefined;
  let buffer: Section | undefined;
  let stack: Section | undefined;
  let seenCode = false;
  let seenData = false;
  let lastOrder = 0;

  for (const s of m.sections) {
    if (s.id !== SectionId.Custom) {
      if (exportWrap && orderOf(s.id) <= SectionId.Export) {
        throw new SnapshotError(
          s.id === SectionId.Export
            ? 'wasm module has both an export section and a gate.export section'
            : 'gate.export section appears too early in wasm module',
        );
      }
      if (s.id === SectionId.Code) seenCode = true;
      if (s.id === SectionId.Data) seenData = true;
      lastOrder = orderOf(s.id);
      continue;
    }
    switch (s.name) {
      case SectionName.Snapshot:
        if (snapshot) throw new SnapshotError('multiple gate.snapshot sections in wasm module');
        if (seenCode) throw new SnapshotError('gate.snapshot section appears too late in wasm module');
        snapshot = s;
        break;
      case SectionName.Export: {
        if (!snapshot) throw new SnapshotError('gate.export section without gate.snapshot section');
        if (exportWrap) throw new SnapshotError('multiple gate.export sections in wasm module');
        if (s.end - s.payloadStart < 2) throw new SnapshotError('gate.export section is too short');
        if (m.bytes[s.payloadStart] !== SectionId.Export) {
          throw new SnapshotError('gate.export section does not contain a standard export section');
        }
        if (lastOrder === SectionId.Export) throw new SnapshotError('wasm module has both an export section and a gate.export section');
        if (lastOrder > SectionId.Export) throw new SnapshotError('gate.export section appears too late in wasm module');
        exportWrap = s;
        break;
      }
      case SectionName.Buffer:
        if (!seenCode) throw new SnapshotError('gate.buffer section appears too early in wasm module');
        if (seenData || stack) throw new SnapshotError('gate.buffer section appears too late in wasm module');
        if (buffer) throw new SnapshotError('multiple gate.buffer sections in wasm module');
        if (!snapshot) throw new SnapshotError('gate.buffer section without gate.snapshot section');
        buffer = s;
        break;
      case SectionName.Stack:
        if (!seenCode) throw new SnapshotError('gate.stack section appears too early in wasm module');
        if (seenData) throw new SnapshotError('gate.stack section appears too late in wasm module');
        if (stack) throw new SnapshotError('multiple gate.stack sections in wasm module');
        if (!snapshot) throw new SnapshotError('gate.stack section without gate.snapshot section');
        stack = s;
        break;
    }
  }
  if (!snapshot) return undefined;

  const info = decodeSnapshotSection(m, snapshot);
  const buffers = buffer ? decodeBufferSection(m, buffer) : { input: new Uint8Array(0), output: new Uint8Array(0), services: [] };
  const stackState = stack ? decodeStack(m.bytes.subarray(stack.payloadStart, stack.end)) : undefined;

  let exports: Export[] = m.exports;
  let exportSection: Uint8Array | undefined;
  if (exportWrap) {
    const wrapped = parseWrappedExports(m.bytes.subarray(exportWrap.payloadStart, exportWrap.end));
    checkExports(m, wrapped.exports);
    exports = wrapped.exports;
    exportSection = wrapped.payload;
  } else {
    const plain = sectionOf(m, SectionId.Export);
    exportSection = plain ? m.bytes.subarray(plain.payloadStart, plain.end) : undefined;
  }
  return { ...info, ...buffers, stack: stackState, exports, exportSection };
}

/**
 * The module bytes with a gate.export section replaced by the export section
 * it wraps (in the same place, where a standard export section belongs), so
 * that a restored snapshot can be parsed, prepared and instantiated with its
 * exports. Other sections, Gate's included, are kept. Returns `m.bytes`
 * itself when there is nothing to unwrap.
 */
export function unwrapExports(m: WasmModule): Uint8Array {
  const s = customOf(m, SectionName.Export);
  if (!s) return m.bytes;
  const content = m.bytes.subarray(s.payloadStart, s.end);
  parseWrappedExports(content);
  const out = new Uint8Array(m.bytes.length - (s.end - s.start) + content.length);
  out.set(m.bytes.subarray(0, s.start), 0);
  out.set(content, s.start);
  out.set(m.bytes.subarray(s.end), s.start + content.length);
  return out;
}

/** Current values of the module's defined globals, from their (constant) init expressions. */
export function globalValues(m: WasmModule): GlobalValue[] {
  const view = new DataView(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength);
  return m.globals.map((g, i) => {
    const r = new Reader(m.bytes, g.initStart, g.initEnd, 'global');
    const op = r.u8();
    let v: GlobalValue;
    if (op === 0x41 && g.type === 0x7f) v = { type: 0x7f, value: r.s32() };
    else if (op === 0x42 && g.type === 0x7e) v = { type: 0x7e, value: r.s64() };
    else if (op === 0x43 && g.type === 0x7d) {
      v = { type: 0x7d, bits: view.getUint32(r.pos, true) };
      r.skip(4);
    } else if (op === 0x44 && g.type === 0x7c) {
      v = { type: 0x7c, bits: view.getBigUint64(r.pos, true) };
      r.skip(8);
    } else {
      throw new SnapshotError(`global ${i}: init expression is not a constant of its type (opcode 0x${op.toString(16)})`);
    }
    if (r.u8() !== 0x0b || r.remaining !== 0) r.fail(`global ${i} init expression is not a single constant`);
    return v;
  });
}

/**
 * The snapshot module `m` with its gate.snapshot breakpoints replaced (sorted
 * and unique); every other byte is kept. The debugger uses this to change a
 * stopped instance's breakpoints, which travel in its snapshot.
 */
export function withBreakpoints(m: WasmModule, breakpoints: readonly bigint[]): Uint8Array {
  const s = customOf(m, SectionName.Snapshot);
  if (!s) throw new SnapshotError('module has no gate.snapshot section');
  const info = decodeSnapshotSection(m, s);
  const content = snapshotContent({ ...info, breakpoints: [...breakpoints] } as SnapshotState);
  const header = customHeader(SectionName.Snapshot, content.length);
  const out = new Uint8Array(m.bytes.length - (s.end - s.start) + header.length + content.length);
  out.set(m.bytes.subarray(0, s.start), 0);
  out.set(header, s.start);
  out.set(content, s.start + header.length);
  out.set(m.bytes.subarray(s.end), s.start + header.length + content.length);
  return out;
}
