/**
 * Snapshots, migration between servers, and persistent instances across a
 * graceful restart and a crash (kill -9) of a real gate-server process.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { programBytes } from '../helpers/runtime.js';
import { newKey, openCountStream, readCount, request, spawnServer, startTestServer, within, type Target } from '../helpers/server.js';

const K = '/gate-0/module/sha256/';
const I = '/gate-0/instance/';
const wasm = { 'Content-Type': 'application/wasm' };
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const counter = programBytes('counter');
const C = sha256(counter);
const key = newKey();

async function status(server: Target, id: string): Promise<unknown> {
  const r = await request(server, 'POST', `${I}${id}`, { key });
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text).status;
}

async function launchCounter(server: Target, extra = ''): Promise<string> {
  const r = await request(server, 'POST', `${K}${C}?action=pin&action=launch&function=run${extra}`, { key, headers: wasm, body: counter });
  assert.equal(r.status, 201, r.text);
  return String(r.headers['gate-instance']);
}

describe('suspend, snapshot and resume over the API', () => {
  it('suspends a looping program, snapshots it, resumes it, and continues the snapshot on another server', async () => {
    const a = await startTestServer();
    const b = await startTestServer();
    try {
      const suspend = programBytes('suspend');
      const S = sha256(suspend);
      const launch = await request(a, 'POST', `${K}${S}?action=launch&function=loop&log=*`, { key, headers: wasm, body: suspend });
      assert.equal(launch.status, 200);
      const id = String(launch.headers['gate-instance']);
      const sus = await request(a, 'POST', `${I}${id}?action=suspend`, { key });
      assert.equal(sus.status, 200);
      assert.equal(sus.headers['gate-status'], undefined);
      assert.equal((await request(a, 'POST', `${I}${id}?action=wait`, { key })).headers['gate-status'], '{"state":"SUSPENDED"}');
      const snap = await request(a, 'POST', `${I}${id}?action=snapshot`, { key });
      assert.equal(snap.status, 201);
      const location = String(snap.headers.location);
      assert.match(location, /^\/gate-0\/module\/sha256\/[0-9a-f]{64}$/);
      const module = await request(a, 'GET', location, { key });
      assert.equal(module.status, 200);
      assert.ok(WebAssembly.validate(new Uint8Array(module.body)));
      assert.equal((await request(a, 'POST', `${I}${id}?action=resume&function=loop`, { key })).status, 409);
      assert.equal((await request(a, 'POST', `${I}${id}?action=resume&log=*`, { key })).status, 200);
      assert.deepEqual(await status(a, id), { state: 'RUNNING' });
      await request(a, 'POST', `${I}${id}?action=suspend`, { key });
      assert.equal((await request(a, 'POST', `${I}${id}?action=wait`, { key })).headers['gate-status'], '{"state":"SUSPENDED"}');

      // The snapshot is an ordinary module: upload it to a fresh server and launch it.
      const hash = location.split('/').pop()!;
      const launched = await request(b, 'POST', `${K}${hash}?action=launch&log=*`, { key, headers: wasm, body: module.body });
      assert.equal(launched.status, 200, launched.text);
      const id2 = String(launched.headers['gate-instance']);
      assert.deepEqual(await status(b, id2), { state: 'RUNNING' });
      await request(b, 'POST', `${I}${id2}?action=suspend`, { key });
      assert.equal((await request(b, 'POST', `${I}${id2}?action=wait`, { key })).headers['gate-status'], '{"state":"SUSPENDED"}');
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  it('launches suspended without running, and resumes later', async () => {
    const a = await startTestServer();
    try {
      const r = await request(a, 'POST', `${K}${C}?action=pin&action=launch&action=suspend`, { key, headers: wasm, body: counter });
      assert.equal(r.status, 201);
      const fnToo = await request(a, 'POST', `${K}${C}?action=launch&action=suspend&function=run`, { key });
      assert.equal(fnToo.status, 409);
      assert.equal(fnToo.text, 'function cannot be specified for suspended instance\n');
      const id = String(r.headers['gate-instance']);
      // counter has no _start and no function was named: nothing to run.
      assert.deepEqual(await status(a, id), { state: 'HALTED' });
      assert.equal((await request(a, 'POST', `${I}${id}?action=resume`, { key })).status, 409);
      assert.equal((await request(a, 'POST', `${I}${id}?action=resume&function=run`, { key })).status, 200);
      assert.ok((await readCount(a, key, id, (n) => n >= 1)) >= 1);
      await request(a, 'POST', `${I}${id}?action=kill&action=wait`, { key });
    } finally {
      await a.stop();
    }
  });
});

describe('migration', () => {
  it('moves a running counter to another server under the same instance id, and it continues', async () => {
    const a = await startTestServer();
    const b = await startTestServer();
    try {
      const id = await launchCounter(a);
      const before = await readCount(a, key, id, (n) => n >= 2);
      const snap = await request(a, 'POST', `${I}${id}?action=snapshot`, { key });
      assert.equal(snap.status, 201);
      // The source keeps running after a snapshot.
      assert.deepEqual(await status(a, id), { state: 'RUNNING' });
      const bytes = (await request(a, 'GET', String(snap.headers.location), { key })).body;
      await request(a, 'POST', `${I}${id}?action=kill&action=wait`, { key });

      const hash = sha256(bytes);
      assert.equal((await request(b, 'PUT', `${K}${hash}?action=pin`, { key, headers: wasm, body: bytes })).status, 201);
      const launched = await request(b, 'POST', `${K}${hash}?action=launch&instance=${id}`, { key });
      assert.equal(launched.status, 200, launched.text);
      assert.equal(launched.headers['gate-instance'], id);
      const after = await readCount(b, key, id, () => true);
      assert.ok(after >= before, `count went back from ${before} to ${after}`);
      await request(b, 'POST', `${I}${id}?action=kill&action=wait`, { key });
    } finally {
      await a.stop();
      await b.stop();
    }
  });
  it('moves an instance whose io client is still connected while it is suspended, and it answers on the other server', async () => {
    const a = await startTestServer();
    const b = await startTestServer();
    try {
      const id = await launchCounter(a);
      // A client stays connected through the suspension: the snapshot holds its open stream.
      const live = openCountStream(a, key, id);
      const before = await within(20_000, 'the first count', live.next((n) => n >= 2));
      assert.equal((await request(a, 'POST', `${I}${id}?action=suspend&action=wait`, { key })).headers['gate-status'], '{"state":"SUSPENDED"}');
      const snap = await request(a, 'POST', `${I}${id}?action=snapshot`, { key });
      assert.equal(snap.status, 201, snap.text);
      const bytes = (await request(a, 'GET', String(snap.headers.location), { key })).body;
      live.close();

      const hash = sha256(bytes);
      assert.equal((await request(b, 'PUT', `${K}${hash}?action=pin`, { key, headers: wasm, body: bytes })).status, 201);
      const launched = await request(b, 'POST', `${K}${hash}?action=launch&instance=${id}`, { key });
      assert.equal(launched.status, 200, launched.text);
      // The restored stream is closed towards the program, which accepts a new client.
      const after = await within(20_000, 'a count from the migrated instance', readCount(b, key, id, (n) => n > before));
      assert.ok(after > before);
      assert.deepEqual(await status(b, id), { state: 'RUNNING' });
      await request(b, 'POST', `${I}${id}?action=kill&action=wait`, { key });
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});

describe('persistent instances across restarts', () => {
  it('suspends persistent instances on shutdown and resumes them on the next start', async () => {
    const first = await startTestServer();
    const stateDir = first.stateDir;
    const id = await launchCounter(first);
    const before = await readCount(first, key, id, (n) => n >= 2);
    const suspendedId = await launchCounter(first);
    await request(first, 'POST', `${I}${suspendedId}?action=suspend&action=wait`, { key });
    await first.stop(true);

    const second = await startTestServer({ stateDir });
    try {
      assert.deepEqual(await status(second, id), { state: 'RUNNING' });
      assert.deepEqual(await status(second, suspendedId), { state: 'SUSPENDED' });
      const after = await readCount(second, key, id, () => true);
      assert.ok(after >= before, `count went back from ${before} to ${after}`);
      const modules = JSON.parse((await request(second, 'POST', K, { key })).text);
      assert.ok(modules.modules.some((m: { module: string }) => m.module === C));
    } finally {
      await second.stop();
    }
  });

  it('answers 503 with Retry-After for an instance it is still restoring after a restart (when it may not wait), then serves it', async () => {
    const first = await startTestServer();
    const stateDir = first.stateDir;
    const idle = programBytes('idle');
    const hash = sha256(idle);
    assert.equal((await request(first, 'PUT', `${K}${hash}?action=pin`, { key, headers: wasm, body: idle })).status, 201);
    const ids: string[] = [];
    for (let i = 0; i < 100; i += 10) {
      const batch = await Promise.all(Array.from({ length: 10 }, () => request(first, 'POST', `${K}${hash}?action=launch&function=idle`, { key })));
      for (const r of batch) ids.push(String(r.headers['gate-instance']));
    }
    await first.stop(true);

    const second = await startTestServer({ stateDir, restoreWaitMs: 0 });
    try {
      const answers = await Promise.all(ids.map((id) => request(second, 'POST', `${I}${id}`, { key })));
      const refused = answers.filter((r) => r.status === 503);
      assert.ok(refused.length > 0, 'some instance was still being restored');
      for (const r of refused) assert.equal(r.headers['retry-after'], '2');
      for (const r of answers) assert.ok(r.status === 200 || r.status === 503, `${r.status} ${r.text}`);
      // Once restored, every one is served.
      for (const id of ids) {
        let r = await request(second, 'POST', `${I}${id}`, { key });
        for (let tries = 0; r.status === 503 && tries < 200; tries++) {
          await new Promise((resolve) => setTimeout(resolve, 50));
          r = await request(second, 'POST', `${I}${id}`, { key });
        }
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(JSON.parse(r.text).status, { state: 'RUNNING' });
      }
    } finally {
      await second.stop();
    }
  });

  it('survives kill -9 of the server process: instances continue from their latest snapshot', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'gate-test-crash-'));
    try {
      const first = await spawnServer(stateDir);
      const id = await launchCounter(first);
      const checkpoint = await readCount(first, key, id, (n) => n >= 2);
      // The snapshot action stores the instance's state (and it keeps running).
      assert.equal((await request(first, 'POST', `${I}${id}?action=snapshot`, { key })).status, 201);
      const suspendedId = await launchCounter(first);
      await request(first, 'POST', `${I}${suspendedId}?action=suspend&action=wait`, { key });
      await readCount(first, key, id, (n) => n > checkpoint);
      first.proc.kill('SIGKILL');
      await first.exited;

      const second = await spawnServer(stateDir);
      try {
        assert.deepEqual(await status(second, id), { state: 'RUNNING' });
        assert.deepEqual(await status(second, suspendedId), { state: 'SUSPENDED' });
        const after = await readCount(second, key, id, () => true);
        assert.ok(after >= checkpoint, `count went back from ${checkpoint} to ${after}`);
        const modules = JSON.parse((await request(second, 'POST', K, { key })).text);
        assert.ok(modules.modules.some((m: { module: string }) => m.module === C));
      } finally {
        second.proc.kill('SIGTERM');
        assert.equal(await second.exited, 0);
      }
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it('checkpoints running instances periodically without disconnecting their clients; after kill -9 they come back RUNNING from a recent checkpoint', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'gate-test-checkpoint-'));
    try {
      const first = await spawnServer(stateDir, ['state.checkpointinterval=1']);
      const id = await launchCounter(first);
      const live = openCountStream(first, key, id);
      const before = await within(20_000, 'a count of 10', live.next((n) => n >= 10));
      // Several checkpoint intervals pass; the client stays connected and keeps receiving counts.
      const waited = Date.now() + 3_500;
      let last = before;
      while (Date.now() < waited) last = await within(10_000, 'counts while checkpoints are taken', live.next((n) => n > last));
      assert.ok(last > before);
      first.proc.kill('SIGKILL');
      await first.exited;
      live.close();

      const second = await spawnServer(stateDir);
      try {
        assert.deepEqual(await status(second, id), { state: 'RUNNING' });
        // Restored from a checkpoint taken after `before` was counted, not from the launch.
        const after = await within(20_000, 'a count after the crash', readCount(second, key, id, () => true));
        assert.ok(after >= before, `count went back from ${before} to ${after}`);
      } finally {
        second.proc.kill('SIGTERM');
        assert.equal(await second.exited, 0);
      }
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it('a graceful stop suspends and stores hundreds of running instances, exits 0, and a restart serves them all, waiting for those it is restoring', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'gate-test-stop-'));
    const idle = programBytes('idle');
    const hash = sha256(idle);
    const count = 300;
    try {
      const first = await spawnServer(stateDir);
      assert.equal((await request(first, 'PUT', `${K}${hash}?action=pin`, { key, headers: wasm, body: idle })).status, 201);
      const ids: string[] = [];
      // Launched a few at a time: each answer comes once the instance runs.
      for (let i = 0; i < count; i += 10) {
        const batch = await Promise.all(
          Array.from({ length: Math.min(10, count - i) }, () => request(first, 'POST', `${K}${hash}?action=launch&function=idle`, { key })),
        );
        for (const r of batch) {
          assert.equal(r.status, 200, r.text);
          ids.push(String(r.headers['gate-instance']));
        }
      }
      first.proc.kill('SIGTERM');
      assert.equal(await within(120_000, 'exit after SIGTERM', first.exited), 0, first.log());
      const stopped = first
        .log()
        .split('\n')
        .filter((l) => l.includes('"msg":"stopped"'))
        .map((l) => JSON.parse(l) as { stored: number });
      assert.deepEqual(stopped.map((l) => l.stored), [count], first.log());

      const second = await spawnServer(stateDir);
      try {
        // From the moment it listens, the server knows every instance (restored or still being
        // restored): all are listed RUNNING, and a request for one is answered, or refused with
        // 503 and Retry-After while it is being restored, never 404.
        const listed = await request(second, 'POST', I, { key });
        assert.equal(listed.status, 200, listed.text);
        const states = new Map<string, string>(
          (JSON.parse(listed.text).instances as Array<{ instance: string; status: { state: string } }>).map((x) => [x.instance, x.status.state]),
        );
        for (const id of ids) assert.equal(states.get(id), 'RUNNING', `instance ${id}`);
        const answers = await Promise.all(ids.map((id) => request(second, 'POST', `${I}${id}`, { key })));
        for (const r of answers) {
          if (r.status === 503) assert.ok(Number(r.headers['retry-after']) > 0, r.text);
          else assert.equal(r.status, 200, r.text);
        }
        for (const [i, r] of answers.entries()) if (r.status === 200) assert.deepEqual(JSON.parse(r.text).status, { state: 'RUNNING' }, ids[i]);
      } finally {
        second.proc.kill('SIGTERM');
        assert.equal(await second.exited, 0);
      }
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it('a second signal during a graceful stop forces the exit, says how many instances were not stored, and they come back from their checkpoints', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'gate-test-forced-'));
    const idle = programBytes('idle');
    const hash = sha256(idle);
    const count = 200;
    try {
      const first = await spawnServer(stateDir);
      assert.equal((await request(first, 'PUT', `${K}${hash}?action=pin`, { key, headers: wasm, body: idle })).status, 201);
      const ids: string[] = [];
      for (let i = 0; i < count; i += 10) {
        const batch = await Promise.all(Array.from({ length: 10 }, () => request(first, 'POST', `${K}${hash}?action=launch&function=idle`, { key })));
        for (const r of batch) {
          assert.equal(r.status, 200, r.text);
          ids.push(String(r.headers['gate-instance']));
        }
      }
      first.proc.kill('SIGTERM');
      await within(20_000, 'the shutdown to begin', (async () => {
        while (!first.log().includes('shutting down')) await new Promise((r) => setTimeout(r, 5));
      })());
      first.proc.kill('SIGTERM');
      assert.equal(await within(60_000, 'exit after the second signal', first.exited), 1, first.log());
      const forced = first
        .log()
        .split('\n')
        .filter((l) => l.includes('forced exit'))
        .map((l) => JSON.parse(l) as { stored: number; notStored: number });
      assert.equal(forced.length, 1, first.log());
      assert.ok(forced[0]!.notStored > 0 && forced[0]!.stored + forced[0]!.notStored === count, JSON.stringify(forced[0]));

      const second = await spawnServer(stateDir);
      try {
        for (const id of ids) assert.deepEqual(await status(second, id), { state: 'RUNNING' }, id);
      } finally {
        second.proc.kill('SIGTERM');
        assert.equal(await second.exited, 0);
      }
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});
