import { test } from 'node:test';
import assert from 'node:assert/strict';

import { GateError } from '../../src/errors.js';
import { ModuleError, ModuleLimitError } from '../../src/wasm/errors.js';
import { ImportError } from '../../src/wasm/import-error.js';
import { parseModule } from '../../src/wasm/module.js';
import { DEFAULT_LOCAL_LIMITS, DEFAULT_SERVER_LIMITS, MAX_MEMORY_PAGES, MAX_VALUES_HELD_ACROSS_BLOCKS, validateModule, type ModuleLimits } from '../../src/wasm/validate.js';
import { valuesHeldAcrossBlocks } from '../../src/wasm/operand-stack.js';
import { ModuleBuilder, I32, I64 } from './wasm-builder.js';

const END = [0x0b];

function validate(b: ModuleBuilder | Uint8Array, limits: ModuleLimits = DEFAULT_SERVER_LIMITS): void {
  validateModule(parseModule(b instanceof Uint8Array ? b : b.build()), limits);
}

function fails(b: ModuleBuilder, message: string | RegExp, cls: new (...args: never[]) => Error = ModuleError, limits: ModuleLimits = DEFAULT_SERVER_LIMITS): void {
  assert.throws(
    () => validate(b, limits),
    (e: unknown) => {
      assert.ok(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
      assert.ok(e instanceof GateError);
      if (typeof message === 'string') assert.equal(e.message, message);
      else assert.match(e.message, message);
      return true;
    },
  );
}

const limits = (overrides: Partial<ModuleLimits>): ModuleLimits => ({ ...DEFAULT_SERVER_LIMITS, ...overrides });

test('default limits match the spec', () => {
  assert.equal(DEFAULT_SERVER_LIMITS.maxExports, 64);
  assert.equal(DEFAULT_SERVER_LIMITS.maxModuleSize, 32 * 1024 * 1024);
  assert.equal(DEFAULT_SERVER_LIMITS.maxFunctions, 32768);
  assert.equal(DEFAULT_SERVER_LIMITS.maxTypes, 32768);
  assert.equal(DEFAULT_SERVER_LIMITS.maxImports, 32768);
  assert.equal(DEFAULT_SERVER_LIMITS.maxParams, 255);
  assert.equal(DEFAULT_SERVER_LIMITS.maxGlobals, 32);
  assert.equal(DEFAULT_SERVER_LIMITS.maxNameLength, 100000);
  assert.equal(DEFAULT_SERVER_LIMITS.maxTableLength, 10_000_000);
  assert.equal(DEFAULT_SERVER_LIMITS.memoryLimitPages, 512);
  assert.equal(DEFAULT_LOCAL_LIMITS.maxExports, 100);
  assert.equal(DEFAULT_LOCAL_LIMITS.memoryLimitPages, MAX_MEMORY_PAGES);
  assert.ok(Object.isFrozen(DEFAULT_SERVER_LIMITS));
});

test('accepts the empty module and an ordinary one', () => {
  validate(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
  const b = new ModuleBuilder();
  b.importFunc('wasi_snapshot_preview1', 'proc_exit', [I32]);
  b.memory(2, 65536); // a declared maximum above the cap is clamped, not rejected
  b.table(2, 2);
  const f = b.func([], [], [0x03, 0x40, 0x0b, ...END]);
  b.global(I32, true, [0x41, 0x00, 0x0b]);
  b.exportFunc('_start', f).export('memory', 2, 0).export('table', 1, 0).export('g', 3, 0);
  b.element(0, [f, f]);
  b.data(0, [1, 2, 3]);
  b.start(f);
  validate(b);
});

test('module size limit', () => {
  const b = new ModuleBuilder().custom('pad', new Array(1000).fill(0));
  validate(b, limits({ maxModuleSize: 2000 }));
  fails(b, /^module size limit exceeded: \d+ bytes \(limit 100\)$/, ModuleLimitError, limits({ maxModuleSize: 100 }));
});

test('type count and parameter count', () => {
  const b = new ModuleBuilder();
  b.type([]);
  b.type([I32]);
  b.type([I64]);
  fails(b, 'type count is too large: 3 (limit 2)', ModuleLimitError, limits({ maxTypes: 2 }));

  const p = new ModuleBuilder();
  p.type(new Array(255).fill(I32));
  validate(p);
  p.type(new Array(256).fill(I32));
  fails(p, 'function type #1 has too many parameters: 256 (limit 255)', ModuleLimitError);
});

test('import count and import kinds', () => {
  const b = new ModuleBuilder();
  b.importFunc('wasi_snapshot_preview1', 'sched_yield', [], [I32]);
  b.importFunc('wasi_snapshot_preview1', 'proc_exit', [I32]);
  fails(b, 'import count is too large: 2 (limit 1)', ModuleLimitError, limits({ maxImports: 1 }));

  fails(new ModuleBuilder().importTable('env', 'table', 1), 'import kind not supported: table', ImportError);
  fails(new ModuleBuilder().importMemory('env', 'memory', 1), 'import kind not supported: memory', ImportError);
  fails(new ModuleBuilder().importGlobal('env', 'g', I32), 'import global not supported: "env" "g"', ImportError);
  fails(new ModuleBuilder().importGlobal('env', 'g', I32, true), 'unsupported mutable global in import #0', ImportError);

  assert.throws(
    () => validate(new ModuleBuilder().importGlobal('gate', 'x\n', I64)),
    (e: unknown) => e instanceof ImportError && e.code === 'GATE_BAD_IMPORT' && e.module === 'gate' && e.field === 'x\n' && e.message === 'import global not supported: "gate" "x\\n"',
  );
});

test('function count', () => {
  const b = new ModuleBuilder();
  b.importFunc('wasi_snapshot_preview1', 'sched_yield', [], [I32]);
  b.func([], [], END);
  b.func([], [], END);
  validate(b, limits({ maxFunctions: 3 }));
  fails(b, 'function count is too large: 3 (limit 2)', ModuleLimitError, limits({ maxFunctions: 2 }));
});

test('tables', () => {
  fails(new ModuleBuilder().table(1).table(1), 'multiple tables not supported');
  validate(new ModuleBuilder().table(10), limits({ maxTableLength: 10 }));
  fails(new ModuleBuilder().table(11), 'initial table size is too large: 11 (limit 10)', ModuleLimitError, limits({ maxTableLength: 10 }));
});

test('memories', () => {
  fails(new ModuleBuilder().memory(1).memory(1), 'multiple memories not supported');
  validate(new ModuleBuilder().memory(MAX_MEMORY_PAGES), DEFAULT_LOCAL_LIMITS);
  fails(new ModuleBuilder().memory(MAX_MEMORY_PAGES + 1), 'initial memory size is too large: 32768 pages (limit 32767)', ModuleLimitError, DEFAULT_LOCAL_LIMITS);
  validate(new ModuleBuilder().memory(512));
  fails(
    new ModuleBuilder().memory(513),
    'initial program memory size exceeds instance memory size limit (513 pages > 512 pages)',
    ModuleLimitError,
  );
});

test('global count includes every global', () => {
  const b = new ModuleBuilder();
  for (let i = 0; i < 32; i++) b.global(I32, false, [0x41, i, 0x0b]);
  validate(b);
  b.global(I64, true, [0x42, 0, 0x0b]);
  fails(b, 'global count is too large: 33 (limit 32)', ModuleLimitError);
});

test('exports: count, duplicates, names, indexes', () => {
  const b = new ModuleBuilder();
  const f = b.func([], [], END);
  for (let i = 0; i < 64; i++) b.exportFunc(`f${i}`, f);
  validate(b);
  b.exportFunc('f64', f);
  fails(b, 'export count is too large: 65 (limit 64)', ModuleLimitError);
  validate(b, DEFAULT_LOCAL_LIMITS);

  const d = new ModuleBuilder();
  const g = d.func([], [], END);
  d.exportFunc('x', g).exportFunc('x', g);
  fails(d, 'duplicate export name: "x"');

  const n = new ModuleBuilder();
  const h = n.func([], [], END);
  n.exportFunc('a'.repeat(100000), h);
  validate(n);
  n.exportFunc('b'.repeat(100001), h);
  fails(n, 'name of export #1 is too long (limit 100000 bytes)', ModuleLimitError);
  // Bytes count, not characters.
  fails(nameBuilder(), 'field name of import #0 is too long (limit 100000 bytes)', ModuleLimitError);

  const i = new ModuleBuilder();
  i.func([], [], END);
  i.exportFunc('nope', 5);
  fails(i, 'export "nope" refers to function index 5 which does not exist');
  fails(new ModuleBuilder().export('mem', 2, 0), 'export "mem" refers to memory index 0 which does not exist');
});

function nameBuilder(): ModuleBuilder {
  const b = new ModuleBuilder();
  b.importFunc('wasi_unstable', 'é'.repeat(50001), []);
  return b;
}

test('start function', () => {
  const b = new ModuleBuilder();
  const f = b.func([I32], [], END);
  b.start(f);
  fails(b, 'invalid start function signature: start function must take no parameters and return nothing');
  fails(new ModuleBuilder().start(3), 'start function index out of bounds: 3');
});

test('element segments fit in the initial table', () => {
  const ok = new ModuleBuilder();
  const f = ok.func([], [], END);
  ok.table(4).element(1, [f, f, f]);
  validate(ok);

  const over = new ModuleBuilder();
  const g = over.func([], [], END);
  over.table(4).element(0, [g]).element(2, [g, g, g]);
  fails(over, /^table segment #1 exceeds initial table size/);

  const noTable = new ModuleBuilder();
  noTable.func([], [], END);
  noTable.element(0, [0]);
  fails(noTable, /^table segment #0 exceeds initial table size/);

  const negative = new ModuleBuilder();
  negative.func([], [], END);
  negative.table(4).element(-1, [0]);
  fails(negative, /^table segment #0 exceeds initial table size/);

  const global = new ModuleBuilder();
  global.func([], [], END);
  global.table(4).element([0x23, 0x00, 0x0b], [0]);
  fails(global, /^table segment #0 offset must be an i32.const expression/);

  const badIndex = new ModuleBuilder();
  badIndex.func([], [], END);
  badIndex.table(4).element(0, [7]);
  fails(badIndex, /^table element index out of bounds: 7/);

  const many = new ModuleBuilder();
  const h = many.func([], [], END);
  many.table(10).element(0, [h]).element(1, [h]).element(2, [h]);
  fails(many, 'element segment count is too large: 3 (limit 2)', ModuleLimitError, limits({ maxElements: 2 }));
  const entries = new ModuleBuilder();
  const k = entries.func([], [], END);
  entries.table(10).element(0, [k, k, k]);
  fails(entries, 'element entry count is too large: 3 (limit 2)', ModuleLimitError, limits({ maxElements: 2 }));
});

test('function bodies are decoded and unsupported instructions rejected with the function index', () => {
  const b = new ModuleBuilder();
  b.importFunc('wasi_snapshot_preview1', 'sched_yield', [], [I32]);
  b.func([], [], END);
  b.func([], [], [0x41, 0x00, 0xfd, 0x0f, 0x1a, ...END]); // i8x16.splat
  fails(b, /^function 2: SIMD instructions are not supported \(opcode 0xfd\) \(at byte offset \d+\)$/);
});

/** `values` constants held on the operand stack across `ifs` ifs, then dropped, in one function (V8 compiles such a body in memory proportional to values × ifs). */
function holding(values: number, ifs: number): ModuleBuilder {
  const code: number[] = [];
  for (let i = 0; i < values; i++) code.push(0x41, i & 63);
  for (let i = 0; i < ifs; i++) code.push(0x20, 0, 0x04, 0x40, 0x0b);
  for (let i = 0; i < values; i++) code.push(0x1a);
  const b = new ModuleBuilder();
  b.exportFunc('f', b.func([I32], [], [...code, ...END]));
  return b;
}

test('operand values held across blocks are bounded', () => {
  assert.equal(MAX_VALUES_HELD_ACROSS_BLOCKS, 1 << 20);
  // 8 000 values across 12 000 ifs: an 84 KB body that took V8 2.4 GB to compile.
  fails(
    holding(8000, 12000),
    'function 0 holds too many operand values across blocks (96000000; limit 1048576): keep them in locals (at byte offset 35)',
    ModuleLimitError,
  );
  validate(holding(1000, 1048)); // 1 048 000, under the limit
  fails(holding(1000, 1049), /\(1049000; limit 1048576\)/, ModuleLimitError);
  // Nested constructs count their own entries; an if's condition is not held; code after a branch holds nothing.
  const b = new ModuleBuilder();
  const nested = [0x41, 1, 0x41, 2, 0x02, 0x40, 0x41, 3, 0x20, 0, 0x04, 0x7f, 0x41, 4, 0x05, 0x41, 5, 0x0b, 0x1a, 0x0c, 0, 0x41, 6, 0x02, 0x40, 0x0b, 0x1a, 0x0b, 0x1a, 0x1a];
  b.exportFunc('g', b.func([I32], [], [...nested, ...END]));
  const m = parseModule(b.build());
  assert.equal(valuesHeldAcrossBlocks(m, 0), 2 + 3);
});
