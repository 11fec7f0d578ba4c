/**
 * BlobStore on real files: round trips, atomic replacement, leftovers of
 * interrupted writes, verified puts, streaming, and name validation for both
 * naming rules.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { BlobStore } from '../../src/store/blobs.js';
import { BlobHashMismatchError, InvalidBlobNameError } from '../../src/store/errors.js';

const TMP = mkdtempSync(join(tmpdir(), 'gate-store-blobs-'));
after(() => rmSync(TMP, { recursive: true, force: true }));
let n = 0;
const freshDir = (): string => join(TMP, `d${n++}`, 'blobs');

const sha = (...parts: Uint8Array[]): string => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
};
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

function assertCode(code: string): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.equal((e as { code?: unknown }).code, code, String(e));
    return true;
  };
}

describe('BlobStore', () => {
  it('puts (joining the parts), gets, sizes, lists and deletes', async () => {
    const store = new BlobStore(freshDir());
    assert.deepEqual(await store.list(), [], 'a missing directory lists as empty');
    const parts = [bytes('hello, '), new Uint8Array(0), bytes('world')];
    const name = sha(...parts);
    await store.put(name, parts);
    assert.deepEqual(Buffer.from((await store.get(name))!), Buffer.from('hello, world'));
    assert.equal(await store.has(name), true);
    assert.equal(await store.size(name), 12);
    const other = sha(bytes(''));
    await store.put(other, []);
    assert.equal(await store.size(other), 0);
    assert.deepEqual(await store.list(), [name, other].sort());
    await store.delete(name);
    assert.equal(await store.get(name), undefined);
    assert.equal(await store.has(name), false);
    assert.equal(await store.size(name), undefined);
    await store.delete(name); // deleting a missing blob is fine
    assert.deepEqual(await store.list(), [other]);
  });

  it('creates its directory 0700 and blob files 0600, leaving no temporaries', async () => {
    const dir = freshDir();
    const store = new BlobStore(dir);
    const name = sha(bytes('x'));
    await store.put(name, [bytes('x')]);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(statSync(join(dir, name)).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(dir), [name]);
  });

  it('replaces an existing blob atomically; a reader holding the old file still reads it whole', async () => {
    const store = new BlobStore(freshDir(), 'safe');
    const old = Buffer.alloc(256 * 1024, 1);
    await store.put('snap', [old]);
    const stream = store.createReadStream('snap')!;
    await store.put('snap', [bytes('new')]);
    assert.deepEqual(await readAll(stream), old);
    assert.deepEqual(Buffer.from((await store.get('snap'))!), Buffer.from('new'));
    assert.deepEqual(readdirSync(store.dir), ['snap']);
  });

  it('concurrent puts of one name leave one complete version', async () => {
    const store = new BlobStore(freshDir(), 'safe');
    const versions = Array.from({ length: 6 }, (_, i) => Buffer.alloc(64 * 1024 + i, i + 1));
    await Promise.all(versions.map((v) => store.put('same', [v.subarray(0, 1000), v.subarray(1000)])));
    const got = Buffer.from((await store.get('same'))!);
    assert.ok(versions.some((v) => v.equals(got)), 'content is exactly one of the written versions');
    assert.deepEqual(readdirSync(store.dir), ['same']);
  });

  it('a failed write leaves neither the final name nor a temporary', async () => {
    const store = new BlobStore(freshDir(), 'safe');
    await store.put('keep', [bytes('kept')]);
    // Not a buffer: the write fails after the first part went to the temporary.
    const bad = [bytes('partial'), { byteLength: 10 } as unknown as Uint8Array];
    await assert.rejects(store.put('broken', bad));
    await assert.rejects(store.put('keep', bad));
    assert.deepEqual(readdirSync(store.dir), ['keep']);
    assert.deepEqual(Buffer.from((await store.get('keep'))!), Buffer.from('kept'), 'the old version survives a failed replacement');
  });

  it('cleanTemp with a minimum age spares younger temporaries (writes in progress elsewhere)', async () => {
    const dir = freshDir();
    const store = new BlobStore(dir);
    const name = sha(bytes('abc'));
    await store.put(name, [bytes('abc')]);
    writeFileSync(join(dir, '.tmp-old'), 'left by a crash');
    writeFileSync(join(dir, '.tmp-new'), 'being written');
    const hourAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
    utimesSync(join(dir, '.tmp-old'), hourAgo, hourAgo);
    assert.equal(await store.cleanTemp(60 * 60 * 1000), 1);
    assert.deepEqual(readdirSync(dir).sort(), ['.tmp-new', name].sort());
  });

  it('ignores a temporary left by a crash and cleanTemp removes it', async () => {
    const dir = freshDir();
    const store = new BlobStore(dir);
    const name = sha(bytes('whole'));
    await store.put(name, [bytes('whole')]);
    writeFileSync(join(dir, '.tmp-0123456789abcdef'), 'half a modu');
    writeFileSync(join(dir, 'README'), 'not a blob'); // foreign files are not blobs either
    assert.deepEqual(await store.list(), [name]);
    assert.equal(await store.cleanTemp(), 1);
    assert.deepEqual(readdirSync(dir).sort(), ['README', name].sort());
    assert.equal(await new BlobStore(join(TMP, 'nowhere')).cleanTemp(), 0);
  });

  it('putVerified stores content under its sha256 and refuses a mismatch', async () => {
    const store = new BlobStore(freshDir());
    const parts = [bytes('(module)'), bytes(' ;; wasm')];
    const hash = sha(...parts);
    await store.putVerified(hash, parts);
    assert.equal(await store.size(hash), 16);

    const wrong = sha(bytes('something else'));
    await assert.rejects(store.putVerified(wrong, parts), (e: unknown) => {
      assert.ok(e instanceof BlobHashMismatchError);
      assert.equal(e.code, 'GATE_BLOB_HASH_MISMATCH');
      assert.ok(e.message.includes(hash) && e.message.includes(wrong), e.message);
      return true;
    });
    assert.equal(await store.has(wrong), false);
    assert.deepEqual(readdirSync(store.dir), [hash]);

    // A snapshot store can hold verified content too, but only under a hash name.
    const snaps = new BlobStore(freshDir(), 'safe');
    await snaps.putVerified(hash, parts);
    await assert.rejects(snaps.putVerified('snap', parts), assertCode('GATE_INVALID_BLOB_NAME'));
  });

  it('streams large blobs and returns undefined for a missing one', async () => {
    const store = new BlobStore(freshDir());
    const big = Buffer.alloc(3 * 1024 * 1024 + 7);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    const name = sha(big);
    await store.put(name, [big.subarray(0, 1 << 20), big.subarray(1 << 20)]);
    assert.ok((await readAll(store.createReadStream(name)!)).equals(big));
    assert.equal(store.createReadStream(sha(bytes('absent'))), undefined);
  });

  describe('names', () => {
    const hex = 'ab'.repeat(32);
    const badModuleNames = ['', 'abc', hex.toUpperCase(), hex + '0', hex.slice(1), '../' + hex.slice(3), 'g'.repeat(64), `${hex.slice(1)}/`, '.tmp-x'];
    const badSnapshotNames = ['', '.', '..', '../x', 'a/b', 'a\\b', '/abs', '.hidden', 'a..b', 'x\0y', 'sp ace', 'x'.repeat(201), 'new\nline', '.tmp-1'];
    const goodSnapshotNames = ['snap', hex, 'ed25519:AbC-_09.0f2b7c1e-3a4d-4e5f-8a6b-7c8d9e0f1a2b', 'local.x=1', 'x'.repeat(200), 'a.b'];

    for (const [naming, bad] of [
      ['sha256', badModuleNames],
      ['safe', badSnapshotNames],
    ] as const) {
      it(`${naming} store refuses bad names in every method`, async () => {
        const store = new BlobStore(freshDir(), naming);
        for (const name of bad) {
          const isBad = assertCode('GATE_INVALID_BLOB_NAME');
          await assert.rejects(store.put(name, [bytes('x')]), isBad, JSON.stringify(name));
          await assert.rejects(store.get(name), isBad);
          await assert.rejects(store.has(name), isBad);
          await assert.rejects(store.size(name), isBad);
          await assert.rejects(store.delete(name), isBad);
          assert.throws(() => store.createReadStream(name), (e: unknown) => e instanceof InvalidBlobNameError);
          assert.equal(store.isValidName(name), false);
        }
        assert.equal(existsSync(store.dir), false, 'nothing was written anywhere');
      });
    }

    it('safe store accepts principal.uuid-like names', async () => {
      const store = new BlobStore(freshDir(), 'safe');
      for (const name of goodSnapshotNames) await store.put(name, [bytes(name)]);
      assert.deepEqual(await store.list(), [...goodSnapshotNames].sort());
      for (const name of goodSnapshotNames) assert.equal(Buffer.from((await store.get(name))!).toString(), name);
    });

    it('a module store does not list snapshot-style files', async () => {
      const dir = freshDir();
      await new BlobStore(dir, 'safe').put('snap', [bytes('x')]);
      await new BlobStore(dir, 'sha256').put(hex, [bytes('y')]);
      assert.deepEqual(await new BlobStore(dir).list(), [hex]);
    });
  });
});
