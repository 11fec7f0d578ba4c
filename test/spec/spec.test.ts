/**
 * The official WebAssembly spec test suite (../shared/testsuite, see its
 * README), converted by wast2json at set-up and run three ways: raw V8,
 * instrumented with profile suspend-anywhere (without and with an unwind
 * and rewind forced at the preemption checks) and with profile io-suspend.
 * Every assertion that passes raw must pass instrumented, with the same
 * outcome (values to the bit, traps by message).
 */
import '../../src/runtime/node/engine-flags.js';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { instrument } from '../../src/prepare/instrument.js';
import { addCounts, convertSuite, haveWast2json, newCounts, SpecRunner, type FileReport, type WayCounts } from './wast.js';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const suiteDir = path.resolve(repoRoot, '..', 'shared', 'testsuite');

function countsLine(name: string, c: WayCounts, raw: boolean): string {
  const parts = [`${name}: ${c.pass} passed`];
  if (c.fail) parts.push(`${c.fail} ${raw ? 'failed' : 'MISMATCHED'}`);
  if (c.na) parts.push(`${c.na} n/a`);
  if (c.sameAsRawFailure) parts.push(`${c.sameAsRawFailure} fail as raw does`);
  if (c.differsWhereRawFails) parts.push(`${c.differsWhereRawFails} differ where raw fails`);
  parts.push(`modules ${c.modules} ok${c.modulesNA ? `, ${c.modulesNA} n/a` : ''}${c.modulesFailed ? `, ${c.modulesFailed} failed` : ''}`);
  if (c.unwinds) parts.push(`${c.unwinds} unwinds in ${c.callsUnwound} calls`);
  return parts.join(', ');
}

test('WebAssembly spec test suite', async (t) => {
  if (!fs.existsSync(suiteDir)) {
    t.skip(`no spec test suite at ${suiteDir}`);
    return;
  }
  if (!(await haveWast2json())) {
    t.skip('wast2json (wabt) is not installed');
    return;
  }
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gate-spec-'));
  t.after(() => fs.rmSync(outDir, { recursive: true, force: true }));
  let names = await convertSuite(suiteDir, outDir);
  assert.ok(names.length > 0, `no .wast files in ${suiteDir}`);
  // GATE_SPEC_FILES=call,fac runs only those files (when looking into a failure).
  const only = process.env.GATE_SPEC_FILES?.split(',').map((n) => n.trim().replace(/\.wast$/, ''));
  if (only) names = names.filter((n) => only.includes(n));
  const full = !only;

  const runner = new SpecRunner({ instrument });

  const totals: Record<string, WayCounts> = {};
  const naReasons = new Map<string, number>();
  const reports: FileReport[] = [];
  for (const name of names) {
    await t.test(`${name}.wast`, (st) => {
      const r = runner.runFile(outDir, name);
      reports.push(r);
      const wayNames = Object.keys(r.ways);
      for (const w of wayNames) {
        addCounts((totals[w] ??= newCounts()), r.ways[w]!);
        st.diagnostic(countsLine(w, r.ways[w]!, w === 'raw'));
      }
      if (r.skippedText) st.diagnostic(`${r.skippedText} assertions on text modules skipped`);
      for (const w of wayNames.slice(1)) {
        for (const [reason, n] of r.naReasons[w]!) {
          st.diagnostic(`${w}: ${n} modules n/a: ${reason}`);
          naReasons.set(`${w}: ${reason}`, (naReasons.get(`${w}: ${reason}`) ?? 0) + n);
        }
      }
      for (const f of r.rawFailures.slice(0, 5)) st.diagnostic(`raw fails: ${f}`);
      if (r.rawFailures.length > 5) st.diagnostic(`raw fails: … ${r.rawFailures.length - 5} more`);
      for (const note of r.notes.slice(0, 10)) st.diagnostic(`note: ${note}`);
      if (r.notes.length > 10) st.diagnostic(`note: … ${r.notes.length - 10} more`);
      const shown = r.mismatches.slice(0, 20).map((m) => `${m.way}: line ${m.line} ${m.command} [${m.module ?? '?'}]: raw ${m.expected}, got ${m.got}`);
      assert.equal(r.mismatches.length, 0, `instrumented runs differ from raw V8:\n${shown.join('\n')}${r.mismatches.length > 20 ? `\n… ${r.mismatches.length - 20} more` : ''}`);
    });
  }

  t.diagnostic(`totals over ${names.length} files:`);
  for (const [w, c] of Object.entries(totals)) t.diagnostic(countsLine(w, c, w === 'raw'));
  for (const [reason, n] of [...naReasons].sort((a, b) => b[1] - a[1])) t.diagnostic(`n/a: ${n} modules: ${reason}`);
  if (full) {
    assert.ok((totals.raw?.pass ?? 0) > 20000, 'too few assertions passed raw');
    assert.ok((totals['suspend-anywhere forced']?.unwinds ?? 0) > 0, 'forced mode never unwound');
  }
});
