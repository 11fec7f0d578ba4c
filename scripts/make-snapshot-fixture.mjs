#!/usr/bin/env node
// Writes test/snapshot/fixtures/suspend-loop.wasm (+ .json): suspend.wasm's
// `loop` suspended in the middle of its inner loop, with the current stack
// layout. Run by hand (after `npm run build`) only when a new gate.stack
// layout is introduced; the committed fixture must restore under every later
// version (test/snapshot/fixture.test.ts).
import { readFile, writeFile } from 'node:fs/promises';

const root = new URL('../', import.meta.url);
const { InProcessExecutor } = await import(new URL('dist/src/runtime/inprocess.js', root));
const { Program } = await import(new URL('dist/src/runtime/program.js', root));
const { Runtime } = await import(new URL('dist/src/runtime/runtime.js', root));
const { instanceServices } = await import(new URL('dist/src/service/provider.js', root));
const { DEFAULT_LOCAL_LIMITS } = await import(new URL('dist/src/wasm/validate.js', root));

const runtime = new Runtime({ executor: new InProcessExecutor(), memoryLimitPages: 2048, timeResolutionNs: 1000 });
const program = await Program.load(new Uint8Array(await readFile(new URL('test/programs/build/suspend.wasm', root))), DEFAULT_LOCAL_LIMITS);
let log = '';
const inst = await runtime.launch(program, { entry: 'loop', retain: true, debug: (d) => (log += Buffer.from(d).toString()), services: instanceServices({ principalId: 'local' }) });
while (!/running: 2\n/.test(log)) await new Promise((r) => setTimeout(r, 5));
inst.suspend();
await inst.wait();
const last = Number([...log.matchAll(/running: (\d+)\n/g)].pop()[1]);
const dir = new URL('test/snapshot/fixtures/', root);
await writeFile(new URL('suspend-loop.wasm', dir), await inst.snapshot());
await writeFile(new URL('suspend-loop.json', dir), `${JSON.stringify({ program: 'test/programs/suspend.c', entry: 'loop', lastPrinted: last, layout: 'GTS2' }, null, 2)}\n`);
console.log(`suspended after "running: ${last}"`);
