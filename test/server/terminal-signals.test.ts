/**
 * A server started in a terminal: Ctrl-C there signals the whole foreground
 * process group. The executor processes have a group of their own, so only
 * the server gets it, and its graceful stop suspends and keeps the instances
 * (before, the executors died at once and the instances were lost).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { programBytes } from '../helpers/runtime.js';
import { newKey, readCount, request, spawnServer, within } from '../helpers/server.js';

const counter = programBytes('counter');
const C = createHash('sha256').update(counter).digest('hex');
const key = newKey();

describe('terminal signals', () => {
  it('Ctrl-C to the process group stops gate-server gracefully; its executors do not die of it', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'gate-test-terminal-'));
    try {
      const first = await spawnServer(stateDir, [], { group: true });
      const launched = await request(first, 'POST', `/gate-0/module/sha256/${C}?action=pin&action=launch&function=run`, { key, headers: { 'Content-Type': 'application/wasm' }, body: counter });
      assert.equal(launched.status, 201, launched.text);
      const id = String(launched.headers['gate-instance']);
      const count = await within(60_000, 'counts before Ctrl-C', readCount(first, key, id, (n) => n >= 2));
      process.kill(-first.proc.pid!, 'SIGINT'); // what a terminal's Ctrl-C does
      assert.equal(await within(60_000, 'the first server\'s exit', first.exited), 0);
      assert.doesNotMatch(first.log(), /executor process exited \(SIGINT\)/);
      assert.doesNotMatch(first.log(), /"level":50/, 'no errors while stopping');

      const second = await spawnServer(stateDir);
      try {
        const after = await within(60_000, 'a count from the restored instance', readCount(second, key, id, () => true));
        assert.ok(after >= count, `the instance was kept: count ${count} before, ${after} after`);
      } finally {
        second.proc.kill('SIGTERM');
        assert.equal(await second.exited, 0);
      }
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});
