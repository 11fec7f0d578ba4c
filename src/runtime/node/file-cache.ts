import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { PreparedCache } from '../../prepare/cache.js';

/** The per-user cache directory for prepared modules (XDG). */
export function defaultCacheDir(): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'gate', 'prepared');
}

/**
 * Prepared modules on disk, one file per key. Writes go through a temporary
 * file and a rename, so a crash never leaves a truncated entry behind.
 */
export class FileCache implements PreparedCache {
  constructor(private readonly dir: string = defaultCacheDir()) {}

  async get(key: string): Promise<Uint8Array | undefined> {
    if (!/^[0-9a-f]{64}$/.test(key)) return undefined;
    try {
      return new Uint8Array(await readFile(join(this.dir, `${key}.wasm`)));
    } catch {
      return undefined;
    }
  }

  async set(key: string, bytes: Uint8Array): Promise<void> {
    if (!/^[0-9a-f]{64}$/.test(key)) return;
    try {
      await mkdir(this.dir, { recursive: true });
      const tmp = join(this.dir, `.${key}.${process.pid}.tmp`);
      await writeFile(tmp, bytes);
      await rename(tmp, join(this.dir, `${key}.wasm`));
    } catch {
      // A cache that cannot be written only costs time.
    }
  }
}
