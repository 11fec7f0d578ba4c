/**
 * Known modules: content-addressed bytes on disk, their parsed programs
 * cached in memory, and per-principal pins in the inventory.
 */
import { createHash } from 'node:crypto';
import type { Program } from '../runtime/program.js';
import type { BlobStore } from '../store/blobs.js';
import type { Inventory, ModulePin } from '../store/inventory.js';
import { badRequest, moduleNotFound, notFound } from './errors.js';

/** How many parsed programs stay cached. */
const PROGRAM_CACHE_SIZE = 64;
/** How many pins stay cached (see ModuleRegistry.pins); all are dropped when it is reached. */
const PIN_CACHE_SIZE = 16384;

export function sha256Hex(data: Uint8Array | Uint8Array[]): string {
  const h = createHash('sha256');
  for (const p of Array.isArray(data) ? data : [data]) h.update(p);
  return h.digest('hex');
}

/** Checks a module key from a URL path (spec §3.4: only the hex form is checked). */
export function checkModuleKey(key: string): void {
  if (!/^[0-9a-fA-F]*$/.test(key) || key === '') throw notFound('module hash must be hex-encoded');
  if (key !== key.toLowerCase()) throw notFound('module hash must use lower-case hex encoding');
}

/** Keys of the spec are only checked for hex form; only a full sha256 can name a stored module. */
const isSha256 = (key: string): boolean => /^[0-9a-f]{64}$/.test(key);

export class ModuleRegistry {
  private readonly programs = new Map<string, Promise<Program>>();
  /** Modules in use by instances that are not yet stored (e.g. transient calls). */
  private readonly inUse = new Map<string, number>();
  /**
   * Modules whose collection was asked for while they were in use, or stored
   * for a use that may leave no reference (collectAfterUse): looked at again
   * when their last use ends (the end of a transient call collects only
   * these: asking the inventory at the end of every call costs a query each).
   */
  private readonly collectWhenUnused = new Set<string>();

  /**
   * Pins looked up before (principal and module → the pin), when this
   * process alone writes the inventory (`cachePins`): every call of a pinned
   * module looks its pin up, and pins change only through this registry.
   * Bumped by every pin and unpin: a lookup that was under way meanwhile
   * does not cache what it read.
   */
  private readonly pins: Map<string, ModulePin> | undefined;
  private pinGeneration = 0;

  constructor(
    private readonly blobs: BlobStore,
    private readonly inventory: Inventory,
    private readonly loadProgram: (bytes: Uint8Array) => Promise<Program>,
    /** True when no other process writes the inventory (SQLite in a locked state directory, memory). */
    cachePins = false,
  ) {
    this.pins = cachePins ? new Map() : undefined;
  }

  /** Parses (and caches) module bytes whose hash is known. */
  program(hash: string, bytes: Uint8Array): Promise<Program> {
    let p = this.programs.get(hash);
    if (!p) {
      p = this.loadProgram(bytes);
      this.remember(hash, p);
      p.catch(() => this.programs.delete(hash));
    }
    return p;
  }

  /** The program of a stored module; undefined if its bytes are not on disk. */
  async storedProgram(hash: string): Promise<Program | undefined> {
    if (!isSha256(hash)) return undefined;
    const cached = this.programs.get(hash);
    if (cached) return cached;
    const bytes = await this.blobs.get(hash);
    if (!bytes) return undefined;
    return this.program(hash, bytes);
  }

  async size(hash: string): Promise<number | undefined> {
    return isSha256(hash) ? this.blobs.size(hash) : undefined;
  }

  readStream(hash: string): NodeJS.ReadableStream | undefined {
    return isSha256(hash) ? this.blobs.createReadStream(hash) : undefined;
  }

  /** Stores module bytes under their hash (once). */
  async store(hash: string, parts: Uint8Array[]): Promise<void> {
    if (!(await this.blobs.has(hash))) await this.blobs.put(hash, parts);
  }

