/**
 * PostgreSQL inventory (node-postgres), selected by `inventory.dsn`. Same
 * tables as the SQLite one (docs/storage.md) with PostgreSQL types; sorted
 * text columns use COLLATE "C" so that orders match SQLite's byte order
 * whatever the database's locale.
 *
 * Several servers may share one database, so nothing here may rely on being
 * the only writer (as sqlite.ts does with its read-then-write transactions):
 * every write that depends on what is stored is one atomic statement
 * (INSERT … ON CONFLICT), and migrations run in one transaction under an
 * advisory lock.
 */
import pg from 'pg';
import { GateError } from '../errors.js';
import {
  DuplicateInstanceError,
  InventoryClosedError,
  InventoryCorruptError,
  InventoryDatabaseError,
  InventoryDsnError,
  InventoryTooNewError,
} from './errors.js';
import { checkModuleHash, checkRecord, checkTags, nowSeconds, type InstanceRecord, type Inventory, type StoredStatus } from './inventory.js';

/**
 * Migrations, index i takes the schema from version i to i+1; version v is
 * recorded as a row of gate_schema_version when it is applied. Append only:
 * never edit a released entry, add a new one (and a test opening the old
 * version).
 */
export const POSTGRES_MIGRATIONS: readonly (readonly string[])[] = [
  [
    `CREATE TABLE module_pin (
       principal TEXT COLLATE "C" NOT NULL,
       module    TEXT COLLATE "C" NOT NULL,
       tags      TEXT NOT NULL,            -- JSON array of strings, as written by JSON.stringify
       PRIMARY KEY (principal, module))`,
    `CREATE INDEX module_pin_module ON module_pin (module)`,
    `CREATE TABLE instance (
       principal      TEXT COLLATE "C" NOT NULL,
       id             TEXT COLLATE "C" NOT NULL,
       module         TEXT COLLATE "C" NOT NULL,
       transient      BOOLEAN NOT NULL,
       state          TEXT    NOT NULL,
       cause          TEXT,
       result         BIGINT,
       error          TEXT,
       tags           TEXT    NOT NULL,    -- JSON array of strings
       entry_function TEXT,
       snapshot       TEXT COLLATE "C",
       running        BOOLEAN NOT NULL,
       debug_log      BOOLEAN,
       created        BIGINT  NOT NULL,    -- ms since epoch
       updated        BIGINT  NOT NULL,
       PRIMARY KEY (principal, id))`,
    `CREATE INDEX instance_module ON instance (module)`,
    `CREATE INDEX instance_snapshot ON instance (snapshot)`,
    `CREATE TABLE nonce (
       key_id  TEXT   NOT NULL,
       nonce   TEXT   NOT NULL,
       expires BIGINT NOT NULL,            -- unix seconds
       PRIMARY KEY (key_id, nonce))`,
    `CREATE INDEX nonce_expires ON nonce (expires)`,
    `CREATE TABLE source_sha256 (
       uri    TEXT NOT NULL PRIMARY KEY,
       module TEXT NOT NULL)`,
  ],
  // 2: several servers on one database (docs/cluster.md). Every instance has
  // an owner server (NULL: written by a server outside any cluster); the
  // servers register themselves and prove they are alive by heartbeats.
  [
    `ALTER TABLE instance ADD COLUMN owner TEXT COLLATE "C"`,
    `CREATE INDEX instance_owner ON instance (owner)`,
    `CREATE INDEX instance_id ON instance (id)`,
    `CREATE TABLE gate_server (
       name      TEXT COLLATE "C" NOT NULL PRIMARY KEY,
       address   TEXT NOT NULL,              -- base URL other servers forward requests to
       capacity  INTEGER NOT NULL,           -- instances it is willing to run
       running   INTEGER NOT NULL DEFAULT 0, -- instances it ran at its last heartbeat
       draining  BOOLEAN NOT NULL DEFAULT FALSE,
       started   TIMESTAMPTZ NOT NULL DEFAULT now(),
       heartbeat TIMESTAMPTZ NOT NULL DEFAULT now())`,
  ],
];

export const POSTGRES_SCHEMA_VERSION = POSTGRES_MIGRATIONS.length;

/** Tables of every schema version: finding one without gate_schema_version means the database belongs to something else. */
const GATE_TABLES = ['module_pin', 'instance', 'nonce', 'source_sha256', 'gate_server'];

/** Serializes migrations of concurrently starting servers (any constant; this is "gate" in ASCII). */
const MIGRATION_LOCK = 0x67617465;

