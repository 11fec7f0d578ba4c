import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  ENTRY_NOT_FOUND_MESSAGE,
  ENTRY_SUSPENDED_MESSAGE,
  ENTRY_WITH_START_MESSAGE,
  EntryError,
  entryFunctionNames,
  isEntryType,
  resolveEntry,
} from '../../src/abi/entry.js';
import { parseModule, type WasmModule } from '../../src/wasm/module.js';
import { ModuleBuilder, I32, I64, F32 } from '../wasm/wasm-builder.js';

const END = [0x0b];

function build(exports: [string, number[], number[]][], imported = false): WasmModule {
  const b = new ModuleBuilder();
  if (imported) {
    const imp = b.importFunc('wasi_snapshot_preview1', 'sched_yield', [], [I32]);
    b.exportFunc('imported', imp);
  }
  for (const [name, params, results] of exports) {
    const body = results.length === 0 ? END : [results[0] === I64 ? 0x42 : 0x41, 0x00, ...END];
    b.exportFunc(name, b.func(params, results, body));
  }
  b.memory(1).export('mem', 2, 0);
  return parseModule(b.build());
}

function fails(f: () => unknown, code: string, message: string): void {
  assert.throws(f, (e: unknown) => e instanceof EntryError && e.code === code && e.message === message);
}

test('isEntryType', () => {
  assert.ok(isEntryType({ params: [], results: [] }));
  assert.ok(isEntryType({ params: [], results: [I32] }));
  assert.ok(!isEntryType({ params: [], results: [I64] }));
  assert.ok(!isEntryType({ params: [], results: [F32] }));
  assert.ok(!isEntryType({ params: [I32], results: [] }));
});

test('entry function names', () => {
  const m = build([['a', [], []], ['b', [], [I32]], ['c', [I32], []], ['d', [], [I64]]], true);
  assert.deepEqual(entryFunctionNames(m), ['imported', 'a', 'b']);
});

test('no function requested', () => {
  const none = build([['main', [], []]]);
  assert.deepEqual(resolveEntry(none, undefined, { snapshot: false }), { entry: undefined, index: undefined });
  assert.deepEqual(resolveEntry(none, '', { snapshot: false }), { entry: undefined, index: undefined });

  const start = build([['main', [], []], ['_start', [], []]]);
  assert.deepEqual(resolveEntry(start, undefined, { snapshot: false }), { entry: '_start', index: 1 });
  // Snapshots ignore _start.
  assert.deepEqual(resolveEntry(start, undefined, { snapshot: true }), { entry: undefined, index: undefined });

  const badStart = build([['_start', [I32], []]]);
  assert.deepEqual(resolveEntry(badStart, undefined, { snapshot: false }), { entry: undefined, index: undefined });
});

test('function requested', () => {
  const m = build([['main', [], []], ['answer', [], [I32]], ['param', [I32], []], ['wide', [], [I64]]]);
  assert.deepEqual(resolveEntry(m, 'main', { snapshot: false }), { entry: 'main', index: 0 });
  assert.deepEqual(resolveEntry(m, 'answer', { snapshot: false }), { entry: 'answer', index: 1 });
  assert.deepEqual(resolveEntry(m, 'main', { snapshot: true }), { entry: 'main', index: 0 });
  fails(() => resolveEntry(m, 'param', { snapshot: false }), 'GATE_ENTRY_NOT_FOUND', ENTRY_NOT_FOUND_MESSAGE);
  fails(() => resolveEntry(m, 'wide', { snapshot: false }), 'GATE_ENTRY_NOT_FOUND', ENTRY_NOT_FOUND_MESSAGE);
  fails(() => resolveEntry(m, 'missing', { snapshot: false }), 'GATE_ENTRY_NOT_FOUND', ENTRY_NOT_FOUND_MESSAGE);
  fails(() => resolveEntry(m, 'mem', { snapshot: false }), 'GATE_ENTRY_NOT_FOUND', ENTRY_NOT_FOUND_MESSAGE);
  // `_start` requested but not exported: accepted, no entry function.
  assert.deepEqual(resolveEntry(m, '_start', { snapshot: false }), { entry: undefined, index: undefined });
  assert.equal(ENTRY_NOT_FOUND_MESSAGE, 'function not exported or it cannot be used as entry function');
});

test('function requested for a program with _start', () => {
  const m = build([['main', [], []], ['_start', [], []]]);
  fails(() => resolveEntry(m, 'main', { snapshot: false }), 'GATE_ENTRY_WITH_START', ENTRY_WITH_START_MESSAGE);
  fails(() => resolveEntry(m, '_start', { snapshot: false }), 'GATE_ENTRY_WITH_START', ENTRY_WITH_START_MESSAGE);
  // A snapshot's _start is not considered.
  assert.deepEqual(resolveEntry(m, 'main', { snapshot: true }), { entry: 'main', index: 0 });
  assert.deepEqual(resolveEntry(m, '_start', { snapshot: true }), { entry: undefined, index: undefined });
  assert.equal(ENTRY_WITH_START_MESSAGE, 'entry function may not be specified for program with _start function');
});

test('suspended snapshots accept no function', () => {
  const m = build([['main', [], []]]);
  fails(() => resolveEntry(m, 'main', { snapshot: true, suspended: true }), 'GATE_ENTRY_SUSPENDED', ENTRY_SUSPENDED_MESSAGE);
  assert.deepEqual(resolveEntry(m, undefined, { snapshot: true, suspended: true }), { entry: undefined, index: undefined });
  assert.equal(ENTRY_SUSPENDED_MESSAGE, 'entry function may not be specified for suspended program');
  const e = (() => {
    try {
      resolveEntry(m, 'main', { snapshot: true, suspended: true });
    } catch (err) {
      return err;
    }
    return undefined;
  })();
  assert.ok(e instanceof EntryError && e.requested === 'main');
});
