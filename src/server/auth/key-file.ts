/**
 * Ed25519 key files (OpenSSH): a client's identity (spec cli.md §2.2). The
 * public key is the principal; the server uses the same loader for its
 * optional identity key (spec web-api.md §5).
 */
import { createPrivateKey, createPublicKey, sign, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import sshpk from 'sshpk';
import { GateError } from '../../errors.js';

export interface ClientIdentity {
  /** `ed25519:<x>` */
  principalId: string;
  /** Ed25519 signature (64 bytes) of data. */
  sign(data: Uint8Array): Uint8Array;
  publicJwk: { kty: 'OKP'; crv: 'Ed25519'; x: string };
}

export type IdentityErrorCode = 'GATE_IDENTITY_UNREADABLE' | 'GATE_IDENTITY_EMPTY' | 'GATE_IDENTITY_ENCRYPTED' | 'GATE_IDENTITY_INVALID';

export class IdentityError extends GateError {
  declare readonly code: IdentityErrorCode;
  readonly file: string;
  constructor(code: IdentityErrorCode, file: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.file = file;
  }
}

/** Loads an unencrypted Ed25519 private key (OpenSSH format; PKCS#8 PEM also works via sshpk). */
export async function loadIdentity(file: string): Promise<ClientIdentity> {
  const data = await readIdentityFile(file);
  if (data.length === 0) throw new IdentityError('GATE_IDENTITY_EMPTY', file, `${file}: identity file is empty`);
  return parseIdentity(data, file);
}

/**
 * Like loadIdentity, but an empty file gives undefined: the CLI then sends an
 * unsigned local token (allowed only for loopback http addresses).
 */
export async function loadOptionalIdentity(file: string): Promise<ClientIdentity | undefined> {
  const data = await readIdentityFile(file);
  return data.length === 0 ? undefined : parseIdentity(data, file);
}

async function readIdentityFile(file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (e) {
    const reason = (e as NodeJS.ErrnoException).code ?? String(e);
    throw new IdentityError('GATE_IDENTITY_UNREADABLE', file, `${file}: cannot read identity file (${reason})`, { cause: e });
  }
}

/** Parses key file contents; `file` names the key in error messages. */
export function parseIdentity(data: Uint8Array, file: string): ClientIdentity {
  let key: sshpk.PrivateKey;
  try {
    key = sshpk.parsePrivateKey(Buffer.from(data), 'auto', { filename: file });
  } catch (e) {
    if (e instanceof Error && e.name === 'KeyEncryptedError') {
      throw new IdentityError('GATE_IDENTITY_ENCRYPTED', file, `${file}: encrypted (passphrase-protected) private keys are not supported`, { cause: e });
    }
    throw new IdentityError('GATE_IDENTITY_INVALID', file, `${file}: not an Ed25519 private key`, { cause: e });
  }
  if (key.type !== 'ed25519') throw new IdentityError('GATE_IDENTITY_INVALID', file, `${file}: not an Ed25519 private key`);
  const seed = key.parts.find((p) => p.name === 'k')?.data;
  const pub = key.parts.find((p) => p.name === 'A')?.data;
  if (seed === undefined || seed.length < 32 || pub === undefined) throw new IdentityError('GATE_IDENTITY_INVALID', file, `${file}: not an Ed25519 private key`);
  let privateKey: KeyObject;
  try {
    // Some encodings store seed‖public (64 bytes); the seed is the first half.
    const d = Buffer.from(seed.subarray(0, 32)).toString('base64url');
    const x = Buffer.from(pub).toString('base64url');
    privateKey = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d, x }, format: 'jwk' });
  } catch (e) {
    throw new IdentityError('GATE_IDENTITY_INVALID', file, `${file}: not an Ed25519 private key`, { cause: e });
  }
  return identityFromPrivateKey(privateKey);
}

/** Wraps a node Ed25519 private KeyObject (tests, generated keys). */
export function identityFromPrivateKey(privateKey: KeyObject): ClientIdentity {
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new TypeError('not an Ed25519 private key');
  // The public half is derived, not taken from the file, so a file whose
  // halves disagree cannot make us claim a key we cannot sign for.
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new TypeError('Ed25519 key without x');
  const x = jwk.x;
  return {
    principalId: `ed25519:${x}`,
    publicJwk: { kty: 'OKP', crv: 'Ed25519', x },
    sign(data: Uint8Array): Uint8Array {
      return new Uint8Array(sign(null, data, privateKey));
    },
  };
}