export interface PostgresInventoryOptions {
  /** Errors of idle pooled connections (the database restarted, the network dropped); without a handler they would crash the process. */
  onIdleError?: (err: Error) => void;
  /** Connections kept open at most (default 10). */
  maxConnections?: number;
  /** How long connecting may take before the open (or a query needing a new connection) fails (default 10 s). */
  connectTimeoutMs?: number;
  /**
   * The server this inventory writes for, in a cluster (docs/cluster.md):
   * instances it creates are owned by it, and it reads and writes only the
   * records it owns, so that a server that lost an instance (migrated,
   * failed over) cannot overwrite the new owner's record. Undefined: no
   * owner is written or checked (a single server).
   */
  owner?: string;
}

/**
 * Checks that `dsn` is a PostgreSQL URL and describes it for messages and
 * logs as `postgres://USER@HOST:PORT/DATABASE`: never with the password.
 */
export function describePostgresDsn(dsn: string): string {
  let url: URL;
  try {
    url = new URL(dsn);
  } catch {
    throw new InventoryDsnError('is not a URL');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new InventoryDsnError(`must start with postgres:// or postgresql://, not ${url.protocol}//`);
  }
  const socketDir = url.searchParams.get('host');
  const host = url.hostname !== '' ? url.hostname : socketDir ?? 'localhost';
  const port = url.port !== '' ? url.port : '5432';
  const user = url.username !== '' ? `${decodeURIComponent(url.username)}@` : '';
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  return `postgres://${user}${host}:${port}/${database}`;
}

/** An instance row as `SELECT ${INSTANCE_COLUMNS}` reads it (also the cluster registry's). */
export interface InstanceRow {
  principal: string;
  id: string;
  module: string;
  transient: boolean;
  state: string;
  cause: string | null;
  result: number | null;
  error: string | null;
  tags: string;
  entry_function: string | null;
  snapshot: string | null;
  running: boolean;
  debug_log: boolean | null;
  created: number;
  updated: number;
}

export const INSTANCE_COLUMNS =
  'principal, id, module, transient, state, cause, result, error, tags, entry_function, snapshot, running, debug_log, created, updated';
const INSTANCE_VALUES = '$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15';
/** The owner is the 16th parameter of instance writes (NULL outside a cluster). */
const OWNED_COLUMNS = `${INSTANCE_COLUMNS}, owner`;
const OWNED_VALUES = `${INSTANCE_VALUES}, $16`;

function toParams(r: InstanceRecord): unknown[] {
  return [
    r.principal,
    r.id,
    r.module,
    r.transient,
    r.status.state,
    r.status.cause ?? null,
    r.status.result ?? null,
    r.status.error ?? null,
    JSON.stringify(r.tags),
    r.function ?? null,
    r.snapshot ?? null,
    r.running,
    r.debugLog ?? null,
    r.created,
    r.updated,
  ];
}

export function fromRow(row: InstanceRow): InstanceRecord {
  const status: StoredStatus = { state: row.state };
  if (row.cause !== null) status.cause = row.cause;
  if (row.result !== null) status.result = row.result;
  if (row.error !== null) status.error = row.error;
  const rec: InstanceRecord = {
    principal: row.principal,
    id: row.id,
    module: row.module,
    transient: row.transient,
    status,
    tags: parseTags(row.tags),
    running: row.running,
    created: row.created,
    updated: row.updated,
  };
  if (row.entry_function !== null) rec.function = row.entry_function;
  if (row.snapshot !== null) rec.snapshot = row.snapshot;
  if (row.debug_log !== null) rec.debugLog = row.debug_log;
  return rec;
}

function parseTags(json: string): string[] {
  const v: unknown = JSON.parse(json);
  return Array.isArray(v) ? v.filter((t): t is string => typeof t === 'string') : [];
}

const INT8_OID = 20;
const DEADLOCK_DETECTED = '40P01';

/** BIGINT columns hold milliseconds, seconds and exit results, all safe integers: read them as numbers (node-postgres gives strings by default). */
const TYPES = {
  getTypeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
    if (oid === INT8_OID && format !== 'binary') return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format as 'text');
  },
};

