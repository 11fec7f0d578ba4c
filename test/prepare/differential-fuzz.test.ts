/**
 * Differential fuzzing of the unwind/rewind transform (prepare/instrument.ts):
 * random valid modules (test/helpers/wasm-gen.ts) run in V8 as they are and
 * instrumented, under both profiles, with unwinds forced at random
 * preemption checks (suspend-anywhere) and at unwinding imports (env.block,
 * sometimes env.mix; the host follows the rewind protocol), and rewound
 * through the raw stack encoding or through frames of the original module
 * in the snapshot encoding (gate.stack), in the same instance or in a new
 * one with the memory and globals moved over. Everything observable must
 * match: run's result (or the trap's message), the memory's contents and
 * every global's bits (one global is a checksum of every function's locals
 * at its end). A variant puts debugger breakpoints (InstrumentOptions.breakpoints)
 * at a random share of the instructions and unwinds at some of them. Also: with fuel 1 every check calls yield, so the number of
 * yields must be at least the number of loop iterations, memory.fill/copy
 * and entries of functions that call (the program counts them).
 *
 * Environment:
 * - GATE_FUZZ_SEED=<n>: run that seed only (failures print their seed).
 * - GATE_FUZZ_SHRINK=1 (with GATE_FUZZ_SEED): shrink a failing module and
 *   print its WAT (wasm2wat) and where it was written.
 * - GATE_FUZZ_CASES=<n>, GATE_FUZZ_START=<n>: how many seeds, from which;
 *   GATE_FUZZ_DEADLINE_MS=<ms>: when to stop starting new ones.
 * - GATE_FUZZ_GEN=<json>: generator options (wasm-gen.ts GenOptions), e.g.
 *   '{"wide":0.5,"riskyModules":1}'.
 */
import '../../src/runtime/node/engine-flags.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { UnwindLayouts, instrument } from '../../src/prepare/instrument.js';
import type { Profile } from '../../src/prepare/profile.js';
import { framesFromRaw, rawFromFrames } from '../../src/runtime/frames.js';
import { Unwinder, UnwindState, decodeRawStack, encodeRawStack, type RawStack } from '../../src/runtime/unwinder.js';
import { InstanceRewindCopies, RewindCopyCompiler } from '../../src/runtime/rewind-copies.js';
import { forcedYield } from '../helpers/forced-unwinds.js';
import { decodeStack, encodeStack } from '../../src/snapshot/format.js';
import { parseModule } from '../../src/wasm/module.js';
import { decodeInstructions } from '../../src/wasm/code.js';
import { mulberry32 } from '../helpers/prng.js';
import { IMPORT_BLOCK, IMPORT_MIX, encodeModule, generateValid, hostEnv, shrinkModule, type GenOptions, type ModuleDef } from '../helpers/wasm-gen.js';

/** Deterministic host functions (the same in every run). */
const hostBlock = (x: number): number => (Math.imul(x ^ 0x5bd1e995, 31) + 7) | 0;
const hostMix = (a: bigint, b: number): bigint => BigInt.asIntN(64, a * 0x9e3779b97f4a7c15n + BigInt(b));

interface Outcome {
  /** `value:<i64>`, `trap:<message>` or `error:<name>: <message>` (anything but a wasm trap). */
  ret: string;
  /** Size and hash of the memory. */
  mem: string;
  /** Bits of every global (from the module's getters). */
  globals: string[];
}

interface Variant {
  name: string;
  profile: Profile;
  /** Probability that a preemption check unwinds (suspend-anywhere only). */
  pCheck: number;
  /** Probability that a call of env.block unwinds. */
  pBlock: number;
  /** Seed of the unwind decisions. */
  seed: number;
  /** Imports that may unwind (env.block always, env.mix sometimes). */
  unwindingImports: number[];
  /** Fuel the yield gives back (1: every check calls it). */
  refill: number;
  /** Rewind each unwound stack (the first MAX_MOVES) into a new instance, with the memory and globals moved over (as a snapshot's restore does). */
  migrate: boolean;
  /** Pass each unwound stack through frames of the original module and the snapshot encoding (gate.stack), as a snapshot does (else only through the raw stack encoding). */
  viaFrames: boolean;
  /** Share of the instructions that get a breakpoint (0: none), and the probability that reaching one unwinds. */
  breakShare: number;
  pBreak: number;
}

