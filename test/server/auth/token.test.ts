/** Bearer token verification, rule by rule (spec web-api.md §4.1, §4.2). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AuthError } from '../../../src/server/auth/errors.js';
import { isTokenRemembered, verifyAuthorization, type NonceStore, type VerifyOptions } from '../../../src/server/auth/token.js';
import { VerifiedTokenCache } from '../../../src/server/auth/token-cache.js';
import {
  b64,
  edHeader,
  genKey,
  IDENTITY,
  LOCAL_IDENTITY,
  MemoryNonces,
  NOW,
  nowSec,
  rawToken,
  rejectsAuth,
  signed,
} from './helpers.js';

const opts: VerifyOptions = { identity: IDENTITY, nowSec };
const localOpts: VerifyOptions = { identity: LOCAL_IDENTITY, nowSec, local: true };
const bearer = (t: string): string[] => [`Bearer ${t}`];
const verify = (t: string, o: VerifyOptions = opts) => verifyAuthorization(bearer(t), o);

const REALM = `Bearer realm="${IDENTITY}"`;
const invalidToken = { status: 401 as const, code: 'GATE_AUTH_INVALID_TOKEN', message: 'invalid_token', wwwAuthenticate: `${REALM} error="invalid_token"` };
const tokenDesc = (d: string) => ({
  status: 401 as const,
  code: 'GATE_AUTH_INVALID_TOKEN',
  message: d,
  wwwAuthenticate: `${REALM} error="invalid_token" error_description="${d}"`,
});

describe('Authorization header', () => {
  const k = genKey();

  it('no header is anonymous', async () => {
    assert.equal(await verifyAuthorization(undefined, opts), undefined);
    assert.equal(await verifyAuthorization([], opts), undefined);
  });

  it('multiple headers → 401 invalid_request', async () => {
    const t = signed(k);
    await rejectsAuth(verifyAuthorization([`Bearer ${t}`, `Bearer ${t}`], opts), {
      status: 401,
      code: 'GATE_AUTH_INVALID_REQUEST',
      message: 'multiple Authorization headers',
      wwwAuthenticate: `${REALM} error="invalid_request" error_description="multiple Authorization headers"`,
    });
  });

  it('non-Bearer schemes and malformed values → 401 invalid_request', async () => {
    const t = signed(k);
    for (const v of [`Basic ${t}`, '', 'Bearer', 'Bearer   ', `Bearer\t${t}`, `Bearerx ${t}`, t, `Token ${t}`]) {
      await rejectsAuth(verifyAuthorization([v], opts), {
        status: 401,
        code: 'GATE_AUTH_INVALID_REQUEST',
        message: 'invalid_request',
        wwwAuthenticate: `${REALM} error="invalid_request"`,
      });
    }
  });

  it('scheme is case-insensitive and spaces are trimmed', async () => {
    const t = signed(k);
    for (const v of [`bearer ${t}`, `BEARER ${t}`, `  bEaReR    ${t}   `]) {
      const p = await verifyAuthorization([v], opts);
      assert.equal(p?.id, `ed25519:${k.x}`);
    }
  });

  it('an overlong value is refused before parsing', async () => {
    await rejectsAuth(verify('a'.repeat(9000)), tokenDesc('token is too long'));
  });
});

describe('token structure and header', () => {
  const k = genKey();

  it('accepts a good token: principal ed25519:<x> with the raw key', async () => {
    const p = await verify(signed(k));
    assert.ok(p);
    assert.equal(p.id, `ed25519:${k.x}`);
    assert.deepEqual(Buffer.from(p.key!), Buffer.from(k.x, 'base64url'));
    assert.deepEqual(p.scope, []);
  });

  it('needs exactly three parts of unpadded base64url', async () => {
    const [h, c, s] = signed(k).split('.') as [string, string, string];
    for (const t of [`${h}.${c}`, `${h}.${c}.${s}.`, `${h}.${c}.${s}.x`, `${h}..${s}`.replace('..', '.'), `${h}=.${c}.${s}`, `${h}.${c}.${s}=`, `${h}.+${c.slice(1)}.${s}`, `${h} .${c}.${s}`, `${h}.${c}.${s.slice(0, -1)}`]) {
      await rejectsAuth(verify(t), invalidToken);
    }
    // Base64 whose unused trailing bits are not zero is not canonical.
    const last = s.at(-1)!;
    const alt = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.indexOf(last) ^ 1;
    await rejectsAuth(verify(`${h}.${c}.${s.slice(0, -1)}${'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'[alt]}`), invalidToken);
  });

  it('header must be a JSON object with alg EdDSA and an OKP/Ed25519 jwk', async () => {
    const claims = { exp: NOW + 60 };
    const bad: unknown[] = [
      'not json',
      '[]',
      'null',
      '"EdDSA"',
      {},
      { alg: 'RS256', jwk: edHeader(k.x).jwk },
      { alg: 'eddsa', jwk: edHeader(k.x).jwk },
      { alg: 'EdDSA' },
      { alg: 'EdDSA', jwk: null },
      { alg: 'EdDSA', jwk: [] },
      { alg: 'EdDSA', jwk: 'x' },
      { alg: 'EdDSA', jwk: { kty: 'EC', crv: 'Ed25519', x: k.x } },
      { alg: 'EdDSA', jwk: { kty: 'OKP', crv: 'X25519', x: k.x } },
      { alg: 'EdDSA', jwk: { kty: 'OKP', crv: 'Ed25519', x: 42 } },
      { alg: 'EdDSA', jwk: { kty: 1, crv: 'Ed25519', x: k.x } },
      { alg: 7, jwk: edHeader(k.x).jwk },
      { alg: 'none' },
    ];
    for (const header of bad) await rejectsAuth(verify(rawToken({ header, claims, signer: k.privateKey })), invalidToken);
  });

  it('reports principal key problems', async () => {
    const claims = { exp: NOW + 60 };
    const withX = (x: unknown) => rawToken({ header: { alg: 'EdDSA', jwk: { kty: 'OKP', crv: 'Ed25519', x } }, claims, signer: k.privateKey });
    await rejectsAuth(verify(withX(k.x.slice(1))), tokenDesc('encoded principal key has wrong length'));
    await rejectsAuth(verify(withX(k.x + 'A')), tokenDesc('encoded principal key has wrong length'));
    await rejectsAuth(verify(withX('')), tokenDesc('encoded principal key has wrong length'));
    await rejectsAuth(verify(rawToken({ header: { alg: 'EdDSA', jwk: { kty: 'OKP', crv: 'Ed25519' } }, claims })), tokenDesc('encoded principal key has wrong length'));
    await rejectsAuth(verify(withX(Buffer.from(k.x, 'base64url').toString('base64'))), tokenDesc('encoded principal key has wrong length')); // padded: 44 chars
    await rejectsAuth(verify(withX('+' + k.x.slice(1))), tokenDesc('base64url encoding of principal key is invalid'));
    // 43 chars leave 2 spare bits; a set spare bit would be a second spelling of the key.
    const nonCanonical = k.x.slice(0, 42) + 'B'; // value 1: a spare bit set
    await rejectsAuth(verify(withX(nonCanonical)), tokenDesc('base64url encoding of principal key is invalid'));
  });

  it('payload must be a JSON object', async () => {
    for (const claims of ['nope', '[1]', 'null', '3', '"s"', '{"exp":']) {
      await rejectsAuth(verify(rawToken({ header: edHeader(k.x), claims, signer: k.privateKey })), invalidToken);
    }
  });

  it('claims must have the right types', async () => {
    const bad: Record<string, unknown>[] = [
      { exp: String(NOW + 60) },
      { exp: NOW + 0.5 },
      { exp: true },
      { exp: [NOW + 60] },
      { exp: 1e300 },
      { aud: IDENTITY },
      { aud: [IDENTITY, 1] },
      { aud: { 0: IDENTITY } },
      { nonce: 5 },
      { scope: ['program:system'] },
      { scope: 1 },
    ];
    for (const c of bad) await rejectsAuth(verify(signed(k, c)), invalidToken);
    // null means absent, as with Go's decoder.
    assert.ok(await verify(signed(k, { aud: null, nonce: null, scope: null })));
  });
});

describe('verification steps', () => {
  const k = genKey();
  const other = genKey();

  it('expiration: missing or past → expired; more than 900 s ahead → refused', async () => {
    await rejectsAuth(verify(rawToken({ header: edHeader(k.x), claims: { aud: [IDENTITY] }, signer: k.privateKey })), tokenDesc('token has expired'));
    await rejectsAuth(verify(signed(k, { exp: null })), tokenDesc('token has expired'));
    await rejectsAuth(verify(signed(k, { exp: 0 })), tokenDesc('token has expired'));
    await rejectsAuth(verify(signed(k, { exp: NOW - 1 })), tokenDesc('token has expired'));
    await rejectsAuth(verify(signed(k, { exp: -5 })), tokenDesc('token has expired'));
    assert.ok(await verify(signed(k, { exp: NOW })));
    assert.ok(await verify(signed(k, { exp: NOW + 900 })));
    await rejectsAuth(verify(signed(k, { exp: NOW + 901 })), tokenDesc('token expiration is too far in the future'));
  });

  it('audience: empty list is fine; otherwise the identity must be listed exactly', async () => {
    assert.ok(await verify(signed(k, { aud: [] })));
    assert.ok(await verify(signed(k, { aud: ['no', IDENTITY] })));
    for (const aud of [['no'], ['https://example.invalid/gate-0'], ['HTTPS://example.invalid/gate-0/'], ['http://example.invalid/gate-0/'], [`${IDENTITY} `]]) {
      await rejectsAuth(verify(signed(k, { aud })), invalidToken);
    }
  });

  it('signature must be Ed25519 by the jwk key over <header>.<payload>', async () => {
    await rejectsAuth(verify(rawToken({ header: edHeader(k.x), claims: { exp: NOW + 60 }, signer: other.privateKey })), invalidToken);
    await rejectsAuth(verify(rawToken({ header: edHeader(k.x), claims: { exp: NOW + 60 } })), invalidToken); // empty signature
    const [h, , s] = signed(k).split('.') as [string, string, string];
    const forged = b64(JSON.stringify({ exp: NOW + 60, aud: [IDENTITY], scope: 'program:system' }));
    await rejectsAuth(verify(`${h}.${forged}.${s}`), invalidToken);
    await rejectsAuth(verify(`${h}.${signed(k).split('.')[1]}.${b64(Buffer.alloc(63))}`), invalidToken);
    await rejectsAuth(verify(`${h}.${signed(k).split('.')[1]}.${b64(Buffer.alloc(64))}`), invalidToken);
    // Same claims, different header spelling: signature covers the exact header bytes.
    const t = signed(k);
    const respelled = b64(JSON.stringify({ jwk: edHeader(k.x).jwk, alg: 'EdDSA' }));
    await rejectsAuth(verify(`${respelled}.${t.split('.').slice(1).join('.')}`), invalidToken);
  });

  it('the first failing step wins', async () => {
    const badSig = (claims: Record<string, unknown>) => rawToken({ header: edHeader(k.x), claims, signer: other.privateKey });
    // expired beats audience and signature
    await rejectsAuth(verify(badSig({ exp: NOW - 10, aud: ['no'] })), tokenDesc('token has expired'));
    // audience beats signature (both plain invalid_token) and nonce
    await rejectsAuth(verify(badSig({ exp: NOW + 10, aud: ['no'], nonce: 'n' })), invalidToken);
    // signature beats nonce: a forged token does not learn "nonce not supported"
    await rejectsAuth(verify(badSig({ exp: NOW + 10, nonce: 'n' })), invalidToken);
    // key error beats expiry
    const badKey = rawToken({ header: { alg: 'EdDSA', jwk: { kty: 'OKP', crv: 'Ed25519', x: 'short' } }, claims: { exp: 0 } });
    await rejectsAuth(verify(badKey), tokenDesc('encoded principal key has wrong length'));
    // header parse beats payload parse
    await rejectsAuth(verify(rawToken({ header: { alg: 'none' }, claims: 'x' })), invalidToken);
    // nonce beats scope
    await rejectsAuth(verify(signed(k, { nonce: 'n', scope: 'a b c d e f g h i j k' })), tokenDesc('nonce not supported'));
  });

  it('nonce: refused without a store; single use within its lifetime', async () => {
    await rejectsAuth(verify(signed(k, { nonce: 'n1' })), tokenDesc('nonce not supported'));
    let clock = NOW;
    const nonces = new MemoryNonces(() => clock);
    const o: VerifyOptions = { identity: IDENTITY, nowSec: () => clock, nonces };
    const t = signed(k, { nonce: 'n1', exp: NOW + 30 });
    assert.ok(await verify(t, o));
    await rejectsAuth(verify(t, o), tokenDesc('token has already been used'));
    await rejectsAuth(verify(signed(k, { nonce: 'n1', exp: NOW + 60 }), o), tokenDesc('token has already been used'));
    // Nonces are per key.
    assert.ok(await verify(signed(other, { nonce: 'n1' }), o));
    // A forged token must not burn a nonce.
    const forged = rawToken({ header: edHeader(k.x), claims: { exp: NOW + 60, nonce: 'n2' }, signer: other.privateKey });
    await rejectsAuth(verify(forged, o), invalidToken);
    assert.ok(await verify(signed(k, { nonce: 'n2' }), o));
    // Empty nonce means none.
    assert.ok(await verify(signed(k, { nonce: '' })));
    // After the first token's lifetime the store may forget it.
    clock = NOW + 31;
    assert.ok(await verify(signed(k, { nonce: 'n1', exp: NOW + 31 + 60 }), o));
  });

  it('scope: split on single spaces, at most 10 tokens, aliases resolved', async () => {
    const scopeOf = async (scope: string) => (await verify(signed(k, { scope })))!.scope;
    assert.deepEqual(await scopeOf(''), []);
    assert.deepEqual(await scopeOf('system'), ['program:system']);
    assert.deepEqual(await scopeOf('program:system'), ['program:system']);
    assert.deepEqual(await scopeOf('example.net/x system'), ['example.net/x', 'program:system']);
    const ten = Array.from({ length: 10 }, (_, i) => `s${i}`).join(' ');
    assert.equal((await scopeOf(ten)).length, 10);
    await rejectsAuth(verify(signed(k, { scope: `${ten} s10` })), tokenDesc('scope has too many tokens'));
    // Empty tokens (double spaces) count toward the limit, as in the original.
    await rejectsAuth(verify(signed(k, { scope: 'a' + ' '.repeat(10) })), tokenDesc('scope has too many tokens'));
    assert.deepEqual(await scopeOf('a  b'), ['a', 'b']);
  });
});

describe('local (daemon) authorization', () => {
  const k = genKey();
  const LREALM = `Bearer realm="${LOCAL_IDENTITY}"`;
  const unsigned = (claims: unknown, sig = '') => rawToken({ header: { alg: 'none' }, claims, sig });

  it('accepts alg none with an empty signature as principal local; exp may be absent or 0', async () => {
    for (const claims of [{}, { exp: 0 }, { exp: NOW + 60, aud: [LOCAL_IDENTITY] }, { scope: 'system' }]) {
      const p = await verify(unsigned(claims), localOpts);
      assert.equal(p?.id, 'local');
      assert.equal(p?.key, undefined);
    }
    assert.deepEqual((await verify(unsigned({ scope: 'system' }), localOpts))?.scope, ['program:system']);
  });

  it('still checks a given exp, the audience and the empty signature', async () => {
    await rejectsAuth(verify(unsigned({ exp: NOW - 1 }), localOpts), { message: 'token has expired', wwwAuthenticate: `${LREALM} error="invalid_token" error_description="token has expired"` });
    await rejectsAuth(verify(unsigned({ exp: NOW + 901 }), localOpts), { message: 'token expiration is too far in the future' });
    await rejectsAuth(verify(unsigned({ aud: [IDENTITY] }), localOpts), { message: 'invalid_token' });
    await rejectsAuth(verify(unsigned({}, b64('sig')), localOpts), { message: 'invalid_token' });
  });

  it('refuses nonces with unsigned tokens, even with a store', async () => {
    await rejectsAuth(verify(unsigned({ nonce: 'x' }), { ...localOpts, nonces: new MemoryNonces() }), { message: 'nonce not supported' });
  });

  it('also accepts signed tokens', async () => {
    const t = rawToken({ header: edHeader(k.x), claims: { aud: [LOCAL_IDENTITY] }, signer: k.privateKey });
    assert.equal((await verify(t, localOpts))?.id, `ed25519:${k.x}`); // exp absent is fine locally
  });

  it('the normal handler refuses alg none', async () => {
    await rejectsAuth(verify(unsigned({ exp: NOW + 60 })), invalidToken);
  });
});

describe('AuthError helpers', () => {
  it('policy errors get the bare realm challenge on 401 only', () => {
    assert.equal(AuthError.missingCredentials().challenge(IDENTITY), REALM);
    assert.equal(AuthError.missingCredentials(IDENTITY).wwwAuthenticate, REALM);
    assert.equal(AuthError.anonymousNotSupported().message, 'anonymous access not supported');
    assert.equal(AuthError.anonymousNotSupported().challenge(IDENTITY), REALM);
    assert.equal(AuthError.permissionDenied().challenge(IDENTITY), undefined);
    assert.equal(AuthError.permissionDenied().status, 403);
    assert.equal(AuthError.invalidToken('a"b\\c').wwwAuthenticate, 'Bearer realm="a\\"b\\\\c" error="invalid_token"');
  });
});

describe('verified tokens remembered', () => {
  const k = genKey();

  it('accepts a token again, and never another signature over the same header and payload', async () => {
    const t = signed(k, { exp: NOW + 60, aud: [IDENTITY] });
    const first = await verify(t);
    const again = await verify(t);
    assert.deepEqual(again, first);
    const [h, p, sig] = t.split('.') as [string, string, string];
    const bytes = Buffer.from(sig, 'base64url');
    bytes[0]! ^= 1;
    await rejectsAuth(verify(`${h}.${p}.${bytes.toString('base64url')}`), invalidToken);
    // The same payload and signature under another key's header is checked with that key.
    const otherHeader = signed(genKey(), { exp: NOW + 60, aud: [IDENTITY] }).split('.')[0]!;
    await rejectsAuth(verify(`${otherHeader}.${p}.${sig}`), invalidToken);
  });

  it('still checks expiry, audience and nonce of a remembered token', async () => {
    const nonces = new MemoryNonces();
    const t = signed(k, { exp: NOW + 60, aud: [IDENTITY], nonce: 'n-remembered' });
    await verify(t, { ...opts, nonces });
    await rejectsAuth(verify(t, { ...opts, nonces }), tokenDesc('token has already been used'));
    await rejectsAuth(verify(t, { ...opts, nonces, nowSec: () => NOW + 61 }), tokenDesc('token has expired'));
    await rejectsAuth(verify(t, { ...opts, nonces, identity: 'https://other.invalid/gate-0/' }), {
      ...invalidToken,
      wwwAuthenticate: 'Bearer realm="https://other.invalid/gate-0/" error="invalid_token"',
    });
  });

  it('remembers a token until its exp: past it, the token is refused as expired and forgotten', async () => {
    const t = signed(k, { exp: NOW + 30, aud: [IDENTITY] });
    await verify(t);
    assert.ok(isTokenRemembered(t));
    await verify(t, { ...opts, nowSec: () => NOW + 30 });
    await rejectsAuth(verify(t, { ...opts, nowSec: () => NOW + 31 }), tokenDesc('token has expired'));
    assert.equal(isTokenRemembered(t), false);
  });

  it('sends a remembered token with a nonce to the nonce store on every use', async () => {
    const uses: string[] = [];
    const nonces: NonceStore = { useNonce: async (key, nonce) => (uses.push(`${key} ${nonce}`), true) };
    const t = signed(k, { exp: NOW + 60, aud: [IDENTITY], nonce: 'counted' });
    for (let i = 0; i < 3; i++) await verify(t, { ...opts, nonces });
    assert.ok(isTokenRemembered(t));
    assert.deepEqual(uses, Array(3).fill(`ed25519:${k.x} counted`));
  });

  it('hands out a copy of the remembered principal (a caller changing it changes nothing)', async () => {
    const t = signed(k, { exp: NOW + 60, aud: [IDENTITY], scope: 'system' });
    const first = (await verify(t))!;
    first.scope.push('program:other');
    assert.deepEqual((await verify(t))!.scope, ['program:system']);
  });

  it('does not remember tokens that fail a check, nor unsigned local ones', async () => {
    const expired = signed(k, { exp: NOW - 1, aud: [IDENTITY] });
    await rejectsAuth(verify(expired), tokenDesc('token has expired'));
    const tooManyScopes = signed(k, { exp: NOW + 60, scope: 'a b c d e f g h i j k' });
    await rejectsAuth(verify(tooManyScopes), tokenDesc('scope has too many tokens'));
    const [h, p] = signed(k, { exp: NOW + 60 }).split('.') as [string, string];
    const forged = `${h}.${p}.${b64(Buffer.alloc(64))}`;
    await rejectsAuth(verify(forged), invalidToken);
    const unsigned = rawToken({ header: { alg: 'none' }, claims: { exp: NOW + 60 } });
    await verify(unsigned, localOpts);
    for (const t of [expired, tooManyScopes, forged, unsigned]) assert.equal(isTokenRemembered(t), false, t);
  });
});

describe('VerifiedTokenCache', () => {
  const entry = (exp: number) => ({ principal: { id: 'ed25519:x', scope: [] }, exp, aud: [], nonce: '' });

  it('drops the least recently used entry when full', () => {
    const c = new VerifiedTokenCache(3, 100);
    for (const t of ['a', 'b', 'c']) c.set(t, entry(NOW + 60));
    assert.ok(c.get('a', NOW)); // a is now the most recently used
    c.set('d', entry(NOW + 60));
    assert.deepEqual(['a', 'b', 'c', 'd'].map((t) => c.has(t)), [true, false, true, true]);
    assert.equal(c.size, 3);
  });

  it('forgets an entry at its expiry, and keeps no token longer than its bound', () => {
    const c = new VerifiedTokenCache(3, 4);
    c.set('abcd', entry(NOW));
    c.set('abcde', entry(NOW + 60));
    assert.equal(c.has('abcde'), false);
    assert.ok(c.get('abcd', NOW));
    assert.equal(c.get('abcd', NOW + 1), undefined);
    assert.equal(c.size, 0);
  });

  it('clear forgets everything', () => {
    const c = new VerifiedTokenCache();
    c.set('a', entry(NOW + 60));
    c.clear();
    assert.equal(c.get('a', NOW), undefined);
  });
});
