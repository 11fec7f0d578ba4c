// The C SDK (sdk/c/gate.h and gate-service.h): test/programs/sdk.c, compiled
// against it, runs in the CLI's runtime and reports what it saw.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CACHE = mkdtempSync(join(tmpdir(), 'gate-sdk-test-'));

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(ROOT, 'bin/gate'), args, { env: { ...process.env, XDG_CACHE_HOME: CACHE } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end();
  });
}

describe('C SDK', () => {
  it('debug formatting, clocks, raw io, services by name and the origin writer work in a real program', async () => {
    const r = await run(['run', '-d', join(ROOT, 'test/programs/build/sdk.wasm')]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stderr,
      'int -8 65535 -9223372036854775808 18446744073709551615\nstr name const ptr 0x1a2b bool 1\ndebug_str\n0x0\nerrors 0\n',
    );
    // The catalog, as the program received it and wrote it to its client.
    const catalog = JSON.parse(r.stdout) as { services: Array<{ name: string }> };
    assert.deepEqual(catalog.services.map((s) => s.name), ['catalog', 'identity', 'origin', 'random', 'scope']);
  });
});
