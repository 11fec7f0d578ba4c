/**
 * In-memory inventory: for tests, anonymous-only servers and `--no-state`
 * runs. Same behaviour as the SQLite one (test/store/conformance.ts); records
 * are copied in and out so callers cannot mutate stored state by accident.
 */
import { DuplicateInstanceError, InventoryClosedError } from './errors.js';
import {
  checkModuleHash,
  checkRecord,
  checkTags,
  normalizeRecord,
  nowSeconds,
  shouldReplaceTags,
  type InstanceRecord,
  type Inventory,
  type ModulePin,
} from './inventory.js';

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function byCreatedThenId(a: InstanceRecord, b: InstanceRecord): number {
  return a.created - b.created || cmp(a.id, b.id);
}

export function memoryInventory(): Inventory {
  // principal → module → tags
  const pins = new Map<string, Map<string, string[]>>();
  // principal → id → record
  const instances = new Map<string, Map<string, InstanceRecord>>();
  // key → nonce → expiresAtSec
  const nonces = new Map<string, Map<string, number>>();
  const sources = new Map<string, string>();
  let closed = false;

  const open = (): void => {
    if (closed) throw new InventoryClosedError();
  };
  const sub = <V>(m: Map<string, Map<string, V>>, k: string): Map<string, V> => {
    let s = m.get(k);
    if (s === undefined) m.set(k, (s = new Map()));
    return s;
  };

  return {
    async pinModule(principal, module, tags) {
      open();
      checkModuleHash(module);
      checkTags(tags);
      const mine = sub(pins, principal);
      const old = mine.get(module);
      if (old === undefined) {
        mine.set(module, [...tags]);
        return { created: true };
      }
      if (shouldReplaceTags(old, tags)) mine.set(module, [...tags]);
      return { created: false };
    },

    async unpinModule(principal, module) {
      open();
      const mine = pins.get(principal);
      return mine?.delete(module) ?? false;
    },

    async getModule(principal, module) {
      open();
      const tags = pins.get(principal)?.get(module);
      return tags === undefined ? undefined : { module, tags: [...tags] };
    },

    async listModules(principal) {
      open();
      const out: ModulePin[] = [];
      for (const [module, tags] of pins.get(principal) ?? []) out.push({ module, tags: [...tags] });
      return out.sort((a, b) => cmp(a.module, b.module));
    },

    async moduleReferenced(module) {
      open();
      for (const mine of pins.values()) if (mine.has(module)) return true;
      for (const mine of instances.values()) {
        for (const rec of mine.values()) if (rec.module === module || rec.snapshot === module) return true;
      }
      return false;
    },

    async createInstance(rec) {
      open();
      checkRecord(rec);
      const mine = sub(instances, rec.principal);
      if (mine.has(rec.id)) throw new DuplicateInstanceError(rec.principal, rec.id);
      mine.set(rec.id, normalizeRecord(rec));
    },

    async putInstance(rec) {
      open();
      checkRecord(rec);
      sub(instances, rec.principal).set(rec.id, normalizeRecord(rec));
    },

    async getInstance(principal, id) {
      open();
      const rec = instances.get(principal)?.get(id);
      return rec === undefined ? undefined : normalizeRecord(rec);
    },

    async listInstances(principal) {
      open();
      return [...(instances.get(principal)?.values() ?? [])].map(normalizeRecord).sort(byCreatedThenId);
    },

    async deleteInstance(principal, id) {
      open();
      return instances.get(principal)?.delete(id) ?? false;
    },

    async allPersistentInstances() {
      open();
      const out: InstanceRecord[] = [];
      for (const mine of instances.values()) for (const rec of mine.values()) if (!rec.transient) out.push(normalizeRecord(rec));
      return out.sort((a, b) => cmp(a.principal, b.principal) || byCreatedThenId(a, b));
    },

    async useNonce(key, nonce, expiresAtSec, nowSec = nowSeconds()) {
      open();
      for (const [k, m] of nonces) {
        for (const [n, exp] of m) if (exp < nowSec) m.delete(n);
        if (m.size === 0) nonces.delete(k);
      }
      const mine = sub(nonces, key);
      if (mine.has(nonce)) return false;
      mine.set(nonce, expiresAtSec);
      return true;
    },

    async recordSource(uri, module) {
      open();
      checkModuleHash(module);
      sources.set(uri, module);
    },

    async lookupSource(uri) {
      open();
      return sources.get(uri);
    },

    async close() {
      closed = true;
      pins.clear();
      instances.clear();
      nonces.clear();
      sources.clear();
    },
  };
}
