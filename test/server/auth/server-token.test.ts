/** The API-info server token (spec web-api.md §5). */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ServerTokenError } from '../../../src/server/auth/errors.js';
import { loadServerIdentityKey, makeServerToken, SERVER_TOKEN_LIFETIME_SEC, verifyServerToken } from '../../../src/server/auth/server-token.js';
import { b64, genKey, IDENTITY, NOW, tempDir, writeSshKey } from './helpers.js';

const UUID = '0f6c3f0e-7c0b-4d0c-9a43-37d8f4c8a1b2';
const decode = (part: string): unknown => JSON.parse(Buffer.from(part, 'base64url').toString());

describe('server token', () => {
  const tmp = tempDir();
  after(() => tmp.cleanup());

  it('unsigned form: <{"alg":"none"}>.<{"iss","uuid"}>. with a trailing dot', () => {
    const t = makeServerToken({ identity: IDENTITY, uuid: UUID });
    assert.equal(t, `${b64('{"alg":"none"}')}.${b64(JSON.stringify({ iss: IDENTITY, uuid: UUID }))}.`);
  });

  it('signed with an OpenSSH identity file; clients can verify it', async () => {
    const f = join(tmp.dir, 'server_key');
    writeSshKey(f);
    const key = await loadServerIdentityKey(f);
    const t = makeServerToken({ identity: IDENTITY, uuid: UUID, key, nowSec: NOW });
    const [h, c] = t.split('.') as [string, string];
    assert.deepEqual(decode(h), { alg: 'EdDSA', jwk: key.publicJwk });
    assert.deepEqual(decode(c), { exp: NOW + SERVER_TOKEN_LIFETIME_SEC, iss: IDENTITY, uuid: UUID });
    assert.equal(SERVER_TOKEN_LIFETIME_SEC, 90 * 24 * 3600);

    const expect = { uuid: UUID, identity: IDENTITY, keys: [key.publicJwk.x], nowSec: NOW };
    assert.equal(verifyServerToken(t, expect), key.publicJwk.x);

    const fails = (token: string, e: Partial<typeof expect>, why: string) =>
      assert.throws(() => verifyServerToken(token, { ...expect, ...e }), (err: unknown) => err instanceof ServerTokenError && err.message === `server token: ${why}`);
    fails(t, { uuid: 'other' }, 'uuid mismatch');
    fails(t, { identity: 'https://other/gate-0/' }, 'issuer mismatch');
    fails(t, { keys: [genKey().x] }, 'unknown server key');
    fails(t, { nowSec: NOW + SERVER_TOKEN_LIFETIME_SEC + 1 }, 'expired');
    fails(`${h}.${b64(JSON.stringify({ exp: NOW + 10, iss: IDENTITY, uuid: UUID }))}.${t.split('.')[2]}`, {}, 'invalid signature');
    fails(makeServerToken({ identity: IDENTITY, uuid: UUID }), {}, 'not signed with EdDSA');
    fails('x.y', {}, 'malformed');
  });
});
