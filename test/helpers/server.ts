/** Real gate-servers on loopback for tests, and a small HTTP client that sees trailers. */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
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

export function request(server: TestServer, method: string, path: string, opts: RequestOptions = {}): Promise<Reply> {
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
