import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  BLOCKING_IMPORTS,
  GATE_SIGNATURES,
  ImportError,
  WASI_SIGNATURES,
  abiSignature,
  canonicalImportName,
  formatSignature,
  isBlockingImport,
  needsRandom,
  resolveImports,
} from '../../src/abi/imports.js';
import { ModuleError } from '../../src/wasm/errors.js';
import { parseModule, type WasmModule } from '../../src/wasm/module.js';
import { ModuleBuilder, I32, I64, F32 } from '../wasm/wasm-builder.js';

const IO_PARAMS = [I32, I32, I32, I32, I32, I32, I64, I32];

function moduleImporting(imports: [string, string, number[], number[]][]): WasmModule {
  const b = new ModuleBuilder();
  for (const [m, f, p, r] of imports) b.importFunc(m, f, p, r);
  return parseModule(b.build());
}

function resolveFails(module: string, field: string, params: number[], results: number[], message: string): void {
  assert.throws(
    () => resolveImports(moduleImporting([[module, field, params, results]])),
    (e: unknown) => {
      assert.ok(e instanceof ImportError, String(e));
      assert.ok(e instanceof ModuleError);
      assert.equal(e.code, 'GATE_BAD_IMPORT');
      assert.equal(e.module, module);
      assert.equal(e.field, field);
      assert.equal(e.message, message);
      return true;
    },
  );
}

test('the WASI table is the spec table', () => {
  assert.equal(Object.keys(WASI_SIGNATURES).length, 45);
  assert.equal(formatSignature(WASI_SIGNATURES.clock_time_get!), '(i32, i64, i32) i32');
  assert.equal(formatSignature(WASI_SIGNATURES.proc_exit!), '(i32)');
  assert.equal(formatSignature(WASI_SIGNATURES.sched_yield!), '() i32');
  assert.equal(formatSignature(WASI_SIGNATURES.path_open!), '(i32, i32, i32, i32, i32, i64, i64, i32, i32) i32');
  assert.equal(formatSignature(GATE_SIGNATURES.io!), '(i32, i32, i32, i32, i32, i32, i64, i32)');
  assert.equal(formatSignature(GATE_SIGNATURES.fd!), '() i32');
  assert.equal(abiSignature({ module: 'wasi', name: 'sock_accept' }), undefined);
  assert.equal(abiSignature({ module: 'wasi', name: 'toString' }), undefined);
});

test('resolves gate, env and WASI aliases in order', () => {
  const m = moduleImporting([
    ['gate', 'io_65536', IO_PARAMS, []],
    ['env', '__gate_fd_65536', [], [I32]],
    ['env', '__gate_io_99999999999', IO_PARAMS, []],
    ['wasi_snapshot_preview1', 'fd_write', [I32, I32, I32, I32], [I32]],
    ['wasi_unstable', 'random_get', [I32, I32], [I32]],
    ['env', '__wasi_clock_time_get', [I32, I64, I32], [I32]],
    ['gate', 'fd_4294967295', [], [I32]],
    ['gate', 'fd_4294967296', [], [I32]],
  ]);
  const r = resolveImports(m);
  assert.deepEqual(
    r.map((i) => [i.module, i.field, i.canonical.module, i.canonical.name, i.needsRandom, i.index]),
    [
      ['gate', 'io_65536', 'gate', 'io', false, 0],
      ['env', '__gate_fd_65536', 'gate', 'fd', false, 1],
      ['env', '__gate_io_99999999999', 'gate', 'io', false, 2],
      ['wasi_snapshot_preview1', 'fd_write', 'wasi', 'fd_write', false, 3],
      ['wasi_unstable', 'random_get', 'wasi', 'random_get', true, 4],
      ['env', '__wasi_clock_time_get', 'wasi', 'clock_time_get', false, 5],
      ['gate', 'fd_4294967295', 'gate', 'fd', false, 6],
      ['gate', 'fd_4294967296', 'gate', 'fd', false, 7],
    ],
  );
  assert.ok(needsRandom(r));
  assert.ok(!needsRandom(r.slice(0, 3)));
});

test('every WASI function resolves under every module alias', () => {
  for (const [name, sig] of Object.entries(WASI_SIGNATURES)) {
    for (const [module, field] of [['wasi_snapshot_preview1', name], ['wasi_unstable', name], ['env', `__wasi_${name}`]] as const) {
      const [r] = resolveImports(moduleImporting([[module, field, sig.params, sig.results]]));
      assert.deepEqual(r!.canonical, { module: 'wasi', name });
      assert.equal(r!.needsRandom, name === 'random_get');
    }
  }
});

