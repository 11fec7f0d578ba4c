/**
 * Bearer token verification (spec web-api.md §4.1, §4.2).
 *
 * The steps run in the spec's order and the first failure wins, because the
 * order decides which error a client sees (e.g. an expired token with a bad
 * signature reports "token has expired"). Every rejection is an AuthError;
 * only a failing nonce store can throw something else (a server fault).
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { PROGRAM_SYSTEM_SCOPE } from '../../service/scope.js';
import { AuthError } from './errors.js';
import { LruMap, VerifiedTokenCache } from './token-cache.js';
import {
  decodeBase64Url,
  ED25519_PREFIX,
  LOCAL_PRINCIPAL_ID,
  parseEd25519Key,
  type Principal,
} from './principal.js';

/** Tokens must expire within 15 minutes. */
export const MAX_EXPIRE_MARGIN_SEC = 15 * 60;
export const MAX_SCOPE_TOKENS = 10;
/**
 * Cap on the Authorization value: a client token is a few hundred bytes, so
 * anything near this is garbage and is refused before decoding or JSON work.
 */
export const MAX_AUTHORIZATION_LENGTH = 8 * 1024;

export interface NonceStore {
  /** Records the nonce for the key until expiresAtSec; false if it is already recorded. */
  useNonce(key: string, nonce: string, expiresAtSec: number): Promise<boolean>;
}

export interface VerifyOptions {
  /** Audience and realm, e.g. 'https://host/gate-0/' ('http://…' for the daemon). */
  identity: string;
  nowSec?: () => number;
  /** Absent → tokens with a nonce are refused ('nonce not supported'). */
  nonces?: NonceStore;
  /** The daemon's local handler: accepts alg none (principal 'local'); exp may be absent/0. */
  local?: boolean;
}

// Aliases are computed as in the original's scope registry: each registered
// scope is also known by its last word unless two scopes share that word.
const REGISTERED_SCOPES: readonly string[] = [PROGRAM_SYSTEM_SCOPE];
const SCOPE_ALIASES: ReadonlyMap<string, string> = computeAliases(REGISTERED_SCOPES);

function computeAliases(names: readonly string[]): Map<string, string> {
  const aliases = new Map<string, string>();
  const ambiguous = new Set<string>();
  for (const name of names) {
    const alias = /\b([a-z0-9\-._]+)$/.exec(name)?.[1];
    if (alias === undefined || alias === name) continue;
    if (aliases.has(alias)) ambiguous.add(alias);
    else aliases.set(alias, name);
  }
  for (const a of ambiguous) aliases.delete(a);
  return aliases;
}

/** `system` → `program:system`; other strings unchanged. */
export function resolveScopeAlias(s: string): string {
  return SCOPE_ALIASES.get(s) ?? s;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

const utf8 = new TextDecoder('utf-8', { fatal: true });

function parseJsonObject(bytes: Uint8Array): JsonObject | undefined {
  let v: unknown;
  try {
    v = JSON.parse(utf8.decode(bytes));
  } catch {
    return undefined;
  }
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as JsonObject) : undefined;
}

/** Own property only (the JSON is attacker-controlled); null counts as absent, like Go's decoder. */
function field(o: JsonObject, name: string): Exclude<Json, null> | undefined {
  if (!Object.hasOwn(o, name)) return undefined;
  const v = o[name];
  return v === null ? undefined : v;
}

/** Extracts the token from `Bearer <token>`: scheme case-insensitive, spaces trimmed. */
function parseBearer(value: string, realm: string): string {
  const s = value.replace(/^ +| +$/g, '');
  const i = s.indexOf(' ');
  if (i === 6 && s.slice(0, 6).toLowerCase() === 'bearer') return s.slice(7).replace(/^ +/, '');
  throw AuthError.invalidRequest(realm);
}

/**
 * Verifies the Authorization header values (node: `req.headersDistinct.authorization`).
 * Returns undefined for an anonymous request (no header); whether that is
 * acceptable is for the caller and the access policy to decide.
 */
