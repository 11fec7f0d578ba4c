/**
 * Finding the local gate-daemon: its Unix socket, started on demand like a
 * D-Bus activated service when nobody listens there.
 */
import { spawn } from 'node:child_process';
import { closeSync, constants, existsSync, fstatSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkOwnSocket, daemonSocketPath, envVar, privateDir, UnsafePathError } from '../config/index.js';
import { GateError } from '../errors.js';

export class DaemonUnavailableError extends GateError {
  constructor(message: string) {
    super('GATE_DAEMON_UNAVAILABLE', message);
  }
}

/** How long a starting daemon may take to listen (it prepares its state first). */
const START_TIMEOUT_MS = 30_000;
const POLL_MS = 50;

const DAEMON_BIN = fileURLToPath(new URL('../../../bin/gate-daemon', import.meta.url));

function canConnect(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ path });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** The daemon's log when the client started it: `${XDG_STATE_HOME}/gate/daemon.log`. */
export function daemonLogPath(): string {
  return join(envVar('XDG_STATE_HOME'), 'gate', 'daemon.log');
}

/** The pid of a daemon this client started: `${XDG_RUNTIME_DIR}/gate/daemon.pid`. */
export function daemonPidPath(): string {
  return join(dirname(daemonSocketPath()), 'daemon.pid');
}

/** Opens a file for writing (created 0600), refusing to follow a symbolic link put in its place. */
function openNoFollow(path: string, flags: number): number {
  try {
    return openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW | flags, 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new UnsafePathError(`${path} is a symbolic link: refusing to write through it (remove it)`, { cause: e });
    throw new DaemonUnavailableError(`cannot open ${path}: ${code ?? String(e)}`);
  }
}


/** The error the daemon printed (`gate-daemon: …`) in its log since `start`, so that the user need not open the log. */
function daemonError(log: string, start: number): string | undefined {
  try {
    const text = readFileSync(log, 'utf8').slice(start);
    const lines = text.split('\n').filter((l) => l.startsWith('gate-daemon: '));
    return lines.at(-1)?.slice('gate-daemon: '.length);
  } catch {
    return undefined;
  }
}

/**
 * Returns the path of a socket the daemon listens on, starting
 * bin/gate-daemon (detached, so it outlives this command) if needed.
 */
export async function ensureDaemon(): Promise<string> {
  const socket = daemonSocketPath();
  // Only a socket of ours in a directory only we can use is our daemon's:
  // anything else there may have been put by another user.
  privateDir(dirname(socket));
  if (checkOwnSocket(socket) && (await canConnect(socket))) return socket;
  if (!existsSync(DAEMON_BIN)) throw new DaemonUnavailableError(`no daemon listens at ${socket} and ${DAEMON_BIN} is missing`);

  const log = daemonLogPath();
  mkdirSync(dirname(log), { recursive: true, mode: 0o700 });
  const fd = openNoFollow(log, constants.O_APPEND);
  const logStart = fstatSync(fd).size;
  let exited: string | undefined;
  let pidFd: number | undefined;
  try {
    // Opened before the daemon starts, so that a refusal starts nothing.
    pidFd = openNoFollow(daemonPidPath(), constants.O_TRUNC);
    const child = spawn(process.execPath, [DAEMON_BIN], { detached: true, stdio: ['ignore', fd, fd] });
    child.once('exit', (code, signal) => {
      exited = signal ? `signal ${signal}` : `status ${code}`;
    });
    child.once('error', (e) => {
      exited = e.message;
    });
    if (child.pid !== undefined) writeSync(pidFd, `${child.pid}\n`);
    child.unref();
  } finally {
    closeSync(fd);
    if (pidFd !== undefined) closeSync(pidFd);
  }

  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (await canConnect(socket)) return socket;
    if (exited !== undefined) {
      // Another client may have started a daemon at the same moment: ours then
      // exits because the socket is taken, and theirs is the one to use.
      if (await canConnect(socket)) return socket;
      const reason = daemonError(log, logStart);
      throw new DaemonUnavailableError(`gate-daemon exited (${exited}) before listening at ${socket}${reason ? `: ${reason}` : ''}; see ${log}`);
    }
    if (Date.now() > deadline) {
      throw new DaemonUnavailableError(`gate-daemon did not listen at ${socket} within ${START_TIMEOUT_MS / 1000} s; see ${log}`);
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
