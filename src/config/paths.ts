import { lstatSync, mkdirSync, statSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { GateError } from '../errors.js';

/** The HOME-based XDG defaults of spec cli.md §1 (used when the variable is unset or empty). */
function xdgDefault(name: string): string | undefined {
  const home = process.env['HOME'] || homedir();
  switch (name) {
    case 'HOME':
      return home;
    case 'XDG_CACHE_HOME':
      return join(home, '.cache');
    case 'XDG_CONFIG_HOME':
      return join(home, '.config');
    case 'XDG_DATA_HOME':
      return join(home, '.local/share');
    case 'XDG_STATE_HOME':
      return join(home, '.local/state');
    case 'XDG_RUNTIME_DIR':
      // No session manager gave us one (containers, CI): a per-user directory
      // under the temporary directory, made private by privateDir().
      return join(tmpdir(), `gate-${process.getuid?.() ?? 'user'}`);
    default:
      return undefined;
  }
}

/** The value of an environment variable, with the XDG defaults. */
export function envVar(name: string): string {
  return process.env[name] || xdgDefault(name) || '';
}

/** Expands `${VAR}` (unset variables expand to "", like a shell's). */
export function expandPath(path: string): string {
  return path.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => envVar(name));
}

/**
 * A runtime directory (or socket) that is not safe to use: another user
 * could put a socket there that we would talk to, or read ours. The message
 * says what is wrong and how to fix it.
 */
export class UnsafePathError extends GateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GATE_UNSAFE_PATH', message, options);
  }
}

const HINT = 'set XDG_RUNTIME_DIR to a directory only you can use';

const ERRNO_TEXT: Record<string, string> = {
  ENOTDIR: 'a part of the path is not a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOENT: 'a part of the path does not exist',
  ELOOP: 'too many symbolic links',
};

function errnoText(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === undefined) return String(e);
  return ERRNO_TEXT[code] ? `${ERRNO_TEXT[code]} (${code})` : code;
}

/**
 * Checks that nobody but us (and root) can replace what is in `dir`: each
 * ancestor is owned by us or root, and one others may write (like /tmp) has
 * the sticky bit, so that they cannot rename our entries.
 */
function checkAncestors(dir: string, uid: number): void {
  for (let d = dirname(dir); ; d = dirname(d)) {
    const st = statSync(d);
    if (st.uid !== uid && st.uid !== 0) throw new UnsafePathError(`${d} (above ${dir}) is owned by uid ${st.uid}, not by you or root: refusing to use ${dir}; ${HINT}`);
    if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) {
      throw new UnsafePathError(`${d} (above ${dir}) may be written by other users and is not sticky: refusing to use ${dir}; ${HINT}`);
    }
    if (d === dirname(d)) return;
  }
}

/**
 * Creates a directory only we may use (mode 0700, if missing) and returns
 * it. An existing one must be a real directory (not a symbolic link) owned
 * by us with no access for others, inside directories others cannot change:
 * otherwise another user could have prepared it (the fallback runtime
 * directory is under the shared temporary directory). Throws UnsafePathError.
 */
export function privateDir(path: string): string {
  try {
    mkdirSync(path, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new UnsafePathError(`cannot create the directory ${path}: ${errnoText(e)}; ${HINT}`, { cause: e });
  }
  const uid = process.getuid?.();
  const st = lstatSync(path);
  if (st.isSymbolicLink()) throw new UnsafePathError(`${path} is a symbolic link: refusing to follow it; remove it, or ${HINT}`);
  if (!st.isDirectory()) throw new UnsafePathError(`${path} is not a directory; ${HINT}`);
  if (uid === undefined) return path; // no Unix users (not a platform Gate runs on)
  if (st.uid !== uid) throw new UnsafePathError(`${path} is owned by uid ${st.uid}, not by you (uid ${uid}): refusing to use it; ${HINT}`);
  if ((st.mode & 0o077) !== 0) {
    throw new UnsafePathError(`${path} may be used by other users (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}): refusing to use it; run chmod 700 ${path}`);
  }
  checkAncestors(path, uid);
  return path;
}

/**
 * Checks an existing socket before we connect to it or remove it: a socket
 * owned by us (false when there is nothing at `path`).
 */
export function checkOwnSocket(path: string): boolean {
  let st;
  try {
    st = lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new UnsafePathError(`cannot check ${path}: ${errnoText(e)}`, { cause: e });
  }
  if (!st.isSocket()) throw new UnsafePathError(`${path} is not a socket (it is in the place of the gate-daemon's socket): refusing to use or remove it`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) throw new UnsafePathError(`${path} is owned by uid ${st.uid}, not by you (uid ${uid}): refusing to talk to it; ${HINT}`);
  return true;
}

/**
 * The Unix socket of the local gate-daemon: `${XDG_RUNTIME_DIR}/gate/daemon.sock`.
 * The daemon creates the directory (privateDir) before listening.
 */
export function daemonSocketPath(): string {
  return join(envVar('XDG_RUNTIME_DIR'), 'gate', 'daemon.sock');
}
