// The prebuilt examples (examples/*.wasm, committed so that users can try
// Gate without clang) run with the CLI as examples/README.md says.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const GATE = join(ROOT, 'bin/gate');
const EXAMPLES = join(ROOT, 'examples');
const CACHE = mkdtempSync(join(tmpdir(), 'gate-examples-test-'));

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Milliseconds since the spawn at which each stdout chunk arrived. */
  chunkTimes: Array<{ ms: number; text: string }>;
}

function gate(args: string[], input: string): Promise<Result> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn(GATE, args, { env: { ...process.env, XDG_CACHE_HOME: CACHE } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const chunkTimes: Result['chunkTimes'] = [];
    child.stdout.on('data', (c: Buffer) => {
      out.push(c);
      chunkTimes.push({ ms: performance.now() - start, text: c.toString() });
    });
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), chunkTimes }),
    );
    child.stdin.end(input);
  });
}

describe('examples', () => {
  it('echo.wasm echoes its input upper-cased', async () => {
    const r = await gate(['run', join(EXAMPLES, 'echo.wasm')], 'hello\n');
    assert.equal(r.stderr, '');
    assert.equal(r.code, 0);
    assert.equal(r.stdout, 'HELLO\n');
  });

  it('echo.wasm handles empty and large inputs (flow control)', async () => {
    const empty = await gate(['run', join(EXAMPLES, 'echo.wasm')], '');
    assert.equal(empty.code, 0, empty.stderr);
    assert.equal(empty.stdout, '');

    let text = '';
    for (let i = 0; text.length < 300_000; i++) text += `Line ${i}: the quick brown fox, 0123 [{}] ~\n`;
    const big = await gate(['run', join(EXAMPLES, 'echo.wasm')], text);
    assert.equal(big.code, 0, big.stderr);
    assert.equal(big.stdout.length, text.length);
    assert.ok(big.stdout === text.toUpperCase(), 'output differs from the upper-cased input');
  });

  it('clock.wasm logs the clocks and ticks three times, 200 ms apart', async () => {
    const before = Math.floor(Date.now() / 1000);
    const r = await gate(['run', '-d', join(EXAMPLES, 'clock.wasm')], '');
    const after = Math.ceil(Date.now() / 1000);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'tick\ntick\ntick\n');

    const m = /^clock: realtime (\d+) s since the epoch\nclock: monotonic (\d+) ns\n$/.exec(r.stderr);
    assert.ok(m, `unexpected debug log: ${JSON.stringify(r.stderr)}`);
    const realtime = Number(m[1]);
    assert.ok(realtime >= before && realtime <= after, `realtime ${realtime} not within [${before}, ${after}]`);
    assert.ok(Number(m[2]) > 0);

    // The ticks arrive as the program sends them, not all at the end: the
    // program sleeps 2 × 200 ms between the first and the last one.
    const times: number[] = [];
    for (const { ms, text } of r.chunkTimes) {
      for (let n = text.split('tick\n').length - 1; n > 0; n--) times.push(ms);
    }
    assert.equal(times.length, 3);
    assert.ok(times[2]! - times[0]! >= 300, `ticks arrived at ${times.map((t) => t.toFixed(0)).join(', ')} ms`);
  });

  it('clock.wasm works without the debug log', async () => {
    const r = await gate(['run', join(EXAMPLES, 'clock.wasm')], '');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'tick\ntick\ntick\n');
    assert.equal(r.stderr, '');
  });
});
