import { test } from 'node:test';
import assert from 'node:assert/strict';

import { parseModule } from '../../src/wasm/module.js';
import { DEFAULT_SERVER_LIMITS, validateModule } from '../../src/wasm/validate.js';
import { ModuleBuilder, I32 } from './wasm-builder.js';

// A name is any UTF-8 string; one that begins with U+FEFF (a "byte order
// mark") must keep it. A default TextDecoder strips a leading BOM.

test('export names beginning with U+FEFF keep it', () => {
  const b = new ModuleBuilder();
  const f = b.func([], [I32], [0x41, 1, 0x0b]);
  b.exportFunc('\uFEFFf', f).exportFunc('f', f).exportFunc('\uFEFF\uFEFFf', f);
  const bytes = b.build();
  const m = parseModule(bytes);
  assert.deepEqual(
    m.exports.map((e) => e.name),
    ['\uFEFFf', 'f', '\uFEFF\uFEFFf'],
  );
  validateModule(m, DEFAULT_SERVER_LIMITS); // no "duplicate export name"
  // The engine agrees.
  const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>));
  assert.deepEqual(Object.keys(inst.exports).sort(), ['\uFEFFf', 'f', '\uFEFF\uFEFFf'].sort());
});

test('import module and field names beginning with U+FEFF keep it', () => {
  const b = new ModuleBuilder();
  b.importFunc('\uFEFFenv', '\uFEFFx', [], []);
  b.importFunc('env', '\uFEFF', [], []);
  const m = parseModule(b.build());
  assert.deepEqual(
    m.imports.map((i) => [i.module, i.field]),
    [
      ['\uFEFFenv', '\uFEFFx'],
      ['env', '\uFEFF'],
    ],
  );
});

test('custom section names beginning with U+FEFF keep it', () => {
  const b = new ModuleBuilder();
  b.custom('\uFEFFname', [1, 2, 3]);
  const m = parseModule(b.build());
  assert.deepEqual(
    m.sections.filter((s) => s.id === 0).map((s) => s.name),
    ['\uFEFFname'],
  );
});
