/**
 * The server's state directory (docs/storage.md):
 *
 *   <root>/lock               JSON {pid, host, start} of the process using it
 *   <root>/inventory.sqlite   the SQLite inventory (+ -wal, -shm while open)
 *   <root>/modules/<sha256>   module blobs, content-addressed
 *   <root>/snapshots/<name>   instance snapshot blobs
 *
 * Node has no fcntl/flock, so exclusivity is a pid file: created atomically
 * (link of a complete temporary file), and considered stale when its process
 * is gone — or when the pid has been reused by another process, which the
 * recorded start time (Linux /proc) tells apart — so a crash or SIGKILL never
 * leaves the directory locked.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import { link, mkdir, readFile, realpath, rename, unlink, writeFile } from 'node:fs/promises';
import { homedir, hostname } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { BlobStore } from './blobs.js';
import { StateDirLockedError } from './errors.js';

export interface StateDir {
  root: string;
  modules: BlobStore;
  snapshots: BlobStore;
  inventoryPath: string;
  lockPath: string;
  /** Releases the lock (the inventory is opened and closed by the caller). Idempotent. */
  close(): Promise<void>;
}

interface LockInfo {
  pid: number;
  host: string;
  start?: string;
}

/** Roots locked by this process (realpaths): a second openStateDir in the same process is refused too. */
const heldHere = new Set<string>();

/** Start time of a process in clock ticks since boot (Linux); undefined where /proc is unavailable. */
function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // "pid (comm) state ppid …": comm may contain spaces and parentheses, so count fields from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19]; // field 22, starttime
  } catch {
    return undefined;
  }
}

function parseLock(text: string): LockInfo | undefined {
  try {
    const v = JSON.parse(text) as Partial<LockInfo> | null;
    if (typeof v?.pid !== 'number' || !Number.isSafeInteger(v.pid) || v.pid <= 0 || typeof v.host !== 'string') return undefined;
    return { pid: v.pid, host: v.host, ...(typeof v.start === 'string' ? { start: v.start } : {}) };
  } catch {
    return undefined;
  }
}

/** Why the lock is held, or undefined if it is stale. */
function holder(info: LockInfo | undefined, root: string, lockPath: string): string | undefined {
  if (info === undefined) return undefined; // unreadable: written by no Gate that could still be running
  if (info.host !== hostname()) {
    return `process ${info.pid} on host ${info.host} (it cannot be checked from here; if that server is gone, delete ${lockPath})`;
  }
  if (info.pid === process.pid) {
    // Our pid in the file but not held here: a previous incarnation (containers often reuse low pids).
    return heldHere.has(root) ? 'this process (openStateDir was called twice)' : undefined;
  }
  try {
    process.kill(info.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return undefined;
    // EPERM: alive but another user's.
  }
  if (info.start !== undefined) {
    const now = processStart(info.pid);
    if (now !== undefined && now !== info.start) return undefined; // pid reused
  }
  return `process ${info.pid}`;
}

async function acquire(root: string, lockPath: string): Promise<string> {
  const start = processStart(process.pid);
  const content = JSON.stringify({ pid: process.pid, host: hostname(), ...(start !== undefined ? { start } : {}) }) + '\n';
  const temp = `${lockPath}.${randomBytes(6).toString('hex')}`;
  await writeFile(temp, content, { mode: 0o600 });
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await link(temp, lockPath); // atomic and exclusive: the lock appears complete or not at all
        return content;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      let seen: string;
      try {
        seen = await readFile(lockPath, 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // released meanwhile
        throw e;
      }
      const who = holder(parseLock(seen), root, lockPath);
      if (who !== undefined) throw new StateDirLockedError(root, who);
      // Stale. Move it aside rather than unlink it, so that if another starter
      // replaced it in between we notice (content differs) and put theirs back.
      const aside = `${lockPath}.stale-${randomBytes(6).toString('hex')}`;
      try {
        await rename(lockPath, aside);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw e;
      }
      const moved = await readFile(aside, 'utf8').catch(() => seen);
      if (moved !== seen) await link(aside, lockPath).catch(() => undefined);
      await unlink(aside).catch(() => undefined);
    }
    throw new StateDirLockedError(root, 'another process starting at the same time');
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

/**
 * Creates (mode 0700) and locks the state directory; throws
 * StateDirLockedError (GATE_STATE_DIR_LOCKED) if a live process holds it.
 * Leftover temporaries of interrupted blob writes are removed.
 */
export async function openStateDir(root: string): Promise<StateDir> {
  await mkdir(root, { recursive: true, mode: 0o700 });
  const real = await realpath(resolve(root));
  const lockPath = join(real, 'lock');
  const content = await acquire(real, lockPath);
  heldHere.add(real);

  // Best effort on a normal exit; a crash is covered by the staleness check.
  const onExit = (): void => {
    try {
      if (readFileSync(lockPath, 'utf8') === content) unlinkSync(lockPath);
    } catch {
      // already gone
    }
  };
  process.on('exit', onExit);
  let closed = false;
  const release = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    process.off('exit', onExit);
    heldHere.delete(real);
    const now = await readFile(lockPath, 'utf8').catch(() => undefined);
    if (now === content) await unlink(lockPath).catch(() => undefined);
  };

  try {
    const modules = new BlobStore(join(real, 'modules'), 'sha256');
    const snapshots = new BlobStore(join(real, 'snapshots'), 'safe');
    for (const store of [modules, snapshots]) {
      await mkdir(store.dir, { recursive: true, mode: 0o700 });
      await store.cleanTemp();
    }
    return { root: real, modules, snapshots, inventoryPath: join(real, 'inventory.sqlite'), lockPath, close: release };
  } catch (e) {
    await release();
    throw e;
  }
}

/**
 * server: ${XDG_STATE_HOME:-~/.local/state}/gate/server;
 * daemon: ${XDG_STATE_HOME:-~/.local/state}/gate/daemon.
 * A relative XDG_STATE_HOME is ignored, as the XDG spec requires.
 */
export function defaultStateDir(kind: 'server' | 'daemon', env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_STATE_HOME;
  const base = xdg !== undefined && xdg !== '' && isAbsolute(xdg) ? xdg : join(homedir(), '.local', 'state');
  return join(base, 'gate', kind);
}
