/** gate-server refuses to run programs unsandboxed unless the operator says so (issue: sandbox opt-out). */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { spawnServer } from '../helpers/server.js';

describe('sandbox opt-out', () => {
  it('refuses to start when bubblewrap cannot be used, and starts with a warning with runtime.sandbox = "none"', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gate-test-optout-'));
    try {
      await assert.rejects(spawnServer(join(dir, 'a'), ['runtime.bwrap="/nonexistent/bwrap"']), (e: Error) => {
        assert.match(e.message, /exited \(1\)/);
        assert.match(e.message, /bubblewrap \(bwrap\) is not installed at \/nonexistent\/bwrap/);
        assert.match(e.message, /runtime\.sandbox/);
        return true;
      });
      const server = await spawnServer(join(dir, 'b'), ['runtime.bwrap="/nonexistent/bwrap"', 'runtime.sandbox="none"']);
      try {
        assert.match(server.log(), /"level":40[^\n]*WITHOUT the bubblewrap/);
      } finally {
        server.proc.kill('SIGTERM');
        assert.equal(await server.exited, 0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
