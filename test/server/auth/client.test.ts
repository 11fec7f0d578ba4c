/** Client identity files and tokens, verified by the server side (round trip). */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { IdentityError, loadIdentity, loadOptionalIdentity } from '../../../src/client/identity.js';
import { makeToken, TokenOptionsError } from '../../../src/client/token.js';
import { verifyAuthorization } from '../../../src/server/auth/token.js';
import { IDENTITY, LOCAL_IDENTITY, MemoryNonces, NOW, nowSec, rejectsAuth, tempDir, writeSshKey, xOfPubLine } from './helpers.js';

describe('client identity files', () => {
  const tmp = tempDir();
  const file = (n: string) => join(tmp.dir, n);
  before(() => {
    writeSshKey(file('id_ed25519'));
    writeSshKey(file('id_rsa'), { type: 'rsa' });
    writeSshKey(file('id_ecdsa'), { type: 'ecdsa' });
    writeSshKey(file('id_enc'), { passphrase: 'secret' });
    writeFileSync(file('empty'), '');
    writeFileSync(file('garbage'), 'hello\n');
  });
  after(() => tmp.cleanup());

  it('loads an OpenSSH Ed25519 key; the principal is the public key', async () => {
    const id = await loadIdentity(file('id_ed25519'));
    const x = xOfPubLine(readFileSync(file('id_ed25519.pub'), 'utf8'));
    assert.equal(id.principalId, `ed25519:${x}`);
    assert.deepEqual(id.publicJwk, { kty: 'OKP', crv: 'Ed25519', x });
    assert.equal(id.sign(new Uint8Array([1, 2, 3])).length, 64);
  });

  const refuses = async (name: string, code: string, message: string) => {
    await assert.rejects(loadIdentity(file(name)), (e: unknown) => {
      assert.ok(e instanceof IdentityError);
      assert.equal(e.code, code);
      assert.equal(e.message, message);
      return true;
    });
  };

  it('names the file when the key is not Ed25519', async () => {
    await refuses('id_rsa', 'GATE_IDENTITY_INVALID', `${file('id_rsa')}: not an Ed25519 private key`);
    await refuses('id_ecdsa', 'GATE_IDENTITY_INVALID', `${file('id_ecdsa')}: not an Ed25519 private key`);
    await refuses('id_ed25519.pub', 'GATE_IDENTITY_INVALID', `${file('id_ed25519.pub')}: not an Ed25519 private key`);
    await refuses('garbage', 'GATE_IDENTITY_INVALID', `${file('garbage')}: not an Ed25519 private key`);
  });

  it('refuses encrypted keys clearly', async () => {
    await refuses('id_enc', 'GATE_IDENTITY_ENCRYPTED', `${file('id_enc')}: encrypted (passphrase-protected) private keys are not supported`);
  });

  it('missing and empty files', async () => {
    await refuses('nope', 'GATE_IDENTITY_UNREADABLE', `${file('nope')}: cannot read identity file (ENOENT)`);
    await refuses('empty', 'GATE_IDENTITY_EMPTY', `${file('empty')}: identity file is empty`);
    assert.equal(await loadOptionalIdentity(file('empty')), undefined);
    assert.ok(await loadOptionalIdentity(file('id_ed25519')));
  });
});

describe('client token → server verification', () => {
  const tmp = tempDir();
  after(() => tmp.cleanup());

  it('round trip with a key file: principal, scope (sorted, aliased) and audience', async () => {
    const f = join(tmp.dir, 'key');
    writeSshKey(f);
    const id = await loadIdentity(f);
    const token = makeToken(id, { audience: IDENTITY, scope: ['program:system', 'example.net/a'], nowSec: NOW });
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    assert.deepEqual(claims, { exp: NOW + 60, aud: [IDENTITY], scope: 'example.net/a program:system' });
    assert.deepEqual(JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()), { alg: 'EdDSA', jwk: id.publicJwk });
    const p = await verifyAuthorization([`Bearer ${token}`], { identity: IDENTITY, nowSec });
    assert.equal(p?.id, id.principalId);
    assert.deepEqual(p?.scope, ['example.net/a', 'program:system']);
    // Another server (audience) refuses it.
    await rejectsAuth(verifyAuthorization([`Bearer ${token}`], { identity: 'https://other.invalid/gate-0/', nowSec }), { message: 'invalid_token' });
    // It lives for 60 s.
    await rejectsAuth(verifyAuthorization([`Bearer ${token}`], { identity: IDENTITY, nowSec: () => NOW + 61 }), { message: 'token has expired' });
  });

  it('with a nonce: used once', async () => {
    const f = join(tmp.dir, 'key2');
    writeSshKey(f);
    const id = await loadIdentity(f);
    const token = makeToken(id, { audience: IDENTITY, nonce: 'abc', expSeconds: 300, nowSec: NOW });
    const o = { identity: IDENTITY, nowSec, nonces: new MemoryNonces() };
    assert.ok(await verifyAuthorization([`Bearer ${token}`], o));
    await rejectsAuth(verifyAuthorization([`Bearer ${token}`], o), { message: 'token has already been used' });
  });

  it('unsigned local tokens work only on the local handler', async () => {
    const token = makeToken(undefined, { audience: LOCAL_IDENTITY, nowSec: NOW });
    assert.ok(token.endsWith('.'));
    assert.deepEqual(JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()), { alg: 'none' });
    const p = await verifyAuthorization([`Bearer ${token}`], { identity: LOCAL_IDENTITY, nowSec, local: true });
    assert.equal(p?.id, 'local');
    await rejectsAuth(verifyAuthorization([`Bearer ${token}`], { identity: LOCAL_IDENTITY, nowSec }), { message: 'invalid_token' });
  });

  it('refuses options the server would refuse', () => {
    const bad: Parameters<typeof makeToken>[1][] = [
      { audience: IDENTITY, expSeconds: 901 },
      { audience: IDENTITY, expSeconds: 0 },
      { audience: IDENTITY, expSeconds: 1.5 },
      { audience: IDENTITY, scope: ['has space'] },
      { audience: IDENTITY, scope: Array.from({ length: 11 }, (_, i) => `s${i}`) },
      { audience: IDENTITY, nonce: '' },
    ];
    const { id } = { id: undefined };
    for (const o of bad) assert.throws(() => makeToken(id, o), TokenOptionsError);
    assert.throws(() => makeToken(undefined, { audience: IDENTITY, nonce: 'n' }), TokenOptionsError);
  });
});
