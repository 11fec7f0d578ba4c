/** gate-server: the network server (spec cli.md §4). */
import { defaultStateDir } from '../store/state-dir.js';
import { describePostgresDsn } from '../store/postgres.js';
import { parsePolicy } from '../server/auth/policy.js';
import { SERVER_PRINCIPAL_LIMITS } from '../server/index.js';
import { fileURLToPath } from 'node:url';
import { ConfigError, getBool, getNumber, getPath, getString, getStringList, getValue, type ConfigTree } from '../config/index.js';
import { DEFAULT_ANONYMOUS_LIMITS, type AnonymousLimits } from '../server/anonymous.js';
import { loadTlsFiles, type TlsFiles } from '../server/tls.js';
import { DEFAULT_ENDPOINT_LIMITS, type EndpointLimits } from '../server/endpoint.js';
import { SERVER_KEYS } from './server-keys.js';
import { blobDirFrom, CLUSTER_KEYS_HELP, clusterFrom } from '../cluster/config.js';
import { limitsFrom, profileFrom, runServerProgram, sourcesFrom } from './server-main.js';

const KEYS_HELP = `
  http.addr                  host:port to listen on (default 127.0.0.1:6473)
  http.authority             authority in the server's identity (default: the listening host:port);
                             clients' tokens must name http://AUTHORITY/gate-0/ as audience
                             (https://AUTHORITY/gate-0/ with TLS)
  http.tls.enabled           true: serve https (default false); the identity is then
                             https://AUTHORITY/gate-0/. Needs http.tls.certfile and
                             http.tls.keyfile (certificates come only from files: no ACME)
  http.tls.certfile          PEM certificate chain, the server's certificate first
  http.tls.keyfile           PEM private key of that certificate
  http.origins               Origin header values allowed to use the API (default []: no web page may;
                             "*" allows any, "null" sandboxed frames and local files)
  http.console               serve the web console at /gate-0/console/ (default true); pages of the
                             server's own origin (its identity's) may then use the API
  state.dir                  everything the server keeps (default \${XDG_STATE_HOME}/gate/server)
  inventory.dsn              keep the inventory (pins, instance records, nonces) in PostgreSQL:
                             "postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE" (default: SQLite in
                             state.dir; modules and snapshots stay in state.dir). PGPASSWORD keeps
                             the password out of the configuration
  access.policy              required: "public" (anyone who can connect, anonymous calls too) or
                             "ssh" (keys in access.ssh.authorizedkeys); this repository's
                             etc/gate-server.toml (read first) chooses "public" on loopback
  access.ssh.authorizedkeys  keys allowed by the ssh policy (default ~/.ssh/authorized_keys)
  anonymous.maxperaddress    anonymous programs running at once from one address (IPv6: /64)
                             (default 4); more get 429 Too Many Requests with Retry-After
  anonymous.maxpermodule     anonymous instances of one module running at once (default 32)
  anonymous.executors        executor groups anonymous programs are spread over, each new one
                             to the group running fewest (default 8)
  anonymous.nice             nice steps below the server's CPU priority that anonymous programs'
                             executors run at, 0-19 (default 5): signed callers and the server
                             come first when the CPU is short; an executor whose program has
                             computed 50 ms drops to the lowest priority (idle where the server may
                             use the cpu cgroup controller, else 19) and new programs go elsewhere
                             (0: neither)
  anonymous.cputime          milliseconds of CPU one anonymous run may use (default 10000; 0:
                             unlimited); then it ends SUSPENDED (io-suspend profile: KILLED)
  server.identityfile        OpenSSH Ed25519 key signing the API info token (optional)
  source.http                [{name, addr}]: module sources fetched over HTTP
  source.ipfs.addr           http://HOST:PORT of an IPFS node's API: modules /ipfs/<hash> are
                             fetched with its /api/v0/cat (default: none)
  metrics.addr               host:port of a separate listener serving Prometheus GET /metrics
                             (default: none, metrics are not served)
  endpoint.enabled           true: programs may serve HTTP at /gate-0/endpoint/<instance-id>/ through
                             the endpoint service; anyone who can connect may send them requests
                             (default false: no such service, the path is not found)
  endpoint.maxrequests       endpoint requests in progress at once for all instances of one
                             principal (default 16); more get 503 with Retry-After
  endpoint.maxbodysize       bytes of an endpoint request body (default 1048576); more get 413,
                             bodies without Content-Length 411
  endpoint.timeout           seconds an endpoint request may take until its response is complete
                             (default 30); a program that has not answered by then: 504${CLUSTER_KEYS_HELP}`;

