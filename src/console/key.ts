/**
 * The console's identity: an Ed25519 key kept in the browser (IndexedDB, as a
 * non-extractable CryptoKey), generated there or pasted (an unencrypted
 * OpenSSH private key, as `gate` uses, or PKCS#8 PEM), and the bearer tokens
 * it signs (header `{"alg":"EdDSA","jwk":…}`, claims `{"exp","aud"}`;
 * src/client/token.ts makes the same ones in Node).
 */

export class ConsoleKeyError extends Error {
  override readonly name = 'ConsoleKeyError';
}

export interface ConsoleKey {
  privateKey: CryptoKey;
  /** The public key's JWK `x` (base64url of its 32 bytes). */
  x: string;
}

const DB = 'gate-console';
const STORE = 'keys';
const ID = 'identity';
const TOKEN_LIFETIME_SEC = 60;

function b64url(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromB64url(s: string): Uint8Array {
  const bin = atob(s.replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function fromB64(s: string): Uint8Array {
  let bin: string;
  try {
    bin = atob(s.replace(/\s+/g, ''));
  } catch {
    throw new ConsoleKeyError('the key is not valid base64');
  }
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function openDb(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB is not available'));
  });
}

async function withStore<T>(mode: IDBTransactionMode, f: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await openDb();
  try {
    return await new Promise<T>((resolve, reject) => {
      const req = f(db.transaction(STORE, mode).objectStore(STORE));
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error ?? new Error('IndexedDB request failed'));
    });
  } finally {
    db.close();
  }
}

export async function loadKey(): Promise<ConsoleKey | undefined> {
  const k = await withStore<unknown>('readonly', (s) => s.get(ID));
  if (typeof k !== 'object' || k === null) return undefined;
  const { privateKey, x } = k as Partial<ConsoleKey>;
  return privateKey instanceof CryptoKey && typeof x === 'string' ? { privateKey, x } : undefined;
}

async function saveKey(key: ConsoleKey): Promise<ConsoleKey> {
  await withStore('readwrite', (s) => s.put(key, ID));
  return key;
}

export async function forgetKey(): Promise<void> {
  await withStore('readwrite', (s) => s.delete(ID));
}

/** A new key, kept in this browser; its private half cannot be read back out. */
export async function generateKey(): Promise<ConsoleKey> {
  const pair = (await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify'])) as CryptoKeyPair;
  const jwk = await crypto.subtle.exportKey('jwk', pair.publicKey);
  return saveKey({ privateKey: pair.privateKey, x: jwk.x! });
}

/** Imports a pasted private key (OpenSSH or PKCS#8 PEM) and keeps it. */
export async function importKey(text: string): Promise<ConsoleKey> {
  const seed = parsePrivateKey(text.trim());
  // PKCS#8 for Ed25519: a fixed 16-byte prefix and the 32-byte seed (RFC 8410).
  const pkcs8 = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20, ...seed]);
  let jwk: JsonWebKey;
  try {
    const extractable = await crypto.subtle.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, true, ['sign']);
    jwk = await crypto.subtle.exportKey('jwk', extractable);
  } catch {
    throw new ConsoleKeyError('the key is not a valid Ed25519 private key');
  }
  const privateKey = await crypto.subtle.importKey('jwk', jwk, { name: 'Ed25519' }, false, ['sign']);
  return saveKey({ privateKey, x: jwk.x! });
}

/** The 32-byte Ed25519 seed of an unencrypted OpenSSH or PKCS#8 PEM private key. */
export function parsePrivateKey(text: string): Uint8Array {
  const m = /^-----BEGIN ([A-Z ]+)-----([\s\S]*?)-----END \1-----$/.exec(text);
  if (!m) throw new ConsoleKeyError('paste a whole private key, from -----BEGIN to -----END');
  const der = fromB64(m[2]!);
  if (m[1] === 'PRIVATE KEY') {
    if (der.length !== 48 || der[0] !== 0x30 || der[9] !== 0x2b || der[10] !== 0x65 || der[11] !== 0x70) {
      throw new ConsoleKeyError('the PKCS#8 key is not an Ed25519 key');
    }
    return der.slice(16);
  }
  if (m[1] !== 'OPENSSH PRIVATE KEY') throw new ConsoleKeyError(`unsupported key type: ${m[1]}`);
  return opensshSeed(der);
}

function bad(why: string): never {
  throw new ConsoleKeyError(`not a usable OpenSSH key: ${why}`);
}

/** Reads SSH wire-format fields (uint32 length, bytes). */
function sshReader(b: Uint8Array, at: number): { u32(): number; bytes(): Uint8Array; str(): string } {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const u32 = (): number => {
    if (at + 4 > b.length) bad('truncated');
    at += 4;
    return view.getUint32(at - 4);
  };
  const bytes = (): Uint8Array => {
    const n = u32();
    if (at + n > b.length) bad('truncated');
    at += n;
    return b.subarray(at - n, at);
  };
  return { u32, bytes, str: () => new TextDecoder().decode(bytes()) };
}

/** The seed of an openssh-key-v1 blob (PROTOCOL.key in OpenSSH). */
function opensshSeed(b: Uint8Array): Uint8Array {
  const magic = 'openssh-key-v1\0';
  if (new TextDecoder().decode(b.subarray(0, magic.length)) !== magic) bad('bad header');
  const r = sshReader(b, magic.length);
  if (r.str() !== 'none' || r.str() !== 'none') bad('it is encrypted; decrypt it first (ssh-keygen -p)');
  r.bytes(); // kdf options
  if (r.u32() !== 1) bad('it must hold exactly one key');
  r.bytes(); // public key blob
  const p = sshReader(r.bytes(), 0);
  if (p.u32() !== p.u32()) bad('bad check bytes');
  if (p.str() !== 'ssh-ed25519') bad('it is not an Ed25519 key');
  p.bytes(); // public key
  const secret = p.bytes();
  if (secret.length !== 64) bad('bad private key length');
  return secret.slice(0, 32);
}

/** The public key as an OpenSSH authorized_keys line (for a server's access.ssh list). */
export function publicKeyLine(key: ConsoleKey): string {
  const type = new TextEncoder().encode('ssh-ed25519');
  const pub = fromB64url(key.x);
  const blob = new Uint8Array(4 + type.length + 4 + pub.length);
  const v = new DataView(blob.buffer);
  v.setUint32(0, type.length);
  blob.set(type, 4);
  v.setUint32(4 + type.length, pub.length);
  blob.set(pub, 8 + type.length);
  let s = '';
  for (const c of blob) s += String.fromCharCode(c);
  return `ssh-ed25519 ${btoa(s)} gate-console`;
}

/** A bearer token for `audience` (`<origin>/gate-0/`), valid for a minute. */
export async function makeToken(key: ConsoleKey, audience: string): Promise<string> {
  const enc = new TextEncoder();
  const header = b64url(enc.encode(JSON.stringify({ alg: 'EdDSA', jwk: { kty: 'OKP', crv: 'Ed25519', x: key.x } })));
  const claims = b64url(enc.encode(JSON.stringify({ exp: Math.floor(Date.now() / 1000) + TOKEN_LIFETIME_SEC, aud: [audience] })));
  const signee = `${header}.${claims}`;
  const sig = new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, key.privateKey, enc.encode(signee)));
  return `${signee}.${b64url(sig)}`;
}
