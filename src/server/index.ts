/**
 * gate-server and gate-daemon as a library: an HTTP server with the API at
 * /gate-0/ (spec web-api.md), its state in one directory, instances in
 * executor processes.
 */
import { randomUUID } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';
import type { Profile } from '../prepare/profile.js';
import type { Executor } from '../runtime/executor.js';
import { ExecutorPool } from '../runtime/node/pool.js';
import { PreparePool } from '../runtime/node/prepare-pool.js';
import { Program } from '../runtime/program.js';
import { Runtime } from '../runtime/runtime.js';
import { instanceServices } from '../service/provider.js';
import type { ServiceRegistry } from '../service/registry.js';
import { openSqliteInventory } from '../store/sqlite.js';
import { openStateDir } from '../store/state-dir.js';
import { DEFAULT_LOCAL_LIMITS, DEFAULT_SERVER_LIMITS, type ModuleLimits } from '../wasm/validate.js';
import { Api } from './api.js';
import type { AccessPolicy } from './auth/policy.js';
import { loadServerIdentityKey, makeServerToken } from './auth/server-token.js';
import { InstanceManager } from './instances.js';
import { ServerMetrics } from './metrics.js';
import { ModuleRegistry } from './modules.js';
import { httpSource, type ModuleSource } from './sources.js';
import { WebsocketApi } from './websocket.js';

/** The API's description, kept in the repository (docs/openapi.yaml) and served at /openapi.yaml. */
const OPENAPI_DOCUMENT = fileURLToPath(new URL('../../../docs/openapi.yaml', import.meta.url));

/** Where instances run: one executor per isolation group (principal). */
export interface ExecutorSource {
  executorFor(group: string): Executor;
  close(): Promise<void>;
}

/** Per-principal limits (spec web-api.md §15). */
export interface PrincipalLimits {
  maxModuleSize: number;
  maxMemorySize: number;
  timeResolutionNs: number;
  /** CPU time one run of an instance may use before it is suspended (undefined: unlimited). */
  cpuTimeMs?: number;
}

export const SERVER_PRINCIPAL_LIMITS: PrincipalLimits = { maxModuleSize: 32 * 1024 * 1024, maxMemorySize: 32 * 1024 * 1024, timeResolutionNs: 10_000_000 };
export const DAEMON_PRINCIPAL_LIMITS: PrincipalLimits = { maxModuleSize: 2 ** 31 - 1, maxMemorySize: 2 ** 31 - 65536, timeResolutionNs: 1 };

export interface ServerOptions {
  /** TCP address, or a Unix socket path (the daemon). */
  listen: { host: string; port: number } | { path: string };
  /** Authority in the server's identity string (default: the listening host:port). */
  authority?: string;
  /** Allowed Origin values (default `["null"]`; `*` allows any). */
  origins?: string[];
  policy: AccessPolicy;
  /** The daemon's local handler: every request acts for the local user. */
  local?: boolean;
  /** Directory for everything the server keeps. */
  stateDir: string;
  limits?: PrincipalLimits;
  sources?: Array<{ name: string; addr: string }>;
  /** Where instances run (default: a pool of unsandboxed executor processes, one per principal). */
  executors?: ExecutorSource;
  logger?: Logger;
  /** Server identity key (OpenSSH Ed25519) signing the API info token. */
  identityFile?: string;
  profile?: Profile;
  registry?: ServiceRegistry;
  /**
   * How often running persistent instances are checkpointed, in milliseconds
   * (0: only at launch; default 30 s: a crash loses at most about a minute).
   */
  checkpointIntervalMs?: number;
  /** How long a request for an instance still being restored after a restart waits before it gets 503 (default 10 s). */
  restoreWaitMs?: number;
  /** Where prepared modules are cached (default: `<stateDir>/prepared`). */
  preparedCacheDir?: string;
}

export interface GateServer {
  /** Base URL (`http://host:port`), or `http://localhost` for a Unix socket. */
  url: string;
  socketPath?: string;
  /** The identity string tokens must name as audience. */
  identity: string;
  instances: InstanceManager;
  /** Graceful stop: persistent instances are suspended and stored. */
  close(): Promise<void>;
}

