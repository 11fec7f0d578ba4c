/**
 * The server's inventory: who pinned which module, persistent instance
 * records, used token nonces and the source cache (spec web-api §13–§14).
 * Every method is async so that a networked database (PostgreSQL) can
 * implement the same interface; implementations must pass
 * test/store/conformance.ts.
 */
import { StoreInputError } from './errors.js';

export interface ModulePin {
  module: string; // lower-case sha256 hex
  tags: string[];
}

export interface StoredStatus {
  state: string;
  cause?: string;
  result?: number;
  error?: string;
}

export interface InstanceRecord {
  principal: string; // e.g. 'ed25519:<base64url>' or 'local'
  id: string; // UUID v4
  module: string; // sha256 hex of the program module it runs
  transient: boolean;
  status: StoredStatus; // last known status
  tags: string[];
  function?: string; // entry function it was launched with
  snapshot?: string; // sha256 hex of its latest snapshot blob, if any
  running: boolean; // was running when last saved: restore it running after a restart/crash
  debugLog?: boolean;
  created: number; // ms since epoch
  updated: number; // ms since epoch
}

export interface Inventory {
  /** web-api §13.1: the first pin stores `tags` (possibly empty); a later pin replaces them only if non-empty and different. */
  pinModule(principal: string, module: string, tags: string[]): Promise<{ created: boolean }>;
  /** Removes only this principal's pin; false if there was none. */
  unpinModule(principal: string, module: string): Promise<boolean>;
  getModule(principal: string, module: string): Promise<ModulePin | undefined>;
  /** Sorted by module. */
  listModules(principal: string): Promise<ModulePin[]>;
  /** Is the module referenced by anyone (a pin, an instance's module or an instance's snapshot)? For garbage collection of blobs. */
  moduleReferenced(module: string): Promise<boolean>;

  /** Throws DuplicateInstanceError (GATE_DUPLICATE_INSTANCE) if (principal, id) exists. */
  createInstance(rec: InstanceRecord): Promise<void>;
  /** Insert or replace. */
  putInstance(rec: InstanceRecord): Promise<void>;
  getInstance(principal: string, id: string): Promise<InstanceRecord | undefined>;
  /** Sorted by creation time, then id. */
  listInstances(principal: string): Promise<InstanceRecord[]>;
  deleteInstance(principal: string, id: string): Promise<boolean>;
  /** Every non-transient record of every principal (restore at startup), sorted by principal, creation time, id. */
  allPersistentInstances(): Promise<InstanceRecord[]>;

  /**
   * spec §4.1 step 7: records that `key` used `nonce` until `expiresAtSec`.
   * Returns false if that nonce is already recorded for the key and has not
   * expired (expiresAt < now means expired, matching the token's `exp` rule).
   * Purges expired rows.
   */
  useNonce(key: string, nonce: string, expiresAtSec: number, nowSec?: number): Promise<boolean>;

  /** Source cache (spec §8): URI → module hash; a later record for the same URI replaces it. */
  recordSource(uri: string, module: string): Promise<void>;
  lookupSource(uri: string): Promise<string | undefined>;

  /** Idempotent; later calls of other methods reject with InventoryClosedError. */
  close(): Promise<void>;
}

// --- helpers shared by the implementations -----------------------------------

const SHA256_HEX = /^[0-9a-f]{64}$/;

export function isSha256Hex(s: string): boolean {
  return SHA256_HEX.test(s);
}

/** Module hashes become file names and join keys: refuse anything else early. */
export function checkModuleHash(module: string, what = 'module'): void {
  if (typeof module !== 'string' || !SHA256_HEX.test(module)) {
    throw new StoreInputError(`${what} must be a lower-case sha256 hex string (64 characters), got ${JSON.stringify(String(module).slice(0, 80))}`);
  }
}

export function checkRecord(rec: InstanceRecord): void {
  if (typeof rec.principal !== 'string' || rec.principal === '') throw new StoreInputError('instance record needs a principal');
  if (typeof rec.id !== 'string' || rec.id === '') throw new StoreInputError('instance record needs an id');
  checkModuleHash(rec.module, 'instance module');
  if (rec.snapshot !== undefined) checkModuleHash(rec.snapshot, 'instance snapshot');
  if (typeof rec.status?.state !== 'string') throw new StoreInputError('instance record needs status.state');
  if (rec.status.result !== undefined && !Number.isSafeInteger(rec.status.result)) throw new StoreInputError('instance status.result must be an integer');
  if (!Array.isArray(rec.tags) || rec.tags.some((t) => typeof t !== 'string')) throw new StoreInputError('instance tags must be strings');
  if (!Number.isSafeInteger(rec.created) || !Number.isSafeInteger(rec.updated)) throw new StoreInputError('instance created/updated must be integer milliseconds');
}

export function checkTags(tags: string[]): void {
  if (!Array.isArray(tags) || tags.some((t) => typeof t !== 'string')) throw new StoreInputError('module tags must be strings');
}

/** web-api §13.1: replace only with a non-empty, different list (order matters: it is what the user gave). */
export function shouldReplaceTags(old: readonly string[], given: readonly string[]): boolean {
  return given.length > 0 && (given.length !== old.length || given.some((t, i) => t !== old[i]));
}

/** A copy with only the defined fields, so that both implementations return structurally equal records. */
export function normalizeRecord(rec: InstanceRecord): InstanceRecord {
  const status: StoredStatus = { state: rec.status.state };
  if (rec.status.cause !== undefined) status.cause = rec.status.cause;
  if (rec.status.result !== undefined) status.result = rec.status.result;
  if (rec.status.error !== undefined) status.error = rec.status.error;
  const out: InstanceRecord = {
    principal: rec.principal,
    id: rec.id,
    module: rec.module,
    transient: rec.transient,
    status,
    tags: [...rec.tags],
    running: rec.running,
    created: rec.created,
    updated: rec.updated,
  };
  if (rec.function !== undefined) out.function = rec.function;
  if (rec.snapshot !== undefined) out.snapshot = rec.snapshot;
  if (rec.debugLog !== undefined) out.debugLog = rec.debugLog;
  return out;
}

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
