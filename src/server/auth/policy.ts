/**
 * Access policies (spec cli.md §4.1 `access.policy`, web-api.md §4.3).
 *
 * A policy runs after token verification, for every operation including
 * anonymous ones. `public` lets everyone in; `ssh` admits only principals
 * whose key is listed as `ssh-ed25519` in an authorized_keys file.
 */
import { readFile, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import sshpk from 'sshpk';
import { AccessPolicyConfigError, AuthError, AuthorizedKeysError } from './errors.js';
import { encodeBase64Url, type Principal } from './principal.js';
import { forgetVerifiedTokens } from './token.js';

export interface AccessPolicy {
  /** The `access.policy` value that made it. */
  readonly name: string;
  /** Throws AuthError 401 `missing authentication credentials` or 403 `permission denied`. */
  authorize(principal: Principal | undefined): Promise<void>;
}

export const POLICY_NAMES = ['public', 'ssh'] as const;
export type PolicyName = (typeof POLICY_NAMES)[number];

export function publicPolicy(): AccessPolicy {
  return { name: 'public', authorize: async () => {} };
}

/**
 * The ssh-ed25519 keys of an authorized_keys text, as unpadded base64url of
 * the 32 raw bytes. Other key types are ignored, as are options (`from=`,
 * `command=`…: the original ignores them too; they mean nothing to Gate).
 */
export function parseAuthorizedKeys(text: string, file: string): Set<string> {
  const keys = new Set<string>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    let fields = line.split(/[ \t]+/);
    if (fields[0] !== 'ssh-ed25519') fields = skipOptions(line).split(/[ \t]+/);
    if (fields[0] !== 'ssh-ed25519') continue;
    const key = parseEd25519Blob(fields[1] ?? '');
    if (key === undefined) throw new AuthorizedKeysError(file, `${file}:${i + 1}: invalid ssh-ed25519 public key`);
    keys.add(key);
  }
  return keys;
}

/** Drops the leading options field (which may contain quoted spaces). */
function skipOptions(line: string): string {
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '\\' && quoted) i++;
    else if (c === '"') quoted = !quoted;
    else if (!quoted && (c === ' ' || c === '\t')) return line.slice(i).trim();
  }
  return '';
}

function parseEd25519Blob(b64: string): string | undefined {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return undefined;
  const blob = Buffer.from(b64, 'base64');
  let key: sshpk.Key;
  try {
    key = sshpk.parseKey(`ssh-ed25519 ${b64}`, 'ssh');
  } catch {
    return undefined;
  }
  // sshpk tolerates trailing bytes; re-encoding and comparing makes the check exact.
  if (key.type !== 'ed25519' || !key.toBuffer('rfc4253').equals(blob)) return undefined;
  const a = key.parts.find((p) => p.name === 'A')?.data;
  return a !== undefined && a.length === 32 ? encodeBase64Url(a) : undefined;
}

interface FileVersion {
  mtimeMs: number;
  ctimeMs: number;
  size: number;
  ino: number;
}

/**
 * Loads the file now (so a bad file stops startup) and reloads it when its
 * stat changes. A file that later becomes unreadable or malformed fails
 * closed: authorize throws AuthorizedKeysError (a server error) until fixed.
 */
export async function sshPolicy(authorizedKeysFile: string): Promise<AccessPolicy> {
  const file = authorizedKeysFile;
  let version: FileVersion | undefined;
  let keys = new Set<string>();
  let reloading: Promise<void> | undefined;

  const load = async (): Promise<void> => {
    let v: FileVersion;
    let text: string;
    try {
      const st = await stat(file);
      v = { mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, size: st.size, ino: st.ino };
      if (version !== undefined && sameVersion(v, version)) return;
      // The admitted keys change: tokens verified so far are verified again.
      forgetVerifiedTokens();
      text = await readFile(file, 'utf8');
    } catch (e) {
      version = undefined;
      keys = new Set();
      forgetVerifiedTokens();
      const reason = (e as NodeJS.ErrnoException).code ?? String(e);
      throw new AuthorizedKeysError(file, `access.ssh.authorizedkeys: cannot read ${file} (${reason})`, { cause: e });
    }
    try {
      keys = parseAuthorizedKeys(text, file);
      version = v;
    } catch (e) {
      version = undefined;
      keys = new Set();
      throw e;
    }
  };

  const refresh = (): Promise<void> => {
    // Concurrent requests share one stat/reload.
    reloading ??= load().finally(() => {
      reloading = undefined;
    });
    return reloading;
  };

  await refresh();

  return {
    name: 'ssh',
    async authorize(principal: Principal | undefined): Promise<void> {
      if (principal === undefined) throw AuthError.missingCredentials();
      await refresh();
      if (principal.key === undefined || !keys.has(encodeBase64Url(principal.key))) throw AuthError.permissionDenied();
    },
  };
}

function sameVersion(a: FileVersion, b: FileVersion): boolean {
  return a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs && a.size === b.size && a.ino === b.ino;
}

export interface PolicyOptions {
  /** `access.ssh.authorizedkeys`; default `${HOME}/.ssh/authorized_keys`. */
  authorizedKeys?: string;
  /** Home directory for the default (defaults to $HOME, then os.homedir()). */
  home?: string;
}

/** Builds the policy named by `access.policy`; there is no default. */
export async function parsePolicy(name: string | undefined, opts: PolicyOptions = {}): Promise<AccessPolicy> {
  const valid = POLICY_NAMES.join(', ');
  switch (name) {
    case 'public':
      return publicPolicy();
    case 'ssh': {
      const file = opts.authorizedKeys ?? join(opts.home ?? process.env['HOME'] ?? homedir(), '.ssh', 'authorized_keys');
      return sshPolicy(file);
    }
    case undefined:
    case '':
      throw new AccessPolicyConfigError(`access.policy must be set (valid values: ${valid})`);
    default:
      throw new AccessPolicyConfigError(`access.policy: unknown policy ${JSON.stringify(name)} (valid values: ${valid})`);
  }
}