/** Brings the database to POSTGRES_SCHEMA_VERSION in one transaction, refusing databases that hold other tables of our names or a newer schema. */
async function migrate(client: pg.PoolClient, where: string): Promise<void> {
  await client.query('BEGIN');
  try {
    // Held until COMMIT/ROLLBACK: a second server starting at the same time waits, then finds the schema in place.
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    const versioned = (await client.query<{ t: string | null }>(`SELECT to_regclass('gate_schema_version')::text AS t`)).rows[0]!.t !== null;
    if (!versioned) {
      const found = await client.query<{ t: string }>(`SELECT t FROM unnest($1::text[]) AS t WHERE to_regclass(t) IS NOT NULL`, [GATE_TABLES]);
      if (found.rows.length > 0) {
        throw new InventoryCorruptError(where, `it holds table(s) ${found.rows.map((r) => r.t).join(', ')} but no gate_schema_version; give Gate a database (or schema) of its own`);
      }
      await client.query(`CREATE TABLE gate_schema_version (
        version INTEGER PRIMARY KEY,
        applied TIMESTAMPTZ NOT NULL DEFAULT now())`);
    }
    const version = (await client.query<{ v: number }>('SELECT coalesce(max(version), 0) AS v FROM gate_schema_version')).rows[0]!.v;
    if (version > POSTGRES_SCHEMA_VERSION) throw new InventoryTooNewError(where, version, POSTGRES_SCHEMA_VERSION);
    for (let v = version; v < POSTGRES_SCHEMA_VERSION; v++) {
      for (const sql of POSTGRES_MIGRATIONS[v]!) await client.query(sql);
      await client.query('INSERT INTO gate_schema_version (version) VALUES ($1)', [v + 1]);
    }
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}

/** Describes a connection or SQL failure for InventoryDatabaseError, with the password (should a message ever contain it) masked. */
function failureDetail(e: unknown, password: string): string {
  let detail = e instanceof Error ? e.message || (e as { code?: string }).code || e.name : String(e);
  // An AggregateError (every address of a host refused) has an empty message.
  if (e instanceof AggregateError && e.errors.length > 0) detail = e.errors.map((x: unknown) => (x instanceof Error ? x.message : String(x))).join('; ');
  if (password !== '') {
    detail = detail.split(password).join('***');
    const decoded = decodeURIComponent(password);
    if (decoded !== '') detail = detail.split(decoded).join('***');
  }
  return detail;
}

/**
 * Connects to the database named by `dsn`, migrates it (creating Gate's
 * tables in a fresh database) and returns the inventory. Fails with
 * InventoryDsnError for a malformed DSN, InventoryDatabaseError when the
 * database cannot be reached or used, InventoryCorruptError /
 * InventoryTooNewError for a database that is not (or not yet) ours.
 */
export async function openPostgresInventory(dsn: string, options: PostgresInventoryOptions = {}): Promise<Inventory> {
  const where = describePostgresDsn(dsn);
  const password = new URL(dsn).password;
  const pool = new pg.Pool({
    connectionString: dsn,
    max: options.maxConnections ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    types: TYPES,
  });
  pool.on('error', (err) => options.onIdleError?.(err));
  try {
    const client = await pool.connect();
    try {
      await migrate(client, where);
    } finally {
      client.release();
    }
  } catch (e) {
    await pool.end().catch(() => undefined);
    if (e instanceof GateError) throw e;
    throw new InventoryDatabaseError(where, failureDetail(e, password), { cause: e });
  }

  const owner = options.owner ?? null;
  // Outside a cluster nothing is fenced; in one, only the owner's writes count.
  const fenced = owner === null ? '' : ' WHERE instance.owner = $16';
  let closed = false;
  const open = (): void => {
    if (closed) throw new InventoryClosedError();
  };

  return {
    async pinModule(principal, module, tags) {
      open();
      checkModuleHash(module);
      checkTags(tags);
      // One statement instead of SQLite's read-then-write: insert, or replace the tags only when the new list is non-empty
      // and different (§13.1; JSON.stringify is canonical for string arrays). xmax = 0 marks a row this statement inserted.
      const r = await pool.query<{ created: boolean }>(
        `INSERT INTO module_pin (principal, module, tags) VALUES ($1, $2, $3)
         ON CONFLICT (principal, module) DO UPDATE SET tags = excluded.tags
           WHERE excluded.tags <> '[]' AND module_pin.tags <> excluded.tags
         RETURNING (xmax = 0) AS created`,
        [principal, module, JSON.stringify(tags)],
      );
      return { created: r.rows[0]?.created === true };
    },

    async unpinModule(principal, module) {
      open();
      return ((await pool.query('DELETE FROM module_pin WHERE principal = $1 AND module = $2', [principal, module])).rowCount ?? 0) > 0;
    },

    async getModule(principal, module) {
      open();
      const row = (await pool.query<{ tags: string }>('SELECT tags FROM module_pin WHERE principal = $1 AND module = $2', [principal, module])).rows[0];
      return row === undefined ? undefined : { module, tags: parseTags(row.tags) };
    },

    async listModules(principal) {
      open();
      const r = await pool.query<{ module: string; tags: string }>('SELECT module, tags FROM module_pin WHERE principal = $1 ORDER BY module', [principal]);
      return r.rows.map((row) => ({ module: row.module, tags: parseTags(row.tags) }));
    },

    async moduleReferenced(module) {
      open();
      const r = await pool.query(
        `SELECT 1 WHERE EXISTS (SELECT 1 FROM module_pin WHERE module = $1)
            OR EXISTS (SELECT 1 FROM instance WHERE module = $1)
            OR EXISTS (SELECT 1 FROM instance WHERE snapshot = $1)`,
        [module],
      );
      return r.rows.length > 0;
    },

    async createInstance(rec) {
      open();
      checkRecord(rec);
      const r = await pool.query(`INSERT INTO instance (${OWNED_COLUMNS}) VALUES (${OWNED_VALUES}) ON CONFLICT (principal, id) DO NOTHING`, [...toParams(rec), owner]);
      if (r.rowCount === 0) throw new DuplicateInstanceError(rec.principal, rec.id);
    },

    async putInstance(rec) {
      open();
      checkRecord(rec);
      await pool.query(
        `INSERT INTO instance (${OWNED_COLUMNS}) VALUES (${OWNED_VALUES})
         ON CONFLICT (principal, id) DO UPDATE SET
           module = excluded.module, transient = excluded.transient, state = excluded.state, cause = excluded.cause,
           result = excluded.result, error = excluded.error, tags = excluded.tags, entry_function = excluded.entry_function,
           snapshot = excluded.snapshot, running = excluded.running, debug_log = excluded.debug_log,
           created = excluded.created, updated = excluded.updated${fenced}`,
        [...toParams(rec), owner],
      );
    },

    async getInstance(principal, id) {
      open();
      const row = (await pool.query<InstanceRow>(`SELECT ${INSTANCE_COLUMNS} FROM instance WHERE principal = $1 AND id = $2`, [principal, id])).rows[0];
      return row === undefined ? undefined : fromRow(row);
    },

    async listInstances(principal) {
      open();
      return (await pool.query<InstanceRow>(`SELECT ${INSTANCE_COLUMNS} FROM instance WHERE principal = $1 ORDER BY created, id`, [principal])).rows.map(fromRow);
    },

    async deleteInstance(principal, id) {
      open();
      const r = owner === null
        ? await pool.query('DELETE FROM instance WHERE principal = $1 AND id = $2', [principal, id])
        : await pool.query('DELETE FROM instance WHERE principal = $1 AND id = $2 AND owner = $3', [principal, id, owner]);
      return (r.rowCount ?? 0) > 0;
    },

    async allPersistentInstances() {
      open();
      const r = owner === null
        ? await pool.query<InstanceRow>(`SELECT ${INSTANCE_COLUMNS} FROM instance WHERE NOT transient ORDER BY principal, created, id`)
        : await pool.query<InstanceRow>(`SELECT ${INSTANCE_COLUMNS} FROM instance WHERE NOT transient AND owner = $1 ORDER BY principal, created, id`, [owner]);
      return r.rows.map(fromRow);
    },

    async useNonce(key, n, expiresAtSec, nowSec = nowSeconds()) {
      open();
      await pool.query('DELETE FROM nonce WHERE expires < $1', [nowSec]).catch((e: unknown) => {
        // Two servers purging at once can deadlock; the purge only keeps the table small (the statement below decides),
        // so the loser leaves it to the next check.
        if ((e as { code?: unknown }).code !== DEADLOCK_DETECTED) throw e;
      });
      // The decision is this one statement, so two servers checking the same nonce at once cannot both accept it: the
      // second waits for the first's row and then finds it live. An expired row (one the purge above did not remove
      // because another server's clock is behind) is taken over.
      const r = await pool.query(
        `INSERT INTO nonce (key_id, nonce, expires) VALUES ($1, $2, $3)
         ON CONFLICT (key_id, nonce) DO UPDATE SET expires = excluded.expires WHERE nonce.expires < $4`,
        [key, n, expiresAtSec, nowSec],
      );
      return r.rowCount === 1;
    },

    async recordSource(uri, module) {
      open();
      checkModuleHash(module);
      await pool.query('INSERT INTO source_sha256 (uri, module) VALUES ($1, $2) ON CONFLICT (uri) DO UPDATE SET module = excluded.module', [uri, module]);
    },

    async lookupSource(uri) {
      open();
      return (await pool.query<{ module: string }>('SELECT module FROM source_sha256 WHERE uri = $1', [uri])).rows[0]?.module;
    },

    async close() {
      if (closed) return;
      closed = true;
      await pool.end();
    },
  };
}
