/**
 * Bounded fuzzing of verifyAuthorization: whatever comes in, the only
 * possible outcomes are a Principal (for genuinely valid tokens) or an
 * AuthError with a 401 status and a WWW-Authenticate value.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AuthError } from '../../../src/server/auth/errors.js';
import { verifyAuthorization, type VerifyOptions } from '../../../src/server/auth/token.js';
import { b64, edHeader, genKey, IDENTITY, MemoryNonces, NOW, nowSec, rawToken, signed } from './helpers.js';
import { mulberry32 } from '../../helpers/prng.js';

const k = genKey();
const good = signed(k, { scope: 'system', nonce: 'fixed' });

async function outcome(headers: string[] | undefined, o: VerifyOptions): Promise<'ok' | 'rejected'> {
  try {
    await verifyAuthorization(headers, o);
    return 'ok';
  } catch (e) {
    assert.ok(e instanceof AuthError, `non-AuthError for ${JSON.stringify(headers)?.slice(0, 200)}: ${String(e)}`);
    assert.equal(e.status, 401);
    assert.ok(e.wwwAuthenticate?.startsWith(`Bearer realm="`));
    return 'rejected';
  }
}

describe('fuzz', () => {
  const opts = (): VerifyOptions => ({ identity: IDENTITY, nowSec, nonces: new MemoryNonces() });
  const localOpts: VerifyOptions = { identity: IDENTITY, nowSec, local: true };

  it('random bytes and strings', async () => {
    const r = mulberry32(1);
    const alphabet = 'ABCxyz019-_.=+/ \t"{}[]:,\\\u0000\u00e9\ud83d';
    for (let i = 0; i < 1500; i++) {
      const len = Math.floor(r() * 300);
      let s = '';
      const bytes = r() < 0.5;
      for (let j = 0; j < len; j++) s += bytes ? String.fromCharCode(Math.floor(r() * 256)) : alphabet[Math.floor(r() * alphabet.length)];
      const v = r() < 0.7 ? `Bearer ${s}` : s;
      assert.equal(await outcome([v], r() < 0.5 ? opts() : localOpts), 'rejected');
    }
  });

  it('every truncation and single-character mutation of a valid token', async () => {
    assert.equal(await outcome([`Bearer ${good}`], opts()), 'ok');
    for (let n = 0; n < good.length; n++) await outcome([`Bearer ${good.slice(0, n)}`], opts());
    const r = mulberry32(2);
    const chars = 'AQgw_-.=+/ ';
    let accepted = 0;
    for (let i = 0; i < 1500; i++) {
      const pos = Math.floor(r() * good.length);
      const c = chars[Math.floor(r() * chars.length)]!;
      const t = good.slice(0, pos) + c + good.slice(pos + 1);
      if ((await outcome([`Bearer ${t}`], opts())) === 'ok') {
        accepted++;
        assert.equal(t, good, 'a modified token was accepted');
      }
    }
  });

  it('random JSON of wrong shapes for the header and every claim', async () => {
    const r = mulberry32(3);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    const values: unknown[] = [null, true, false, 0, -1, 1.5, 1e308, NOW + 60, '', 'x', IDENTITY, [], [IDENTITY], [1], {}, { a: 1 }, 'system', '__proto__', ['x', null]];
    for (let i = 0; i < 1500; i++) {
      const header: Record<string, unknown> = r() < 0.5 ? edHeader(k.x) : {};
      if (r() < 0.5) header[pick(['alg', 'jwk', 'kty', '__proto__', 'typ'])] = pick(values);
      if (r() < 0.3) header['jwk'] = { kty: pick(['OKP', 'EC', 1, null]), crv: pick(['Ed25519', 'P-256', 0]), x: pick([k.x, '', 5, null, 'A'.repeat(43)]) };
      const claims: Record<string, unknown> = {};
      for (const name of ['exp', 'aud', 'nonce', 'scope', 'iss', 'constructor']) if (r() < 0.6) claims[name] = pick(values);
      const wholeClaims: unknown = r() < 0.1 ? pick(values) : claims;
      const t = rawToken({ header: r() < 0.05 ? JSON.stringify(pick(values)) : header, claims: JSON.stringify(wholeClaims), signer: r() < 0.8 ? k.privateKey : undefined });
      await outcome([`Bearer ${t}`], r() < 0.5 ? opts() : localOpts);
    }
  });

  it('huge and many-part tokens are refused quickly', async () => {
    const huge = `${b64('{"alg":"EdDSA"}')}.${'A'.repeat(1 << 20)}.`;
    const started = Date.now();
    assert.equal(await outcome([`Bearer ${huge}`], opts()), 'rejected');
    assert.equal(await outcome([`Bearer ${'.'.repeat(8000)}`], opts()), 'rejected');
    assert.equal(await outcome(Array.from({ length: 1000 }, () => `Bearer ${good}`), opts()), 'rejected');
    assert.ok(Date.now() - started < 2000);
  });
});