test('size suffix rules', () => {
  resolveFails('gate', 'io_0123', IO_PARAMS, [], 'invalid size suffix in symbol: io_0123');
  resolveFails('gate', 'io_0', IO_PARAMS, [], 'invalid size suffix in symbol: io_0');
  resolveFails('gate', 'io_', IO_PARAMS, [], 'invalid size suffix in symbol: io_');
  resolveFails('gate', 'io_65536x', IO_PARAMS, [], 'invalid size suffix in symbol: io_65536x');
  resolveFails('gate', 'io_+65536', IO_PARAMS, [], 'invalid size suffix in symbol: io_+65536');
  resolveFails('gate', 'io_99999999999a', IO_PARAMS, [], 'invalid size suffix in symbol: io_99999999999a');
  resolveFails('env', '__gate_io_0123', IO_PARAMS, [], 'invalid size suffix in symbol: io_0123');
  resolveFails('gate', 'io_100', IO_PARAMS, [], 'value of symbol size suffix is too small: io_100');
  resolveFails('gate', 'fd_65535', [], [I32], 'value of symbol size suffix is too small: fd_65535');
  assert.deepEqual(canonicalImportName('gate', 'io_65536'), { module: 'gate', name: 'io' });
  assert.deepEqual(canonicalImportName('gate', 'io_99999999999'), { module: 'gate', name: 'io' });
});

test('unsupported imports', () => {
  const unsupported = (module: string, field: string): string => `import function not supported: "${module}" "${field}"`;
  resolveFails('gate', 'io', IO_PARAMS, [], unsupported('gate', 'io'));
  resolveFails('gate', '_65536', [], [], unsupported('gate', '_65536'));
  resolveFails('gate', 'debug_65536', [], [], unsupported('gate', 'debug_65536'));
  resolveFails('gate', 'io_65536_1', IO_PARAMS, [], unsupported('gate', 'io_65536_1'));
  resolveFails('env', 'io_65536', IO_PARAMS, [], unsupported('env', 'io_65536'));
  resolveFails('env', 'memcpy', [], [], unsupported('env', 'memcpy'));
  resolveFails('env', '__gate_', [], [], unsupported('env', '__gate_'));
  resolveFails('wasi_snapshot_preview1', 'sock_accept', [I32, I32, I32], [I32], unsupported('wasi_snapshot_preview1', 'sock_accept'));
  resolveFails('wasi_snapshot_preview1', '__proto__', [], [], unsupported('wasi_snapshot_preview1', '__proto__'));
  resolveFails('wasi', 'fd_write', [I32, I32, I32, I32], [I32], unsupported('wasi', 'fd_write'));
  resolveFails('wasi_snapshot_preview2', 'fd_write', [I32, I32, I32, I32], [I32], unsupported('wasi_snapshot_preview2', 'fd_write'));
  resolveFails('env', 'a"b\tc', [], [], 'import function not supported: "env" "a\\"b\\tc"');
});

test('wrong signatures', () => {
  resolveFails(
    'wasi_snapshot_preview1',
    'fd_write',
    [I32, I32, I32, I32],
    [],
    'function wasi_snapshot_preview1.fd_write (i32, i32, i32, i32) i32 imported with wrong signature (i32, i32, i32, i32)',
  );
  resolveFails(
    'env',
    '__wasi_clock_time_get',
    [I32, I32, I32],
    [I32],
    'function env.__wasi_clock_time_get (i32, i64, i32) i32 imported with wrong signature (i32, i32, i32) i32',
  );
  resolveFails('gate', 'io_65536', [I32, I32, I32, I32, I32, I32, I64], [], 'function gate.io_65536 (i32, i32, i32, i32, i32, i32, i64, i32) imported with wrong signature (i32, i32, i32, i32, i32, i32, i64)');
  resolveFails('gate', 'fd_65536', [], [F32], 'function gate.fd_65536 () i32 imported with wrong signature () f32');
  resolveFails('wasi_unstable', 'proc_exit', [I32], [I32], 'function wasi_unstable.proc_exit (i32) imported with wrong signature (i32) i32');
});

test('non-function imports are rejected', () => {
  const b = new ModuleBuilder().importGlobal('env', 'g', I32);
  assert.throws(() => resolveImports(parseModule(b.build())), { message: 'import global not supported: "env" "g"', code: 'GATE_BAD_IMPORT' });
  const t = new ModuleBuilder().importMemory('env', 'memory', 1);
  assert.throws(() => resolveImports(parseModule(t.build())), { message: 'import kind not supported: memory' });
});

test('blocking imports', () => {
  for (const name of [
    'gate.io',
    'wasi.fd_read',
    'wasi.fd_write',
    'wasi.poll_oneoff',
    'wasi.sched_yield',
    'wasi.random_get',
    'wasi.clock_time_get',
    'wasi.fd_close',
    'wasi.fd_renumber',
    'wasi.fd_fdstat_set_rights',
    'wasi.proc_raise',
  ]) {
    assert.ok(BLOCKING_IMPORTS.includes(name), name);
  }
  assert.ok(isBlockingImport({ module: 'gate', name: 'io' }));
  assert.ok(!isBlockingImport({ module: 'gate', name: 'fd' }));
  assert.ok(!isBlockingImport({ module: 'wasi', name: 'proc_exit' }));
  // Every entry names a real function.
  for (const name of BLOCKING_IMPORTS) {
    const [module, fn] = name.split('.') as ['gate' | 'wasi', string];
    assert.ok(abiSignature({ module, name: fn }), name);
  }
});
