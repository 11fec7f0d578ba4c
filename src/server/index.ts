/**
 * gate-server and gate-daemon as a library: an HTTP server with the API at
 * /gate-0/ (spec web-api.md), its state in one directory, instances in
 * executor processes.
 */
import { describeTrapFrame } from '../runtime/backtrace.js';
import { randomUUID } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';
import type { Profile } from '../prepare/profile.js';
import type { Executor } from '../runtime/executor.js';
import { ExecutorPool, type ExecutorPlacement } from '../runtime/node/pool.js';
import { PreparePool } from '../runtime/node/prepare-pool.js';
import { Program } from '../runtime/program.js';
import { ByteBucket, DEFAULT_DEBUG_LIMITS, type DebugLimits } from '../runtime/debug-limits.js';
import { Runtime } from '../runtime/runtime.js';
import { instanceServices } from '../service/provider.js';
import { ServiceRegistry } from '../service/registry.js';
import { EndpointHub, endpointService } from '../service/endpoint.js';
import type { Inventory } from '../store/inventory.js';
import { describePostgresDsn, openPostgresInventory } from '../store/postgres.js';
import { openSqliteInventory } from '../store/sqlite.js';
import { openStateDir } from '../store/state-dir.js';
import { BlobStore } from '../store/blobs.js';
import { ClusterMember, type ClusterOptions } from '../cluster/member.js';
import { ClusterRegistry } from '../cluster/registry.js';
import { DEFAULT_LOCAL_LIMITS, DEFAULT_SERVER_LIMITS, type ModuleLimits } from '../wasm/validate.js';
import { DEFAULT_ANONYMOUS_LIMITS, type AnonymousLimits } from './anonymous.js';
import { Api } from './api.js';
import { DEFAULT_ENDPOINT_LIMITS, EndpointHttp, type EndpointLimits } from './endpoint.js';
import type { AccessPolicy } from './auth/policy.js';
import { loadServerIdentityKey, makeServerToken } from './auth/server-token.js';
import { InstanceManager } from './instances.js';
import { ServerMetrics } from './metrics.js';
import { ModuleRegistry } from './modules.js';
import { httpSource, type ModuleSource } from './sources.js';
import { ipfsSource } from './ipfs-source.js';
import type { TlsFiles } from './tls.js';
import { WebsocketApi } from './websocket.js';

/** The API's description, kept in the repository (docs/openapi.yaml) and served at /openapi.yaml. */
const OPENAPI_DOCUMENT = fileURLToPath(new URL('../../../docs/openapi.yaml', import.meta.url));

/** Where instances run: one executor per isolation group (principal). */
export interface ExecutorSource {
  /** `placement.nice`: see ExecutorPlacement (anonymous groups run at a lower CPU priority). */
  executorFor(group: string, placement?: ExecutorPlacement): Executor;
  close(): Promise<void>;
}

/** Per-principal limits (spec web-api.md §15). */
export interface PrincipalLimits {
  maxModuleSize: number;
  maxMemorySize: number;
  timeResolutionNs: number;
  /** CPU time one run of an instance may use before it is suspended (undefined: unlimited). */
  cpuTimeMs?: number;
  /** Debug output (`log=*`) per instance; past it output is dropped and the drop reported (default DEFAULT_DEBUG_LIMITS). */
  debugOutput?: DebugLimits;
}

/**
 * Debug output of all instances together that may go into the server's log
 * (runs with `log=*` other than a websocket call's), in bytes per second; each
 * entry costs LOG_ENTRY_BYTES on top of its text. Past it, output is dropped
 * (and counted in the instance's own log). A websocket call's output goes to
 * its client instead, within DEBUG_WEBSOCKET_BACKLOG_BYTES of unsent data.
 */
export const DEFAULT_DEBUG_LOG_RATE = 256 * 1024;
const LOG_ENTRY_BYTES = 200;

/** Temporaries in a shared blob directory older than this are leftovers of crashed writers (a write takes seconds, not an hour). */
const SHARED_TEMP_AGE_MS = 60 * 60 * 1000;

