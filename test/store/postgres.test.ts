/**
 * The PostgreSQL inventory against a real, private PostgreSQL cluster
 * (test/helpers/postgres.ts): the conformance suite, then what only a shared
 * networked database has — several inventories (servers) on one database
 * racing, versioned migrations, refusing foreign or newer databases, and
 * errors that name the host but never the password.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { GateError } from '../../src/errors.js';
import { DuplicateInstanceError, InventoryCorruptError, InventoryDatabaseError, InventoryDsnError, InventoryTooNewError } from '../../src/store/errors.js';
import type { InstanceRecord, Inventory } from '../../src/store/inventory.js';
import { memoryInventory } from '../../src/store/memory.js';
import { describePostgresDsn, openPostgresInventory, POSTGRES_SCHEMA_VERSION } from '../../src/store/postgres.js';
import { NO_POSTGRES, postgresBinDir, startTestPostgres } from '../helpers/postgres.js';
import { inventoryConformance } from './conformance.js';

const M = 'ab'.repeat(32);
const ALICE = 'ed25519:' + 'A'.repeat(43);

function record(over: Partial<InstanceRecord> = {}): InstanceRecord {
  return {
    principal: ALICE,
    id: '0f2b7c1e-3a4d-4e5f-8a6b-7c8d9e0f1a2b',
    module: M,
    transient: false,
    status: { state: 'RUNNING' },
    tags: [],
    running: true,
    created: 1,
    updated: 1,
    ...over,
  };
}

async function rejectsWith(p: Promise<unknown>, cls: abstract new (...args: never[]) => GateError, code: string, mentions: string[], secret?: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
    assert.equal(e.code, code);
    for (const m of mentions) assert.ok(e.message.includes(m), `message should mention ${m}: ${e.message}`);
    if (secret !== undefined) assert.ok(!e.message.includes(secret), `message must not contain the password: ${e.message}`);
    return true;
  });
}

if (postgresBinDir() === undefined) {
  it('PostgreSQL inventory', { skip: NO_POSTGRES }, () => undefined);
} else {
  const cluster = await startTestPostgres();
  after(() => cluster.stop());

  const databases = new WeakMap<Inventory, string>();
  const openIn = async (db: string): Promise<Inventory> => {
    const inv = await openPostgresInventory(cluster.dsn(db));
    databases.set(inv, db);
    return inv;
  };

  inventoryConformance('postgres', async () => openIn(await cluster.createDatabase()), {
    reopen: async (previous) => openIn(databases.get(previous)!),
  });

  describe('PostgreSQL inventory: two servers on one database', () => {
    it('race on the same nonce: exactly one accepts it, every time', async () => {
      const db = await cluster.createDatabase();
      const a = await openIn(db);
      const b = await openIn(db);
      try {
        for (let i = 0; i < 100; i++) {
          const [x, y] = await Promise.all([a.useNonce('k', `n${i}`, 1000, 10), b.useNonce('k', `n${i}`, 1000, 10)]);
          assert.equal(Number(x) + Number(y), 1, `nonce n${i}: a=${x} b=${y}`);
        }
        // Taking over an expired row is raced the same way.
        for (let i = 0; i < 100; i++) {
          const [x, y] = await Promise.all([a.useNonce('k', `n${i}`, 3000, 2000), b.useNonce('k', `n${i}`, 3000, 2000)]);
          assert.equal(Number(x) + Number(y), 1, `expired nonce n${i}: a=${x} b=${y}`);
        }
        // And a replay on either server afterwards is refused.
        assert.equal(await a.useNonce('k', 'n7', 3000, 2001), false);
        assert.equal(await b.useNonce('k', 'n7', 3000, 2001), false);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('servers with different clocks: each applies its own now to the shared rows', async () => {
      const db = await cluster.createDatabase();
      const a = await openIn(db);
      const b = await openIn(db);
      try {
        assert.equal(await a.useNonce('k', 'n', 100, 50), true);
        // b's clock says 150: a's row expired at 100, so b may use the nonce again (as a single server would).
        assert.equal(await b.useNonce('k', 'n', 300, 150), true);
        // a's clock is behind (60): the row b wrote is live until 300, so a refuses.
        assert.equal(await a.useNonce('k', 'n', 100, 60), false);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('race on creating one instance id and on a first pin: exactly one wins', async () => {
      const db = await cluster.createDatabase();
      const a = await openIn(db);
      const b = await openIn(db);
      try {
        for (let i = 0; i < 30; i++) {
          const id = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
          const results = await Promise.allSettled([a.createInstance(record({ id, tags: ['a'] })), b.createInstance(record({ id, tags: ['b'] }))]);
          assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
          for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof DuplicateInstanceError, String(r.reason));
          const module = i.toString(16).padStart(2, '0').repeat(32);
          const pins = await Promise.all([a.pinModule(ALICE, module, ['a']), b.pinModule(ALICE, module, ['b'])]);
          assert.equal(pins.filter((p) => p.created).length, 1, `pin ${i}: ${JSON.stringify(pins)}`);
        }
        assert.equal((await b.listInstances(ALICE)).length, 30);
        assert.equal((await a.listModules(ALICE)).length, 30);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('what one server writes, the other reads at once', async () => {
      const db = await cluster.createDatabase();
      const a = await openIn(db);
      const b = await openIn(db);
      try {
        await a.putInstance(record({ tags: ['from a'] }));
        assert.deepEqual((await b.getInstance(ALICE, record().id))?.tags, ['from a']);
        await b.pinModule(ALICE, M, ['pinned by b']);
        assert.equal(await a.moduleReferenced(M), true);
        await b.recordSource('/ipfs/x', M);
        assert.equal(await a.lookupSource('/ipfs/x'), M);
      } finally {
        await a.close();
        await b.close();
      }
    });
  });

  describe('PostgreSQL inventory connections', () => {
    it('reports connections the database closed and continues on new ones', async () => {
      const db = await cluster.createDatabase();
      const lost: Error[] = [];
      const inv = await openPostgresInventory(cluster.dsn(db), { onIdleError: (e) => lost.push(e) });
      try {
        await inv.pinModule(ALICE, M, ['before']);
        // What a database restart or an administrator does to the server's pooled connections.
        const killed = await cluster.query(db, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [db]);
        assert.ok(killed.rows.length >= 1);
        for (const deadline = Date.now() + 10_000; lost.length === 0 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
        assert.ok(lost.length >= 1, 'the idle connection’s error reached onIdleError');
        assert.deepEqual(await inv.getModule(ALICE, M), { module: M, tags: ['before'] });
        assert.equal(await inv.useNonce('k', 'after-reconnect', 100, 0), true);
      } finally {
        await inv.close();
      }
    });
  });

  describe('PostgreSQL inventory schema', () => {
    it('records applied versions in gate_schema_version and does not migrate again on reopen', async () => {
      const db = await cluster.createDatabase();
      await (await openIn(db)).close();
      const first = await cluster.query<{ version: number }>(db, 'SELECT version FROM gate_schema_version ORDER BY version');
      assert.deepEqual(
        first.rows.map((r) => r.version),
        Array.from({ length: POSTGRES_SCHEMA_VERSION }, (_, i) => i + 1),
      );
      const inv = await openIn(db);
      await inv.pinModule(ALICE, M, ['kept']);
      await inv.close();
      const again = await openIn(db);
      assert.deepEqual(await again.listModules(ALICE), [{ module: M, tags: ['kept'] }]);
      await again.close();
      assert.equal((await cluster.query(db, 'SELECT version FROM gate_schema_version')).rows.length, POSTGRES_SCHEMA_VERSION);
    });

    it('servers starting at once on a fresh database migrate it once', async () => {
      const db = await cluster.createDatabase();
      const all = await Promise.all(Array.from({ length: 4 }, () => openIn(db)));
      await Promise.all(all.map((inv) => inv.close()));
      assert.equal((await cluster.query(db, 'SELECT version FROM gate_schema_version')).rows.length, POSTGRES_SCHEMA_VERSION);
    });

    it('refuses a database with a newer schema version and leaves it alone', async () => {
      const db = await cluster.createDatabase();
      await (await openIn(db)).close();
      const newer = POSTGRES_SCHEMA_VERSION + 3;
      await cluster.query(db, 'INSERT INTO gate_schema_version (version) VALUES ($1)', [newer]);
      await rejectsWith(openIn(db), InventoryTooNewError, 'GATE_INVENTORY_TOO_NEW', [`schema version ${newer}`, `127.0.0.1:${cluster.port}/${db}`]);
      assert.equal((await cluster.query(db, 'SELECT max(version) AS v FROM gate_schema_version')).rows[0]!.v, newer);
    });

    it('refuses a database where another application has a table of the same name, and creates nothing', async () => {
      const db = await cluster.createDatabase();
      await cluster.query(db, 'CREATE TABLE instance (x INTEGER)');
      await rejectsWith(openIn(db), InventoryCorruptError, 'GATE_INVENTORY_CORRUPT', ['instance', 'gate_schema_version']);
      assert.equal((await cluster.query(db, `SELECT to_regclass('gate_schema_version') AS t`)).rows[0]!.t, null);
      assert.equal((await cluster.query(db, `SELECT to_regclass('module_pin') AS t`)).rows[0]!.t, null);
    });

    it('shares a database with another application’s unrelated tables', async () => {
      const db = await cluster.createDatabase();
      await cluster.query(db, 'CREATE TABLE accounts (id INTEGER PRIMARY KEY)');
      const inv = await openIn(db);
      await inv.pinModule(ALICE, M, []);
      await inv.close();
    });

    it('sorts by byte order even where the database’s collation would not', async () => {
      // An ICU en-US database sorts "a" before "B"; SQLite and the memory inventory sort "B" first.
      const db = await cluster.createDatabase(undefined, `TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'`);
      assert.deepEqual((await cluster.query(db, `SELECT x FROM (VALUES ('a'), ('B')) AS v(x) ORDER BY x`)).rows.map((r) => r.x), ['a', 'B'], 'the database collation differs');
      const inv = await openIn(db);
      const reference = memoryInventory();
      try {
        for (const target of [inv, reference]) {
          for (const id of ['b-id', 'a-id', 'B-id', 'A-id']) await target.createInstance(record({ id }));
          await target.createInstance(record({ principal: 'b', id: 'x' }));
          await target.createInstance(record({ principal: 'C', id: 'x' }));
        }
        assert.deepEqual(
          (await inv.listInstances(ALICE)).map((r) => r.id),
          ['A-id', 'B-id', 'a-id', 'b-id'],
        );
        assert.deepEqual(
          (await inv.allPersistentInstances()).map((r) => `${r.principal} ${r.id}`),
          (await reference.allPersistentInstances()).map((r) => `${r.principal} ${r.id}`),
        );
        assert.equal((await inv.allPersistentInstances())[0]?.principal, 'C');
      } finally {
        await inv.close();
        await reference.close();
      }
    });
  });

  describe('PostgreSQL inventory DSN and connection errors', () => {
    const SECRET = 'pa55-w0rd-s3cret';

    it('describes a DSN without its password', () => {
      assert.equal(describePostgresDsn(`postgres://gate:${SECRET}@db.example:5433/inv`), 'postgres://gate@db.example:5433/inv');
      assert.equal(describePostgresDsn('postgresql://db.example/inv'), 'postgres://db.example:5432/inv');
      assert.equal(describePostgresDsn('postgres:///inv?host=/run/postgresql'), 'postgres:///run/postgresql:5432/inv');
    });

    it('refuses a DSN that is not a postgres:// URL without repeating it', async () => {
      for (const bad of [`gate:${SECRET}@localhost/db`, `mysql://gate:${SECRET}@localhost/db`, '']) {
        await rejectsWith(openPostgresInventory(bad), InventoryDsnError, 'GATE_INVENTORY_DSN', ['postgres://'], SECRET);
      }
    });

    it('an unreachable server: the error names host and port, never the password', async () => {
      // A loopback port nothing listens on.
      const { createServer } = await import('node:net');
      const closed = await new Promise<number>((resolve) => {
        const s = createServer().listen(0, '127.0.0.1', () => {
          const port = (s.address() as { port: number }).port;
          s.close(() => resolve(port));
        });
      });
      await rejectsWith(
        openPostgresInventory(`postgres://gate:${SECRET}@127.0.0.1:${closed}/gate`),
        InventoryDatabaseError,
        'GATE_INVENTORY_OPEN',
        [`127.0.0.1:${closed}`, 'ECONNREFUSED'],
        SECRET,
      );
    });

    it('a database that does not exist: the error names it', async () => {
      await rejectsWith(openPostgresInventory(cluster.dsn('no_such_db', SECRET)), InventoryDatabaseError, 'GATE_INVENTORY_OPEN', ['no_such_db', `127.0.0.1:${cluster.port}`], SECRET);
    });

    it('a DSN with a password (URL-encoded) opens the inventory (the test cluster trusts every login)', async () => {
      const db = await cluster.createDatabase();
      const inv = await openPostgresInventory(cluster.dsn(db, SECRET));
      await inv.pinModule(ALICE, M, []);
      await inv.close();
    });
  });
}
