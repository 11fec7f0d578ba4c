export * from './errors.js';
export type { Inventory, InstanceRecord, ModulePin, StoredStatus } from './inventory.js';
export { memoryInventory } from './memory.js';
export { openSqliteInventory, SQLITE_SCHEMA_VERSION } from './sqlite.js';
export { describePostgresDsn, openPostgresInventory, POSTGRES_SCHEMA_VERSION, type PostgresInventoryOptions } from './postgres.js';
export { BlobStore, type BlobNaming } from './blobs.js';
export { defaultStateDir, openStateDir, type StateDir } from './state-dir.js';
