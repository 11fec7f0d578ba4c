/**
 * The one behavioural suite every Inventory implementation must pass
 * (memory, SQLite, later PostgreSQL): call inventoryConformance from the
 * implementation's test file. `open` must return a fresh, empty inventory;
 * `reopen`, where the implementation persists, closes nothing itself and
 * opens the same storage again after the suite closed `previous`.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { DuplicateInstanceError, InventoryClosedError, StoreInputError } from '../../src/store/errors.js';
import type { InstanceRecord, Inventory } from '../../src/store/inventory.js';

export interface ConformanceOptions {
  reopen?: (previous: Inventory) => Promise<Inventory>;
}

const M1 = '1'.repeat(64);
const M2 = '2'.repeat(64);
const M3 = 'a'.repeat(63) + 'f';
const S1 = 'c'.repeat(64);
const ALICE = 'ed25519:' + 'A'.repeat(43);
const BOB = 'ed25519:' + 'B'.repeat(42) + '_';
const ID1 = '0f2b7c1e-3a4d-4e5f-8a6b-7c8d9e0f1a2b';
const ID2 = '1a2b3c4d-5e6f-4a7b-9c8d-0e1f2a3b4c5d';
const ID3 = 'ffffffff-ffff-4fff-bfff-ffffffffffff';

function record(over: Partial<InstanceRecord> = {}): InstanceRecord {
  return {
    principal: ALICE,
    id: ID1,
    module: M1,
    transient: false,
    status: { state: 'SUSPENDED' },
    tags: [],
    running: false,
    created: 1_700_000_000_000,
    updated: 1_700_000_000_000,
    ...over,
  };
}

/** Every field set, including falsy optional values that must not be dropped. */
function fullRecord(over: Partial<InstanceRecord> = {}): InstanceRecord {
  return record({
    transient: true,
    status: { state: 'TERMINATED', cause: 'ABI_VIOLATION', result: -2147483648, error: 'bad fd: "x" ✓' },
    tags: ['b', 'a', 'b', '', 'ü 🙂'],
    function: 'main',
    snapshot: S1,
    running: true,
    debugLog: false,
    created: 1_700_000_000_123,
    updated: 1_800_000_000_456,
    ...over,
  });
}

async function rejectsWith(p: Promise<unknown>, cls: abstract new (...args: never[]) => Error, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
    assert.equal((e as Error & { code: string }).code, code);
    return true;
  });
}

