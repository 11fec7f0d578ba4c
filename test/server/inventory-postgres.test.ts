/**
 * gate-server processes with `inventory.dsn` on a real, private PostgreSQL
 * cluster: a persistent instance survives a graceful restart and a kill -9,
 * a token's nonce is refused on a second server sharing the database, and a
 * bad or unreachable DSN stops the server at start with an error naming the
 * host, never the password.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { makeToken } from '../../src/client/token.js';
import { NO_POSTGRES, postgresBinDir, startTestPostgres } from '../helpers/postgres.js';
import { programBytes } from '../helpers/runtime.js';
import { newKey, readCount, request, spawnServer, spawnServerWithArgs, type ServerProcess, type Target } from '../helpers/server.js';

const K = '/gate-0/module/sha256/';
const I = '/gate-0/instance/';
const wasm = { 'Content-Type': 'application/wasm' };
const counter = programBytes('counter');
const C = createHash('sha256').update(counter).digest('hex');
const key = newKey();
const SECRET = 'pa55-w0rd-s3cret';

async function status(server: Target, id: string): Promise<unknown> {
  const r = await request(server, 'POST', `${I}${id}`, { key });
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text).status;
}

async function stop(server: ServerProcess): Promise<void> {
  server.proc.kill('SIGTERM');
  assert.equal(await server.exited, 0, server.log());
}

/** Runs bin/gate-server expecting it to fail at start; returns its exit code and stderr. */
async function failedStart(stateDir: string, dsn: string): Promise<{ code: number | null; stderr: string }> {
  const args = ['-F', '/dev/null', '-o', 'access.policy="public"', '-o', 'http.addr="127.0.0.1:0"', '-o', `state.dir=${JSON.stringify(stateDir)}`, '-o', `inventory.dsn=${JSON.stringify(dsn)}`];
  try {
    const server = await spawnServerWithArgs(args);
    server.proc.kill('SIGKILL');
    assert.fail('gate-server started with a bad inventory.dsn');
  } catch (e) {
    const message = (e as Error).message;
    const m = /^gate-server exited \((\w+)\) before listening: ([\s\S]*)$/.exec(message);
    assert.ok(m, message);
    return { code: m[1] === 'null' ? null : Number(m[1]), stderr: m[2]! };
  }
}

