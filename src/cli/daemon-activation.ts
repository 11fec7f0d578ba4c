/**
 * Finding the local gate-daemon: its Unix socket, started on demand like a
 * D-Bus activated service when nobody listens there.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { daemonSocketPath, envVar, privateDir } from '../config/index.js';
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

/**
 * Returns the path of a socket the daemon listens on, starting
 * bin/gate-daemon (detached, so it outlives this command) if needed.
 */
export async function ensureDaemon(): Promise<string> {
  const socket = daemonSocketPath();
  if (await canConnect(socket)) return socket;
  if (!existsSync(DAEMON_BIN)) throw new DaemonUnavailableError(`no daemon listens at ${socket} and ${DAEMON_BIN} is missing`);

  privateDir(dirname(socket));
  const log = daemonLogPath();
  privateDir(dirname(log));
  const fd = openSync(log, 'a', 0o600);
  let exited: string | undefined;
  try {
    const child = spawn(process.execPath, [DAEMON_BIN], { detached: true, stdio: ['ignore', fd, fd] });
    child.once('exit', (code, signal) => {
      exited = signal ? `signal ${signal}` : `status ${code}`;
    });
    child.once('error', (e) => {
      exited = e.message;
    });
    if (child.pid !== undefined) writeFileSync(daemonPidPath(), `${child.pid}\n`);
    child.unref();
  } finally {
    closeSync(fd);
  }

  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (await canConnect(socket)) return socket;
    if (exited !== undefined) {
      // Another client may have started a daemon at the same moment: ours then
      // exits because the socket is taken, and theirs is the one to use.
      if (await canConnect(socket)) return socket;
      throw new DaemonUnavailableError(`gate-daemon exited (${exited}) before listening at ${socket}; see ${log}`);
    }
    if (Date.now() > deadline) {
      throw new DaemonUnavailableError(`gate-daemon did not listen at ${socket} within ${START_TIMEOUT_MS / 1000} s; see ${log}`);
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