export function inventoryConformance(name: string, open: () => Promise<Inventory>, options: ConformanceOptions = {}): void {
  describe(`Inventory conformance: ${name}`, () => {
    let inv: Inventory;
    beforeEach(async () => {
      inv = await open();
    });
    afterEach(async () => {
      await inv.close();
    });

    describe('module pins', () => {
      it('first pin creates with the given tags; later pins do not create', async () => {
        assert.deepEqual(await inv.pinModule(ALICE, M1, ['x', 'y']), { created: true });
        assert.deepEqual(await inv.getModule(ALICE, M1), { module: M1, tags: ['x', 'y'] });
        assert.deepEqual(await inv.pinModule(ALICE, M1, ['x', 'y']), { created: false });
        assert.deepEqual(await inv.pinModule(ALICE, M2, []), { created: true });
        assert.deepEqual(await inv.getModule(ALICE, M2), { module: M2, tags: [] });
      });

      it('tag rules (§13.1): empty never clears, equal is a no-op, non-empty different replaces', async () => {
        await inv.pinModule(ALICE, M1, ['a', 'b']);
        await inv.pinModule(ALICE, M1, []);
        assert.deepEqual((await inv.getModule(ALICE, M1))?.tags, ['a', 'b']);
        await inv.pinModule(ALICE, M1, ['c']);
        assert.deepEqual((await inv.getModule(ALICE, M1))?.tags, ['c']);
        await inv.pinModule(ALICE, M1, ['c', 'c']); // duplicates are kept as given
        assert.deepEqual((await inv.getModule(ALICE, M1))?.tags, ['c', 'c']);
        await inv.pinModule(ALICE, M1, ['d', 'e']);
        await inv.pinModule(ALICE, M1, ['e', 'd']); // order is part of the list
        assert.deepEqual((await inv.getModule(ALICE, M1))?.tags, ['e', 'd']);
        await inv.pinModule(ALICE, M2, []);
        await inv.pinModule(ALICE, M2, ['first']);
        assert.deepEqual((await inv.getModule(ALICE, M2))?.tags, ['first']);
      });

      it('keeps arbitrary tag strings intact', async () => {
        const tags = ['', ' spaced ', 'quote"\'\\', 'ünï 🙂', '["json"]', 'x'.repeat(1000)];
        await inv.pinModule(ALICE, M1, tags);
        assert.deepEqual((await inv.getModule(ALICE, M1))?.tags, tags);
      });

      it('unpin removes only the pin and reports whether there was one', async () => {
        assert.equal(await inv.unpinModule(ALICE, M1), false);
        await inv.pinModule(ALICE, M1, ['t']);
        assert.equal(await inv.unpinModule(ALICE, M1), true);
        assert.equal(await inv.getModule(ALICE, M1), undefined);
        assert.equal(await inv.unpinModule(ALICE, M1), false);
        // A pin after unpin is a first pin again.
        assert.deepEqual(await inv.pinModule(ALICE, M1, []), { created: true });
        assert.deepEqual((await inv.getModule(ALICE, M1))?.tags, []);
      });

      it('lists sorted by module, empty for an unknown principal', async () => {
        assert.deepEqual(await inv.listModules(ALICE), []);
        await inv.pinModule(ALICE, M3, ['3']);
        await inv.pinModule(ALICE, M1, []);
        await inv.pinModule(ALICE, M2, ['2']);
        assert.deepEqual(await inv.listModules(ALICE), [
          { module: M1, tags: [] },
          { module: M2, tags: ['2'] },
          { module: M3, tags: ['3'] },
        ]);
        assert.deepEqual(await inv.listModules('nobody'), []);
      });

      it('isolates principals', async () => {
        await inv.pinModule(ALICE, M1, ['alice']);
        assert.equal(await inv.getModule(BOB, M1), undefined);
        assert.deepEqual(await inv.listModules(BOB), []);
        assert.deepEqual(await inv.pinModule(BOB, M1, ['bob']), { created: true });
        assert.deepEqual((await inv.getModule(ALICE, M1))?.tags, ['alice']);
        assert.equal(await inv.unpinModule(BOB, M1), true);
        assert.deepEqual(await inv.getModule(ALICE, M1), { module: M1, tags: ['alice'] });
      });

      it('returns copies: mutating inputs or results does not change stored tags', async () => {
        const tags = ['a'];
        await inv.pinModule(ALICE, M1, tags);
        tags.push('mutated');
        const got = await inv.getModule(ALICE, M1);
        got?.tags.push('mutated');
        (await inv.listModules(ALICE))[0]?.tags.push('mutated');
        assert.deepEqual((await inv.getModule(ALICE, M1))?.tags, ['a']);
      });

      it('refuses a module that is not lower-case sha256 hex', async () => {
        for (const bad of ['', 'abc', M3.toUpperCase(), M1 + '0', '../' + M1.slice(3), 'g'.repeat(64)]) {
          await rejectsWith(inv.pinModule(ALICE, bad, []), StoreInputError, 'GATE_STORE_INVALID_INPUT');
        }
        assert.deepEqual(await inv.listModules(ALICE), []);
      });

      it('moduleReferenced sees pins, instance modules and snapshots of any principal', async () => {
        assert.equal(await inv.moduleReferenced(M1), false);
        await inv.pinModule(BOB, M1, []);
        assert.equal(await inv.moduleReferenced(M1), true);
        await inv.unpinModule(BOB, M1);
        assert.equal(await inv.moduleReferenced(M1), false);

        await inv.createInstance(record({ principal: BOB, module: M2, snapshot: S1 }));
        assert.equal(await inv.moduleReferenced(M2), true);
        assert.equal(await inv.moduleReferenced(S1), true);
        assert.equal(await inv.moduleReferenced(M1), false);
        // Replacing the record drops the old snapshot reference.
        await inv.putInstance(record({ principal: BOB, module: M2 }));
        assert.equal(await inv.moduleReferenced(S1), false);
        await inv.deleteInstance(BOB, ID1);
        assert.equal(await inv.moduleReferenced(M2), false);
      });
    });

    describe('instances', () => {
      it('round-trips a record with every field, and one with none of the optional ones', async () => {
        const full = fullRecord();
        await inv.createInstance(full);
        assert.deepStrictEqual(await inv.getInstance(ALICE, ID1), full);
        const min = record({ id: ID2 });
        await inv.createInstance(min);
        const got = await inv.getInstance(ALICE, ID2);
        assert.deepStrictEqual(got, min); // strict: absent optional fields stay absent, not undefined/null
        for (const k of ['function', 'snapshot', 'debugLog'] as const) assert.ok(!(k in got!), `${k} should be absent`);
        for (const k of ['cause', 'result', 'error'] as const) assert.ok(!(k in got!.status), `status.${k} should be absent`);
      });

      it('keeps status.result 0 and debugLog true', async () => {
        const rec = record({ status: { state: 'TERMINATED', result: 0 }, debugLog: true });
        await inv.createInstance(rec);
        assert.deepStrictEqual(await inv.getInstance(ALICE, ID1), rec);
      });

      it('createInstance refuses a duplicate (principal, id) and keeps the original', async () => {
        const first = record({ tags: ['first'] });
        await inv.createInstance(first);
        await rejectsWith(inv.createInstance(record({ tags: ['second'] })), DuplicateInstanceError, 'GATE_DUPLICATE_INSTANCE');
        assert.deepStrictEqual(await inv.getInstance(ALICE, ID1), first);
        // The same id under another principal is a different instance.
        await inv.createInstance(record({ principal: BOB, tags: ['bob'] }));
        assert.deepEqual((await inv.getInstance(BOB, ID1))?.tags, ['bob']);
        assert.deepEqual((await inv.getInstance(ALICE, ID1))?.tags, ['first']);
      });

      it('concurrent creates of one id: exactly one wins', async () => {
        const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => inv.createInstance(record({ tags: [String(i)] }))));
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
        for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof DuplicateInstanceError);
        assert.equal((await inv.listInstances(ALICE)).length, 1);
      });

      it('putInstance inserts and replaces every field (clearing optional ones)', async () => {
        await inv.putInstance(fullRecord());
        assert.deepStrictEqual(await inv.getInstance(ALICE, ID1), fullRecord());
        const replaced = record({ module: M2, status: { state: 'HALTED' }, tags: ['new'], updated: 1_900_000_000_000 });
        await inv.putInstance(replaced);
        assert.deepStrictEqual(await inv.getInstance(ALICE, ID1), replaced);
        assert.equal((await inv.listInstances(ALICE)).length, 1);
      });

      it('lists a principal’s instances sorted by creation time then id, isolated from others', async () => {
        await inv.createInstance(record({ id: ID3, created: 5 }));
        await inv.createInstance(record({ id: ID2, created: 1 }));
        await inv.createInstance(record({ id: ID1, created: 5 }));
        await inv.createInstance(record({ principal: BOB, id: ID1, created: 0 }));
        assert.deepEqual(
          (await inv.listInstances(ALICE)).map((r) => r.id),
          [ID2, ID1, ID3],
        );
        assert.deepEqual(
          (await inv.listInstances(BOB)).map((r) => [r.principal, r.id]),
          [[BOB, ID1]],
        );
        assert.deepEqual(await inv.listInstances('nobody'), []);
        assert.equal(await inv.getInstance(BOB, ID2), undefined);
      });

      it('deleteInstance reports whether it removed something and touches only that principal', async () => {
        await inv.createInstance(record());
        await inv.createInstance(record({ principal: BOB }));
        assert.equal(await inv.deleteInstance(ALICE, ID2), false);
        assert.equal(await inv.deleteInstance(ALICE, ID1), true);
        assert.equal(await inv.getInstance(ALICE, ID1), undefined);
        assert.equal(await inv.deleteInstance(ALICE, ID1), false);
        assert.ok(await inv.getInstance(BOB, ID1));
        // The id is free again.
        await inv.createInstance(record());
      });

      it('allPersistentInstances returns non-transient records of every principal', async () => {
        await inv.createInstance(record({ principal: BOB, id: ID1, created: 2 }));
        await inv.createInstance(record({ principal: ALICE, id: ID2, created: 9, running: true }));
        await inv.createInstance(record({ principal: ALICE, id: ID3, transient: true }));
        await inv.createInstance(record({ principal: ALICE, id: ID1, created: 3 }));
        const all = await inv.allPersistentInstances();
        assert.deepEqual(
          all.map((r) => [r.principal, r.id]),
          [
            [ALICE, ID1],
            [ALICE, ID2],
            [BOB, ID1],
          ],
        );
        assert.equal(all[1]?.running, true);
      });

      it('returns copies: mutating inputs or results does not change stored records', async () => {
        const rec = fullRecord();
        await inv.createInstance(rec);
        rec.tags.push('mutated');
        rec.status.state = 'MUTATED';
        const got = (await inv.getInstance(ALICE, ID1))!;
        got.tags.push('mutated');
        got.status.state = 'MUTATED';
        (await inv.listInstances(ALICE))[0]!.status.state = 'MUTATED';
        (await inv.allPersistentInstances()).forEach((r) => r.tags.push('mutated'));
        assert.deepStrictEqual(await inv.getInstance(ALICE, ID1), fullRecord());
      });

      it('refuses records with a malformed module or snapshot hash', async () => {
        await rejectsWith(inv.createInstance(record({ module: 'nothex' })), StoreInputError, 'GATE_STORE_INVALID_INPUT');
        await rejectsWith(inv.putInstance(record({ snapshot: S1.toUpperCase() })), StoreInputError, 'GATE_STORE_INVALID_INPUT');
        assert.deepEqual(await inv.listInstances(ALICE), []);
      });
    });

    describe('nonces', () => {
      it('a nonce is usable once per key until it expires', async () => {
        assert.equal(await inv.useNonce('k1', 'n', 100, 50), true);
        assert.equal(await inv.useNonce('k1', 'n', 100, 60), false);
        assert.equal(await inv.useNonce('k1', 'n', 200, 100), false, 'still valid at its expiry second');
        assert.equal(await inv.useNonce('k2', 'n', 100, 60), true, 'nonces are per key');
        assert.equal(await inv.useNonce('k1', 'm', 100, 60), true);
        assert.equal(await inv.useNonce('k1', 'n', 300, 101), true, 'expired rows are purged and the nonce is usable again');
        assert.equal(await inv.useNonce('k1', 'n', 300, 102), false);
      });

      it('purges expired nonces of other keys too', async () => {
        assert.equal(await inv.useNonce('k1', 'a', 10, 0), true);
        assert.equal(await inv.useNonce('k2', 'b', 10, 0), true);
        // A check on k3 at t=11 purges k1/k2's rows; both nonces work again afterwards even if now goes back.
        assert.equal(await inv.useNonce('k3', 'c', 20, 11), true);
        assert.equal(await inv.useNonce('k1', 'a', 30, 5), true);
        assert.equal(await inv.useNonce('k2', 'b', 30, 5), true);
      });

      it('uses the current time by default', async () => {
        const now = Math.floor(Date.now() / 1000);
        assert.equal(await inv.useNonce('k', 'fresh', now + 60), true);
        assert.equal(await inv.useNonce('k', 'fresh', now + 60), false);
        assert.equal(await inv.useNonce('k', 'stale', now - 60), true);
        assert.equal(await inv.useNonce('k', 'stale', now - 60), true, 'an already-expired row does not block');
      });

      it('keeps keys and nonces as opaque strings', async () => {
        const key = 'ed25519:' + '-_'.repeat(20) + 'xyz';
        for (const n of ['', ' ', 'ü🙂', "'; DROP TABLE nonce; --"]) {
          assert.equal(await inv.useNonce(key, n, 100, 0), true);
          assert.equal(await inv.useNonce(key, n, 100, 0), false);
        }
      });
    });

    describe('source cache', () => {
      it('records, looks up and replaces URI → module', async () => {
        assert.equal(await inv.lookupSource('/ipfs/Qm1'), undefined);
        await inv.recordSource('/ipfs/Qm1', M1);
        await inv.recordSource('/http/example/x.wasm', M2);
        assert.equal(await inv.lookupSource('/ipfs/Qm1'), M1);
        assert.equal(await inv.lookupSource('/http/example/x.wasm'), M2);
        await inv.recordSource('/ipfs/Qm1', M3);
        assert.equal(await inv.lookupSource('/ipfs/Qm1'), M3);
        assert.equal(await inv.lookupSource('/ipfs/qm1'), undefined, 'URIs are case-sensitive');
      });

      it('refuses a malformed module hash', async () => {
        await rejectsWith(inv.recordSource('/ipfs/Qm1', 'x'), StoreInputError, 'GATE_STORE_INVALID_INPUT');
        assert.equal(await inv.lookupSource('/ipfs/Qm1'), undefined);
      });
    });

    describe('close', () => {
      it('is idempotent and makes every method reject with InventoryClosedError', async () => {
        await inv.close();
        await inv.close();
        const calls: (() => Promise<unknown>)[] = [
          () => inv.pinModule(ALICE, M1, []),
          () => inv.unpinModule(ALICE, M1),
          () => inv.getModule(ALICE, M1),
          () => inv.listModules(ALICE),
          () => inv.moduleReferenced(M1),
          () => inv.createInstance(record()),
          () => inv.putInstance(record()),
          () => inv.getInstance(ALICE, ID1),
          () => inv.listInstances(ALICE),
          () => inv.deleteInstance(ALICE, ID1),
          () => inv.allPersistentInstances(),
          () => inv.useNonce('k', 'n', 1, 0),
          () => inv.recordSource('/x', M1),
          () => inv.lookupSource('/x'),
        ];
        for (const call of calls) await rejectsWith(call(), InventoryClosedError, 'GATE_INVENTORY_CLOSED');
      });
    });

    const reopen = options.reopen;
    if (reopen !== undefined) {
      describe('persistence', () => {
        it('keeps pins, instances, nonces and sources across close and reopen', async () => {
          await inv.pinModule(ALICE, M1, ['kept']);
          await inv.pinModule(BOB, M2, []);
          await inv.createInstance(fullRecord());
          await inv.createInstance(record({ principal: BOB, id: ID2 }));
          await inv.deleteInstance(BOB, ID2);
          await inv.useNonce('k', 'n', 100, 0);
          await inv.recordSource('/ipfs/Qm1', M1);
          await inv.close();
          const previous = inv;
          inv = await reopen(previous);
          assert.deepEqual(await inv.listModules(ALICE), [{ module: M1, tags: ['kept'] }]);
          assert.deepEqual(await inv.listModules(BOB), [{ module: M2, tags: [] }]);
          assert.deepStrictEqual(await inv.getInstance(ALICE, ID1), fullRecord());
          assert.equal(await inv.getInstance(BOB, ID2), undefined);
          assert.equal(await inv.useNonce('k', 'n', 100, 1), false);
          assert.equal(await inv.lookupSource('/ipfs/Qm1'), M1);
          // Tag rules continue from the stored list.
          await inv.pinModule(ALICE, M1, []);
          assert.deepEqual((await inv.getModule(ALICE, M1))?.tags, ['kept']);
          await rejectsWith(inv.createInstance(fullRecord()), DuplicateInstanceError, 'GATE_DUPLICATE_INSTANCE');
        });
      });
    }
  });
}
