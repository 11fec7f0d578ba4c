/**
 * HTTP call throughput and latency on loopback: gate-server calling a pinned
 * module vs Cloudflare's workerd instantiating a wasm module per request,
 * driven by autocannon in this process at the same concurrency, runs
 * alternating between the two servers.
 *
 * Gate: test/programs/hello.wasm is uploaded and pinned once by a signed
 * principal; every request is `POST /gate-0/module/sha256/<hash>?action=call&function=greet`
 * with the same signed bearer token (15-minute lifetime, no nonce, so it
 * may be reused; the server verifies its signature on every request). Each
 * call launches a fresh instance that discovers `origin`, accepts the
 * request's stream and writes "hello, world\n" to it.
 * workerd: bench/workerd/worker.mjs instantiates bench/programs/greet.wat
 * per request, which writes the same 13 bytes into its memory; the response
 * is those bytes.
 */
import { createRequire } from 'node:module';
import { request as httpRequest } from 'node:http';
import { generateKeyPairSync, createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { identityFromPrivateKey } from '../src/client/identity.js';
import { makeToken } from '../src/client/token.js';
import { checkSandbox } from '../src/runtime/node/sandbox/sandbox.js';
import { percentile, startGateServer, startWorkerd, treeRssBytes, workerdVersion, MiB, type ServerProcess } from './field.js';
import { fmt, median, range } from './stats.js';

/** The part of autocannon's programmatic API used here (it ships no types). */
interface AutocannonResult {
  requests: { total: number };
  non2xx: number;
  errors: number;
  timeouts: number;
  duration: number;
}
interface AutocannonInstance extends PromiseLike<AutocannonResult> {
  on(event: 'response', f: (client: unknown, status: number, bytes: number, ms: number) => void): void;
}
type Autocannon = (opts: {
  url: string;
  method: string;
  headers?: Record<string, string>;
  connections: number;
  duration: number;
  pipelining?: number;
}) => AutocannonInstance;

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

interface Target {
  name: string;
  url: string;
  method: string;
  headers: Record<string, string>;
  server: ServerProcess;
}

interface Run {
  rps: number;
  p50: number;
  p99: number;
  failed: number;
}

function fetchOnce(t: Target): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(t.url, { method: t.method, headers: t.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function load(t: Target, connections: number, seconds: number): Promise<Run> {
  const times: number[] = [];
  const inst = autocannon({ url: t.url, method: t.method, headers: t.headers, connections, duration: seconds });
  inst.on('response', (_c, status, _b, ms) => {
    if (status >= 200 && status < 300) times.push(ms);
  });
  const r = await inst;
  return {
    rps: times.length / r.duration,
    p50: times.length ? percentile(times, 50) : NaN,
    p99: times.length ? percentile(times, 99) : NaN,
    failed: r.non2xx + r.errors + r.timeouts,
  };
}

/**
 * `rounds` rounds per concurrency, each running both servers for `seconds`
 * (order alternating between rounds).
 */
export async function httpSection(lines: string[], rounds: number, seconds: number, log: (s: string) => void): Promise<void> {
  lines.push('## HTTP call throughput and latency: gate-server vs workerd', '');
  const check = await checkSandbox();
  const sandbox = check.available ? 'bwrap' : 'none';
  const servers: ServerProcess[] = [];
  try {
    const gate = await startGateServer([`runtime.sandbox="${sandbox}"`, 'access.policy="public"']);
    servers.push(gate);
    const workerd = await startWorkerd();
    servers.push(workerd);

    const hello = new Uint8Array(await readFile(new URL('../../test/programs/build/hello.wasm', import.meta.url)));
    const hash = createHash('sha256').update(hello).digest('hex');
    const key = identityFromPrivateKey(generateKeyPairSync('ed25519').privateKey);
    const token = makeToken(key, { audience: gate.identity, expSeconds: 900 });
    const auth = { Authorization: `Bearer ${token}` };
    const pinned = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${gate.url}/gate-0/module/sha256/${hash}?action=pin`, { method: 'PUT', headers: { ...auth, 'Content-Type': 'application/wasm' } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      req.end(hello);
    });
    if (pinned !== 201 && pinned !== 200) throw new Error(`pinning hello.wasm answered ${pinned}`);

    const targets: Target[] = [
      { name: 'gate-server', url: `${gate.url}/gate-0/module/sha256/${hash}?action=call&function=greet`, method: 'POST', headers: auth, server: gate },
      { name: 'workerd', url: `${workerd.url}/`, method: 'GET', headers: {}, server: workerd },
    ];
    for (const t of targets) {
      const r = await fetchOnce(t);
      if (r.status !== 200 || r.body !== 'hello, world\n') throw new Error(`${t.name} answered ${r.status} ${JSON.stringify(r.body)}`);
      await load(t, 4, 1); // warm up (JIT, executor, connections)
    }
    log('http: servers ready');

    const concurrencies = [1, 16];
    lines.push(
      `Loopback, autocannon ${(createRequire(import.meta.url)('autocannon/package.json') as { version: string }).version} in the benchmark process (it shares the 2 cores with both servers), keep-alive connections, ${rounds} rounds of ${seconds} s per server and concurrency, servers alternating (order swapped every round). gate-server: one process plus its executor process (sandbox: ${sandbox}), \`call\` of the pinned hello.wasm \`greet\`, one signed token reused. workerd (${workerdVersion()}): a fresh \`WebAssembly.Instance\` of an equivalent 1-page module per request. Latencies from every response, in ms; cells are median (min–max) over rounds; the ratio is the median of per-round ratios.`,
      '',
    );
    lines.push('| connections | server | req/s | p50 (ms) | p99 (ms) | failed | req/s gate ÷ workerd |', '|---|---|---|---|---|---|---|');
    for (const c of concurrencies) {
      const runs = new Map<string, Run[]>(targets.map((t) => [t.name, []]));
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 ? [...targets].reverse() : targets;
        for (const t of order) runs.get(t.name)!.push(await load(t, c, seconds));
      }
      const g = runs.get('gate-server')!;
      const w = runs.get('workerd')!;
      const ratios = g.map((r, i) => r.rps / w[i]!.rps);
      for (const t of targets) {
        const rs = runs.get(t.name)!;
        const cell = (f: (r: Run) => number, d: number): string => `${fmt(median(rs.map(f)), d)} (${range(rs.map(f), d)})`;
        lines.push(
          `| ${c} | ${t.name} | ${cell((r) => r.rps, 0)} | ${cell((r) => r.p50, 3)} | ${cell((r) => r.p99, 2)} | ${rs.reduce((a, r) => a + r.failed, 0)} | ${t.name === 'gate-server' ? `${fmt(median(ratios), 3)}× (${range(ratios, 3)})` : ''} |`,
        );
      }
      log(`http: ${c} connections done`);
    }
    lines.push('', `RSS after the runs: gate-server with its executors ${fmt(treeRssBytes(gate.pid) / MiB, 0)} MiB, workerd ${fmt(treeRssBytes(workerd.pid) / MiB, 0)} MiB.`, '');
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}
