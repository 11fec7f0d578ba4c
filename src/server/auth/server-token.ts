/**
 * The server's own token, the API-info "jwt" (spec web-api.md §5): lets a
 * client check it talks to the server it knows (UUID, key, identity).
 *
 * Signed with the optional `server.identityfile` key:
 *   header {"alg":"EdDSA","jwk":{…}}, claims {"exp": startup+90 days, "iss", "uuid"};
 * otherwise unsigned: `<{"alg":"none"}>.<{"iss","uuid"}>.` (trailing dot).
 */
import { createPublicKey, verify } from 'node:crypto';
import { loadIdentity, type ClientIdentity } from './key-file.js';
import { ServerTokenError } from './errors.js';
import { decodeBase64Url } from './principal.js';

export const SERVER_TOKEN_LIFETIME_SEC = 90 * 24 * 60 * 60;

/** An Ed25519 signing key; the client identity type serves both sides. */
export type ServerIdentityKey = ClientIdentity;

/** Loads `server.identityfile` (OpenSSH Ed25519 private key, unencrypted). */
export function loadServerIdentityKey(file: string): Promise<ServerIdentityKey> {
  return loadIdentity(file);
}

export interface ServerTokenOptions {
  /** Identity string (used as `iss`), e.g. 'https://host/gate-0/'. */
  identity: string;
  uuid: string;
  key?: ServerIdentityKey;
  /** Startup time; the token is made once and served until restart. */
  nowSec?: number;
}

const b64json = (v: unknown): string => Buffer.from(JSON.stringify(v), 'utf8').toString('base64url');

export function makeServerToken(opts: ServerTokenOptions): string {
  if (opts.key === undefined) {
    return `${b64json({ alg: 'none' })}.${b64json({ iss: opts.identity, uuid: opts.uuid })}.`;
  }
  const now = opts.nowSec ?? Math.floor(Date.now() / 1000);
  const { kty, crv, x } = opts.key.publicJwk;
  const signee = `${b64json({ alg: 'EdDSA', jwk: { kty, crv, x } })}.${b64json({ exp: now + SERVER_TOKEN_LIFETIME_SEC, iss: opts.identity, uuid: opts.uuid })}`;
  return `${signee}.${Buffer.from(opts.key.sign(Buffer.from(signee, 'ascii'))).toString('base64url')}`;
}

export interface ServerTokenExpectation {
  uuid: string;
  /** Expected `iss` (the server's identity string). */
  identity: string;
  /** Acceptable server keys (jwk x values). */
  keys: readonly string[];
  nowSec?: number;
}

/**
 * Client-side check of a signed server token: OKP/EdDSA/Ed25519, known key,
 * valid signature, unexpired, matching uuid and iss. Unsigned tokens prove
 * nothing and are refused. Returns the key (x) that signed it.
 */
export function verifyServerToken(token: string, expect: ServerTokenExpectation): string {
  const parts = token.split('.');
  const fail = (why: string): never => {
    throw new ServerTokenError(`server token: ${why}`);
  };
  if (parts.length !== 3) fail('malformed');
  const [h, p, s] = parts as [string, string, string];
  const hb = decodeBase64Url(h);
  const pb = decodeBase64Url(p);
  const sig = decodeBase64Url(s);
  if (hb === undefined || pb === undefined || sig === undefined) fail('malformed');
  const header = parseObject(hb!) ?? fail('malformed header');
  const claims = parseObject(pb!) ?? fail('malformed claims');
  const jwk = header['jwk'];
  if (header['alg'] !== 'EdDSA' || typeof jwk !== 'object' || jwk === null) fail('not signed with EdDSA');
  const { kty, crv, x } = jwk as Record<string, unknown>;
  if (kty !== 'OKP' || crv !== 'Ed25519' || typeof x !== 'string') fail('not an Ed25519 key');
  if (!expect.keys.includes(x as string)) fail('unknown server key');
  let ok = false;
  try {
    const pub = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: x as string }, format: 'jwk' });
    ok = verify(null, Buffer.from(`${h}.${p}`, 'ascii'), pub, sig!);
  } catch {
    ok = false;
  }
  if (!ok) fail('invalid signature');
  const exp = claims['exp'];
  const now = expect.nowSec ?? Math.floor(Date.now() / 1000);
  if (typeof exp !== 'number' || exp < now) fail('expired');
  if (claims['uuid'] !== expect.uuid) fail('uuid mismatch');
  if (claims['iss'] !== expect.identity) fail('issuer mismatch');
  return x as string;
}

function parseObject(b: Uint8Array): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(b));
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
