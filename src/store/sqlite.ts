/**
 * SQLite inventory (better-sqlite3), the embedded default. better-sqlite3 is
 * synchronous; the async interface is kept for PostgreSQL. The SQL sticks to
 * what PostgreSQL also accepts (TEXT/INTEGER/BIGINT columns, composite
 * primary keys, INSERT … ON CONFLICT) so the schema can be shared; only the
 * placeholders (`?` vs `$n`) and the version bookkeeping (PRAGMA
 * user_version) are SQLite-specific. Layout: docs/storage.md.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { GateError } from '../errors.js';
import {
  DuplicateInstanceError,
  InventoryClosedError,
  InventoryCorruptError,
  InventoryOpenError,
  InventoryTooNewError,
} from './errors.js';
import {
  checkModuleHash,
  checkRecord,
  checkTags,
  nowSeconds,
  shouldReplaceTags,
  type InstanceRecord,
  type Inventory,
  type StoredStatus,
} from './inventory.js';

/**
 * Migrations, index i takes the schema from version i to i+1. Append only:
 * never edit a released entry, add a new one (and a test opening the old
 * version).
 */
const MIGRATIONS: readonly (readonly string[])[] = [
  [
    `CREATE TABLE module_pin (
       principal TEXT NOT NULL,
       module    TEXT NOT NULL,
       tags      TEXT NOT NULL,            -- JSON array of strings
       PRIMARY KEY (principal, module))`,
    `CREATE INDEX module_pin_module ON module_pin (module)`,
    `CREATE TABLE instance (
       principal      TEXT    NOT NULL,
       id             TEXT    NOT NULL,
       module         TEXT    NOT NULL,
       transient      INTEGER NOT NULL,    -- 0/1
       state          TEXT    NOT NULL,
       cause          TEXT,
       result         INTEGER,
       error          TEXT,
       tags           TEXT    NOT NULL,    -- JSON array of strings
       entry_function TEXT,
       snapshot       TEXT,
       running        INTEGER NOT NULL,    -- 0/1
       debug_log      INTEGER,             -- 0/1/NULL
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
];

export const SQLITE_SCHEMA_VERSION = MIGRATIONS.length;

interface InstanceRow {
  principal: string;
  id: string;
  module: string;
  transient: number;
  state: string;
  cause: string | null;
  result: number | null;
  error: string | null;
  tags: string;
  entry_function: string | null;
  snapshot: string | null;
  running: number;
  debug_log: number | null;
  created: number;
  updated: number;
}

const INSTANCE_COLUMNS =
  'principal, id, module, transient, state, cause, result, error, tags, entry_function, snapshot, running, debug_log, created, updated';

type InstanceParams = [string, string, string, number, string, string | null, number | null, string | null, string, string | null, string | null, number, number | null, number, number];

function toParams(r: InstanceRecord): InstanceParams {
  return [
    r.principal,
    r.id,
    r.module,
    r.transient ? 1 : 0,
    r.status.state,
    r.status.cause ?? null,
    r.status.result ?? null,
    r.status.error ?? null,
    JSON.stringify(r.tags),
    r.function ?? null,
    r.snapshot ?? null,
    r.running ? 1 : 0,
    r.debugLog === undefined ? null : r.debugLog ? 1 : 0,
    r.created,
    r.updated,
  ];
}

function fromRow(row: InstanceRow): InstanceRecord {
  const status: StoredStatus = { state: row.state };
  if (row.cause !== null) status.cause = row.cause;
  if (row.result !== null) status.result = row.result;
  if (row.error !== null) status.error = row.error;
  const rec: InstanceRecord = {
    principal: row.principal,
    id: row.id,
    module: row.module,
    transient: row.transient !== 0,
    status,
    tags: parseTags(row.tags),
    running: row.running !== 0,
    created: row.created,
    updated: row.updated,
  };
  if (row.entry_function !== null) rec.function = row.entry_function;
  if (row.snapshot !== null) rec.snapshot = row.snapshot;
  if (row.debug_log !== null) rec.debugLog = row.debug_log !== 0;
  return rec;
}

function parseTags(json: string): string[] {
  const v: unknown = JSON.parse(json);
  return Array.isArray(v) ? v.filter((t): t is string => typeof t === 'string') : [];
}

function sqliteCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : undefined;
}

/** Brings the database to SQLITE_SCHEMA_VERSION, refusing files that are not ours or are newer. */
function migrate(db: Database.Database, path: string): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > SQLITE_SCHEMA_VERSION) throw new InventoryTooNewError(path, version, SQLITE_SCHEMA_VERSION);
  if (version === 0) {
    // A fresh file has no tables; one with tables but no version is some other application's database.
    const n = (db.prepare(`SELECT count(*) AS n FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'`).get() as { n: number }).n;
    if (n > 0) throw new InventoryCorruptError(path, 'it holds tables but no Gate schema version');
  }
  if (version === SQLITE_SCHEMA_VERSION) return;
  db.transaction(() => {
    for (let v = version; v < SQLITE_SCHEMA_VERSION; v++) {
      for (const sql of MIGRATIONS[v]!) db.exec(sql);
    }
    // user_version lives in the file header and is written by this transaction: a crash leaves the old version and no half schema.
    db.pragma(`user_version = ${SQLITE_SCHEMA_VERSION}`);
  }).immediate();
}

