/**
 * An instance as an HTTP endpoint vs a plain `call`, on one gate-server
 * process on loopback, driven by autocannon in this process at the same
 * concurrency, runs alternating between the two.
 *
 * Endpoint: test/programs/kv.wasm launched once (persistent, one instance);
 * every request is `GET /gate-0/endpoint/<id>/count`, unauthenticated,
 * answered by that instance through the endpoint service (a stream per
 * request; the program serves one request at a time, so concurrent ones
 * queue for its next accept).
 * Call: every request is `POST /gate-0/module/sha256/<hello>?action=call&function=greet`
 * with a signed token, as in bench/http.ts: a fresh instance per request.
 */
import { createRequire } from 'node:module';
import { request as httpRequest } from 'node:http';
import { generateKeyPairSync, createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { identityFromPrivateKey } from '../src/client/identity.js';
import { makeToken } from '../src/client/token.js';
import { checkSandbox } from '../src/runtime/node/sandbox/sandbox.js';
import { percentile, startGateServer, type GateServerProcess } from './field.js';
import { fmt, median, range } from './stats.js';

interface AutocannonResult {
  non2xx: number;
  errors: number;
  timeouts: number;
  duration: number;
}
interface AutocannonInstance extends PromiseLike<AutocannonResult> {
  on(event: 'response', f: (client: unknown, status: number, bytes: number, ms: number) => void): void;
}
type Autocannon = (opts: { url: string; method: string; headers?: Record<string, string>; connections: number; duration: number }) => AutocannonInstance;

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

interface Target {
  name: string;
  url: string;
  method: string;
  headers: Record<string, string>;
}

interface Run {
  rps: number;
  p50: number;
  p99: number;
  failed: number;
}

function send(url: string, method: string, headers: Record<string, string>, body?: Uint8Array): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function load(t: Target, connections: number, seconds: number): Promise<Run> {
  const times: number[] = [];
  const inst = autocannon({ url: t.url, method: t.method, headers: t.headers, connections, duration: seconds });
  inst.on('response', (_c, status, _b, ms) => {
    if (status >= 200 && status < 300) times.push(ms);
  });
  const r = await inst;
  return { rps: times.length / r.duration, p50: times.length ? percentile(times, 50) : NaN, p99: times.length ? percentile(times, 99) : NaN, failed: r.non2xx + r.errors + r.timeouts };
}

async function program(name: string): Promise<{ bytes: Uint8Array; hash: string }> {
  const bytes = new Uint8Array(await readFile(new URL(`../../test/programs/build/${name}.wasm`, import.meta.url)));
  return { bytes, hash: createHash('sha256').update(bytes).digest('hex') };
}

export async function endpointSection(lines: string[], rounds: number, seconds: number, log: (s: string) => void): Promise<void> {
  lines.push('## Endpoint requests vs plain calls', '');
  const check = await checkSandbox();
  const sandbox = check.available ? 'bwrap' : 'none';
  let gate: GateServerProcess | undefined;
  try {
    gate = await startGateServer([`runtime.sandbox="${sandbox}"`, 'endpoint.enabled=true', 'endpoint.maxrequests=64']);
    const key = identityFromPrivateKey(generateKeyPairSync('ed25519').privateKey);
    const auth = { Authorization: `Bearer ${makeToken(key, { audience: gate.identity, expSeconds: 900 })}` };
    const hello = await program('hello');
    const kv = await program('kv');
    const wasm = { ...auth, 'Content-Type': 'application/wasm' };
    const pinned = await send(`${gate.url}/gate-0/module/sha256/${hello.hash}?action=pin`, 'PUT', wasm, hello.bytes);
    if (pinned.status !== 201 && pinned.status !== 200) throw new Error(`pinning hello.wasm answered ${pinned.status}`);
    const launched = await send(`${gate.url}/gate-0/module/sha256/${kv.hash}?action=pin&action=launch`, 'POST', wasm, kv.bytes);
    if (launched.status !== 201) throw new Error(`launching kv.wasm answered ${launched.status} ${launched.body}`);
    const id = String(launched.headers['gate-instance']);
    const endpoint = `${gate.url}/gate-0/endpoint/${id}/count`;
    for (let tries = 0; (await send(endpoint, 'GET', {})).status !== 200; tries++) {
      if (tries > 200) throw new Error('kv.wasm does not listen');
      await new Promise((r) => setTimeout(r, 25));
    }

    const targets: Target[] = [
      { name: 'endpoint', url: endpoint, method: 'GET', headers: {} },
      { name: 'call', url: `${gate.url}/gate-0/module/sha256/${hello.hash}?action=call&function=greet`, method: 'POST', headers: auth },
    ];
    for (const t of targets) await load(t, 4, 1); // warm up (JIT, executor, connections)
    log('endpoint: server ready');

    lines.push(
      `One gate-server process plus its executor (sandbox: ${sandbox}) on loopback; autocannon in the benchmark process (sharing the 2 cores), keep-alive connections, ${rounds} rounds of ${seconds} s per target and concurrency, alternating. endpoint: \`GET /gate-0/endpoint/<id>/count\` answered by one running kv.wasm instance (one request at a time; the others queue for its next accept). call: \`call\` of the pinned hello.wasm \`greet\` (a new instance per request, signed token reused). Latencies in ms; cells are median (min–max) over rounds; the ratio is the median of per-round ratios.`,
      '',
      '| connections | target | req/s | p50 (ms) | p99 (ms) | failed | req/s endpoint ÷ call |',
      '|---|---|---|---|---|---|---|',
    );
    for (const c of [1, 16]) {
      const runs = new Map<string, Run[]>(targets.map((t) => [t.name, []]));
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 ? [...targets].reverse() : targets;
        for (const t of order) runs.get(t.name)!.push(await load(t, c, seconds));
      }
      const e = runs.get('endpoint')!;
      const k = runs.get('call')!;
      const ratios = e.map((r, i) => r.rps / k[i]!.rps);
      for (const t of targets) {
        const rs = runs.get(t.name)!;
        const cell = (f: (r: Run) => number, d: number): string => `${fmt(median(rs.map(f)), d)} (${range(rs.map(f), d)})`;
        lines.push(
          `| ${c} | ${t.name} | ${cell((r) => r.rps, 0)} | ${cell((r) => r.p50, 3)} | ${cell((r) => r.p99, 2)} | ${rs.reduce((a, r) => a + r.failed, 0)} | ${t.name === 'endpoint' ? `${fmt(median(ratios), 2)}× (${range(ratios, 2)})` : ''} |`,
        );
      }
      log(`endpoint: ${c} connections done`);
    }
    lines.push('');
  } finally {
    await gate?.stop();
  }
}