interface Run {
  outcome?: Outcome;
  /** Set when the instrumented side failed before or outside the program's run. */
  failure?: { kind: 'instrument-threw' | 'invalid-output' | 'protocol' | 'missing-checks'; message: string };
  unwinds: number;
  checkUnwinds: number;
  blockUnwinds: number;
  breakUnwinds: number;
  yields: number;
  /** Places that needed a check (when counted). */
  checksExpected?: number;
}

function errorText(e: unknown): string {
  if (e instanceof WebAssembly.RuntimeError) return `trap:${e.message}`;
  if (e instanceof Error) return `error:${e.name}: ${e.message}`;
  return `error:${String(e)}`;
}

function observe(exports: WebAssembly.Exports, nGlobals: number, ret: string): Outcome {
  const mem = exports['memory'] as WebAssembly.Memory;
  const bytes = new Uint8Array(mem.buffer);
  const globals: string[] = [];
  for (let i = 0; i < nGlobals; i++) {
    try {
      globals.push(String((exports[`g${i}`] as () => bigint)()));
    } catch (e) {
      globals.push(errorText(e));
    }
  }
  return { ret, mem: `${bytes.length}:${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}`, globals };
}

/** The outcome when the start function traps (instantiation fails: nothing else is observable). */
function startTrap(e: unknown): Outcome {
  return { ret: `start ${errorText(e)}`, mem: '', globals: [] };
}

function runRaw(def: ModuleDef, bytes: Uint8Array<ArrayBuffer>): Outcome {
  const nGlobals = def.globals.length;
  let inst: WebAssembly.Instance;
  try {
    inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: hostEnv(def, { block: hostBlock, mix: hostMix }) as WebAssembly.ModuleImports });
  } catch (e) {
    if (e instanceof WebAssembly.RuntimeError) return startTrap(e);
    throw e;
  }
  let ret: string;
  try {
    ret = `value:${(inst.exports['run'] as () => bigint)()}`;
  } catch (e) {
    ret = errorText(e);
  }
  return observe(inst.exports, nGlobals, ret);
}

/** Unwinds at breakpoints in one run, beyond which breakpoints are passed without unwinding. */
const MAX_BREAK_UNWINDS = 2000;

/** Far more preemption checks than any generated program passes (about 10^4 at most). */
const MAX_YIELDS = 2_000_000;

