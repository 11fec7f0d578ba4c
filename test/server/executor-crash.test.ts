/** An executor process that dies takes only its own instances; persistent ones continue from their latest snapshot. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { programBytes } from '../helpers/runtime.js';
import { newKey, readCount, request, startTestServer } from '../helpers/server.js';

const K = '/gate-0/module/sha256/';
const I = '/gate-0/instance/';
const wasm = { 'Content-Type': 'application/wasm' };
const counter = programBytes('counter');
const C = createHash('sha256').update(counter).digest('hex');

/** Executor processes started by this test process. */
function executorPids(): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && readFileSync(`/proc/${name}/cmdline`, 'latin1').includes('executor-main')) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

describe('executor crash', () => {
  it('restores a persistent instance from its latest snapshot; other principals are untouched', async () => {
    const server = await startTestServer();
    const key = newKey();
    const other = newKey();
    try {
      const launch = await request(server, 'POST', `${K}${C}?action=pin&action=launch&function=run`, { key, headers: wasm, body: counter });
      const id = String(launch.headers['gate-instance']);
      const checkpoint = await readCount(server, key, id, (n) => n >= 2);
      assert.equal((await request(server, 'POST', `${I}${id}?action=snapshot`, { key })).status, 201);
      const othersLaunch = await request(server, 'POST', `${K}${C}?action=pin&action=launch&function=run`, { key: other, headers: wasm, body: counter });
      const othersId = String(othersLaunch.headers['gate-instance']);
      await readCount(server, other, othersId, (n) => n >= 1);

      // Both principals' executors run; kill the one of `key` (the first started).
      const pids = executorPids();
      assert.equal(pids.length, 2, `executors: ${pids}`);
      process.kill(Math.min(...pids), 'SIGKILL');

      // An io that reaches the dying run ends early: connect again until the restored run answers.
      let after = -1;
      for (let attempt = 0; after < 0; attempt++) {
        try {
          after = await readCount(server, key, id, () => true);
        } catch (e) {
          if (attempt >= 20) throw e;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      assert.ok(after >= checkpoint, `count went back from ${checkpoint} to ${after}`);
      assert.deepEqual(JSON.parse((await request(server, 'POST', `${I}${id}`, { key })).text).status, { state: 'RUNNING' });
      // The other principal's instance never stopped.
      assert.deepEqual(JSON.parse((await request(server, 'POST', `${I}${othersId}`, { key: other })).text).status, { state: 'RUNNING' });
      await readCount(server, other, othersId, () => true);
      for (const [k, i] of [[key, id], [other, othersId]] as const) await request(server, 'POST', `${I}${i}?action=kill&action=wait`, { key: k });
    } finally {
      await server.stop();
    }
  });
});
