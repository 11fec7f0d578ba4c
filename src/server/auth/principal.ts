/**
 * Principals: who a request acts for (spec web-api.md §4.1). An Ed25519
 * public key *is* the identity; the daemon's local handler uses 'local'.
 */

export interface Principal {
  /** `ed25519:<x>` (x = unpadded base64url of the 32-byte key) or `local`. */
  id: string;
  /** The raw 32-byte public key (absent for `local`). */
  key?: Uint8Array;
  /** Request scope from the token, aliases resolved (e.g. `program:system`). */
  scope: string[];
}

export const LOCAL_PRINCIPAL_ID = 'local';
export const ED25519_PREFIX = 'ed25519:';
export const ED25519_KEY_SIZE = 32;
/** Unpadded base64url length of a 32-byte key. */
export const ENCODED_KEY_LENGTH = 43;

const BASE64URL = /^[A-Za-z0-9_-]*$/;

/**
 * Strict unpadded base64url: only the URL alphabet, no padding, and the
 * canonical form (zero trailing bits). Strictness keeps one key from having
 * several spellings, which would give one key several principal IDs.
 */
export function decodeBase64Url(s: string): Uint8Array | undefined {
  if (!BASE64URL.test(s) || s.length % 4 === 1) return undefined;
  const b = Buffer.from(s, 'base64url');
  if (b.toString('base64url') !== s) return undefined;
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

export function encodeBase64Url(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64url');
}

/** Parses the jwk `x` value; returns the public error text on failure (spec §4.1 step 2). */
export function parseEd25519Key(x: string): { key: Uint8Array } | { error: string } {
  if (x.length !== ENCODED_KEY_LENGTH) return { error: 'encoded principal key has wrong length' };
  const key = decodeBase64Url(x);
  if (key === undefined) return { error: 'base64url encoding of principal key is invalid' };
  if (key.length !== ED25519_KEY_SIZE) return { error: 'decoded principal key has wrong length' };
  return { key };
}

export function ed25519PrincipalId(key: Uint8Array): string {
  return ED25519_PREFIX + encodeBase64Url(key);
}