function runInstrumented(def: ModuleDef, bytes: Uint8Array<ArrayBuffer>, v: Variant): Run {
  const nGlobals = def.globals.length;
  const countChecks = def.countChecks;
  const run: Run = { unwinds: 0, checkUnwinds: 0, blockUnwinds: 0, breakUnwinds: 0, yields: 0 };
  let out: Uint8Array;
  const breakpoints = new Set<number>();
  // Fuel 1 means every check calls yield only if functions charge every check at once.
  // Every other seed leaves even small functions that block to rewind copies (lazy rewind's 1 KiB rule would keep most of these small ones inline).
  const lazyMinBodyBytes = v.seed % 2 === 0 ? 0 : undefined;
  const opts = { profile: v.profile, unwindingImports: new Set(v.unwindingImports), fuelChunk: v.refill === 1 ? 1 : undefined, breakpoints, lazyMinBodyBytes };
  let layouts: UnwindLayouts | undefined;
  let copies: RewindCopyCompiler;
  try {
    const parsed = parseModule(bytes);
    if (v.breakShare > 0) {
      const pickBreaks = mulberry32(v.seed ^ 0xb4e4);
      const base = parsed.sections.find((s) => s.id === 10)!.payloadStart;
      for (const body of parsed.bodies) decodeInstructions(parsed.bytes, body, (_op, _sub, pos) => void (pickBreaks() < v.breakShare && breakpoints.add(pos - base)));
    }
    out = instrument(parsed, opts).bytes;
    copies = new RewindCopyCompiler({ module: bytes, profile: v.profile, unwindingImports: v.unwindingImports, breakpoints: [...breakpoints], codeOffsetShift: 0, fuelChunk: opts.fuelChunk, lazyMinBodyBytes });
    if (v.viaFrames) layouts = new UnwindLayouts(parsed, opts);
  } catch (e) {
    run.failure = { kind: 'instrument-threw', message: errorText(e) };
    return run;
  }
  let mod: WebAssembly.Module;
  try {
    mod = new WebAssembly.Module(out as Uint8Array<ArrayBuffer>);
  } catch (e) {
    run.failure = { kind: 'invalid-output', message: errorText(e) };
    return run;
  }
  const rng = mulberry32(v.seed);
  const unwinder = new Unwinder();
  let active = false;
  const protocol: string[] = [];
  let pending: string | undefined;
  /** A host function that may unwind, following the rewind protocol (called again, with the same arguments, when rewinding). */
  const unwinding =
    <A extends unknown[], R>(name: string, impl: (...a: A) => R, dummy: R, enabled: boolean) =>
    (...a: A): R => {
      const key = `${name}(${a.join(', ')})`;
      if (unwinder.rewinding) {
        unwinder.finishRewind();
        if (pending !== key) protocol.push(`unwound at ${pending} but rewound at ${key}`);
        pending = undefined;
        return impl(...a);
      }
      if (unwinder.unwinding) protocol.push(`${key} called while unwinding`);
      if (enabled && active && rng() < v.pBlock) {
        pending = key;
        run.blockUnwinds++;
        unwinder.startUnwind();
        return dummy;
      }
      return impl(...a);
    };
  const block = unwinding('env.block', hostBlock, 0, v.unwindingImports.includes(IMPORT_BLOCK));
  const mix = unwinding('env.mix', hostMix, 0n, v.unwindingImports.includes(IMPORT_MIX));
  const shouldUnwind = (): boolean => {
    if (v.profile !== 'suspend-anywhere' || !(rng() < v.pCheck)) return false;
    run.checkUnwinds++;
    return true;
  };
  // A broken transform could make a loop run (nearly) forever: stop it (a
  // loop without a check would still hang, but then the check count below
  // fails on the many programs where the loop ends).
  let yields = 0;
  let allYields = 0;
  const forced = forcedYield(unwinder, shouldUnwind, () => active, v.refill);
  const yieldFn = (): void => {
    if ((active && ++yields > MAX_YIELDS) || ++allYields > 2 * MAX_YIELDS) throw new Error(`runaway: more than ${MAX_YIELDS} checks`);
    forced();
  };
  const breakpointHost = unwinding('__gate.breakpoint', (offset: number): void => {
    if (!breakpoints.has(offset)) protocol.push(`breakpoint import called with ${offset}, not a breakpoint`);
  }, undefined, false);
  const breakpoint = (offset: number): void => {
    // As `unwinding`, with the breakpoint's own probability.
    // (at most MAX_BREAK_UNWINDS per run: a breakpoint in a hot loop would make a case slow, not better)
    if (!unwinder.rewinding && unwinder.state === UnwindState.Normal && active && run.breakUnwinds < MAX_BREAK_UNWINDS && rng() < v.pBreak) {
      pending = `__gate.breakpoint(${offset})`;
      run.breakUnwinds++;
      unwinder.startUnwind();
      return;
    }
    breakpointHost(offset);
  };
  const gate = { ...unwinder.imports(yieldFn), breakpoint };
  const nop = (): void => {
    if (unwinder.state !== UnwindState.Normal) protocol.push(`an env.nop import was called in state ${unwinder.state}`);
  };
  // Each instance gets its own imports (and its own copies; the compiled ones are shared).
  const importsOf = new WeakMap<WebAssembly.Instance, WebAssembly.Imports>();
  const instantiate = (): WebAssembly.Instance => {
    const imports = { env: hostEnv(def, { block, mix, nop }) as WebAssembly.ModuleImports, __gate: gate } as WebAssembly.Imports;
    const i = new WebAssembly.Instance(mod, imports);
    importsOf.set(i, imports);
    return i;
  };
  const bindTo = (i: WebAssembly.Instance): void => unwinder.bind(i.exports, new InstanceRewindCopies(copies, importsOf.get(i)!, i.exports));
  let inst: WebAssembly.Instance;
  try {
    inst = instantiate();
  } catch (e) {
    if (e instanceof WebAssembly.RuntimeError) run.outcome = startTrap(e);
    else run.failure = { kind: 'invalid-output', message: `instantiation: ${errorText(e)}` };
    return run;
  }
  bindTo(inst);
  const checkCount = (): bigint => (inst.exports['g2'] as () => bigint)();
  const checksBefore = countChecks ? checkCount() : 0n;
  let ret: string;
  const counter = { unwinds: 0 };
  yields = 0; // (the start function's checks do not count)
  active = true;
  try {
    // As callWithUnwinds, optionally moving to a new instance at each unwind.
    let value: unknown;
    for (;;) {
      value = (inst.exports['run'] as () => unknown)();
      if (unwinder.state !== UnwindState.Unwinding) break;
      const stack = unwinder.finishUnwind();
      counter.unwinds++;
      if (v.migrate && counter.unwinds <= MAX_MOVES) {
        active = false;
        const next = instantiate();
        moveState(inst, next, nGlobals);
        inst = next;
        bindTo(inst);
        active = true;
      }
      unwinder.startRewind(layouts ? throughFrames(stack, layouts, v.profile) : decodeRawStack(encodeRawStack(stack)));
    }
    ret = `value:${value}`;
    if (unwinder.state !== UnwindState.Normal) protocol.push(`run returned in state ${unwinder.state}`);
  } catch (e) {
    ret = errorText(e);
    unwinder.abort();
  }
  active = false;
  run.unwinds = counter.unwinds;
  run.yields = yields;
  if (countChecks && v.refill === 1) {
    // Every check calls yield (fuel 1): at least one per loop iteration, memory.fill/copy and entry of a function that calls.
    unwinder.abort();
    const expected = checkCount() - checksBefore;
    run.checksExpected = Number(expected);
    if (BigInt(yields) < expected) {
      run.failure = { kind: 'missing-checks', message: `${yields} checks called yield, but the program passed ${expected} places that need one` };
    }
  }
  if (pending !== undefined && ret.startsWith('value:')) protocol.push(`the unwind at ${pending} was never rewound`);
  run.outcome = observe(inst.exports, nGlobals, ret);
  if (protocol.length) run.failure = { kind: 'protocol', message: protocol.join('; ') };
  return run;
}

