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

/** A bounded map, least recently used first out; keys longer than `maxKeyLength` are not kept. */
export class LruMap<V> {
  private readonly items = new Map<string, V>();

  constructor(
    readonly maxEntries: number,
    readonly maxKeyLength = Infinity,
  ) {}

  get size(): number {
    return this.items.size;
  }

  /** The value of `key`; a hit makes it the most recently used. */
  get(key: string): V | undefined {
    const v = this.items.get(key);
    if (v === undefined) return undefined;
    this.items.delete(key);
    this.items.set(key, v);
    return v;
  }

  set(key: string, v: V): void {
    if (key.length > this.maxKeyLength || this.maxEntries <= 0) return;
    this.items.delete(key);
    while (this.items.size >= this.maxEntries) this.items.delete(this.items.keys().next().value!);
    this.items.set(key, v);
  }

  has(key: string): boolean {
    return this.items.has(key);
  }

  delete(key: string): void {
    this.items.delete(key);
  }

  clear(): void {
    this.items.clear();
  }
}

export class VerifiedTokenCache {
  private readonly items: LruMap<VerifiedToken>;

  constructor(maxEntries = 4096, maxTokenLength = 1024) {
    this.items = new LruMap(maxEntries, maxTokenLength);
  }

  get size(): number {
    return this.items.size;
  }

  /** The entry of `token` unless it has expired at `nowSec` (then it is dropped); a hit makes it the most recently used. */
  get(token: string, nowSec: number): VerifiedToken | undefined {
    const v = this.items.get(token);
    if (v === undefined || v.exp >= nowSec) return v;
    this.items.delete(token);
    return undefined;
  }

  set(token: string, v: VerifiedToken): void {
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
