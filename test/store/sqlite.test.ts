/**
 * The SQLite inventory: the conformance suite on real files in a temp dir,
 * plus what only a file-backed database has — reopening, WAL and schema
 * version, refusing corrupt/foreign/newer files, surviving SIGKILL.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { GateError } from '../../src/errors.js';
import { InventoryCorruptError, InventoryOpenError, InventoryTooNewError } from '../../src/store/errors.js';
import type { Inventory } from '../../src/store/inventory.js';
import { openSqliteInventory, SQLITE_SCHEMA_VERSION } from '../../src/store/sqlite.js';
import { inventoryConformance } from './conformance.js';

const TMP = mkdtempSync(join(tmpdir(), 'gate-store-sqlite-'));
after(() => rmSync(TMP, { recursive: true, force: true }));

let counter = 0;
const paths = new WeakMap<Inventory, string>();
function fresh(): string {
  return join(TMP, `db${counter++}`, 'inventory.sqlite');
}
function openAt(path: string): Inventory {
  const inv = openSqliteInventory(path);
  paths.set(inv, path);
  return inv;
}

inventoryConformance('sqlite (file)', async () => openAt(fresh()), {
  reopen: async (previous) => openAt(paths.get(previous)!),
});
inventoryConformance('sqlite (:memory:)', async () => openSqliteInventory(':memory:'));

const M = 'ab'.repeat(32);

function expectError(fn: () => unknown, cls: abstract new (...args: never[]) => GateError, code: string, mention: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
    assert.equal(e.code, code);
    assert.ok(e.message.includes(mention), `message should mention ${mention}: ${e.message}`);
    return true;
  });
}

describe('SQLite inventory file', () => {
  it('creates missing parent directories, uses WAL and records the schema version', async () => {
    const path = join(TMP, 'deep', 'er', 'inventory.sqlite');
    const inv = openSqliteInventory(path);
    await inv.pinModule('p', M, ['t']);
    assert.equal(statSync(join(TMP, 'deep', 'er')).mode & 0o777, 0o700);
    const raw = new Database(path, { readonly: true });
    try {
      assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
      assert.equal(raw.pragma('user_version', { simple: true }), SQLITE_SCHEMA_VERSION);
      // A second (reader) connection sees committed data while the server has it open.
      assert.deepEqual(raw.prepare('SELECT principal, module, tags FROM module_pin').all(), [{ principal: 'p', module: M, tags: '["t"]' }]);
    } finally {
      raw.close();
    }
    await inv.close();
  });

  it('reopening after close keeps the data and does not migrate again', async () => {
    const path = fresh();
    let inv = openSqliteInventory(path);
    await inv.pinModule('p', M, ['a']);
    await inv.close();
    for (let i = 0; i < 3; i++) {
      inv = openSqliteInventory(path);
      assert.deepEqual(await inv.listModules('p'), [{ module: M, tags: ['a'] }]);
      await inv.close();
    }
  });

  it('refuses a file that is not a database, with the path in the message, and leaves it alone', () => {
    const path = join(TMP, 'garbage.sqlite');
    const junk = Buffer.from('this is not an SQLite database, it is a text file that is long enough '.repeat(20));
    writeFileSync(path, junk);
    expectError(() => openSqliteInventory(path), InventoryCorruptError, 'GATE_INVENTORY_CORRUPT', path);
    assert.equal(statSync(path).size, junk.length);
  });

  it('refuses a damaged database header', () => {
    const path = fresh();
    mkdirSync(join(path, '..'), { recursive: true });
    const db = new Database(path);
    db.exec('CREATE TABLE t (x)');
    db.close();
    writeFileSync(path, Buffer.alloc(4096, 0xff));
    expectError(() => openSqliteInventory(path), InventoryCorruptError, 'GATE_INVENTORY_CORRUPT', path);
  });

  it('refuses another application’s SQLite database', () => {
    const path = join(TMP, 'foreign.sqlite');
    const db = new Database(path);
    db.exec('CREATE TABLE accounts (id INTEGER PRIMARY KEY)');
    db.close();
    expectError(() => openSqliteInventory(path), InventoryCorruptError, 'GATE_INVENTORY_CORRUPT', 'no Gate schema version');
    const check = new Database(path);
    assert.equal(check.pragma('user_version', { simple: true }), 0, 'nothing was migrated');
    check.close();
  });

  it('refuses a database from a newer schema and does not touch it', async () => {
    const path = fresh();
    await openSqliteInventory(path).close();
    const db = new Database(path);
    db.pragma(`user_version = ${SQLITE_SCHEMA_VERSION + 7}`);
    db.close();
    expectError(() => openSqliteInventory(path), InventoryTooNewError, 'GATE_INVENTORY_TOO_NEW', `schema version ${SQLITE_SCHEMA_VERSION + 7}`);
    const check = new Database(path);
    assert.equal(check.pragma('user_version', { simple: true }), SQLITE_SCHEMA_VERSION + 7);
    check.close();
  });

  it('reports a path that cannot be opened (a directory) as InventoryOpenError', () => {
    const path = join(TMP, 'a-directory');
    mkdirSync(path);
    expectError(() => openSqliteInventory(path), InventoryOpenError, 'GATE_INVENTORY_OPEN', path);
  });

  it('keeps committed writes when the process is killed without closing', async () => {
    const path = fresh();
    const sqliteJs = new URL('../../src/store/sqlite.js', import.meta.url).href;
    const script = `
      const { openSqliteInventory } = await import(${JSON.stringify(sqliteJs)});
      const inv = openSqliteInventory(${JSON.stringify(path)});
      await inv.pinModule('p', ${JSON.stringify(M)}, ['before-kill']);
      await inv.putInstance({ principal: 'p', id: '0f2b7c1e-3a4d-4e5f-8a6b-7c8d9e0f1a2b', module: ${JSON.stringify(M)}, transient: false,
        status: { state: 'RUNNING' }, tags: [], running: true, created: 1, updated: 2 });
      process.kill(process.pid, 'SIGKILL');`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
    assert.equal(signal, 'SIGKILL', stderr);
    const inv = openSqliteInventory(path);
    assert.deepEqual(await inv.getModule('p', M), { module: M, tags: ['before-kill'] });
    const restored = await inv.allPersistentInstances();
    assert.equal(restored.length, 1);
    assert.equal(restored[0]?.running, true);
    await inv.close();
  });
});
