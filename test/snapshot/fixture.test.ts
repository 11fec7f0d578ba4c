/**
 * A snapshot committed as a fixture (made by scripts/make-snapshot-fixture.mjs when the
 * current stack layout was introduced) must restore and continue under
 * every later version of the runtime: a change to the transform cannot
 * silently break old snapshots.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { InProcessExecutor } from '../../src/runtime/inprocess.js';
import { Program } from '../../src/runtime/program.js';
import { Runtime } from '../../src/runtime/runtime.js';
import { instanceServices } from '../../src/service/provider.js';
import { readSnapshot } from '../../src/snapshot/format.js';
import { DEFAULT_LOCAL_LIMITS } from '../../src/wasm/validate.js';

const dir = new URL('../../../test/snapshot/fixtures/', import.meta.url);

describe('committed snapshot fixtures', () => {
  it('suspend-loop.wasm (layout GTS2) continues where it stopped', async () => {
    const bytes = new Uint8Array(await readFile(new URL('suspend-loop.wasm', dir)));
    const meta = JSON.parse(await readFile(new URL('suspend-loop.json', dir), 'utf8')) as { lastPrinted: number };
    const program = await Program.load(bytes, DEFAULT_LOCAL_LIMITS);
    assert.ok(readSnapshot(program.module)?.stack?.frames.length, 'the fixture has a suspended stack');
    const runtime = new Runtime({ executor: new InProcessExecutor(), memoryLimitPages: 2048, timeResolutionNs: 1000 });
    let log = '';
    const inst = await runtime.launch(program, { debug: (d) => void (log += Buffer.from(d).toString()), services: instanceServices({ principalId: 'local' }) });
    const deadline = Date.now() + 30_000;
    while (!/running: \d+\n/.test(log) && Date.now() < deadline && inst.status.state === 'RUNNING') await new Promise((r) => setTimeout(r, 10));
    inst.kill();
    await inst.wait();
    // The counter lives in a wasm local of the suspended frame: it must come back.
    const first = /running: (\d+)\n/.exec(log);
    assert.ok(first, `no output after the restore: ${JSON.stringify(log)}`);
    assert.equal(Number(first[1]), meta.lastPrinted + 1);
  });
});