export const SERVER_PRINCIPAL_LIMITS: PrincipalLimits = { maxModuleSize: 32 * 1024 * 1024, maxMemorySize: 32 * 1024 * 1024, timeResolutionNs: 10_000_000 };
/** The daemon serves its local user's own programs: their debug output is limited only against runaways. */
export const DAEMON_PRINCIPAL_LIMITS: PrincipalLimits = {
  maxModuleSize: 2 ** 31 - 1,
  maxMemorySize: 2 ** 31 - 65536,
  timeResolutionNs: 1,
  debugOutput: { rateBytesPerSecond: 8 * 1024 * 1024, burstBytes: 16 * 1024 * 1024 },
};

export interface ServerOptions {
  /** TCP address, or a Unix socket path (the daemon). */
  listen: { host: string; port: number } | { path: string };
  /** Authority in the server's identity string (default: the listening host:port). */
  authority?: string;
  /** Origin values allowed to use the API (default none: requests with an Origin get 403; `*` allows any). */
  origins?: string[];
  /** Serve the web console at /gate-0/console/; pages of the server's own origin may then use the API (default: on, off for the daemon). */
  console?: boolean;
  policy: AccessPolicy;
  /** Anonymous callers: instances at once per address and per module, executor groups (default DEFAULT_ANONYMOUS_LIMITS). */
  anonymous?: AnonymousLimits;
  /** The daemon's local handler: every request acts for the local user. */
  local?: boolean;
  /** Directory for everything the server keeps. */
  stateDir: string;
  /** PostgreSQL URL of the inventory (default: SQLite in the state directory); modules and snapshots stay in the state directory. */
  inventoryDsn?: string;
  /** Directory for modules and snapshots shared with other servers (default: in the state directory). */
  blobDir?: string;
  /** Several servers on one PostgreSQL inventory (docs/cluster.md); needs inventoryDsn and blobDir. */
  cluster?: ClusterOptions;
  limits?: PrincipalLimits;
  /** Module sources: `http` (the default kind) named as configured, or `ipfs` (named ipfs). */
  sources?: Array<{ name: string; addr: string; kind?: 'http' | 'ipfs' }>;
  /** Where instances run (default: a pool of unsandboxed executor processes, one per principal). */
  executors?: ExecutorSource;
  logger?: Logger;
  /** Server identity key (OpenSSH Ed25519) signing the API info token. */
  identityFile?: string;
  profile?: Profile;
  registry?: ServiceRegistry;
  /**
   * How often running persistent instances are checkpointed, in milliseconds
   * (0: none; default 30 s: a crash loses at most about a minute).
   */
  checkpointIntervalMs?: number;
  /** How long a request for an instance still being restored after a restart waits before it gets 503 (default 10 s). */
  restoreWaitMs?: number;
  /** Where prepared modules are cached (default: `<stateDir>/prepared`). */
  preparedCacheDir?: string;
  /** Serve https with this certificate and key (the identity becomes `https://<authority>/gate-0/`). */
  tls?: TlsFiles;
  /** A separate TCP listener serving only `GET /metrics` (default: none, metrics are not served). */
  metricsListen?: { host: string; port: number };
  /** See DEFAULT_DEBUG_LOG_RATE (the bucket holds four seconds' worth). */
  debugLogRate?: number;
  /**
   * Instances as HTTP endpoints at /gate-0/endpoint/<id>/ (the `endpoint`
   * service, docs/server.md); undefined: off (the service is not there).
   * Unset limits take DEFAULT_ENDPOINT_LIMITS.
   */
  endpoints?: Partial<EndpointLimits>;
}

export interface GateServer {
  /** Base URL (`http://host:port`, `https://host:port` with TLS), or `http://localhost` for a Unix socket. */
  url: string;
  socketPath?: string;
  /** `http://host:port/metrics` when metrics are served (on their own listener). */
  metricsUrl?: string;
  /** The identity string tokens must name as audience. */
  identity: string;
  instances: InstanceManager;
  /** Graceful stop: persistent instances are suspended and stored. */
  close(): Promise<void>;
}