/** A raw stack as a snapshot keeps it (frames of the original module, encoded as gate.stack) and back. */
function throughFrames(stack: RawStack, layouts: UnwindLayouts, profile: Profile): RawStack {
  const frames = framesFromRaw(stack, layouts);
  const state = decodeStack(encodeStack({ profile, startFunction: undefined, startPending: false, entry: 'run', frames }));
  return rawFromFrames(state.frames, layouts);
}

/** Unwinds after which a migrating run stays in its instance (instantiation, with its start function, is not free). */
const MAX_MOVES = 20;

/** Copies the memory and the globals of one instance of a module to another. */
function moveState(from: WebAssembly.Instance, to: WebAssembly.Instance, nGlobals: number): void {
  const src = from.exports['memory'] as WebAssembly.Memory;
  const dst = to.exports['memory'] as WebAssembly.Memory;
  const grow = (src.buffer.byteLength - dst.buffer.byteLength) / 65536;
  if (grow > 0) dst.grow(grow);
  new Uint8Array(dst.buffer).set(new Uint8Array(src.buffer));
  for (let i = 0; i < nGlobals; i++) (to.exports[`G${i}`] as WebAssembly.Global).value = (from.exports[`G${i}`] as WebAssembly.Global).value;
}

function variants(seed: number, def: ModuleDef): Variant[] {
  const rng = mulberry32(seed ^ 0x5eed5eed);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rng() * a.length)]!;
  const imports = (): number[] => (rng() < 0.3 ? [IMPORT_BLOCK, IMPORT_MIX] : [IMPORT_BLOCK]);
  const refill = (): number => pick([1, 1, 1, 2, 5, 1000]);
  return [
    {
      name: 'suspend-anywhere, no unwinds',
      profile: 'suspend-anywhere',
      pCheck: 0,
      pBlock: 0,
      seed: seed * 4 + 1,
      unwindingImports: imports(),
      refill: 1,
      migrate: false,
      viaFrames: false,
      breakShare: 0,
      pBreak: 0,
    },
    {
      name: 'suspend-anywhere',
      profile: 'suspend-anywhere',
      pCheck: pick([0.03, 0.1, 0.3, 1]),
      pBlock: pick([0.3, 0.7, 1]),
      seed: seed * 4 + 2,
      unwindingImports: imports(),
      refill: refill(),
      // Float globals cross JS as numbers, which may not keep a NaN's payload: only where NaNs are canonicalized.
      migrate: def.canonNaN && rng() < 0.3,
      viaFrames: rng() < 0.5,
      breakShare: 0,
      pBreak: 0,
    },
    {
      name: 'io-suspend',
      profile: 'io-suspend',
      pCheck: 0,
      pBlock: pick([0.3, 0.7, 1]),
      seed: seed * 4 + 3,
      unwindingImports: imports(),
      refill: refill(),
      migrate: def.canonNaN && rng() < 0.3,
      viaFrames: rng() < 0.5,
      breakShare: 0,
      pBreak: 0,
    },
    {
      name: 'breakpoints',
      profile: pick(['suspend-anywhere', 'io-suspend'] as const),
      pCheck: pick([0, 0.1]),
      pBlock: pick([0.3, 1]),
      seed: seed * 4 + 4,
      unwindingImports: imports(),
      refill: refill(),
      migrate: def.canonNaN && rng() < 0.3,
      viaFrames: rng() < 0.5,
      breakShare: pick([0.05, 0.3, 1]),
      pBreak: pick([0.01, 0.1, 0.5]),
    },
  ];
}

