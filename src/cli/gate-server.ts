/** gate-server: the network server (spec cli.md §4). */
import { defaultStateDir } from '../store/state-dir.js';
import { parsePolicy } from '../server/auth/policy.js';
import { SERVER_PRINCIPAL_LIMITS } from '../server/index.js';
import { ConfigError, getPath, getString, getStringList } from '../config/index.js';
import { SERVER_KEYS } from './server-keys.js';
import { limitsFrom, profileFrom, runServerProgram, sourcesFrom } from './server-main.js';

const KEYS_HELP = `
  http.addr                  host:port to listen on (default 127.0.0.1:6473)
  http.authority             authority in the server's identity (default: the listening host:port);
                             clients' tokens must name http://AUTHORITY/gate-0/ as audience
  http.origins               allowed Origin header values (default ["null"]; "*" allows any)
  state.dir                  everything the server keeps (default \${XDG_STATE_HOME}/gate/server)
  access.policy              "public" (default: anyone, anonymous calls too) or "ssh"
  access.ssh.authorizedkeys  keys allowed by the ssh policy (default ~/.ssh/authorized_keys)
  server.identityfile        OpenSSH Ed25519 key signing the API info token (optional)
  source.http                [{name, addr}]: module sources fetched over HTTP`;

function parseAddr(addr: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(addr);
  if (!m || Number(m[2]) > 65535) throw new ConfigError(`http.addr must be host:port, not ${JSON.stringify(addr)}`);
  const host = m[1]!.replace(/^\[(.*)\]$/, '$1');
  return { host: host === '' ? '0.0.0.0' : host, port: Number(m[2]) };
}

const code = await runServerProgram(
  {
    name: 'gate-server',
    description: 'Serve the Gate API (/gate-0/) over HTTP and websockets: run untrusted WebAssembly programs for clients.',
    defaultFiles: ['/etc/gate/server.toml', '/etc/gate/server.d/*.toml'],
    keysHelp: KEYS_HELP,
    keys: SERVER_KEYS,
    limits: SERVER_PRINCIPAL_LIMITS,
    async options(tree) {
      return {
        listen: parseAddr(getString(tree, 'http.addr', '127.0.0.1:6473')),
        authority: getString(tree, 'http.authority'),
        origins: getStringList(tree, 'http.origins', ['null']),
        policy: await parsePolicy(getString(tree, 'access.policy', 'public'), { authorizedKeys: getPath(tree, 'access.ssh.authorizedkeys') }),
        stateDir: getPath(tree, 'state.dir', defaultStateDir('server')),
        limits: limitsFrom(tree, SERVER_PRINCIPAL_LIMITS),
        sources: sourcesFrom(tree),
        identityFile: getPath(tree, 'server.identityfile'),
        profile: profileFrom(tree),
      };
    },
  },
  process.argv,
);
process.exit(code);
