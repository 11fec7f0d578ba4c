/**
 * Client bearer tokens (spec cli.md §2.2, web-api.md §4.1): header
 * `{"alg":"EdDSA","jwk":{…}}`, claims `{"exp","aud","scope"}`, or the
 * unsigned local form `{"alg":"none"}` with an empty signature.
 */
import { GateError } from '../errors.js';
import { isValidScope } from '../service/scope.js';
import type { ClientIdentity } from './identity.js';

export const DEFAULT_TOKEN_LIFETIME_SEC = 60;
/** What servers accept (web-api §4.1 steps 4 and 8). */
const MAX_LIFETIME_SEC = 15 * 60;
const MAX_SCOPE_TOKENS = 10;

export class TokenOptionsError extends GateError {
  constructor(message: string) {
    super('GATE_TOKEN_OPTIONS', message);
  }
}

export interface MakeTokenOptions {
  /** `<address>/gate-0/` of the server (https by default). */
  audience: string;
  scope?: string[];
  /** Lifetime; default 60, at most 900 (servers refuse more). */
  expSeconds?: number;
  /** Single-use marker; only for signed tokens and servers with a nonce store. */
  nonce?: string;
  /** Clock override for tests. */
  nowSec?: number;
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64url');

/** Builds `Bearer` token text; `id` undefined → unsigned local token (alg none). */
export function makeToken(id: ClientIdentity | undefined, opts: MakeTokenOptions): string {
  const lifetime = opts.expSeconds ?? DEFAULT_TOKEN_LIFETIME_SEC;
  if (!Number.isSafeInteger(lifetime) || lifetime < 1 || lifetime > MAX_LIFETIME_SEC) {
    throw new TokenOptionsError(`token lifetime must be 1–${MAX_LIFETIME_SEC} seconds`);
  }
  const scope = [...new Set(opts.scope ?? [])].sort();
  for (const s of scope) if (!isValidScope(s)) throw new TokenOptionsError(`invalid scope: ${JSON.stringify(s)}`);
  if (scope.length > MAX_SCOPE_TOKENS) throw new TokenOptionsError(`at most ${MAX_SCOPE_TOKENS} scopes are allowed`);
  if (opts.nonce !== undefined && id === undefined) throw new TokenOptionsError('unsigned local tokens cannot have a nonce');
  if (opts.nonce === '') throw new TokenOptionsError('nonce must not be empty');

  const now = opts.nowSec ?? Math.floor(Date.now() / 1000);
  const claims: { exp: number; aud: string[]; nonce?: string; scope?: string } = { exp: now + lifetime, aud: [opts.audience] };
  if (opts.nonce !== undefined) claims.nonce = opts.nonce;
  if (scope.length > 0) claims.scope = scope.join(' ');

  if (id === undefined) return `${b64('{"alg":"none"}')}.${b64(JSON.stringify(claims))}.`;

  const { kty, crv, x } = id.publicJwk;
  const signee = `${b64(JSON.stringify({ alg: 'EdDSA', jwk: { kty, crv, x } }))}.${b64(JSON.stringify(claims))}`;
  const signature = Buffer.from(id.sign(Buffer.from(signee, 'ascii'))).toString('base64url');
  return `${signee}.${signature}`;
}
