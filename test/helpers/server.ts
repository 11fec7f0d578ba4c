/** Real gate-servers on loopback for tests, and a small HTTP client that sees trailers. */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { identityFromPrivateKey, type ClientIdentity } from '../../src/client/identity.js';
import { makeToken } from '../../src/client/token.js';
import { publicPolicy } from '../../src/server/auth/policy.js';
import { startServer, type GateServer, type ServerOptions } from '../../src/server/index.js';
import { programBytes } from './runtime.js';

/** Prepared modules are shared by all servers of a test process. */
const preparedCacheDir = mkdtempSync(join(tmpdir(), 'gate-test-prepared-'));

export interface TestServer extends GateServer {
  stateDir: string;
  /** A fresh token for `key`. */
  token(key: ClientIdentity): string;
  /** Stops the server and removes its state (unless `keepState`). */
  stop(keepState?: boolean): Promise<void>;
}

export function newKey(): ClientIdentity {
  return identityFromPrivateKey(generateKeyPairSync('ed25519').privateKey);
}

export async function startTestServer(opts: Partial<ServerOptions> = {}): Promise<TestServer> {
  const stateDir = opts.stateDir ?? mkdtempSync(join(tmpdir(), 'gate-test-state-'));
  const server = await startServer({
    listen: { host: '127.0.0.1', port: 0 },
    policy: publicPolicy(),
    // The spec's test configuration (web-api.md §3.1); servers default to no origins.
    origins: ['null'],
    logger: pino({ level: process.env.GATE_TEST_LOG ?? 'silent' }),
    preparedCacheDir,
    ...opts,
    stateDir,
  });
  return Object.assign(server, {
    stateDir,
    token: (key: ClientIdentity) => makeToken(key, { audience: server.identity }),
    async stop(keepState = false) {
      await server.close();
      if (!keepState) rmSync(stateDir, { recursive: true, force: true });
    },
  });
}

/** An HTTP server acting as module source `test` (spec web-api.md §8): serves hello.wasm at /test/hello. */
export async function startModuleSource(): Promise<{ addr: string; close(): void }> {
  const hello = programBytes('hello');
  const server: Server = createServer((req, res) => {
    if (req.url === '/test/hello') {
      res.writeHead(200, { 'Content-Length': hello.length });
      res.end(hello);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return { addr: `http://127.0.0.1:${port}`, close: () => server.close() };
}

/** A server whose module source `test` serves hello.wasm; stopping it stops the source too. */
export async function startServerWithSource(): Promise<TestServer> {
  const source = await startModuleSource();
  const server = await startTestServer({ sources: [{ name: 'test', addr: source.addr }] });
  const stop = server.stop;
  server.stop = async (keepState?: boolean) => {
    await stop(keepState);
    source.close();
  };
  return server;
}

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  trailers: NodeJS.Dict<string>;
  body: Buffer;
  text: string;
}

export interface RequestOptions {
  headers?: Record<string, string>;
  body?: Uint8Array | string;
  key?: ClientIdentity;
}

/** Where requests go: a server started in this process or a gate-server process. */
export interface Target {
  url: string;
  token(key: ClientIdentity): string;
}

export function request(server: Target, method: string, path: string, opts: RequestOptions = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.key) headers.Authorization = `Bearer ${server.token(opts.key)}`;
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${server.url}${path}`, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode!, headers: res.headers, trailers: res.trailers, body, text: body.toString('utf8') });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/**
 * Connects to an instance's origin with `io` and reads the "<n>\n" lines a
 * counter program sends until `until(n)` holds; returns that n.
 */
export async function readCount(server: Target, key: ClientIdentity, id: string, until: (n: number) => boolean): Promise<number> {
  const stream = openCountStream(server, key, id);
  try {
    return await stream.next(until);
  } finally {
    stream.close();
  }
}

/** A promise that rejects with `what` named if it has not settled within `ms` (a bounded wait for liveness). */
export function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * An `io` connection to a counter instance that stays open: `next(until)`
 * resolves with the first count (from now on) for which `until` holds.
 */
export function openCountStream(server: Target, key: ClientIdentity, id: string): { next(until: (n: number) => boolean): Promise<number>; close(): void } {
  let waiter: { until: (n: number) => boolean; resolve(n: number): void; reject(e: Error): void } | undefined;
  let failure: Error | undefined;
  const fail = (e: Error): void => {
    failure ??= e;
    waiter?.reject(e);
    waiter = undefined;
  };
  const req = httpRequest(`${server.url}/gate-0/instance/${id}?action=io`, { method: 'POST', headers: { Authorization: `Bearer ${server.token(key)}` } }, (res) => {
    if (res.statusCode !== 200) {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => fail(new Error(`io answered ${res.statusCode}: ${Buffer.concat(chunks).toString('utf8').trim()}`)));
      return;
    }
    let text = '';
    res.on('data', (c: Buffer) => {
      text += c.toString('utf8');
      const lines = text.split('\n');
      text = lines.pop()!;
      for (const line of lines) {
        const n = Number(line);
        if (waiter?.until(n)) {
          waiter.resolve(n);
          waiter = undefined;
        }
      }
    });
    res.on('end', () => fail(new Error('io ended before the count was reached')));
    res.on('error', () => undefined);
  });
  req.on('error', (e) => fail(e));
  req.flushHeaders();
  return {
    next: (until) =>
      failure ? Promise.reject(failure) : new Promise<number>((resolve, reject) => (waiter = { until, resolve, reject })),
    close: () => req.destroy(),
  };
}

export interface ServerProcess extends Target {
  identity: string;
  /** What it logged so far (stdout). */
  log(): string;
  proc: ChildProcess;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

const GATE_SERVER = new URL('../../../bin/gate-server', import.meta.url).pathname;

/** Starts bin/gate-server as a process on a loopback port with the given state directory. */
export function spawnServer(stateDir: string, options: string[] = [], spawnOptions: { group?: boolean } = {}): Promise<ServerProcess> {
  const args = ['-F', '/dev/null', '-o', 'access.policy="public"', '-o', 'http.addr="127.0.0.1:0"', '-o', `state.dir=${JSON.stringify(stateDir)}`, '-o', 'log.level="info"'];
  for (const o of options) args.push('-o', o);
  return spawnServerWithArgs(args, process.env, spawnOptions);
}

/**
 * Starts bin/gate-server with exactly these arguments; resolves when it logs
 * its URL (http or https). group: the server leads a process group of its
 * own, which a test can signal as a terminal does.
 */
export function spawnServerWithArgs(args: string[], env: NodeJS.ProcessEnv = process.env, spawnOptions: { group?: boolean } = {}): Promise<ServerProcess> {
  const proc = spawn(process.execPath, [GATE_SERVER, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env, detached: spawnOptions.group === true });
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    proc.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    proc.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /"url":"(https?:\/\/[^"]+)"[^\n]*"msg":"listening"/.exec(out);
      if (m) {
        const url = m[1]!;
        const identity = `${url}/gate-0/`;
        resolve({ url, identity, proc, exited, log: () => out, token: (key) => makeToken(key, { audience: identity }) });
      }
    });
    void exited.then((code) => reject(new Error(`gate-server exited (${code}) before listening: ${err}${out}`)));
  });
}