function parseAddr(addr: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(addr);
  if (!m || Number(m[2]) > 65535) throw new ConfigError(`http.addr must be host:port, not ${JSON.stringify(addr)}`);
  const host = m[1]!.replace(/^\[(.*)\]$/, '$1');
  return { host: host === '' ? '0.0.0.0' : host, port: Number(m[2]) };
}

async function tlsFrom(tree: ConfigTree): Promise<TlsFiles | undefined> {
  const enabled = getBool(tree, 'http.tls.enabled', false);
  const certFile = getPath(tree, 'http.tls.certfile');
  const keyFile = getPath(tree, 'http.tls.keyfile');
  if (!enabled) {
    if (certFile !== undefined || keyFile !== undefined) throw new ConfigError('http.tls.certfile and http.tls.keyfile are used only with http.tls.enabled = true');
    return undefined;
  }
  if (certFile === undefined || keyFile === undefined) {
    throw new ConfigError('http.tls.enabled needs http.tls.certfile and http.tls.keyfile (certificates from ACME are not supported yet)');
  }
  try {
    return await loadTlsFiles(certFile, keyFile);
  } catch (e) {
    throw new ConfigError(e instanceof Error ? e.message : String(e), { cause: e });
  }
}

function anonymousFrom(tree: ConfigTree): AnonymousLimits {
  const count = (key: string, dflt: number): number => {
    const n = getNumber(tree, key, dflt);
    if (!Number.isInteger(n) || n < 1) throw new ConfigError(`${key} must be a whole number of at least 1`);
    return n;
  };
  const limits: AnonymousLimits = {
    perAddress: count('anonymous.maxperaddress', DEFAULT_ANONYMOUS_LIMITS.perAddress),
    perModule: count('anonymous.maxpermodule', DEFAULT_ANONYMOUS_LIMITS.perModule),
    executors: count('anonymous.executors', DEFAULT_ANONYMOUS_LIMITS.executors),
    nice: niceFrom(tree),
    demoteAfterMs: DEFAULT_ANONYMOUS_LIMITS.demoteAfterMs,
    cpuTimeMs: getNumber(tree, 'anonymous.cputime', DEFAULT_ANONYMOUS_LIMITS.cpuTimeMs),
  };
  if (!(Number.isFinite(limits.cpuTimeMs) && limits.cpuTimeMs >= 0)) throw new ConfigError('anonymous.cputime must be a number of milliseconds (0: unlimited)');
  return limits;
}

function niceFrom(tree: ConfigTree): number {
  const n = getNumber(tree, 'anonymous.nice', DEFAULT_ANONYMOUS_LIMITS.nice);
  if (!Number.isInteger(n) || n < 0 || n > 19) throw new ConfigError('anonymous.nice must be a whole number from 0 (the server\'s priority) to 19 (the lowest)');
  return n;
}

