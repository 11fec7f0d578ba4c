/**
 * gate-daemon: the API for the local user over a Unix socket in the user's
 * runtime directory (no network listener). The socket's directory is
 * private to the user, which is the authorization: every request acts as
 * principal `local`.
 */
import { connect } from 'node:net';
import { unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { checkOwnSocket, daemonSocketPath, getPath, privateDir } from '../config/index.js';
import { publicPolicy } from '../server/auth/policy.js';
import { DAEMON_PRINCIPAL_LIMITS } from '../server/index.js';
import { defaultStateDir } from '../store/state-dir.js';
import { GateError } from '../errors.js';
import { DAEMON_KEYS } from './server-keys.js';
import { limitsFrom, profileFrom, runServerProgram } from './server-main.js';

const KEYS_HELP = `
  unix.socket                socket path (default \${XDG_RUNTIME_DIR}/gate/daemon.sock)
  state.dir                  everything the daemon keeps (default \${XDG_STATE_HOME}/gate/daemon)`;

/** A socket file nobody listens on is left over from a crash; a live one means another daemon runs. */
async function claimSocket(path: string): Promise<void> {
  if (!checkOwnSocket(path)) return;
  const live = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (live) throw new GateError('GATE_DAEMON_RUNNING', `another gate-daemon is already listening on ${path}`);
  await unlink(path).catch(() => undefined);
}

const code = await runServerProgram(
  {
    name: 'gate-daemon',
    description: "Serve the Gate API to the local user over a Unix socket (the gate CLI's default when no address is given).",
    defaultFiles: ['${XDG_CONFIG_HOME}/gate/daemon.toml', '${XDG_CONFIG_HOME}/gate/daemon.d/*.toml'],
    keysHelp: KEYS_HELP,
    keys: DAEMON_KEYS,
    limits: DAEMON_PRINCIPAL_LIMITS,
    async options(tree) {
      const socket = getPath(tree, 'unix.socket', daemonSocketPath());
      privateDir(dirname(socket));
      await claimSocket(socket);
      return {
        listen: { path: socket },
        authority: 'localhost',
        policy: publicPolicy(),
        local: true,
        stateDir: getPath(tree, 'state.dir', defaultStateDir('daemon')),
        limits: limitsFrom(tree, DAEMON_PRINCIPAL_LIMITS),
        profile: profileFrom(tree),
      };
    },
  },
  process.argv,
);
process.exit(code);