function openDatabase(path: string): Database.Database {
  const inMemory = path === ':memory:' || path === '';
  if (!inMemory) {
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new InventoryOpenError(path, `cannot create its directory (${(e as Error).message})`, { cause: e });
    }
  }
  let db: Database.Database;
  try {
    db = new Database(path);
  } catch (e) {
    throw new InventoryOpenError(path, (e as Error).message, { cause: e });
  }
  try {
    // The first read is what detects a file that is not a database.
    db.pragma('user_version', { simple: true });
    // Wait for a reader such as `sqlite3 .backup` instead of failing with SQLITE_BUSY.
    db.pragma('busy_timeout = 5000');
    migrate(db, path);
    if (!inMemory) {
      // WAL: readers (a backup, `sqlite3` for inspection) do not block the server; FULL: a committed record survives power loss, not just a crash.
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
    }
    return db;
  } catch (e) {
    db.close();
    if (e instanceof GateError) throw e;
    const code = sqliteCode(e);
    if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') throw new InventoryCorruptError(path, (e as Error).message, { cause: e });
    if (code !== undefined) throw new InventoryOpenError(path, (e as Error).message, { cause: e });
    throw e;
  }
}

/** Opens (creating if needed, including parent directories) the inventory at `path`; ':memory:' gives a private in-memory database. */
export function openSqliteInventory(path: string): Inventory {
  const db = openDatabase(path);
  let closed = false;

  const s = {
    pinGet: db.prepare<[string, string], { tags: string }>('SELECT tags FROM module_pin WHERE principal = ? AND module = ?'),
    pinInsert: db.prepare<[string, string, string]>('INSERT INTO module_pin (principal, module, tags) VALUES (?, ?, ?)'),
    pinUpdate: db.prepare<[string, string, string]>('UPDATE module_pin SET tags = ? WHERE principal = ? AND module = ?'),
    pinDelete: db.prepare<[string, string]>('DELETE FROM module_pin WHERE principal = ? AND module = ?'),
    pinList: db.prepare<[string], { module: string; tags: string }>('SELECT module, tags FROM module_pin WHERE principal = ? ORDER BY module'),
    referenced: db.prepare<[string, string, string], { x: number }>(
      `SELECT 1 AS x WHERE EXISTS (SELECT 1 FROM module_pin WHERE module = ?)
          OR EXISTS (SELECT 1 FROM instance WHERE module = ?)
          OR EXISTS (SELECT 1 FROM instance WHERE snapshot = ?)`,
    ),
    instCreate: db.prepare<InstanceParams>(
      `INSERT INTO instance (${INSTANCE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (principal, id) DO NOTHING`,
    ),
    instPut: db.prepare<InstanceParams>(
      `INSERT INTO instance (${INSTANCE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (principal, id) DO UPDATE SET
         module = excluded.module, transient = excluded.transient, state = excluded.state, cause = excluded.cause,
         result = excluded.result, error = excluded.error, tags = excluded.tags, entry_function = excluded.entry_function,
         snapshot = excluded.snapshot, running = excluded.running, debug_log = excluded.debug_log,
         created = excluded.created, updated = excluded.updated`,
    ),
    instGet: db.prepare<[string, string], InstanceRow>(`SELECT ${INSTANCE_COLUMNS} FROM instance WHERE principal = ? AND id = ?`),
    instList: db.prepare<[string], InstanceRow>(`SELECT ${INSTANCE_COLUMNS} FROM instance WHERE principal = ? ORDER BY created, id`),
    instDelete: db.prepare<[string, string]>('DELETE FROM instance WHERE principal = ? AND id = ?'),
    instPersistent: db.prepare<[], InstanceRow>(`SELECT ${INSTANCE_COLUMNS} FROM instance WHERE transient = 0 ORDER BY principal, created, id`),
    noncePurge: db.prepare<[number]>('DELETE FROM nonce WHERE expires < ?'),
    nonceInsert: db.prepare<[string, string, number]>('INSERT INTO nonce (key_id, nonce, expires) VALUES (?, ?, ?) ON CONFLICT (key_id, nonce) DO NOTHING'),
    sourcePut: db.prepare<[string, string]>(
      'INSERT INTO source_sha256 (uri, module) VALUES (?, ?) ON CONFLICT (uri) DO UPDATE SET module = excluded.module',
    ),
    sourceGet: db.prepare<[string], { module: string }>('SELECT module FROM source_sha256 WHERE uri = ?'),
  };

  const pin = db.transaction((principal: string, module: string, tags: string[]): { created: boolean } => {
    const row = s.pinGet.get(principal, module);
    if (row === undefined) {
      s.pinInsert.run(principal, module, JSON.stringify(tags));
      return { created: true };
    }
    if (shouldReplaceTags(parseTags(row.tags), tags)) s.pinUpdate.run(JSON.stringify(tags), principal, module);
    return { created: false };
  });

  const nonce = db.transaction((key: string, n: string, expires: number, now: number): boolean => {
    s.noncePurge.run(now);
    return s.nonceInsert.run(key, n, expires).changes === 1;
  });

  const open = (): void => {
    if (closed) throw new InventoryClosedError();
  };

  return {
    async pinModule(principal, module, tags) {
      open();
      checkModuleHash(module);
      checkTags(tags);
      return pin(principal, module, tags);
    },

    async unpinModule(principal, module) {
      open();
      return s.pinDelete.run(principal, module).changes > 0;
    },

    async getModule(principal, module) {
      open();
      const row = s.pinGet.get(principal, module);
      return row === undefined ? undefined : { module, tags: parseTags(row.tags) };
    },

    async listModules(principal) {
      open();
      return s.pinList.all(principal).map((r) => ({ module: r.module, tags: parseTags(r.tags) }));
    },

    async moduleReferenced(module) {
      open();
      return s.referenced.get(module, module, module) !== undefined;
    },

    async createInstance(rec) {
      open();
      checkRecord(rec);
      if (s.instCreate.run(...toParams(rec)).changes === 0) throw new DuplicateInstanceError(rec.principal, rec.id);
    },

    async putInstance(rec) {
      open();
      checkRecord(rec);
      s.instPut.run(...toParams(rec));
    },

    async getInstance(principal, id) {
      open();
      const row = s.instGet.get(principal, id);
      return row === undefined ? undefined : fromRow(row);
    },

    async listInstances(principal) {
      open();
      return s.instList.all(principal).map(fromRow);
    },

    async deleteInstance(principal, id) {
      open();
      return s.instDelete.run(principal, id).changes > 0;
    },

    async allPersistentInstances() {
      open();
      return s.instPersistent.all().map(fromRow);
    },

    async useNonce(key, n, expiresAtSec, nowSec = nowSeconds()) {
      open();
      return nonce(key, n, expiresAtSec, nowSec);
    },

    async recordSource(uri, module) {
      open();
      checkModuleHash(module);
      s.sourcePut.run(uri, module);
    },

    async lookupSource(uri) {
      open();
      return s.sourceGet.get(uri)?.module;
    },

    async close() {
      if (closed) return;
      closed = true;
      db.close();
    },
  };
}
