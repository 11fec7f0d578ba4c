/**
 * Verified bearer tokens, remembered by their exact text until they expire
 * (spec web-api.md §4.1: clients reuse one token for minutes, and checking
 * its Ed25519 signature and parsing it cost more than the rest of a call's
 * admission). Bounded in entries, least recently used first out, and in the
 * length of a token kept (longer ones are verified every time), so that an
 * attacker's tokens cost at most a few MiB here.
 *
 * What is kept are the token's checked contents; what depends on the request
 * or on time (expiry, audience, nonce, the access policy) is still checked
 * on every use by the caller.
 */
import type { Principal } from './principal.js';

export interface VerifiedToken {
  /** The signer as a principal (id, key, scope). */
  principal: Principal;
  /** Seconds since the epoch; the entry is gone after this. */
  exp: number;
  aud: readonly string[];
  /** '' for none. */
  nonce: string;
}

export class VerifiedTokenCache {
  private readonly items = new Map<string, VerifiedToken>();

  constructor(
    readonly maxEntries = 4096,
    readonly maxTokenLength = 1024,
  ) {}

  get size(): number {
    return this.items.size;
  }

  /** The entry of `token` unless it has expired at `nowSec` (then it is dropped); a hit makes it the most recently used. */
  get(token: string, nowSec: number): VerifiedToken | undefined {
    const v = this.items.get(token);
    if (v === undefined) return undefined;
    this.items.delete(token);
    if (v.exp < nowSec) return undefined;
    this.items.set(token, v);
    return v;
  }

  set(token: string, v: VerifiedToken): void {
    if (token.length > this.maxTokenLength || this.maxEntries <= 0) return;
    this.items.delete(token);
    while (this.items.size >= this.maxEntries) this.items.delete(this.items.keys().next().value!);
    this.items.set(token, v);
  }

  has(token: string): boolean {
    return this.items.has(token);
  }

  /** Forgets every token (e.g. the set of admitted keys changed). */
  clear(): void {
    this.items.clear();
  }
}
