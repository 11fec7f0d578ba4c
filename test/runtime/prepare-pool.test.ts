/** Preparation in worker threads (runtime/node/prepare-pool.ts). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PreparationError, PreparePool } from '../../src/runtime/node/prepare-pool.js';
import { Program } from '../../src/runtime/program.js';
import { DEFAULT_LOCAL_LIMITS } from '../../src/wasm/validate.js';
import { programBytes } from '../helpers/runtime.js';

const load = (name: string): Promise<Program> => Program.load(programBytes(name), DEFAULT_LOCAL_LIMITS);

describe('PreparePool', () => {
  it('prepares in workers exactly what this thread would, memoized per program', async () => {
    const pool = new PreparePool({ workers: 2 });
    try {
      const programs = await Promise.all(['hello', 'suspend', 'counter'].map(load));
      const results = await Promise.all(programs.map((p) => pool.prepare(p, 'suspend-anywhere')));
      for (const [i, p] of programs.entries()) {
        const here = await p.prepare('suspend-anywhere');
        assert.equal(results[i]!.key, here.key);
        assert.deepEqual(results[i]!.bytes, here.bytes);
      }
      assert.equal(pool.prepare(programs[0]!, 'suspend-anywhere'), pool.prepare(programs[0]!, 'suspend-anywhere'));
      const io = await pool.prepare(programs[0]!, 'io-suspend');
      assert.notEqual(io.key, results[0]!.key);
    } finally {
      await pool.close();
    }
  });

  it('gives up on a preparation that takes too long, and prepares again afterwards', async () => {
    const pool = new PreparePool({ timeoutMs: 1 });
    try {
      const counter = await load('counter');
      await assert.rejects(pool.prepare(counter, 'suspend-anywhere'), (e: Error) => e instanceof PreparationError && /took longer than/.test(e.message));
    } finally {
      await pool.close();
    }
    const patient = new PreparePool();
    try {
      assert.match((await patient.prepare(await load('counter'), 'suspend-anywhere')).key, /^[0-9a-f]{64}$/);
    } finally {
      await patient.close();
    }
  });

  it('refuses work after close', async () => {
    const pool = new PreparePool();
    await pool.close();
    await assert.rejects(pool.prepare(await load('hello'), 'suspend-anywhere'), PreparationError);
  });
});