interface Failure {
  seed: number;
  variant: Variant;
  kind: string;
  detail: string;
}

function diff(raw: Outcome, got: Outcome): string[] {
  const out: string[] = [];
  if (raw.ret !== got.ret) out.push(`result: raw ${raw.ret}, instrumented ${got.ret}`);
  if (raw.mem !== got.mem) out.push(`memory: raw ${raw.mem}, instrumented ${got.mem}`);
  raw.globals.forEach((g, i) => {
    if (g !== got.globals[i]) out.push(`global ${i}: raw ${g}, instrumented ${got.globals[i]}`);
  });
  return out;
}

interface CaseResult {
  failures: Failure[];
  unwinds: number;
  checkUnwinds: number;
  blockUnwinds: number;
  breakUnwinds: number;
  trapped: boolean;
  checks: { expected: number; yields: number; exact: number; more: number };
}

function checkCase(seed: number, def: ModuleDef, bytes: Uint8Array<ArrayBuffer>, only?: Variant): CaseResult {
  const raw = runRaw(def, bytes);
  const res: CaseResult = { failures: [], unwinds: 0, checkUnwinds: 0, blockUnwinds: 0, breakUnwinds: 0, trapped: !raw.ret.startsWith('value:'), checks: { expected: 0, yields: 0, exact: 0, more: 0 } };
  for (const v of only ? [only] : variants(seed, def)) {
    const r = runInstrumented(def, bytes, v);
    if (r.checksExpected !== undefined) {
      res.checks.expected += r.checksExpected;
      res.checks.yields += r.yields;
      if (r.yields === r.checksExpected) res.checks.exact++;
      else res.checks.more++;
    }
    res.unwinds += r.unwinds;
    res.checkUnwinds += r.checkUnwinds;
    res.blockUnwinds += r.blockUnwinds;
    res.breakUnwinds += r.breakUnwinds;
    if (r.failure) res.failures.push({ seed, variant: v, kind: r.failure.kind, detail: r.failure.message });
    if (r.outcome) {
      const d = diff(raw, r.outcome);
      if (d.length) res.failures.push({ seed, variant: v, kind: 'mismatch', detail: `${d.join('; ')} (unwinds: ${r.unwinds})` });
    }
  }
  return res;
}

function describe(f: Failure): string {
  const v = f.variant;
  return `seed ${f.seed} [${v.name}, pCheck ${v.pCheck}, pBlock ${v.pBlock}, unwinding imports ${v.unwindingImports.join(',')}, refill ${v.refill}${v.migrate ? ', moved between instances' : ''}${v.viaFrames ? ', stack through gate.stack frames' : ''}${v.breakShare ? `, breakpoints at ${v.breakShare} of the instructions, unwinding at ${v.pBreak} of them` : ''}]: ${f.kind}: ${f.detail}`;
}

function wat(bytes: Uint8Array): { text: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), 'gate-fuzz-'));
  const file = join(dir, 'min.wasm');
  writeFileSync(file, bytes);
  try {
    return { text: execFileSync('wasm2wat', ['--enable-all', file], { encoding: 'utf8' }), file };
  } catch (e) {
    return { text: `(wasm2wat failed: ${String(e)})`, file };
  }
}