export async function verifyAuthorization(headers: string[] | undefined, opts: VerifyOptions): Promise<Principal | undefined> {
  const realm = opts.identity;
  if (headers === undefined || headers.length === 0) return undefined;
  if (headers.length > 1) throw AuthError.invalidRequest(realm, 'multiple Authorization headers');
  const value = headers[0]!;
  if (value.length > MAX_AUTHORIZATION_LENGTH) throw AuthError.invalidToken(realm, 'token is too long', 'too-long');
  return verifyToken(parseBearer(value, realm), opts);
}

/** Verifies a bare JWS compact token (the part after `Bearer `). */
export async function verifyToken(token: string, opts: VerifyOptions): Promise<Principal> {
  const realm = opts.identity;
  const local = opts.local === true;
  const invalid = (): AuthError => AuthError.invalidToken(realm);

  if (token.length > MAX_AUTHORIZATION_LENGTH) throw AuthError.invalidToken(realm, 'token is too long', 'too-long');
  const nowSec = opts.nowSec?.() ?? Math.floor(Date.now() / 1000);

  // A token verified before (the same text: other bytes never match) and not
  // expired: only what depends on the request is checked again.
  const known = local ? undefined : verifiedTokens.get(token, nowSec);
  if (known !== undefined) {
    if (known.aud.length > 0 && !known.aud.includes(realm)) throw invalid();
    const { id, key, scope } = known.principal;
    if (known.nonce !== '') await useNonce(opts, id, known.nonce, known.exp, realm);
    return { id, key, scope: [...scope] };
  }

  // 1. Three dot-separated parts, each valid unpadded base64url.
  const parts = token.split('.');
  if (parts.length !== 3) throw invalid();
  const [headerPart, payloadPart, sigPart] = parts as [string, string, string];
  const headerBytes = decodeBase64Url(headerPart);
  const payloadBytes = decodeBase64Url(payloadPart);
  const signature = decodeBase64Url(sigPart);
  if (headerBytes === undefined || payloadBytes === undefined || signature === undefined) throw invalid();

  // 2. Header: EdDSA with an OKP/Ed25519 jwk, or alg none on the local handler.
  const header = parseJsonObject(headerBytes);
  if (header === undefined) throw invalid();
  const alg = field(header, 'alg') ?? '';
  const jwkField = field(header, 'jwk');
  if (typeof alg !== 'string') throw invalid();
  let jwk: JsonObject | undefined;
  if (jwkField !== undefined) {
    if (typeof jwkField !== 'object' || Array.isArray(jwkField)) throw invalid();
    jwk = jwkField;
  }

  let key: Uint8Array | undefined;
  let x: string | undefined;
  if (alg === 'EdDSA') {
    if (jwk === undefined) throw invalid();
    const kty = field(jwk, 'kty') ?? '';
    const crv = field(jwk, 'crv') ?? '';
    const jx = field(jwk, 'x') ?? '';
    if (typeof kty !== 'string' || typeof crv !== 'string' || typeof jx !== 'string') throw invalid();
    if (kty !== 'OKP' || crv !== 'Ed25519') throw invalid();
    const parsed = parseEd25519Key(jx);
    if ('error' in parsed) throw AuthError.invalidToken(realm, parsed.error, 'principal-key');
    key = parsed.key;
    x = jx;
  } else if (!(alg === 'none' && local)) {
    throw invalid();
  }

  // 3. Payload. Claims are syntactically optional but must have the right types.
  const claims = parseJsonObject(payloadBytes);
  if (claims === undefined) throw invalid();
  const exp = field(claims, 'exp') ?? 0;
  const aud = field(claims, 'aud') ?? [];
  const nonce = field(claims, 'nonce') ?? '';
  const scope = field(claims, 'scope') ?? '';
  if (typeof exp !== 'number' || !Number.isSafeInteger(exp)) throw invalid();
  if (!Array.isArray(aud) || !aud.every((a) => typeof a === 'string')) throw invalid();
  if (typeof nonce !== 'string' || typeof scope !== 'string') throw invalid();

  // 4. Expiration (checked before the signature: it is not secret). A missing
  //    exp is 0, i.e. long expired, except on the local handler.
  if (!(exp === 0 && local)) {
    const margin = exp - nowSec;
    if (margin < 0) throw AuthError.invalidToken(realm, 'token has expired', 'expired');
    if (margin > MAX_EXPIRE_MARGIN_SEC) throw AuthError.invalidToken(realm, 'token expiration is too far in the future');
  }

  // 5. Audience: an empty list binds to no server; otherwise ours must be listed exactly.
  if (aud.length > 0 && !aud.includes(realm)) throw invalid();

  // 6. Signature over the ASCII bytes `<header>.<payload>`.
  if (key !== undefined && x !== undefined) {
    if (signature.length !== 64 || !verifyEd25519(x, Buffer.from(`${headerPart}.${payloadPart}`, 'ascii'), signature)) throw invalid();
  } else if (signature.length !== 0) {
    throw invalid();
  }

  // 8 (its error comes after the nonce's). Scope: single-space separated, at
  // most 10 tokens (empty ones count, as in the original).
  const scopeTokens = scope.split(' ');
  const resolved = scopeTokens.length <= MAX_SCOPE_TOKENS ? scopeTokens.filter((s) => s !== '').map(resolveScopeAlias) : undefined;
  const principal: Principal | undefined = resolved === undefined ? undefined : key !== undefined ? { id: ED25519_PREFIX + x, key, scope: resolved } : { id: LOCAL_PRINCIPAL_ID, scope: resolved };
  if (principal !== undefined && key !== undefined && !local) verifiedTokens.set(token, { principal: { ...principal, scope: [...resolved!] }, exp, aud: aud as string[], nonce });

  // 7. Nonce, after the signature so that its validity is not revealed to forgers.
  //    Local (unsigned) tokens have no key to bind a nonce to.
  if (nonce !== '') {
    if (key === undefined) throw AuthError.invalidToken(realm, 'nonce not supported');
    await useNonce(opts, ED25519_PREFIX + x, nonce, exp, realm);
  }

  if (principal === undefined) throw AuthError.invalidToken(realm, 'scope has too many tokens', 'scope-too-large');
  return principal;
}