export async function startServer(opts: ServerOptions): Promise<GateServer> {
  const log = opts.logger ?? pino({ name: 'gate' });
  const limits = opts.limits ?? SERVER_PRINCIPAL_LIMITS;
  if (opts.cluster && (!opts.inventoryDsn || !opts.blobDir)) throw new RangeError('a cluster needs inventoryDsn (PostgreSQL) and blobDir (shared by its servers)');
  const state = await openStateDir(opts.stateDir);
  // Shared with other servers: temporaries of their writes in progress are not ours to clean up.
  const moduleBlobs = opts.blobDir ? new BlobStore(join(opts.blobDir, 'modules'), 'sha256') : state.modules;
  if (opts.blobDir) await moduleBlobs.cleanTemp(SHARED_TEMP_AGE_MS).catch((e: unknown) => log.warn({ err: e }, 'shared blob directory: removing old temporaries failed'));
  let inventory: Inventory;
  try {
    if (opts.inventoryDsn) {
      inventory = await openPostgresInventory(opts.inventoryDsn, {
        onIdleError: (err) => log.warn({ err }, 'inventory database connection lost; reconnecting on next use'),
        owner: opts.cluster?.name,
      });
      log.info({ inventory: describePostgresDsn(opts.inventoryDsn) }, 'inventory in PostgreSQL');
    } else {
      inventory = openSqliteInventory(state.inventoryPath);
    }
  } catch (e) {
    await state.close();
    throw e;
  }
  // Without a configured pool: unsandboxed executor processes (the programs pass one that sandboxes).
  const executors = opts.executors ?? (await ExecutorPool.create({ sandbox: 'none' }));
  // The daemon accepts what a local user's programs need (e.g. more exports); both follow the principal limits.
  const moduleLimits: ModuleLimits = {
    ...(opts.local ? DEFAULT_LOCAL_LIMITS : DEFAULT_SERVER_LIMITS),
    maxModuleSize: limits.maxModuleSize,
    memoryLimitPages: Math.floor(limits.maxMemorySize / 65536),
  };
  // Preparation never runs on the event loop: a large upload costs a worker, not every request.
  const preparer = new PreparePool({ cacheDir: opts.preparedCacheDir ?? join(opts.stateDir, 'prepared') });
  // Anonymous runs (no principal) get their own CPU budget and a lower CPU
  // priority; their Runtimes are kept apart even where they share an
  // executor with signed ones (runtime.isolateprincipals = false).
  const anonymous = opts.anonymous ?? DEFAULT_ANONYMOUS_LIMITS;
  const anonymousCpuMs = anonymous.cpuTimeMs > 0 ? Math.min(anonymous.cpuTimeMs, limits.cpuTimeMs ?? Infinity) : limits.cpuTimeMs;
  const anonymousPlacement: ExecutorPlacement = anonymous.nice > 0 ? { nice: anonymous.nice, demoteAfterMs: anonymous.demoteAfterMs } : {};
  const runtimes = new WeakMap<Executor, Runtime>();
  const anonymousRuntimes = new WeakMap<Executor, Runtime>();
  const runtimeFor = (principal: string | undefined, group?: string): Runtime => {
    const executor = principal !== undefined ? executors.executorFor(principal) : executors.executorFor(group ?? 'anonymous', anonymousPlacement);
    const cache = principal !== undefined ? runtimes : anonymousRuntimes;
    let rt = cache.get(executor);
    if (!rt) {
      rt = new Runtime({
        executor,
        memoryLimitPages: Math.floor(limits.maxMemorySize / 65536),
        timeResolutionNs: limits.timeResolutionNs,
        profile: opts.profile,
        cpuBudgetMs: principal !== undefined ? limits.cpuTimeMs : anonymousCpuMs,
        debugLimits: limits.debugOutput ?? DEFAULT_DEBUG_LIMITS,
        preparer: (program, profile, breakpoints) => preparer.prepare(program, profile, breakpoints),
        limits: moduleLimits,
      });
      cache.set(executor, rt);
    }
    return rt;
  };
  const debugLogRate = opts.debugLogRate ?? DEFAULT_DEBUG_LOG_RATE;
  if (!(Number.isFinite(debugLogRate) && debugLogRate >= 0)) throw new RangeError(`debugLogRate must be a non-negative number of bytes per second, not ${debugLogRate}`);
  const debugLogBucket = new ByteBucket(debugLogRate, 4 * debugLogRate);
  // Only a PostgreSQL inventory may be written by other servers (a cluster) meanwhile.
  const modules = new ModuleRegistry(moduleBlobs, inventory, (bytes) => Program.load(bytes, moduleLimits), !opts.inventoryDsn);
  const endpointHub = opts.endpoints ? new EndpointHub() : undefined;
  let registry = opts.registry;
  if (endpointHub) {
    registry = opts.registry ? opts.registry.clone() : new ServiceRegistry();
    registry.register(endpointService({ hub: endpointHub }));
  }
  const instances = new InstanceManager({
    inventory,
    modules,
    runtimeFor,
    services: (principal, scope, clientConnects) => instanceServices({ principalId: principal, scope, registry, clientConnects }),
    debugSink: (id) => {
      const child = log.child({ instance: id });
      return (data) => {
        if (!debugLogBucket.takeAll(data.length + LOG_ENTRY_BYTES)) return false;
        child.info({ debug: Buffer.from(data).toString('utf8') }, 'program debug output');
        return true;
      };
    },
    onError: (message, err) => log.error({ err }, message),
    checkpointIntervalMs: opts.checkpointIntervalMs,
    restoreWaitMs: opts.restoreWaitMs,
    onTrapped: (id, status, where) => log.info({ instance: id, status, function: where.function, name: where.name, offset: where.offset, source: where.source }, `instance trapped in ${describeTrapFrame(where)}`),
  });

  const uuid = await serverUuid(opts.stateDir);
  const sources = new Map<string, ModuleSource>((opts.sources ?? []).map((s) => [s.name, s.kind === 'ipfs' ? ipfsSource(s.addr) : httpSource(s.name, s.addr)]));
  const identityKey = opts.identityFile ? await loadServerIdentityKey(opts.identityFile) : undefined;

  let cluster: ClusterMember | undefined;
  if (opts.cluster) {
    const registry = new ClusterRegistry({
      dsn: opts.inventoryDsn!,
      name: opts.cluster.name,
      failoverMs: opts.cluster.failoverMs,
      onIdleError: (err) => log.warn({ err }, 'cluster database connection lost; reconnecting on next use'),
      onNotify: () => cluster?.notified(),
    });
    // A fresh heartbeat before reading what this server owns, so that no other server takes it over meanwhile.
    await registry.register(opts.cluster.address ?? '', opts.cluster.capacity);
    await registry.claimUnowned();
    cluster = new ClusterMember(registry, instances, opts.cluster, log);
  }

  // Every stored instance is known before the server listens; the running ones are restored after.
  await instances.loadAll();
  const metrics = new ServerMetrics(() => instances.runningCount);
  const metricsServer = opts.metricsListen ? await serveMetrics(metrics, opts.metricsListen, log) : undefined;
  // No limit on a whole request's time (Node's default, 300 s, ends it with a
  // 400): an instance's `io` stream is a request whose body lasts as long as
  // the client stays. Headers still have to arrive within headersTimeout.
  const serverOptions = { requestTimeout: 0 };
  const http: Server = opts.tls ? createTlsServer({ ...serverOptions, cert: opts.tls.cert, key: opts.tls.key }) : createServer(serverOptions);
  await listen(http, opts.listen);
  const address = http.address();
  const hostPort = typeof address === 'object' && address ? `${hostForUrl((address as AddressInfo).address)}:${(address as AddressInfo).port}` : 'localhost';
  const authority = opts.authority ?? hostPort;
  const scheme = opts.tls ? 'https' : 'http';
  const identity = `${scheme}://${authority}/gate-0/`;

  const api = new Api(
    {
      identity,
      origins: opts.origins ?? [],
      console: opts.console ?? !opts.local,
      anonymous: opts.anonymous,
      local: opts.local ?? false,
      policy: opts.policy,
      nonces: inventory,
      maxModuleSize: limits.maxModuleSize,
      sources,
      sourceCache: inventory,
      serverUuid: uuid,
      serverToken: makeServerToken({ identity, uuid, key: identityKey }),
      cluster,
    },
    modules,
    instances,
    log,
  );
  const websockets = new WebsocketApi(api, instances, log);
  const endpoints = endpointHub
    ? new EndpointHttp({
        hub: endpointHub,
        identity,
        limits: { ...DEFAULT_ENDPOINT_LIMITS, ...opts.endpoints },
        stopped: (principal, id) => instances.stoppedInstance(principal, id),
      })
    : undefined;
  http.on('request', (req: IncomingMessage, res: ServerResponse) => {
    res.setHeader('Server', opts.local ? 'gate-daemon' : 'gate');
    res.on('finish', () => metrics.requests.inc({ method: req.method ?? '', status: String(res.statusCode) }));
    void route(req, res);
  });
  http.on('upgrade', (req, socket, head) => {
    if (!cluster) return websockets.upgrade(req, socket, head);
    socket.on('error', () => socket.destroy());
    cluster.forwardUpgrade(req, socket, head).then(
      (forwarded) => forwarded || websockets.upgrade(req, socket, head),
      (e: unknown) => {
        log.error({ err: e }, 'cluster: forwarding a websocket failed');
        socket.destroy();
      },
    );
  });
  http.on('clientError', (_e, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      if (cluster && (await cluster.forward(req, res))) return;
      if (endpoints && EndpointHttp.matches(req.url ?? '/')) return await endpoints.handle(req, res);
      if (await api.handle(req, res)) return;
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/openapi.yaml' && (req.method === 'GET' || req.method === 'HEAD')) {
        const doc = await readFile(OPENAPI_DOCUMENT);
        res.writeHead(200, { 'Content-Type': 'application/yaml', 'Content-Length': doc.length });
        res.end(req.method === 'HEAD' ? undefined : doc);
        return;
      }
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('404 page not found\n');
    } catch (e) {
      log.error({ err: e }, 'request failed');
      if (!res.headersSent) res.writeHead(500);
      res.end();
    }
  }

  const url = 'path' in opts.listen ? 'http://localhost' : `${scheme}://${hostPort}`;
  // Requests for an instance not yet restored wait for it (InstanceManager.ready).
  void instances.restoreRunning(() => undefined).then((restored) => {
    if (restored.restored || restored.failed) log.info(restored, 'persistent instances restored');
  });
  // In a cluster, 'listening' means the others can reach this server too (its address is registered).
  await cluster?.start(url);
  log.info({ url, socket: 'path' in opts.listen ? opts.listen.path : undefined, stateDir: opts.stateDir }, 'listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    socketPath: 'path' in opts.listen ? opts.listen.path : undefined,
    metricsUrl: metricsServer?.url,
    identity,
    instances,
    close() {
      closing ??= (async () => {
        http.close();
        metricsServer?.server.close();
        if (cluster?.drainOnStop) await cluster.drain().catch((e: unknown) => log.error({ err: e }, 'cluster: drain failed'));
        await instances.shutdown();
        await cluster?.close();
        websockets.close();
        http.closeAllConnections();
        await executors.close();
        await preparer.close();
        await inventory.close();
        await state.close();
      })();
      return closing;
    },
  };
}

