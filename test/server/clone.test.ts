/**
 * Clone in one step (POST /gate-0/instance/<id>?action=clone): a copy of an
 * instance's state under a new id, the original going on — a running one
 * without losing its connected client, a suspended one staying suspended.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { programBytes } from '../helpers/runtime.js';
import { request as httpRequest } from 'node:http';
import { SERVER_PRINCIPAL_LIMITS } from '../../src/server/index.js';
import { newKey, openCountStream, readCount, request, startTestServer, UUID, within, type Target } from '../helpers/server.js';

const K = '/gate-0/module/sha256/';
const I = '/gate-0/instance/';
const wasm = { 'Content-Type': 'application/wasm' };
const counter = programBytes('counter');
const C = createHash('sha256').update(counter).digest('hex');
const key = newKey();

async function info(server: Target, id: string): Promise<{ status: unknown; module: string; tags?: string[] }> {
  const r = await request(server, 'POST', `${I}${id}`, { key });
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text) as { status: unknown; module: string; tags?: string[] };
}

async function launchCounter(server: Target, extra = ''): Promise<string> {
  const r = await request(server, 'POST', `${K}${C}?action=pin&action=launch&function=run${extra}`, { key, headers: wasm, body: counter });
  assert.equal(r.status, 201, r.text);
  return String(r.headers['gate-instance']);
}

/** An HTTP call of a counter: its instance id (from the response head) and the counts it streams. */
function openCall(server: Target, path: string, body: Uint8Array): { instance: Promise<string>; next(until: (n: number) => boolean): Promise<number>; close(): void } {
  let waiter: { until: (n: number) => boolean; resolve(n: number): void } | undefined;
  let text = '';
  let req: ReturnType<typeof httpRequest> | undefined;
  const instance = new Promise<string>((resolve, reject) => {
    req = httpRequest(`${server.url}${path}`, { method: 'POST', headers: { ...wasm, Authorization: `Bearer ${server.token(key)}` } }, (res) => {
      resolve(String(res.headers['gate-instance']));
      res.on('data', (c: Buffer) => {
        text += c.toString('utf8');
        const lines = text.split('\n');
        text = lines.pop()!;
        for (const line of lines) {
          if (waiter?.until(Number(line))) {
            waiter.resolve(Number(line));
            waiter = undefined;
          }
        }
      });
      res.on('error', () => undefined);
    });
    req.on('error', reject);
    req.end(body);
  });
  return { instance, next: (until) => new Promise((resolve) => (waiter = { until, resolve })), close: () => req?.destroy() };
}

