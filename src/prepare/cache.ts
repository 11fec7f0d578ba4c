/** Where prepared modules are kept between runs, keyed by content hash. */
export interface PreparedCache {
  get(key: string): Promise<Uint8Array | undefined>;
  set(key: string, bytes: Uint8Array): Promise<void>;
}

/** An in-memory cache bounded by total size; least recently used entries go first. */
export class MemoryCache implements PreparedCache {
  private readonly entries = new Map<string, Uint8Array>();
  private size = 0;
  constructor(private readonly maxBytes = 256 * 1024 * 1024) {}

  async get(key: string): Promise<Uint8Array | undefined> {
    const v = this.entries.get(key);
    if (v) {
      this.entries.delete(key);
      this.entries.set(key, v);
    }
    return v;
  }

  async set(key: string, bytes: Uint8Array): Promise<void> {
    const old = this.entries.get(key);
    if (old) this.size -= old.length;
    this.entries.delete(key);
    this.entries.set(key, bytes);
    this.size += bytes.length;
    for (const [k, v] of this.entries) {
      if (this.size <= this.maxBytes) break;
      this.entries.delete(k);
      this.size -= v.length;
    }
  }
}
