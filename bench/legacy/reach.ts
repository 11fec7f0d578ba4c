import { ByteReader } from '../../src/wasm/leb128.js';
import { SectionId, skipConstExpr, type WasmModule } from '../../src/wasm/module.js';

/** What the rewrite stage learned about each defined function's calls. */
export interface CallInfo {
  /** Direct call targets (absolute function indices), per defined function. */
  callees: number[][];
  /** Whether the function makes indirect calls. */
  indirect: boolean[];
  /** Whether the function calls the preemption check. */
  checked: boolean[];
}

/** Function indices placed in tables by element segments. */
export function tableFunctions(m: WasmModule): Set<number> {
  const out = new Set<number>();
  const sec = m.sections.find((s) => s.id === SectionId.Element);
  if (!sec) return out;
  const r = new ByteReader(m.bytes, sec.payloadStart, sec.end);
  const n = r.u32();
  for (let i = 0; i < n; i++) {
    r.u32(); // flags (only 0 is accepted by the parser)
    skipConstExpr(r);
    const count = r.u32();
    for (let j = 0; j < count; j++) out.add(r.u32());
  }
  return out;
}

/**
 * Whether an indirect call can ever lead to an unwind: true if some function
 * in a table may reach an unwinding import (or, when checks unwind, a
 * check), directly or through further calls of any kind.
 *
 * Binaryen's Asyncify assumes that every indirect call may unwind, which
 * instruments every function that makes one and everything that calls
 * those (sql.js under io-suspend: 4.3× instead of 1.35×). When this returns
 * false, that assumption can be dropped (`asyncify-ignore-indirect`) without
 * losing anything: no frame of an indirect call is ever on an unwound stack.
 */
export function indirectCallsMayUnwind(
  m: WasmModule,
  info: CallInfo,
  unwindingImports: ReadonlySet<number>,
  checksUnwind: boolean,
): boolean {
  const base = m.importedFunctionCount;
  const table = tableFunctions(m);
  if ([...table].some((f) => f < base && unwindingImports.has(f))) return true; // an unwinding import in a table
  // Functions that may reach an unwind through direct calls, walked backwards
  // from those that unwind themselves. If none of them is in a table, no
  // indirect call reaches one either (by induction over the call chain).
  const n = m.bodies.length;
  const callers: number[][] = Array.from({ length: n }, () => []);
  const may = new Uint8Array(n);
  const work: number[] = [];
  for (let f = 0; f < n; f++) {
    let unwinds = checksUnwind && info.checked[f]!;
    for (const c of info.callees[f]!) {
      if (c < base) unwinds ||= unwindingImports.has(c);
      else callers[c - base]!.push(f);
    }
    if (unwinds) {
      may[f] = 1;
      work.push(f);
    }
  }
  while (work.length) {
    const f = work.pop()!;
    if (table.has(f + base)) return true;
    for (const g of callers[f]!) {
      if (!may[g]) {
        may[g] = 1;
        work.push(g);
      }
    }
  }
  return false;
}
