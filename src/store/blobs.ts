/**
 * Blob files in one directory: content-addressed modules (name = sha256 hex)
 * and instance snapshots. Writes are atomic — a temporary file in the same
 * directory is written, fsynced and renamed over the final name, then the
 * directory is fsynced — so a crash leaves either the old file, the new one,
 * or a stray temporary (ignored by list(), removed by cleanTemp()), never a
 * half-written blob under its final name.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, createReadStream, openSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { BlobHashMismatchError, InvalidBlobNameError } from './errors.js';

/** 'sha256': lower-case sha256 hex only (module store). 'safe': letters, digits and `_ - . : =`, not starting with '.', no '..' (snapshot store). */
export type BlobNaming = 'sha256' | 'safe';

const SHA256_HEX = /^[0-9a-f]{64}$/;
const SAFE = /^[A-Za-z0-9_][A-Za-z0-9_.:=-]{0,199}$/;
// Valid names never start with '.', so temporaries cannot collide with blobs or be listed as one.
const TEMP_PREFIX = '.tmp-';

function isErrno(e: unknown, code: string): boolean {
  return (e as NodeJS.ErrnoException | null)?.code === code;
}

export class BlobStore {
  readonly dir: string;
  readonly naming: BlobNaming;
  private ready: Promise<void> | undefined;

  constructor(dir: string, naming: BlobNaming = 'sha256') {
    this.dir = dir;
    this.naming = naming;
  }

  /** Throws InvalidBlobNameError unless `name` fits this store's naming rule. */
  checkName(name: string): void {
    if (typeof name !== 'string') throw new InvalidBlobNameError(String(name), 'not a string');
    if (this.naming === 'sha256') {
      if (!SHA256_HEX.test(name)) throw new InvalidBlobNameError(name, 'module blobs are named by their lower-case sha256 hex (64 characters)');
    } else if (!SAFE.test(name) || name.includes('..')) {
      throw new InvalidBlobNameError(name, "use 1–200 letters, digits and '_ - . : =', not starting with '.' and without '..' or path separators");
    }
  }

  isValidName(name: string): boolean {
    try {
      this.checkName(name);
      return true;
    } catch {
      return false;
    }
  }

  private path(name: string): string {
    this.checkName(name);
    return join(this.dir, name);
  }

  private ensureDir(): Promise<void> {
    this.ready ??= mkdir(this.dir, { recursive: true, mode: 0o700 }).then(
      () => undefined,
      (e: unknown) => {
        this.ready = undefined; // let a later call retry (e.g. after the operator fixed permissions)
        throw e;
      },
    );
    return this.ready;
  }

  async put(name: string, parts: readonly Uint8Array[]): Promise<void> {
    const final = this.path(name);
    await this.ensureDir();
    const temp = join(this.dir, TEMP_PREFIX + randomBytes(8).toString('hex'));
    const fh = await open(temp, 'wx', 0o600);
    let renamed = false;
    try {
      try {
        for (const part of parts) {
          let off = 0;
          while (off < part.byteLength) off += (await fh.write(part, off, part.byteLength - off)).bytesWritten;
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(temp, final);
      renamed = true;
      await this.syncDir();
    } finally {
      if (!renamed) await unlink(temp).catch(() => undefined);
    }
  }

  /** Stores the content under `hash` only if it hashes to it; throws BlobHashMismatchError otherwise (nothing is written). */
  async putVerified(hash: string, parts: readonly Uint8Array[]): Promise<void> {
    this.checkName(hash);
    if (!SHA256_HEX.test(hash)) throw new InvalidBlobNameError(hash, 'putVerified needs a lower-case sha256 hex name');
    const h = createHash('sha256');
    for (const p of parts) h.update(p);
    const actual = h.digest('hex');
    if (actual !== hash) throw new BlobHashMismatchError(hash, actual);
    await this.put(hash, parts);
  }

  async get(name: string): Promise<Uint8Array | undefined> {
    const p = this.path(name);
    try {
      return await readFile(p);
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return undefined;
      throw e;
    }
  }

  async has(name: string): Promise<boolean> {
    return (await this.size(name)) !== undefined;
  }

  async size(name: string): Promise<number | undefined> {
    const p = this.path(name);
    try {
      const st = await stat(p);
      return st.isFile() ? st.size : undefined;
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return undefined;
      throw e;
    }
  }

  /** Removing a missing blob is not an error (garbage collection may race with another delete). */
  async delete(name: string): Promise<void> {
    const p = this.path(name);
    try {
      await unlink(p);
    } catch (e) {
      if (!isErrno(e, 'ENOENT')) throw e;
    }
  }

  /** Names of the stored blobs, sorted; temporaries and foreign files are left out. */
  async list(): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return [];
      throw e;
    }
    return names.filter((n) => this.isValidName(n)).sort();
  }

  /**
   * For large downloads. The file is opened before returning, so a blob
   * deleted or replaced afterwards still streams completely (the open file
   * keeps the old content); undefined if it does not exist.
   */
  createReadStream(name: string): Readable | undefined {
    const p = this.path(name);
    let fd: number;
    try {
      fd = openSync(p, 'r');
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return undefined;
      throw e;
    }
    try {
      return createReadStream(p, { fd, autoClose: true });
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /**
   * Removes temporaries left by writes interrupted by a crash. Only safe
   * while no other process writes to the directory: the state-dir lock
   * guarantees that (openStateDir calls this). In a directory other
   * processes write to (a cluster's shared one), `minAgeMs` spares the
   * temporaries younger than that: writes that may still be going on.
   */
  async cleanTemp(minAgeMs = 0): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return 0;
      throw e;
    }
    let n = 0;
    for (const name of names) {
      if (!name.startsWith(TEMP_PREFIX)) continue;
      if (minAgeMs > 0) {
        const st = await stat(join(this.dir, name)).catch(() => undefined);
        if (st === undefined || Date.now() - st.mtimeMs < minAgeMs) continue;
      }
      await unlink(join(this.dir, name)).catch((e: unknown) => {
        if (!isErrno(e, 'ENOENT')) throw e;
      });
      n++;
    }
    return n;
  }

  /** The rename is durable only once the directory entry is on disk. */
  private async syncDir(): Promise<void> {
    const dh = await open(this.dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  }
}
