/**
 * A cluster's servers leaving (docs/cluster.md), with real gate-server
 * processes on a real PostgreSQL: one that drains on SIGTERM hands its
 * running instance to another server, which continues it; one that loses
 * the database stops running its instances before the others take them
 * over (never two running copies), and rejoins when the database is back.
 * A launch goes to the server with the most free capacity.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeToken } from '../../src/client/token.js';
import { NO_POSTGRES, postgresBinDir, startTestPostgres, type TestPostgres } from '../helpers/postgres.js';
import { programBytes } from '../helpers/runtime.js';
import { newKey, openCountStream, readCount, request, spawnServer, within, type ServerProcess } from '../helpers/server.js';

const K = '/gate-0/module/sha256/';
const I = '/gate-0/instance/';
const wasm = { 'Content-Type': 'application/wasm' };
const counter = programBytes('counter');
const C = createHash('sha256').update(counter).digest('hex');
const key = newKey();
const AUDIENCE = 'http://gate.cluster.test/gate-0/';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function eventually<T>(what: string, ms: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(100);
  }
}

/** A TCP relay to PostgreSQL that a test can cut (every connection dropped, new ones refused) and mend. */
async function relay(port: number): Promise<{ port: number; cut(): void; mend(): void; close(): void }> {
  const sockets = new Set<Socket>();
  let open = true;
  const server: Server = createServer((client) => {
    if (!open) return void client.destroy();
    const upstream = connect(port, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    cut() {
      open = false;
      for (const s of sockets) s.destroy();
    },
    mend() {
      open = true;
    },
    close() {
      open = false;
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

if (postgresBinDir() === undefined) {
  it('cluster failures', { skip: NO_POSTGRES }, () => undefined);
} else {
  describe('servers leaving a cluster', () => {
    let pg: TestPostgres;
    let db: string;
    let blobDir: string;
    const dirs: string[] = [];
    const started: ServerProcess[] = [];
    const closers: (() => void)[] = [];

    const start = async (name: string, extra: string[] = [], dsn = pg.dsn(db)): Promise<ServerProcess> => {
      const dir = mkdtempSync(join(tmpdir(), `gate-test-cluster-${name}-`));
      dirs.push(dir);
      const server = await spawnServer(dir, [
        `inventory.dsn=${JSON.stringify(dsn)}`,
        'http.authority="gate.cluster.test"',
        `cluster.name=${JSON.stringify(name)}`,
        `cluster.blobdir=${JSON.stringify(blobDir)}`,
        'cluster.heartbeat=0.3',
        'cluster.failover=2',
        'state.checkpointinterval=1',
        ...extra,
      ]);
      server.token = (k) => makeToken(k, { audience: AUDIENCE });
      started.push(server);
      return server;
    };
    const owner = async (id: string): Promise<string | undefined> => (await pg.query<{ owner: string }>(db, 'SELECT owner FROM instance WHERE id = $1', [id])).rows[0]?.owner;
    const launch = async (server: ServerProcess): Promise<string> => {
      const r = await request(server, 'POST', `${K}${C}?action=pin&action=launch&function=run`, { key, headers: wasm, body: counter });
      assert.equal(r.status, 201, r.text);
      return String(r.headers['gate-instance']);
    };

    before(async () => {
      pg = await startTestPostgres();
      db = await pg.createDatabase();
      blobDir = mkdtempSync(join(tmpdir(), 'gate-test-cluster-blobs-'));
    });

    after(async () => {
      for (const s of started) {
        if (s.proc.exitCode === null && s.proc.signalCode === null) {
          s.proc.kill('SIGTERM');
          await s.exited;
        }
      }
      for (const c of closers) c();
      await pg?.stop();
      for (const d of [...dirs, blobDir]) if (d) rmSync(d, { recursive: true, force: true });
    });

    it('drains on SIGTERM: the running instance continues on another server', async () => {
      const a = await start('a', ['cluster.drain=true']);
      const b = await start('b');
      const id = await launch(a);
      const before = await readCount(a, key, id, (n) => n >= 2);
      a.proc.kill('SIGTERM');
      assert.equal(await a.exited, 0, a.log());
      assert.match(a.log(), /"moved":1,"kept":0[^\n]*"msg":"cluster: drained"/);
      assert.equal(await owner(id), 'b');
      const after = await within(20_000, 'io on B after the drain', readCount(b, key, id, () => true));
      assert.ok(after >= before, `the count went back from ${before} to ${after}`);
      assert.equal((await request(b, 'POST', `${I}${id}?action=kill&action=wait`, { key })).status, 200);
    });

    it('stops the instances of a server that lost the database before another server restores them', async () => {
      const b = started.find((s) => s.proc.exitCode === null)!;
      const cut = await relay(pg.port);
      closers.push(() => cut.close());
      const d = await start('d', [], `postgres://${pg.user}@127.0.0.1:${cut.port}/${db}`);
      const id = await launch(d);
      await readCount(d, key, id, (n) => n >= 2);
      const stream = openCountStream(d, key, id);
      await stream.next(() => true);
      cut.cut();
      // Watched from the moment of the cut: when another server takes it over …
      const takenOver = eventually('another server owns it', 20_000, async () => {
        const o = await owner(id);
        return o !== undefined && o !== 'd' ? { owner: o, at: Date.now() } : undefined;
      });
      // … and when the run on D ends (its io stream with it).
      await within(10_000, 'the run on D to stop', stream.next(() => false).catch(() => undefined));
      const stoppedAt = Date.now();
      stream.close();
      const taken = await takenOver;
      assert.equal(taken.owner, 'b');
      assert.ok(stoppedAt < taken.at, `D stopped its instance ${stoppedAt - taken.at} ms after B took it over: two running copies`);
      await within(20_000, 'io on B after the failover', readCount(b, key, id, () => true));
      assert.match(d.log(), /no heartbeat for too long; stopping this server's persistent instances/);
      // The database back, D rejoins, without the instance.
      cut.mend();
      await eventually('D heartbeats again', 10_000, async () => ((await pg.query(db, "SELECT 1 FROM gate_server WHERE name = 'd' AND heartbeat > now() - interval '1 second'")).rows.length ? true : undefined));
      await sleep(1_000);
      assert.equal(await owner(id), 'b');
      assert.equal((await pg.query<{ running: number }>(db, "SELECT running FROM gate_server WHERE name = 'd'")).rows[0]?.running, 0);
      assert.equal((await request(d, 'POST', `${I}${id}?action=kill&action=wait`, { key })).status, 200);
    });

    it('places a new instance on the server with the most free capacity', async () => {
      const e = await start('e', ['cluster.capacity=1']);
      // Its one slot taken, E sends the next launch to a server with room.
      const local = await launch(e);
      assert.equal(await owner(local), 'e');
      await eventually('E reports its running instance and has seen the others', 5_000, async () =>
        (await pg.query(db, "SELECT 1 FROM gate_server WHERE name = 'e' AND running = 1")).rows.length ? true : undefined,
      );
      await sleep(700); // a heartbeat of E after that: its view of the others is current
      const placed = await launch(e);
      const where = await owner(placed);
      assert.ok(where === 'b' || where === 'd', `placed on ${where}`);
      await within(20_000, 'io of the placed instance through E', readCount(e, key, placed, () => true));
      for (const id of [local, placed]) assert.equal((await request(e, 'POST', `${I}${id}?action=kill&action=wait`, { key })).status, 200);
    });
  });
}
