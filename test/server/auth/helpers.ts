/** Real keys, hand-built tokens and a small nonce store for the auth tests. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sshpk from 'sshpk';
import { identityFromPrivateKey, type ClientIdentity } from '../../../src/client/identity.js';
import { AuthError } from '../../../src/server/auth/errors.js';
import type { NonceStore } from '../../../src/server/auth/token.js';

export const IDENTITY = 'https://example.invalid/gate-0/';
export const LOCAL_IDENTITY = 'http://127.0.0.1:8888/gate-0/';
export const NOW = 1_700_000_000;
export const nowSec = (): number => NOW;

export interface TestKey {
  privateKey: KeyObject;
  x: string;
  id: ClientIdentity;
}

export function genKey(): TestKey {
  const { privateKey } = generateKeyPairSync('ed25519');
  const id = identityFromPrivateKey(privateKey);
  return { privateKey, x: id.publicJwk.x, id };
}

export const b64 = (s: string | Uint8Array): string => Buffer.from(s).toString('base64url');

export interface RawTokenParts {
  /** Object → JSON; string → used as the JSON text. */
  header?: unknown;
  claims?: unknown;
  /** Key to sign `<header>.<payload>` with; omitted → empty signature. */
  signer?: KeyObject;
  /** Explicit signature part (overrides signer). */
  sig?: string;
}

export function edHeader(x: string): { alg: string; jwk: { kty: string; crv: string; x: string } } {
  return { alg: 'EdDSA', jwk: { kty: 'OKP', crv: 'Ed25519', x } };
}

export function rawToken(p: RawTokenParts): string {
  const enc = (v: unknown): string => b64(typeof v === 'string' ? v : JSON.stringify(v));
  const signee = `${enc(p.header ?? {})}.${enc(p.claims ?? {})}`;
  const sig = p.sig ?? (p.signer ? b64(sign(null, Buffer.from(signee, 'ascii'), p.signer)) : '');
  return `${signee}.${sig}`;
}

/** A signed token by `k` with default good claims merged with `claims`. */
export function signed(k: TestKey, claims: Record<string, unknown> = {}): string {
  return rawToken({ header: edHeader(k.x), claims: { exp: NOW + 60, aud: [IDENTITY], ...claims }, signer: k.privateKey });
}

/** Nonces remembered per key until their expiry (by the injected clock). */
export class MemoryNonces implements NonceStore {
  private readonly seen = new Map<string, number>();
  constructor(private readonly now: () => number = nowSec) {}
  async useNonce(key: string, nonce: string, expiresAtSec: number): Promise<boolean> {
    const k = `${key}\0${nonce}`;
    const until = this.seen.get(k);
    if (until !== undefined && until >= this.now()) return false;
    this.seen.set(k, expiresAtSec);
    return true;
  }
}

/** Asserts that `p` rejects with an AuthError having the given fields. */
export async function rejectsAuth(
  p: Promise<unknown>,
  expected: { status?: 401 | 403; message?: string; code?: string; wwwAuthenticate?: string | undefined },
): Promise<AuthError> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof AuthError, `expected AuthError, got ${String(caught)}`);
  if (expected.status !== undefined) assert.equal(caught.status, expected.status);
  if (expected.message !== undefined) assert.equal(caught.message, expected.message);
  if (expected.code !== undefined) assert.equal(caught.code, expected.code);
  if ('wwwAuthenticate' in expected) assert.equal(caught.wwwAuthenticate, expected.wwwAuthenticate);
  return caught;
}

export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'gate-auth-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

function hasSshKeygen(): boolean {
  try {
    execFileSync('ssh-keygen', ['-?'], { stdio: 'ignore' });
    return true;
  } catch (e) {
    // ssh-keygen -? exits non-zero but exists; ENOENT means it is missing.
    return (e as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

/**
 * Writes an OpenSSH private key (and `.pub`) to `file`: with ssh-keygen when
 * available (the real tool's output), else with sshpk.
 */
export function writeSshKey(file: string, opts: { type?: 'ed25519' | 'rsa' | 'ecdsa'; passphrase?: string } = {}): void {
  const type = opts.type ?? 'ed25519';
  if (hasSshKeygen()) {
    const args = ['-q', '-t', type, '-N', opts.passphrase ?? '', '-C', 'test@gate', '-f', file];
    if (type === 'rsa') args.push('-b', '1024');
    execFileSync('ssh-keygen', args, { stdio: 'ignore' });
    return;
  }
  assert.ok(opts.passphrase === undefined && type !== 'rsa', 'ssh-keygen is needed for encrypted/RSA test keys');
  const key = type === 'ed25519' ? sshpk.generatePrivateKey('ed25519') : sshpk.generatePrivateKey('ecdsa', { curve: 'nistp256' });
  writeFileSync(file, key.toString('ssh'), { mode: 0o600 });
  writeFileSync(`${file}.pub`, key.toPublic().toString('ssh') + ' test@gate\n');
}

/** The unpadded base64url x of the ssh-ed25519 key in a `.pub` line. */
export function xOfPubLine(line: string): string {
  const key = sshpk.parseKey(line, 'ssh');
  const a = key.parts.find((p) => p.name === 'A');
  assert.ok(a);
  return b64(a.data);
}
