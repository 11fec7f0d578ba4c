/**
 * The owner column as the single source of truth (docs/cluster.md), on a
 * real PostgreSQL: servers claiming a dead server's instances at once take
 * disjoint sets that together are all of them; two servers that both claim
 * to own an instance and hand it to different targets at once move it
 * once; a target that is dead or draining gets nothing; a server that lost
 * an instance cannot overwrite or delete the new owner's record; a
 * database of schema version 1 is upgraded and its records claimed.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ClusterRegistry } from '../../src/cluster/registry.js';
import type { InstanceRecord } from '../../src/store/inventory.js';
import { openPostgresInventory, POSTGRES_MIGRATIONS, POSTGRES_SCHEMA_VERSION } from '../../src/store/postgres.js';
import { NO_POSTGRES, postgresBinDir, startTestPostgres } from '../helpers/postgres.js';

const M = 'cd'.repeat(32);
const ALICE = 'ed25519:' + 'B'.repeat(43);

function record(id: string, over: Partial<InstanceRecord> = {}): InstanceRecord {
  return { principal: ALICE, id, module: M, transient: false, status: { state: 'RUNNING' }, tags: [], running: true, created: 1, updated: 1, ...over };
}

const uuid = (i: number): string => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;

if (postgresBinDir() === undefined) {
  it('cluster ownership', { skip: NO_POSTGRES }, () => undefined);
} else {
  const pg = await startTestPostgres();
  const closers: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of closers) await c();
    await pg.stop();
  });
  const registry = async (db: string, name: string, register = true): Promise<ClusterRegistry> => {
    const r = new ClusterRegistry({ dsn: pg.dsn(db), name, failoverMs: 2000 });
    closers.push(() => r.close());
    if (register) await r.register(`http://${name}.test:1`, 100);
    return r;
  };
  const inventory = async (db: string, owner: string) => {
    const inv = await openPostgresInventory(pg.dsn(db), { owner });
    closers.push(() => inv.close());
    return inv;
  };
  const owners = async (db: string): Promise<Map<string, string>> =>
    new Map((await pg.query<{ id: string; owner: string }>(db, 'SELECT id, owner FROM instance')).rows.map((r) => [r.id, r.owner]));

  describe('cluster ownership in PostgreSQL', () => {
    it('gives each instance of a dead server to exactly one of the servers claiming at once', async () => {
      const db = await pg.createDatabase();
      const dead = await inventory(db, 'dead');
      await (await registry(db, 'dead')).heartbeat(0, false);
      const N = 60;
      for (let i = 0; i < N; i++) await dead.createInstance(record(uuid(i), { running: i % 2 === 0 }));
      const claimers = await Promise.all(['x', 'y', 'z'].map((n) => registry(db, n)));
      // Alive a moment ago: nothing is taken.
      assert.deepEqual(await claimers[0]!.claimFromDead(100), []);
      await pg.query(db, "UPDATE gate_server SET heartbeat = now() - interval '1 minute' WHERE name = 'dead'");
      const taken = new Map<string, string>();
      for (let round = 0; round < 10 && taken.size < N; round++) {
        const results = await Promise.all(claimers.map((c) => c.claimFromDead(7)));
        results.forEach((recs, i) => {
          for (const rec of recs) {
            assert.equal(taken.get(rec.id), undefined, `instance ${rec.id} claimed twice`);
            taken.set(rec.id, claimers[i]!.name);
            assert.equal(rec.running, Number(rec.id.slice(-12)) % 2 === 0, 'the claimed record is the stored one');
          }
        });
      }
      assert.equal(taken.size, N);
      assert.deepEqual(await owners(db), taken);
      assert.ok(new Set(taken.values()).size > 1, 'the claims were spread over the servers');
      await claimers[0]!.forgetDead();
      assert.deepEqual((await pg.query(db, 'SELECT name FROM gate_server ORDER BY name')).rows, [{ name: 'x' }, { name: 'y' }, { name: 'z' }]);
    });

    it('moves an instance once when two servers hand it over at once, never to a dead or draining server', async () => {
      const db = await pg.createDatabase();
      const inv = await inventory(db, 'x');
      for (let i = 0; i < 20; i++) await inv.createInstance(record(uuid(i)));
      // Two processes both believing they are x (a server that lies, or a restarted one racing its old self).
      const [x1, x2] = [await registry(db, 'x'), await registry(db, 'x', false)];
      await Promise.all(['y', 'z'].map((n) => registry(db, n)));
      for (let i = 0; i < 20; i++) {
        const [toY, toZ] = await Promise.all([x1!.handOver(ALICE, uuid(i), 'y'), x2!.handOver(ALICE, uuid(i), 'z')]);
        assert.equal(Number(toY) + Number(toZ), 1, `instance ${i}: moved ${Number(toY) + Number(toZ)} times`);
        assert.equal((await owners(db)).get(uuid(i)), toY ? 'y' : 'z');
      }
      // Not from a server that does not own it any more.
      assert.equal(await x1!.handOver(ALICE, uuid(0), 'x'), false);
      const y = await registry(db, 'y', false);
      const z = await registry(db, 'z', false);
      const fromY = [...(await owners(db))].find(([, o]) => o === 'y')![0];
      await pg.query(db, "UPDATE gate_server SET heartbeat = now() - interval '1 minute' WHERE name = 'z'");
      assert.equal(await y.handOver(ALICE, fromY, 'z'), false, 'dead target');
      assert.equal(await y.handOver(ALICE, fromY, 'nobody'), false, 'unknown target');
      await z.heartbeat(0, false);
      await z.setDraining();
      assert.equal(await y.handOver(ALICE, fromY, 'z'), false, 'draining target');
      assert.equal((await owners(db)).get(fromY), 'y');
    });

    it('ignores writes of a server that lost the instance', async () => {
      const db = await pg.createDatabase();
      const x = await inventory(db, 'x');
      const y = await inventory(db, 'y');
      const rec = record(uuid(1));
      await x.createInstance(rec);
      await (await registry(db, 'y')).heartbeat(0, false);
      assert.equal(await (await registry(db, 'x')).handOver(ALICE, rec.id, 'y'), true);
      await x.putInstance({ ...rec, status: { state: 'KILLED' }, running: false, updated: 2 });
      assert.equal(await x.deleteInstance(ALICE, rec.id), false);
      assert.deepEqual((await y.getInstance(ALICE, rec.id))?.status, { state: 'RUNNING' });
      assert.deepEqual((await x.allPersistentInstances()).map((r) => r.id), []);
      await y.putInstance({ ...rec, status: { state: 'SUSPENDED' }, updated: 3 });
      assert.deepEqual((await x.getInstance(ALICE, rec.id))?.status, { state: 'SUSPENDED' });
      assert.deepEqual((await y.allPersistentInstances()).map((r) => r.id), [rec.id]);
    });

    it('upgrades a schema version 1 database; its records become the first server’s', async () => {
      const db = await pg.createDatabase();
      for (const sql of POSTGRES_MIGRATIONS[0]!) await pg.query(db, sql);
      await pg.query(db, 'CREATE TABLE gate_schema_version (version INTEGER PRIMARY KEY, applied TIMESTAMPTZ NOT NULL DEFAULT now())');
      await pg.query(db, 'INSERT INTO gate_schema_version (version) VALUES (1)');
      await pg.query(
        db,
        `INSERT INTO instance (principal, id, module, transient, state, tags, running, created, updated) VALUES ($1, $2, $3, FALSE, 'SUSPENDED', '[]', FALSE, 5, 6)`,
        [ALICE, uuid(9), M],
      );
      const inv = await inventory(db, 'x');
      assert.deepEqual((await pg.query(db, 'SELECT version FROM gate_schema_version ORDER BY version')).rows.map((r) => r.version), Array.from({ length: POSTGRES_SCHEMA_VERSION }, (_, i) => i + 1));
      // Unowned until a cluster server claims it (as gate-server does at start, before loading what it owns).
      assert.deepEqual(await inv.allPersistentInstances(), []);
      assert.equal(await (await registry(db, 'x')).claimUnowned(), 1);
      assert.deepEqual((await inv.allPersistentInstances()).map((r) => [r.id, r.status.state, r.created]), [[uuid(9), 'SUSPENDED', 5]]);
    });
  });
}
