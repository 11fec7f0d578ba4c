/**
 * The DWARF line table reader (src/wasm/dwarf-line.ts) against LLVM's own
 * reader (llvm-dwarfdump, installed with the toolchain that builds the test
 * programs), on debuggee.wasm (DWARF 4, clang-14's default) and
 * debuggee-dwarf5.wasm (the same code with DWARF 5 tables).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { lineOffsets, readLineTable, sourceLocation } from '../../src/wasm/dwarf-line.js';
import { functionAtInstruction } from '../../src/wasm/debug-info.js';
import { parseModule } from '../../src/wasm/module.js';
import { programBytes } from '../helpers/runtime.js';

const BUILD = new URL('../../../test/programs/build/', import.meta.url);
const dump = spawnSync('llvm-dwarfdump', ['--version']);
const skip = dump.error ? 'llvm-dwarfdump is not installed' : false;

/** llvm-dwarfdump's rows: address, line, column, is_stmt, end_sequence. */
function llvmRows(name: string): string[] {
  const r = spawnSync('llvm-dwarfdump', ['--debug-line', fileURLToPath(new URL(`${name}.wasm`, BUILD))], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const rows: string[] = [];
  for (const line of r.stdout.split('\n')) {
    const m = /^0x([0-9a-f]{16})\s+(\d+)\s+(\d+)\s+(\d+)\s+\d+\s+\d+\s*(.*)$/.exec(line);
    if (m) rows.push(`${parseInt(m[1]!, 16)} ${m[2]}:${m[3]}${/is_stmt/.test(m[5]!) ? ' stmt' : ''}${/end_sequence/.test(m[5]!) ? ' end' : ''}`);
  }
  return rows;
}

describe('DWARF line tables', { skip }, () => {
  for (const name of ['debuggee', 'debuggee-dwarf5']) {
    it(`reads every row of ${name}.wasm as llvm-dwarfdump does`, () => {
      const rows = readLineTable(parseModule(programBytes(name)));
      const ours = rows.map((r) => `${r.address} ${r.line}:${r.column}${r.isStmt ? ' stmt' : ''}${r.endSequence ? ' end' : ''}`);
      const theirs = llvmRows(name);
      assert.ok(theirs.length > 20);
      assert.deepEqual(ours, theirs);
      // debuggee.c, and gate.h for the SDK's inlined functions.
      assert.ok(rows.some((r) => r.file.endsWith('test/programs/debuggee.c')), 'debuggee.c');
      assert.deepEqual([...new Set(rows.map((r) => r.file.split('/').pop()))].sort(), ['debuggee.c', 'gate.h']);
    });

    it(`maps lines of ${name}.wasm to instruction offsets and back`, () => {
      const m = parseModule(programBytes(name));
      const rows = readLineTable(m);
      // Line 29 is `counter += depth;` in descend, its first statement.
      const offsets = lineOffsets(rows, 'debuggee.c', 29);
      assert.equal(offsets.length, 1);
      assert.equal(functionAtInstruction(m, offsets[0]!), 2);
      assert.deepEqual(sourceLocation(rows, offsets[0]!), { file: rows.find((r) => r.line === 29)!.file, line: 29, column: 10 });
      assert.deepEqual(lineOffsets(rows, 'other.c', 29), []);
      assert.deepEqual(lineOffsets(rows, 'debuggee.c', 1), []);
      // Every statement row's address is an instruction boundary, but the
      // first of a sequence (a function's start: its local declarations).
      let first = true;
      for (const r of rows) {
        if (!r.endSequence && r.isStmt && !first) assert.notEqual(functionAtInstruction(m, r.address), undefined, `row at ${r.address}`);
        first = r.endSequence;
      }
      assert.equal(sourceLocation(rows, 1_000_000), undefined);
    });
  }

  it('finds no table in a module without DWARF', () => {
    assert.deepEqual(readLineTable(parseModule(programBytes('hello'))), []);
  });
});
