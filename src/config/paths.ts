import { mkdirSync, statSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';

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

/** Creates a directory readable only by us (if missing) and returns it. */
export function privateDir(path: string): string {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  const st = statSync(path);
  if (!st.isDirectory()) throw new Error(`${path} is not a directory`);
  return path;
}

/**
 * The Unix socket of the local gate-daemon: `${XDG_RUNTIME_DIR}/gate/daemon.sock`.
 * The daemon creates the directory (privateDir) before listening.
 */
export function daemonSocketPath(): string {
  return join(envVar('XDG_RUNTIME_DIR'), 'gate', 'daemon.sock');
}