/**
 * Metrics on a listener of their own, so that the API's listener (public by
 * design) does not tell everyone about the server's load.
 */
async function serveMetrics(metrics: ServerMetrics, where: { host: string; port: number }, log: Logger): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('404 page not found\n');
      return;
    }
    metrics.registry.metrics().then(
      (body) => {
        res.writeHead(200, { 'Content-Type': metrics.registry.contentType });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (e: unknown) => {
        log.error({ err: e }, 'metrics failed');
        res.writeHead(500);
        res.end();
      },
    );
  });
  await listen(server, where);
  const a = server.address() as AddressInfo;
  const url = `http://${hostForUrl(a.address)}:${a.port}/metrics`;
  log.info({ url }, 'serving metrics');
  return { server, url };
}

function hostForUrl(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}

/**
 * The accept queue's length. Node's default (511) overflows when thousands of
 * clients connect at once (e.g. io sessions reconnecting after a restart):
 * the kernel then drops handshakes, clients wait for SYN retransmits and some
 * get ECONNRESET. The kernel caps this at net.core.somaxconn.
 */
const LISTEN_BACKLOG = 65535;

function listen(server: Server, where: ServerOptions['listen']): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      resolve();
    };
    // The daemon's socket is for its user only (its directory is private too).
    if ('path' in where) server.listen({ path: where.path, backlog: LISTEN_BACKLOG }, () => void chmod(where.path, 0o600).then(done, done));
    else server.listen({ port: where.port, host: where.host, backlog: LISTEN_BACKLOG }, done);
  });
}

/** The server's UUID, made once and kept in the state directory. */
async function serverUuid(dir: string): Promise<string> {
  const file = join(dir, 'server-uuid');
  try {
    const v = (await readFile(file, 'utf8')).trim();
    if (/^[0-9a-f-]{36}$/.test(v)) return v;
  } catch {
    // first start
  }
  const v = randomUUID();
  await writeFile(file, `${v}\n`, { mode: 0o600 });
  return v;
}