/** Endpoint limits when endpoint.enabled, else undefined (the other keys are then refused: they would do nothing). */
function endpointsFrom(tree: ConfigTree): EndpointLimits | undefined {
  const enabled = getBool(tree, 'endpoint.enabled', false);
  const count = (key: string, dflt: number): number => {
    const n = getNumber(tree, key, dflt);
    if (!Number.isSafeInteger(n) || n < 1) throw new ConfigError(`${key} must be a whole number of at least 1`);
    return n;
  };
  const limits = {
    maxRequests: count('endpoint.maxrequests', DEFAULT_ENDPOINT_LIMITS.maxRequests),
    maxBodySize: count('endpoint.maxbodysize', DEFAULT_ENDPOINT_LIMITS.maxBodySize),
    timeoutMs: getNumber(tree, 'endpoint.timeout', DEFAULT_ENDPOINT_LIMITS.timeoutMs / 1000) * 1000,
  };
  if (!(Number.isFinite(limits.timeoutMs) && limits.timeoutMs > 0)) throw new ConfigError('endpoint.timeout must be a positive number of seconds');
  if (!enabled) {
    for (const key of ['endpoint.maxrequests', 'endpoint.maxbodysize', 'endpoint.timeout']) {
      if (getValue(tree, key) !== undefined) throw new ConfigError(`${key} is set but endpoints are off (set endpoint.enabled = true)`);
    }
    return undefined;
  }
  return limits;
}

function optionalAddr(tree: ConfigTree, key: string): { host: string; port: number } | undefined {
  const addr = getString(tree, key, '');
  if (addr === '') return undefined;
  try {
    return parseAddr(addr);
  } catch {
    throw new ConfigError(`${key} must be host:port, not ${JSON.stringify(addr)}`);
  }
}

/** Checked here so that a malformed DSN is a configuration error (reachability is checked when the server starts). */
function inventoryDsnFrom(tree: ConfigTree): string | undefined {
  const dsn = getString(tree, 'inventory.dsn');
  if (dsn === undefined || dsn === '') return undefined;
  try {
    describePostgresDsn(dsn);
  } catch (e) {
    throw new ConfigError(e instanceof Error ? e.message : String(e), { cause: e });
  }
  return dsn;
}

const code = await runServerProgram(
  {
    name: 'gate-server',
    description: 'Serve the Gate API (/gate-0/) over HTTP and websockets: run untrusted WebAssembly programs for clients.',
    // The repository's own file first: a checkout runs with its explicit choices (docs/server.md).
    defaultFiles: [fileURLToPath(new URL('../../../etc/gate-server.toml', import.meta.url)), '/etc/gate/server.toml', '/etc/gate/server.d/*.toml'],
    keysHelp: KEYS_HELP,
    keys: SERVER_KEYS,
    limits: SERVER_PRINCIPAL_LIMITS,
    async options(tree, log) {
      const addr = getString(tree, 'http.addr', '127.0.0.1:6473');
      const policy = await parsePolicy(getString(tree, 'access.policy'), { authorizedKeys: getPath(tree, 'access.ssh.authorizedkeys') });
      if (policy.name === 'public') log.warn({ addr }, `access.policy = "public": anyone who can connect to ${addr} may run programs`);
      const inventoryDsn = inventoryDsnFrom(tree);
      const cluster = clusterFrom(tree, inventoryDsn);
      return {
        listen: parseAddr(addr),
        authority: getString(tree, 'http.authority'),
        origins: getStringList(tree, 'http.origins', []),
        console: getBool(tree, 'http.console', true),
        policy,
        anonymous: anonymousFrom(tree),
        stateDir: getPath(tree, 'state.dir', defaultStateDir('server')),
        inventoryDsn,
        blobDir: blobDirFrom(tree),
        cluster,
        limits: limitsFrom(tree, SERVER_PRINCIPAL_LIMITS),
        sources: sourcesFrom(tree),
        identityFile: getPath(tree, 'server.identityfile'),
        profile: profileFrom(tree),
        metricsListen: optionalAddr(tree, 'metrics.addr'),
        tls: await tlsFrom(tree),
        endpoints: endpointsFrom(tree),
      };
    },
  },
  process.argv,
);
process.exit(code);
