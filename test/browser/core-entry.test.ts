/**
 * The core-only entry point (src/core.ts, `gate-ts/core`): nothing reachable
 * from it, or from the browser entry, imports a Node built-in (bundling for
 * the browser platform proves it), and it runs programs on its own.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import * as esbuild from 'esbuild';
import * as core from '../../src/core.js';
import { programBytes } from '../helpers/runtime.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));

describe('core-only entry point', () => {
  for (const entry of ['src/core.ts', 'src/browser/index.ts', 'src/browser/executor-worker.ts', 'src/browser/prepare-worker.ts', 'src/console/main.ts']) {
    it(`${entry} bundles for the browser without any Node built-in`, async () => {
      const r = await esbuild.build({ entryPoints: [entry], absWorkingDir: root, bundle: true, platform: 'browser', format: 'esm', write: false, metafile: true, logLevel: 'silent' });
      const inputs = Object.keys(r.metafile.inputs);
      assert.ok(inputs.length > 10);
      assert.deepEqual(inputs.filter((i) => !i.startsWith('src/') || i.startsWith('src/runtime/node/') || i.startsWith('src/server/') || i.startsWith('src/cli/')), []);
    });
  }

  it('runs a program with the in-process executor and the built-in services', async () => {
    const runtime = new core.Runtime({ executor: new core.InProcessExecutor(), memoryLimitPages: 16, timeResolutionNs: 1000 });
    const inst = await runtime.launch(await runtime.load(programBytes('hello')), { entry: 'greet', services: core.instanceServices() });
    const out: Uint8Array[] = [];
    await inst.services.origin.connect(null, { write: (c) => void out.push(c.slice()), end: () => {} });
    assert.deepEqual(await inst.wait(), { state: core.State.Halted, result: 0 });
    assert.equal(Buffer.concat(out).toString(), 'hello, world\n');
  });
});