export async function startServer(opts: ServerOptions): Promise<GateServer> {
  const log = opts.logger ?? pino({ name: 'gate' });
  const limits = opts.limits ?? SERVER_PRINCIPAL_LIMITS;
  const state = await openStateDir(opts.stateDir);
  const inventory = openSqliteInventory(state.inventoryPath);
  // Without a configured pool: unsandboxed executor processes (the programs pass one that sandboxes).
  const executors = opts.executors ?? (await ExecutorPool.create({ sandbox: 'none' }));
  // The daemon accepts what a local user's programs need (e.g. more exports); both follow the principal limits.
  const moduleLimits: ModuleLimits = {
    ...(opts.local ? DEFAULT_LOCAL_LIMITS : DEFAULT_SERVER_LIMITS),
    maxModuleSize: limits.maxModuleSize,
    memoryLimitPages: Math.floor(limits.maxMemorySize / 65536),
  };
  // Preparation never runs on the event loop: a large upload costs a worker, not every request.
  const preparer = new PreparePool({ cacheDir: opts.preparedCacheDir ?? join(opts.stateDir, 'prepared'), limits: moduleLimits });
  const runtimes = new WeakMap<Executor, Runtime>();
  const runtimeFor = (principal: string | undefined): Runtime => {
    const executor = executors.executorFor(principal ?? 'anonymous');
    let rt = runtimes.get(executor);
    if (!rt) {
      rt = new Runtime({
        executor,
        memoryLimitPages: Math.floor(limits.maxMemorySize / 65536),
        timeResolutionNs: limits.timeResolutionNs,
        profile: opts.profile,
        cpuBudgetMs: limits.cpuTimeMs,
        preparer: (program, profile) => preparer.prepare(program, profile),
        limits: moduleLimits,
      });
      runtimes.set(executor, rt);
    }
    return rt;
  };
  const modules = new ModuleRegistry(state.modules, inventory, (bytes) => Program.load(bytes, moduleLimits));
  const instances = new InstanceManager({
    inventory,
    modules,
    runtimeFor,
    services: (principal, scope) => instanceServices({ principalId: principal, scope, registry: opts.registry }),
    debugSink: (id) => {
      const child = log.child({ instance: id });
      return (data) => child.info({ debug: Buffer.from(data).toString('utf8') }, 'program debug output');
    },
    onError: (message, err) => log.error({ err }, message),
    checkpointIntervalMs: opts.checkpointIntervalMs,
    restoreWaitMs: opts.restoreWaitMs,
  });

  const uuid = await serverUuid(opts.stateDir);
  const sources = new Map<string, ModuleSource>((opts.sources ?? []).map((s) => [s.name, httpSource(s.name, s.addr)]));
  const identityKey = opts.identityFile ? await loadServerIdentityKey(opts.identityFile) : undefined;

  // Every stored instance is known before the server listens; the running ones are restored after.
  await instances.loadAll();
  const http = createServer();
  await listen(http, opts.listen);
  const address = http.address();
  const hostPort = typeof address === 'object' && address ? `${hostForUrl((address as AddressInfo).address)}:${(address as AddressInfo).port}` : 'localhost';
  const authority = opts.authority ?? hostPort;
  const identity = `http://${authority}/gate-0/`;
  const metrics = new ServerMetrics(() => instances.runningCount);

  const api = new Api(
    {
      identity,
      origins: opts.origins ?? ['null'],
      local: opts.local ?? false,
      policy: opts.policy,
      nonces: inventory,
      maxModuleSize: limits.maxModuleSize,
      sources,
      sourceCache: inventory,
      serverUuid: uuid,
      serverToken: makeServerToken({ identity, uuid, key: identityKey }),
    },
    modules,
    instances,
    log,
  );
  const websockets = new WebsocketApi(api, instances, log);
  http.on('request', (req: IncomingMessage, res: ServerResponse) => {
    res.setHeader('Server', opts.local ? 'gate-daemon' : 'gate');
    res.on('finish', () => metrics.requests.inc({ method: req.method ?? '', status: String(res.statusCode) }));
    void route(req, res);
  });
  http.on('upgrade', (req, socket, head) => websockets.upgrade(req, socket, head));
  http.on('clientError', (_e, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      if (await api.handle(req, res)) return;
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/metrics' && (req.method === 'GET' || req.method === 'HEAD')) {
        const body = await metrics.registry.metrics();
        res.writeHead(200, { 'Content-Type': metrics.registry.contentType });
        res.end(req.method === 'HEAD' ? undefined : body);
        return;
      }
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

  const url = 'path' in opts.listen ? 'http://localhost' : `http://${hostPort}`;
  log.info({ url, socket: 'path' in opts.listen ? opts.listen.path : undefined, stateDir: opts.stateDir }, 'listening');
  // Requests for an instance not yet restored wait for it (InstanceManager.ready).
  void instances.restoreRunning(() => undefined).then((restored) => {
    if (restored.restored || restored.failed) log.info(restored, 'persistent instances restored');
  });

  let closing: Promise<void> | undefined;
  return {
    url,
    socketPath: 'path' in opts.listen ? opts.listen.path : undefined,
    identity,
    instances,
    close() {
      closing ??= (async () => {
        http.close();
        await instances.shutdown();
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

function hostForUrl(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}

function listen(server: Server, where: ServerOptions['listen']): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      resolve();
    };
    // The daemon's socket is for its user only (its directory is private too).
    if ('path' in where) server.listen(where.path, () => void chmod(where.path, 0o600).then(done, done));
    else server.listen(where.port, where.host, done);
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