/** Records a token's nonce (step 7): every use of a token with a nonce goes through the store, remembered or not. */
async function useNonce(opts: VerifyOptions, principalId: string, nonce: string, exp: number, realm: string): Promise<void> {
  if (opts.nonces === undefined) throw AuthError.invalidToken(realm, 'nonce not supported');
  if (!(await opts.nonces.useNonce(principalId, nonce, exp))) throw AuthError.invalidToken(realm, 'token has already been used', 'reused');
}

/** Tokens verified by this process (see token-cache.ts); forgetVerifiedTokens empties it. */
const verifiedTokens = new VerifiedTokenCache(4096, 1024);

/** Whether `token` is remembered as verified (for tests). */
export function isTokenRemembered(token: string): boolean {
  return verifiedTokens.has(token);
}

/**
 * Forgets all verified tokens: the access policy calls it when the keys it
 * admits change (a revoked key's principal is refused by the policy on every
 * request anyway; this keeps nothing of it either).
 */
export function forgetVerifiedTokens(): void {
  verifiedTokens.clear();
}
/** Public keys by their JWK `x`: making a KeyObject costs as much as a verification. */
const publicKeys = new LruMap<KeyObject>(1024);

function verifyEd25519(x: string, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    let publicKey = publicKeys.get(x);
    if (!publicKey) {
      publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
      publicKeys.set(x, publicKey);
    }
    return verify(null, data, publicKey, signature);
  } catch {
    return false; // e.g. bytes that are not a curve point
  }
}
