/**
 * What a debugger needs to know about a module's code: whether a byte offset
 * (relative to the start of the code section's contents, the addresses DWARF
 * uses for wasm) is the start of an instruction, which function holds it,
 * and the functions' names from the `name` custom section.
 */
import { decodeInstructions } from './code.js';
import { ByteReader } from './leb128.js';
import { SectionId, type WasmModule } from './module.js';

/** Start of the code section's contents in the module, or undefined without a code section. */
export function codeBase(m: WasmModule): number | undefined {
  return m.sections.find((s) => s.id === SectionId.Code)?.payloadStart;
}

/**
 * The function index (imports count) whose body holds an instruction that
 * starts exactly at `offset`, or undefined when no instruction starts there
 * (inside an instruction's immediates, in local declarations, outside the code).
 */
export function functionAtInstruction(m: WasmModule, offset: number): number | undefined {
  const base = codeBase(m);
  if (base === undefined || !Number.isSafeInteger(offset) || offset < 0) return undefined;
  const abs = base + offset;
  const i = m.bodies.findIndex((b) => b.codeStart <= abs && abs < b.end);
  if (i < 0) return undefined;
  const body = m.bodies[i]!;
  const func = m.importedFunctionCount + i;
  let found = false;
  decodeInstructions(m.bytes, body, (_op, _sub, pos) => {
    if (pos === abs) found = true;
  }, func);
  return found ? func : undefined;
}

/** The function index whose body (local declarations included) holds `offset`, if any. */
export function functionAtOffset(m: WasmModule, offset: number): number | undefined {
  const base = codeBase(m);
  if (base === undefined) return undefined;
  const abs = base + offset;
  const i = m.bodies.findIndex((b) => b.start <= abs && abs < b.end);
  return i < 0 ? undefined : m.importedFunctionCount + i;
}

/**
 * Function names from the `name` custom section (subsection 1), by function
 * index. A missing or malformed name section gives no names: names are for
 * people, never needed to run.
 */
export function functionNames(m: WasmModule): Map<number, string> {
  const names = new Map<number, string>();
  const s = m.sections.find((x) => x.id === SectionId.Custom && x.name === 'name');
  if (!s) return names;
  try {
    const r = new ByteReader(m.bytes, s.payloadStart, s.end);
    while (!r.eof()) {
      const id = r.u8();
      const size = r.u32();
      const end = r.pos + size;
      if (end > s.end) break;
      if (id === 1) {
        const sub = new ByteReader(m.bytes, r.pos, end);
        const count = sub.u32();
        for (let i = 0; i < count; i++) {
          const index = sub.u32();
          names.set(index, sub.name());
        }
      }
      r.pos = end;
    }
  } catch {
    // A malformed name section: keep what was read.
  }
  return names;
}
