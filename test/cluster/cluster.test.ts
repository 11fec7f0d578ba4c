/**
 * Three gate-server processes on one real PostgreSQL on loopback, sharing a
 * blob directory (docs/cluster.md): an instance launched on A is reached
 * through B (HTTP io and websocket io forwarded), listed by every server,
 * migrated to C, and after a kill -9 of C found running on A or B from its
 * latest checkpoint; a nonce is refused on another server, forwarded or
 * not; concurrent migrations of one instance leave it with exactly one
 * owner, running once.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WebSocket, type RawData } from 'ws';
import { makeToken } from '../../src/client/token.js';
import { NO_POSTGRES, postgresBinDir, startTestPostgres, type TestPostgres } from '../helpers/postgres.js';
import { programBytes } from '../helpers/runtime.js';
import { newKey, readCount, request, spawnServer, within, type ServerProcess, type Target } from '../helpers/server.js';

const K = '/gate-0/module/sha256/';
const I = '/gate-0/instance/';
const wasm = { 'Content-Type': 'application/wasm' };
const counter = programBytes('counter');
const C = createHash('sha256').update(counter).digest('hex');
const key = newKey();
const AUTHORITY = 'gate.cluster.test';
const AUDIENCE = `http://${AUTHORITY}/gate-0/`;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 100 ms until it returns a value (not undefined), at most `ms`. */
async function eventually<T>(what: string, ms: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms${last ? ` (last error: ${String(last)})` : ''}`);
    await sleep(100);
  }
}

async function status(server: Target, id: string): Promise<{ state: string }> {
  const r = await request(server, 'POST', `${I}${id}`, { key });
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text).status;
}

async function listed(server: Target): Promise<string[]> {
  const r = await request(server, 'POST', I, { key });
  assert.equal(r.status, 200, r.text);
  return ((JSON.parse(r.text) as { instances?: { instance: string }[] }).instances ?? []).map((i) => i.instance);
}

/** Reads counts over a websocket io connection until one satisfies `until`. */
async function websocketCount(server: Target, id: string, until: (n: number) => boolean): Promise<number> {
  const ws = new WebSocket(`${server.url.replace(/^http/, 'ws')}${I}${id}?action=io`);
  try {
    return await new Promise<number>((resolve, reject) => {
      let text = '';
      let connected = false;
      ws.on('error', reject);
      ws.on('unexpected-response', (_req, res) => reject(new Error(`websocket upgrade answered ${res.statusCode}`)));
      ws.on('open', () => ws.send(JSON.stringify({ authorization: `Bearer ${server.token(key)}` })));
      ws.on('message', (data: RawData, binary: boolean) => {
        const s = (Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer)).toString('utf8');
        if (!binary) {
          if (!connected && JSON.parse(s).connected === true) connected = true;
          return;
        }
        text += s;
        const lines = text.split('\n');
        text = lines.pop()!;
        for (const line of lines) if (until(Number(line))) resolve(Number(line));
      });
      ws.on('close', (code, reason) => reject(new Error(`websocket closed (${code} ${reason.toString()})`)));
    });
  } finally {
    ws.terminate();
  }
}

if (postgresBinDir() === undefined) {
  it('a cluster of gate-servers', { skip: NO_POSTGRES }, () => undefined);
} else {
  describe('a cluster of three gate-servers on one PostgreSQL', () => {
    let pg: TestPostgres;
    let db: string;
    const dirs: string[] = [];
    let blobDir: string;
    const servers = new Map<string, ServerProcess>();

    const start = async (name: string): Promise<ServerProcess> => {
      const dir = mkdtempSync(join(tmpdir(), `gate-test-cluster-${name}-`));
      dirs.push(dir);
      const server = await spawnServer(dir, [
        `inventory.dsn=${JSON.stringify(pg.dsn(db))}`,
        `http.authority=${JSON.stringify(AUTHORITY)}`,
        `cluster.name=${JSON.stringify(name)}`,
        `cluster.blobdir=${JSON.stringify(blobDir)}`,
        'cluster.heartbeat=0.3',
        'cluster.failover=2',
        'state.checkpointinterval=1',
        'endpoint.enabled=true',
      ]);
      // One authority for all (as behind a load balancer): tokens are valid on every server.
      server.token = (k) => makeToken(k, { audience: AUDIENCE });
      servers.set(name, server);
      return server;
    };
    const owner = async (id: string): Promise<string> => (await pg.query<{ owner: string }>(db, 'SELECT owner FROM instance WHERE id = $1', [id])).rows[0]!.owner;
    const running = async (name: string): Promise<number> => (await pg.query<{ running: number }>(db, 'SELECT running FROM gate_server WHERE name = $1', [name])).rows[0]?.running ?? -1;

    before(async () => {
      pg = await startTestPostgres();
      db = await pg.createDatabase();
      blobDir = mkdtempSync(join(tmpdir(), 'gate-test-cluster-blobs-'));
      await Promise.all(['a', 'b', 'c'].map(start));
    });

    after(async () => {
      for (const s of servers.values()) {
        if (s.proc.exitCode === null && s.proc.signalCode === null) {
          s.proc.kill('SIGTERM');
          await s.exited;
        }
      }
      await pg?.stop();
      for (const d of [...dirs, blobDir]) if (d) rmSync(d, { recursive: true, force: true });
    });

    it('launches on A, talks through B, migrates to C, survives a kill -9 of C', async () => {
      const [a, b, c] = ['a', 'b', 'c'].map((n) => servers.get(n)!) as [ServerProcess, ServerProcess, ServerProcess];
      const rows = await pg.query<{ name: string; address: string }>(db, 'SELECT name, address FROM gate_server ORDER BY name');
      assert.deepEqual(rows.rows, [
        { name: 'a', address: a.url },
        { name: 'b', address: b.url },
        { name: 'c', address: c.url },
      ]);

      const launch = await request(a, 'POST', `${K}${C}?action=pin&action=launch&function=run`, { key, headers: wasm, body: counter });
      assert.equal(launch.status, 201, launch.text);
      const id = String(launch.headers['gate-instance']);
      assert.equal(await owner(id), 'a');
      // The module is in the shared directory, readable by every server.
      assert.ok(readdirSync(join(blobDir, 'modules')).includes(C));
      const download = await request(c, 'GET', `${K}${C}`, { key });
      assert.equal(download.status, 200);
      assert.ok(download.body.equals(counter));

      // Through B: info, HTTP io and websocket io reach the instance on A.
      assert.deepEqual(await status(b, id), { state: 'RUNNING' });
      const first = await readCount(a, key, id, (n) => n >= 2);
      const viaB = await within(20_000, 'io through B', readCount(b, key, id, (n) => n > first));
      const viaWs = await within(20_000, 'websocket io through B', websocketCount(b, id, (n) => n > viaB));
      for (const s of [a, b, c]) assert.deepEqual(await listed(s), [id]);
      // A request body goes through too; every server lists the result from the shared inventory.
      const update = await request(b, 'POST', `${I}${id}?action=update`, { key, headers: { 'Content-Type': 'application/json', Accept: 'application/json' }, body: '{"tags":["moved-by-b"]}' });
      assert.equal(update.status, 200, update.text);
      assert.deepEqual(JSON.parse(update.text).tags, ['moved-by-b']);
      const onList = JSON.parse((await request(c, 'POST', I, { key })).text) as { instances: { instance: string; tags?: string[]; status: unknown }[] };
      assert.deepEqual(onList.instances, [{ instance: id, module: C, status: { state: 'RUNNING' }, tags: ['moved-by-b'] }]);

      // Migrate to C, asked of B (forwarded to the owner, A).
      const migrate = await request(b, 'POST', `${I}${id}?action=migrate&server=c`, { key });
      assert.equal(migrate.status, 200, migrate.text);
      assert.equal(await owner(id), 'c');
      assert.deepEqual(await status(c, id), { state: 'RUNNING' });
      const onC = await within(20_000, 'io on C through A', readCount(a, key, id, (n) => n >= viaWs));
      assert.ok(onC >= viaWs, `the count went back from ${viaWs} to ${onC}`);
      // One running copy: A's heartbeat reports none, C's one.
      await eventually('A reports no running instance', 5_000, async () => ((await running('a')) === 0 && (await running('c')) === 1 ? true : undefined));

      // Let C checkpoint (every second), remember the count, then kill it.
      const checkpointed = await readCount(c, key, id, () => true);
      await sleep(3_000);
      c.proc.kill('SIGKILL');
      await c.exited;
      const failedOver = await eventually('the instance runs again on A or B', 30_000, async () => {
        const o = await owner(id);
        if (o === 'c') return undefined;
        const s = await status(a, id);
        return s.state === 'RUNNING' ? o : undefined;
      });
      assert.ok(failedOver === 'a' || failedOver === 'b', failedOver);
      const resumed = await within(20_000, 'io after the failover', readCount(b, key, id, () => true));
      assert.ok(resumed >= checkpointed, `the count went back from ${checkpointed} (checkpointed) to ${resumed}`);
      assert.deepEqual(await listed(a), [id]);
      // The dead server's row goes once it owns nothing.
      await eventually('C is forgotten', 10_000, async () => ((await pg.query(db, "SELECT 1 FROM gate_server WHERE name = 'c'")).rows.length === 0 ? true : undefined));

      const kill = await request(b, 'POST', `${I}${id}?action=kill&action=wait`, { key });
      assert.equal(kill.status, 200, kill.text);
      assert.equal(kill.headers['gate-status'], '{"state":"KILLED"}');
    });

    it('forwards endpoint requests to the server running the instance', async () => {
      const a = servers.get('a')!;
      const b = servers.get('b')!;
      const kv = programBytes('kv');
      const KV = createHash('sha256').update(kv).digest('hex');
      const launch = await request(a, 'POST', `${K}${KV}?action=pin&action=launch`, { key, headers: wasm, body: kv });
      assert.equal(launch.status, 201, launch.text);
      const id = String(launch.headers['gate-instance']);
      const at = (s: ServerProcess): string => `${s.url}/gate-0/endpoint/${id}`;
      await eventually('the endpoint listens', 20_000, async () => ((await fetch(`${at(a)}/count`)).status === 200 ? true : undefined));
      assert.equal((await fetch(`${at(b)}/kv/colour`, { method: 'PUT', body: 'blue' })).status, 204);
      assert.equal(await (await fetch(`${at(a)}/kv/colour`)).text(), 'blue');
      assert.equal(await (await fetch(`${at(b)}/kv/colour`)).text(), 'blue');
      assert.equal((await request(a, 'POST', `${I}${id}?action=kill&action=wait`, { key })).status, 200);
      assert.equal((await request(a, 'POST', `${I}${id}?action=delete`, { key })).status, 200);
    });

    it('refuses a nonce replayed on another server, directly or forwarded', async () => {
      const a = servers.get('a')!;
      const b = servers.get('b')!;
      const launch = await request(a, 'POST', `${K}${C}?action=launch&action=suspend`, { key });
      assert.equal(launch.status, 200, launch.text);
      const id = String(launch.headers['gate-instance']);
      const once = makeToken(key, { audience: AUDIENCE, nonce: 'cluster-nonce-1' });
      // Forwarded by B to A, which checks (and records) the nonce.
      const first = await request(b, 'POST', `${I}${id}`, { headers: { Authorization: `Bearer ${once}` } });
      assert.equal(first.status, 200, first.text);
      for (const s of [a, b]) {
        const replay = await request(s, 'POST', `${I}${id}`, { headers: { Authorization: `Bearer ${once}` } });
        assert.equal(replay.status, 401);
        assert.equal(replay.text, 'token has already been used\n');
      }
      const list = makeToken(key, { audience: AUDIENCE, nonce: 'cluster-nonce-2' });
      assert.equal((await request(a, 'POST', I, { headers: { Authorization: `Bearer ${list}` } })).status, 200);
      assert.equal((await request(b, 'POST', I, { headers: { Authorization: `Bearer ${list}` } })).status, 401);
      assert.equal((await request(a, 'POST', `${I}${id}?action=delete`, { key })).status, 200);
    });

    it('gives an instance migrated to two servers at once to exactly one of them, running once', async () => {
      const a = servers.get('a')!;
      const b = servers.get('b')!;
      const d = await start('d');
      const launch = await request(a, 'POST', `${K}${C}?action=launch&function=run`, { key });
      assert.equal(launch.status, 200, launch.text);
      const id = String(launch.headers['gate-instance']);
      await readCount(a, key, id, (n) => n >= 1);
      const answers = await Promise.all([
        request(b, 'POST', `${I}${id}?action=migrate&server=b`, { key }),
        request(d, 'POST', `${I}${id}?action=migrate&server=d`, { key }),
        request(a, 'POST', `${I}${id}?action=migrate&server=d`, { key }),
      ]);
      const codes = answers.map((r) => r.status);
      assert.ok(codes.includes(200), JSON.stringify(answers.map((r) => [r.status, r.text])));
      for (const r of answers) assert.ok(r.status === 200 || r.status === 409, `${r.status} ${r.text}`);
      const winner = await owner(id);
      assert.ok(winner === 'b' || winner === 'd', winner);
      assert.deepEqual(await status(a, id), { state: 'RUNNING' });
      await within(20_000, 'io after the race', readCount(a, key, id, () => true));
      // Exactly one server runs it.
      await eventually('one running copy', 5_000, async () => {
        const counts = await Promise.all(['a', 'b', 'd'].map(running));
        return counts.reduce((x, y) => x + y, 0) === 1 && counts[['a', 'b', 'd'].indexOf(winner)] === 1 ? true : undefined;
      });
      assert.equal((await request(a, 'POST', `${I}${id}?action=kill&action=wait`, { key })).status, 200);
    });
  });
}