/** Shrinks a failing case, keeping the variant and the kind of failure. */
function shrink(f: Failure, def: ModuleDef): { def: ModuleDef; bytes: Uint8Array<ArrayBuffer>; failure: Failure } {
  let last = f;
  const fails = (d: ModuleDef, bytes: Uint8Array<ArrayBuffer>): boolean => {
    const r = checkCase(f.seed, d, bytes, f.variant);
    const same = r.failures.find((x) => x.kind === f.kind);
    if (same) last = same;
    return same !== undefined;
  };
  const min = shrinkModule(def, fails, (msg) => process.stderr.write(`${msg}\n`));
  return { def: min, bytes: encodeModule(min), failure: last };
}

const envSeed = process.env['GATE_FUZZ_SEED'];
const GEN_OPTIONS = JSON.parse(process.env['GATE_FUZZ_GEN'] ?? '{}') as GenOptions;
const CASES = Number(process.env['GATE_FUZZ_CASES'] ?? 1000);
const START = Number(process.env['GATE_FUZZ_START'] ?? 1);
/** Stop starting new cases after this long (a slow machine runs fewer). */
const DEADLINE_MS = Number(process.env['GATE_FUZZ_DEADLINE_MS'] ?? 35_000);

test('differential fuzz: instrumented modules behave like the originals, with unwinds anywhere', () => {
  const seeds = envSeed !== undefined ? [Number(envSeed)] : Array.from({ length: CASES }, (_, i) => START + i);
  const t0 = Date.now();
  const failures: Failure[] = [];
  let cases = 0;
  let trapped = 0;
  let unwinds = 0;
  let checkUnwinds = 0;
  let blockUnwinds = 0;
  let breakUnwinds = 0;
  const checks = { expected: 0, yields: 0, exact: 0, more: 0 };
  for (const seed of seeds) {
    if (Date.now() - t0 > DEADLINE_MS) {
      process.stderr.write(`differential fuzz: deadline reached after ${cases} cases\n`);
      break;
    }
    const { def, bytes } = generateValid(seed, GEN_OPTIONS);
    const r = checkCase(seed, def, bytes);
    cases++;
    if (r.trapped) trapped++;
    unwinds += r.unwinds;
    checkUnwinds += r.checkUnwinds;
    blockUnwinds += r.blockUnwinds;
    breakUnwinds += r.breakUnwinds;
    for (const k of ['expected', 'yields', 'exact', 'more'] as const) checks[k] += r.checks[k];
    for (const f of r.failures) {
      failures.push(f);
      if (failures.length <= 20) process.stderr.write(`differential fuzz: ${describe(f)}\n`);
    }
    if (envSeed !== undefined && process.env['GATE_FUZZ_SHRINK'] && r.failures.length) {
      const s = shrink(r.failures[0]!, def);
      const w = wat(s.bytes);
      process.stderr.write(`\nminimized (${s.bytes.length} bytes, ${w.file}): ${describe(s.failure)}\n${w.text}\n`);
    }
  }
  const ms = Date.now() - t0;
  process.stderr.write(
    `differential fuzz: ${cases} cases (${trapped} trap) in ${ms} ms, ${unwinds} unwinds (${checkUnwinds} at checks, ${blockUnwinds} at imports, ${breakUnwinds} at breakpoints), ${failures.length} failures; checks (fuel 1): ${JSON.stringify(checks)}\n`,
  );
  const gen = process.env['GATE_FUZZ_GEN'] ? ` GATE_FUZZ_GEN='${process.env['GATE_FUZZ_GEN']}'` : '';
  assert.equal(
    failures.length,
    0,
    `failing seeds (replay with${gen} GATE_FUZZ_SEED=<seed>, shrink with GATE_FUZZ_SHRINK=1 as well):\n${failures.slice(0, 20).map(describe).join('\n')}`,
  );
  if (envSeed === undefined) {
    assert.ok(checkUnwinds > 0, 'no unwind at a check happened');
    assert.ok(blockUnwinds > 0, 'no unwind at an import happened');
    assert.ok(breakUnwinds > 0, 'no unwind at a breakpoint happened');
    assert.ok(unwinds > 0, 'no unwind happened');
  }
});
