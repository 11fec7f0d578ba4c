import { ByteReader } from '../wasm/leb128.js';
import { SectionId, skipConstExpr, type WasmModule } from '../wasm/module.js';

/** Function indices (defined functions only) placed in tables by element segments. */
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
 * Defined functions that lie on a cycle of the call graph (including
 * self-recursion). An indirect call may reach any function in a table, so it
 * is an edge to each of them. Recursion without loops can only run forever
 * through such functions, so their entries need preemption checks.
 *
 * `callees[i]` lists direct call targets of defined function i (absolute
 * function indices); `indirect[i]` tells whether it contains call_indirect.
 */
export function cyclicFunctions(m: WasmModule, callees: number[][], indirect: boolean[]): Set<number> {
  const base = m.importedFunctionCount;
  const n = m.bodies.length;
  const table = [...tableFunctions(m)].filter((f) => f >= base).map((f) => f - base);
  const edges = (v: number): number[] => {
    const out: number[] = [];
    for (const f of callees[v]!) if (f >= base) out.push(f - base);
    if (indirect[v]) out.push(...table);
    return out;
  };

  // Iterative Tarjan's SCC, so deep call graphs cannot overflow the JS stack.
  const index = new Int32Array(n).fill(-1);
  const low = new Int32Array(n);
  const onStack = new Uint8Array(n);
  const stack: number[] = [];
  const result = new Set<number>();
  let counter = 0;
  for (let root = 0; root < n; root++) {
    if (index[root] !== -1) continue;
    const work: Array<{ v: number; succ: number[]; i: number }> = [];
    const push = (v: number): void => {
      index[v] = low[v] = counter++;
      stack.push(v);
      onStack[v] = 1;
      work.push({ v, succ: edges(v), i: 0 });
    };
    push(root);
    while (work.length) {
      const top = work[work.length - 1]!;
      if (top.i < top.succ.length) {
        const w = top.succ[top.i++]!;
        if (index[w] === -1) push(w);
        else if (onStack[w]) low[top.v] = Math.min(low[top.v]!, index[w]!);
        continue;
      }
      work.pop();
      if (work.length) {
        const parent = work[work.length - 1]!.v;
        low[parent] = Math.min(low[parent]!, low[top.v]!);
      }
      if (low[top.v] === index[top.v]) {
        const scc: number[] = [];
        let w: number;
        do {
          w = stack.pop()!;
          onStack[w] = 0;
          scc.push(w);
        } while (w !== top.v);
        if (scc.length > 1 || top.succ.includes(top.v)) for (const f of scc) result.add(f);
      }
    }
  }
  return result;
}