describe('clone', () => {
  it('copies a running instance under a new id; the original runs on and its connected client keeps receiving', async () => {
    const a = await startTestServer({ checkpointIntervalMs: 0 });
    try {
      const id = await launchCounter(a, '&instance-tag=orig');
      const live = openCountStream(a, key, id);
      const before = await within(20_000, 'the original counting', live.next((n) => n >= 2));

      const r = await request(a, 'POST', `${I}${id}?action=clone`, { key });
      assert.equal(r.status, 200, r.text);
      const copy = String(r.headers['gate-instance']);
      assert.match(copy, UUID);
      assert.notEqual(copy, id);

      // The original's client was not disconnected: the same stream goes on counting.
      const after = await within(20_000, 'the original after the clone', live.next((n) => n >= before + 2));
      assert.ok(after >= before + 2);
      live.close();
      assert.deepEqual((await info(a, id)).status, { state: 'RUNNING' });

      // The copy runs from the state at the clone (not from the start), with the original's tags.
      const copied = await info(a, copy);
      assert.deepEqual(copied.status, { state: 'RUNNING' });
      assert.deepEqual(copied.tags, ['orig']);
      assert.notEqual(copied.module, C);
      const n = await readCount(a, key, copy, () => true);
      assert.ok(n >= before, `the copy counted from ${n}, the original was at ${before} before the clone`);

      // Two independent instances: killing the copy leaves the original running.
      assert.equal((await request(a, 'POST', `${I}${copy}?action=kill&action=wait`, { key })).headers['gate-status'], '{"state":"KILLED"}');
      assert.deepEqual((await info(a, id)).status, { state: 'RUNNING' });
      await request(a, 'POST', `${I}${id}?action=kill&action=wait`, { key });
    } finally {
      await a.stop();
    }
  });

  it('copies a suspended instance (running or suspended copy, chosen id and tags); the original stays suspended', async () => {
    const a = await startTestServer({ checkpointIntervalMs: 0 });
    try {
      const id = await launchCounter(a);
      const before = await readCount(a, key, id, (n) => n >= 1);
      assert.equal((await request(a, 'POST', `${I}${id}?action=suspend&action=wait`, { key })).headers['gate-status'], '{"state":"SUSPENDED"}');

      const chosen = globalThis.crypto.randomUUID();
      const r = await request(a, 'POST', `${I}${id}?action=clone&instance=${chosen}&instance-tag=copy`, { key });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers['gate-instance'], chosen);
      const copied = await info(a, chosen);
      assert.deepEqual(copied.status, { state: 'RUNNING' });
      assert.deepEqual(copied.tags, ['copy']);
      assert.ok((await readCount(a, key, chosen, () => true)) >= before);
      assert.deepEqual((await info(a, id)).status, { state: 'SUSPENDED' });

      const s = await request(a, 'POST', `${I}${id}?action=clone&action=suspend`, { key });
      assert.equal(s.status, 200, s.text);
      const suspended = String(s.headers['gate-instance']);
      assert.deepEqual((await info(a, suspended)).status, { state: 'SUSPENDED' });
      assert.equal((await request(a, 'POST', `${I}${suspended}?action=resume`, { key })).status, 200);
      assert.ok((await readCount(a, key, suspended, () => true)) >= before);

      // The id is taken now; a malformed id is the client's error.
      assert.equal((await request(a, 'POST', `${I}${id}?action=clone&instance=${chosen}`, { key })).status, 409);
      const bad = await request(a, 'POST', `${I}${id}?action=clone&instance=nope`, { key });
      assert.equal(bad.status, 400);
      assert.equal(bad.text, 'instance id must be a UUID\n');
      for (const i of [chosen, suspended]) await request(a, 'POST', `${I}${i}?action=kill&action=wait`, { key });
    } finally {
      await a.stop();
    }
  });

  it('copies an instance launched suspended (it never ran) and survives a restart of the server', async () => {
    const a = await startTestServer({ checkpointIntervalMs: 0 });
    try {
      const launched = await request(a, 'POST', `${K}${C}?action=pin&action=launch&action=suspend`, { key, headers: wasm, body: counter });
      const id = String(launched.headers['gate-instance']);
      // counter has no _start: launched suspended without a function it is HALTED, and so is its copy.
      const r = await request(a, 'POST', `${I}${id}?action=clone`, { key });
      assert.equal(r.status, 200, r.text);
      const copy = String(r.headers['gate-instance']);
      assert.deepEqual((await info(a, copy)).status, { state: 'HALTED' });
      assert.equal((await request(a, 'POST', `${I}${copy}?action=resume&function=run`, { key })).status, 200);
      await readCount(a, key, copy, (n) => n >= 1);
      await a.stop(true);

      const b = await startTestServer({ stateDir: a.stateDir, checkpointIntervalMs: 0 });
      try {
        // The copy was running: it is resumed from its stored state after the restart.
        // Bounded, so that a restored program that never accepts its new client fails the test instead of hanging it.
        assert.ok((await within(60_000, 'the restored copy counting to its new client', readCount(b, key, copy, (n) => n >= 1))) >= 1);
        assert.deepEqual((await info(b, id)).status, { state: 'HALTED' });
        await request(b, 'POST', `${I}${copy}?action=kill&action=wait`, { key });
      } finally {
        await b.stop();
      }
    } catch (e) {
      await a.stop().catch(() => undefined);
      throw e;
    }
  });

  it('copies a running call without ending it; with a CPU budget (no checkpoint) a persistent one is suspended and resumed, a call refused', async () => {
    const a = await startTestServer({ checkpointIntervalMs: 0 });
    const b = await startTestServer({ checkpointIntervalMs: 0, limits: { ...SERVER_PRINCIPAL_LIMITS, cpuTimeMs: 600_000 } });
    try {
      for (const server of [a, b]) {
        // A call: its instance is transient, its client the HTTP exchange that started it.
        const call = openCall(server, `${K}${C}?action=pin&action=call&function=run`, counter);
        const id = await call.instance;
        const before = await within(20_000, 'the call counting', call.next((n) => n >= 2));
        const r = await request(server, 'POST', `${I}${id}?action=clone`, { key });
        if (server === a) {
          assert.equal(r.status, 200, r.text);
          const copy = String(r.headers['gate-instance']);
          assert.ok((await readCount(server, key, copy, () => true)) >= before);
          await request(server, 'POST', `${I}${copy}?action=kill&action=wait`, { key });
        } else {
          assert.equal(r.status, 409, r.text);
          assert.match(r.text, /^a running call cannot be cloned now/);
        }
        // The call goes on either way.
        assert.ok((await within(20_000, 'the call after the clone', call.next((n) => n >= before + 2))) >= before + 2);
        call.close();
      }

      // Persistent, with a CPU budget: suspended, stored and resumed for the clone.
      const id = await launchCounter(b);
      const before = await readCount(b, key, id, (n) => n >= 2);
      const r = await request(b, 'POST', `${I}${id}?action=clone`, { key });
      assert.equal(r.status, 200, r.text);
      const copy = String(r.headers['gate-instance']);
      assert.deepEqual((await info(b, id)).status, { state: 'RUNNING' });
      assert.ok((await readCount(b, key, id, () => true)) >= before);
      assert.ok((await readCount(b, key, copy, () => true)) >= before);
      for (const i of [id, copy]) await request(b, 'POST', `${I}${i}?action=kill&action=wait`, { key });
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  it('refuses what cannot be cloned, and other principals never see the instance', async () => {
    const a = await startTestServer({ checkpointIntervalMs: 0 });
    try {
      const id = await launchCounter(a);
      assert.equal((await request(a, 'POST', `${I}${id}?action=clone`, { key: newKey() })).status, 404);
      assert.equal((await request(a, 'POST', `${I}${globalThis.crypto.randomUUID()}?action=clone`, { key })).status, 404);
      assert.equal((await request(a, 'POST', `${I}${id}?action=clone`)).status, 401);
      assert.equal((await request(a, 'POST', `${I}${id}?action=clone&function=run`, { key })).status, 400);
      assert.equal((await request(a, 'POST', `${I}${id}?action=kill&action=wait`, { key })).headers['gate-status'], '{"state":"KILLED"}');
      const dead = await request(a, 'POST', `${I}${id}?action=clone`, { key });
      assert.equal(dead.status, 409);
      assert.equal(dead.text, 'instance must be running, suspended or halted\n');
      // The server is fine: a new instance runs.
      const again = await launchCounter(a);
      assert.ok((await readCount(a, key, again, (n) => n >= 1)) >= 1);
      await request(a, 'POST', `${I}${again}?action=kill&action=wait`, { key });
    } finally {
      await a.stop();
    }
  });
});