if (postgresBinDir() === undefined) {
  it('gate-server with a PostgreSQL inventory', { skip: NO_POSTGRES }, () => undefined);
} else {
  const cluster = await startTestPostgres();
  after(() => cluster.stop());

  describe('gate-server with inventory.dsn', () => {
    it('keeps a persistent instance in PostgreSQL across a restart and a kill -9', async () => {
      const db = await cluster.createDatabase();
      const dsn = JSON.stringify(cluster.dsn(db, SECRET));
      const stateDir = mkdtempSync(join(tmpdir(), 'gate-test-pg-state-'));
      try {
        const first = await spawnServer(stateDir, [`inventory.dsn=${dsn}`]);
        assert.match(first.log(), new RegExp(`"inventory":"postgres://gate@127\\.0\\.0\\.1:${cluster.port}/${db}"`));
        assert.ok(!first.log().includes(SECRET), 'the password is not logged');
        const launch = await request(first, 'POST', `${K}${C}?action=pin&action=launch&function=run`, { key, headers: wasm, body: counter });
        assert.equal(launch.status, 201, launch.text);
        const id = String(launch.headers['gate-instance']);
        const before = await readCount(first, key, id, (n) => n >= 2);
        // The records are in PostgreSQL, not in an SQLite file in the state directory.
        const rows = await cluster.query<{ id: string; transient: boolean }>(db, 'SELECT id, transient FROM instance');
        assert.deepEqual(rows.rows, [{ id, transient: false }]);
        assert.equal((await cluster.query(db, 'SELECT module FROM module_pin')).rows[0]?.module, C);
        assert.equal(existsSync(join(stateDir, 'inventory.sqlite')), false);
        await stop(first);

        const second = await spawnServer(stateDir, [`inventory.dsn=${dsn}`]);
        let checkpoint: number;
        try {
          assert.deepEqual(await status(second, id), { state: 'RUNNING' });
          checkpoint = await readCount(second, key, id, () => true);
          assert.ok(checkpoint >= before, `count went back from ${before} to ${checkpoint}`);
          assert.equal((await request(second, 'POST', `${I}${id}?action=snapshot`, { key })).status, 201);
        } finally {
          second.proc.kill('SIGKILL');
          await second.exited;
        }

        const third = await spawnServer(stateDir, [`inventory.dsn=${dsn}`]);
        try {
          assert.deepEqual(await status(third, id), { state: 'RUNNING' });
          const after = await readCount(third, key, id, () => true);
          assert.ok(after >= checkpoint, `count went back from ${checkpoint} to ${after}`);
          const modules = JSON.parse((await request(third, 'POST', K, { key })).text);
          assert.ok(modules.modules.some((m: { module: string }) => m.module === C));
        } finally {
          await stop(third);
        }
      } finally {
        rmSync(stateDir, { recursive: true, force: true });
      }
    });

    it('refuses a token’s nonce on a second server that shares the database', async () => {
      const db = await cluster.createDatabase();
      const dirs = [mkdtempSync(join(tmpdir(), 'gate-test-pg-a-')), mkdtempSync(join(tmpdir(), 'gate-test-pg-b-'))];
      // One authority for both, as behind a load balancer: a token is valid for either server.
      const options = [`inventory.dsn=${JSON.stringify(cluster.dsn(db))}`, 'http.authority="gate.cluster.test"'];
      const [a, b] = await Promise.all(dirs.map((d) => spawnServer(d, options)));
      try {
        const once = makeToken(key, { audience: 'http://gate.cluster.test/gate-0/', nonce: 'cluster-wide-1' });
        assert.equal((await request(a!, 'POST', K, { headers: { Authorization: `Bearer ${once}` } })).status, 200);
        const replay = await request(b!, 'POST', K, { headers: { Authorization: `Bearer ${once}` } });
        assert.equal(replay.status, 401);
        assert.equal(replay.text, 'token has already been used\n');
        const other = makeToken(key, { audience: 'http://gate.cluster.test/gate-0/', nonce: 'cluster-wide-2' });
        assert.equal((await request(b!, 'POST', K, { headers: { Authorization: `Bearer ${other}` } })).status, 200);
      } finally {
        await Promise.all([stop(a!), stop(b!)]);
        for (const d of dirs) rmSync(d, { recursive: true, force: true });
      }
    });

    it('stops at start when the database is unreachable, naming the host but not the password', async () => {
      const closed = await new Promise<number>((resolve) => {
        const s = createServer().listen(0, '127.0.0.1', () => {
          const port = (s.address() as { port: number }).port;
          s.close(() => resolve(port));
        });
      });
      const stateDir = mkdtempSync(join(tmpdir(), 'gate-test-pg-state-'));
      try {
        const { code, stderr } = await failedStart(stateDir, `postgres://gate:${SECRET}@127.0.0.1:${closed}/gate`);
        assert.equal(code, 1, stderr);
        assert.match(stderr, new RegExp(`cannot open the PostgreSQL inventory at postgres://gate@127\\.0\\.0\\.1:${closed}/gate`));
        assert.ok(!stderr.includes(SECRET), stderr);
      } finally {
        rmSync(stateDir, { recursive: true, force: true });
      }
    });

    it('refuses a malformed DSN as a configuration error without repeating it', async () => {
      const stateDir = mkdtempSync(join(tmpdir(), 'gate-test-pg-state-'));
      try {
        const { code, stderr } = await failedStart(stateDir, `mysql://gate:${SECRET}@db.example/gate`);
        assert.equal(code, 2, stderr);
        assert.match(stderr, /inventory\.dsn must start with postgres:\/\//);
        assert.ok(!stderr.includes(SECRET), stderr);
      } finally {
        rmSync(stateDir, { recursive: true, force: true });
      }
    });
  });
}