  /** Uploaded bytes must hash to the key in the URL; a known module must also have the same length. */
  async verifyUpload(key: string, bytes: Uint8Array): Promise<void> {
    // Bytes that hash to the key are the module, whatever is stored; the
    // stored length only chooses the message for bytes that do not (and a
    // file system lookup per upload-and-call is not free).
    if (sha256Hex(bytes) === key) return;
    const known = isSha256(key) ? await this.blobs.size(key) : undefined;
    if (known !== undefined && known !== bytes.length) throw badRequest('invalid module content');
    throw badRequest('module hash does not match content');
  }

  async pin(principal: string, hash: string, tags: string[]): Promise<void> {
    this.forgetPin(principal, hash);
    try {
      await this.inventory.pinModule(principal, hash, tags);
    } finally {
      this.forgetPin(principal, hash);
    }
    // Referenced now: nothing to look at when its use ends.
    if (!this.inUse.has(hash)) this.collectWhenUnused.delete(hash);
  }

  /**
   * Bytes stored for a use that may leave no reference (a module fetched from
   * a source for a call): collected when that use ends unless referenced by then.
   */
  collectAfterUse(hash: string): void {
    this.collectWhenUnused.add(hash);
  }

  async unpin(principal: string, hash: string): Promise<boolean> {
    if (!isSha256(hash)) return false;
    this.forgetPin(principal, hash);
    let removed: boolean;
    try {
      removed = await this.inventory.unpinModule(principal, hash);
    } finally {
      this.forgetPin(principal, hash);
    }
    if (removed) await this.collect(hash);
    return removed;
  }

  async info(principal: string, hash: string): Promise<ModulePin | undefined> {
    if (!isSha256(hash)) return undefined;
    if (!this.pins) return this.inventory.getModule(principal, hash);
    const key = `${principal}\0${hash}`;
    const cached = this.pins.get(key);
    if (cached) return { module: cached.module, tags: [...cached.tags] };
    const generation = this.pinGeneration;
    const pin = await this.inventory.getModule(principal, hash);
    if (pin && generation === this.pinGeneration) {
      if (this.pins.size >= PIN_CACHE_SIZE) this.pins.clear();
      this.pins.set(key, { module: pin.module, tags: [...pin.tags] });
    }
    return pin;
  }

  private forgetPin(principal: string, hash: string): void {
    this.pinGeneration++;
    this.pins?.delete(`${principal}\0${hash}`);
  }

  list(principal: string): Promise<ModulePin[]> {
    return this.inventory.listModules(principal);
  }

  /** A module this principal may read: pinned by it. */
  async requirePinned(principal: string, hash: string): Promise<ModulePin> {
    const pin = await this.info(principal, hash);
    if (!pin) throw moduleNotFound();
    return pin;
  }

  acquire(hash: string): void {
    this.inUse.set(hash, (this.inUse.get(hash) ?? 0) + 1);
  }

  /**
   * Ends one use. `referenceDropped`: the user's record that referred to the
   * module is gone from the inventory (a deleted or updated instance), so the
   * module may be unreferenced now; a transient call never had a record, and
   * its end collects only what was asked for while it ran.
   */
  async releaseUse(hash: string, referenceDropped = true): Promise<void> {
    const n = (this.inUse.get(hash) ?? 1) - 1;
    if (n > 0) this.inUse.set(hash, n);
    else this.inUse.delete(hash);
    if (n > 0) return;
    if (this.collectWhenUnused.delete(hash) || referenceDropped) await this.collect(hash);
  }

  /** Deletes a module's bytes once nothing refers to them any more. */
  async collect(hash: string): Promise<void> {
    if (this.inUse.has(hash)) {
      this.collectWhenUnused.add(hash);
      return;
    }
    if (await this.inventory.moduleReferenced(hash)) return;
    this.programs.delete(hash);
    await this.blobs.delete(hash);
  }

  private remember(hash: string, p: Promise<Program>): void {
    this.programs.set(hash, p);
    if (this.programs.size > PROGRAM_CACHE_SIZE) {
      const oldest = this.programs.keys().next().value;
      if (oldest !== undefined) this.programs.delete(oldest);
    }
  }
}
