/**
 * HTTP call throughput and latency on loopback: gate-server calling a pinned
 * module vs Cloudflare's workerd instantiating a wasm module per request,
 * driven by autocannon in this process at the same concurrency, runs
 * alternating between the targets.
 *
 * Gate, signed: test/programs/hello.wasm is uploaded and pinned once by a
 * signed principal; every request is `POST /gate-0/module/sha256/<hash>?action=call&function=greet`
 * with the same signed bearer token (15-minute lifetime, no nonce, so it
 * may be reused). Each call launches a fresh instance that discovers
 * `origin`, accepts the request's stream and writes "hello, world\n" to it.
 * Gate, anonymous: the same call without a token, uploading the module in
 * the request's body (upload-and-call), from one address (the per-address
 * limit is raised to the concurrency).
 * workerd: bench/workerd/worker.mjs instantiates bench/programs/greet.wat
 * per request, which writes the same 13 bytes into its memory; the response
 * is those bytes. At /verify it first verifies the same token with WebCrypto.
 *
 * GATE_BENCH_BASELINE=DIR adds a signed row for the gate-server of another
 * built checkout (e.g. the commit before a change), measured in the same
 * rounds: before/after side by side.
 */
import { createRequire } from 'node:module';
import { request as httpRequest } from 'node:http';
import { generateKeyPairSync, createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { identityFromPrivateKey } from '../src/client/identity.js';
import { makeToken } from '../src/client/token.js';
import { checkSandbox } from '../src/runtime/node/sandbox/sandbox.js';
import { cpuTicks, percentile, processTree, startGateServer, startWorkerd, treeRssBytes, workerdVersion, MiB, TICKS_PER_SECOND, type GateServerProcess, type ServerProcess } from './field.js';
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
  body?: Buffer;
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
  body?: Uint8Array;
  /** The row whose req/s its ratios divide (workerd rows have none). */
  gate: boolean;
  /** The server process, whose CPU time (and its executors') is counted per call. */
  pid?: number;
}

interface Run {
  rps: number;
  p50: number;
  p99: number;
  failed: number;
  /** CPU microseconds per answered request: the server process, its descendants (executors). */
  serverCpuUs?: number;
  executorCpuUs?: number;
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
    req.end(t.body);
  });
}

async function load(t: Target, connections: number, seconds: number): Promise<Run> {
  const times: number[] = [];
  // CPU time depends less than req/s on what else the machine runs.
  const cpu = (): { server: number; executors: number } => {
    if (t.pid === undefined) return { server: 0, executors: 0 };
    const [server, ...executors] = processTree(t.pid);
    return { server: cpuTicks(server!), executors: executors.reduce((a, p) => a + cpuTicks(p), 0) };
  };
  const before = cpu();
  const inst = autocannon({ url: t.url, method: t.method, headers: t.headers, body: t.body && Buffer.from(t.body), connections, duration: seconds });
  inst.on('response', (_c, status, _b, ms) => {
    if (status >= 200 && status < 300) times.push(ms);
  });
  const r = await inst;
  const after = cpu();
  const perCall = (ticks: number): number => (ticks * 1e6) / TICKS_PER_SECOND / Math.max(1, times.length);
  return {
    rps: times.length / r.duration,
    p50: times.length ? percentile(times, 50) : NaN,
    p99: times.length ? percentile(times, 99) : NaN,
    failed: r.non2xx + r.errors + r.timeouts,
    ...(t.pid !== undefined ? { serverCpuUs: perCall(after.server - before.server), executorCpuUs: perCall(after.executors - before.executors) } : {}),
  };
}

/** Uploads and pins `wasm` as the principal of `auth`. */
function pin(url: string, hash: string, auth: Record<string, string>, wasm: Uint8Array): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const req = httpRequest(`${url}/gate-0/module/sha256/${hash}?action=pin`, { method: 'PUT', headers: { ...auth, 'Content-Type': 'application/wasm' } }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', reject);
    req.end(wasm);
  });
}

/** Load on every target before the measured rounds. */
const WARM_UP_SECONDS = 8;

/**
 * `rounds` rounds per concurrency, each running every target for `seconds`
 * (order reversed every other round).
 */
export async function httpSection(lines: string[], rounds: number, seconds: number, log: (s: string) => void): Promise<void> {
  lines.push('## HTTP call throughput and latency: gate-server vs workerd', '');
  const check = await checkSandbox();
  const sandbox = check.available ? 'bwrap' : 'none';
  const concurrencies = [1, 16];
  const maxConnections = Math.max(...concurrencies);
  const baselineDir = process.env.GATE_BENCH_BASELINE;
  const servers: ServerProcess[] = [];
  try {
    const gateOptions = [`runtime.sandbox="${sandbox}"`, 'access.policy="public"', `anonymous.maxperaddress=${maxConnections}`];
    const gate = await startGateServer(gateOptions);
    servers.push(gate);
    const baseline = baselineDir ? await startGateServer(gateOptions, baselineDir) : undefined;
    if (baseline) servers.push(baseline);
    const workerd = await startWorkerd();
    servers.push(workerd);

    const hello = new Uint8Array(await readFile(new URL('../../test/programs/build/hello.wasm', import.meta.url)));
    const hash = createHash('sha256').update(hello).digest('hex');
    const key = identityFromPrivateKey(generateKeyPairSync('ed25519').privateKey);
    const tokenFor = (g: GateServerProcess): Record<string, string> => ({ Authorization: `Bearer ${makeToken(key, { audience: g.identity, expSeconds: 900 })}` });
    const call = `/gate-0/module/sha256/${hash}?action=call&function=greet`;
    const targets: Target[] = [];
    const gates = [['gate-server', gate], ...(baseline ? [['gate-server (baseline)', baseline] as const] : [])] as const;
    for (const [name, g] of gates) {
      const auth = tokenFor(g);
      const pinned = await pin(g.url, hash, auth, hello);
      if (pinned !== 201 && pinned !== 200) throw new Error(`pinning hello.wasm at ${name} answered ${pinned}`);
      targets.push({ name: `${name}, signed`, url: `${g.url}${call}`, method: 'POST', headers: auth, gate: true, pid: g.pid });
    }
    for (const [name, g] of gates) {
      targets.push({ name: `${name}, anonymous`, url: `${g.url}${call}`, method: 'POST', headers: { 'Content-Type': 'application/wasm' }, body: hello, gate: true, pid: g.pid });
    }
    targets.push({ name: 'workerd', url: `${workerd.url}/`, method: 'GET', headers: {}, gate: false });
    // The same token as gate-server's signed row (workerd does not check the audience).
    targets.push({ name: 'workerd, verifying the token', url: `${workerd.url}/verify`, method: 'GET', headers: targets[0]!.headers, gate: false });
    for (const t of targets) {
      const r = await fetchOnce(t);
      if (r.status !== 200 || r.body !== 'hello, world\n') throw new Error(`${t.name} answered ${r.status} ${JSON.stringify(r.body)}`);
      // Until steady state: gate-server's JIT takes some 4 000 calls to
      // settle (its CPU per call halves meanwhile); every target gets the same.
      await load(t, maxConnections, WARM_UP_SECONDS);
    }
    log('http: servers ready');

    lines.push(
      `Loopback, autocannon ${(createRequire(import.meta.url)('autocannon/package.json') as { version: string }).version} in the benchmark process (it shares the 2 cores with all servers), keep-alive connections, after ${WARM_UP_SECONDS} s of warm-up load at ${maxConnections} connections on each target, ${rounds} rounds of ${seconds} s per target and concurrency, targets one after the other (order reversed every other round). gate-server: one process plus its executor processes (sandbox: ${sandbox}), \`call\` of hello.wasm \`greet\`: *signed*, the module pinned and one signed token reused; *anonymous*, no token, the module uploaded in every request (upload-and-call; \`anonymous.maxperaddress\` raised to ${maxConnections}).${baseline ? ` *baseline*: the gate-server of another checkout (${baselineDir}), same configuration, in the same rounds.` : ''} workerd (${workerdVersion()}): a fresh \`WebAssembly.Instance\` of an equivalent 1-page module per request; *verifying the token*: first the same Ed25519 token verified with WebCrypto on every request (imported keys kept). Latencies from every response, in ms; cells are median (min–max) over rounds; ratios are medians of per-round ratios. *CPU µs per call*: user and system time of the gate-server process and of its descendants (executors, their sandboxes) during the round, from /proc (10 ms ticks), divided by the calls answered (less sensitive than req/s to what else the machine runs, though a busy machine raises it too).`,
      '',
    );
    lines.push(
      '| connections | target | req/s | p50 (ms) | p99 (ms) | failed | req/s ÷ workerd | req/s ÷ workerd verifying | CPU µs per call: server | executors |',
      '|---|---|---|---|---|---|---|---|---|---|',
    );
    for (const c of concurrencies) {
      const runs = new Map<string, Run[]>(targets.map((t) => [t.name, []]));
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 ? [...targets].reverse() : targets;
        for (const t of order) runs.get(t.name)!.push(await load(t, c, seconds));
      }
      const ratio = (rs: Run[], of: string): string => {
        const ratios = rs.map((r, i) => r.rps / runs.get(of)![i]!.rps);
        return `${fmt(median(ratios), 3)}× (${range(ratios, 3)})`;
      };
      for (const t of targets) {
        const rs = runs.get(t.name)!;
        const cell = (f: (r: Run) => number, d: number): string => `${fmt(median(rs.map(f)), d)} (${range(rs.map(f), d)})`;
        lines.push(
          `| ${c} | ${t.name} | ${cell((r) => r.rps, 0)} | ${cell((r) => r.p50, 3)} | ${cell((r) => r.p99, 2)} | ${rs.reduce((a, r) => a + r.failed, 0)} | ${t.gate ? ratio(rs, 'workerd') : ''} | ${t.gate ? ratio(rs, 'workerd, verifying the token') : ''} | ${t.pid !== undefined ? cell((r) => r.serverCpuUs!, 0) : ''} | ${t.pid !== undefined ? cell((r) => r.executorCpuUs!, 0) : ''} |`,
        );
      }
      log(`http: ${c} connections done`);
    }
    const rss = (s: ServerProcess): string => fmt(treeRssBytes(s.pid) / MiB, 0);
    lines.push('', `RSS after the runs: gate-server with its executors ${rss(gate)} MiB${baseline ? `, the baseline's ${rss(baseline)} MiB` : ''}, workerd ${rss(workerd)} MiB.`, '');
    // Profiled by hand (it takes a profiling build of the executor): kept in its own file, carried into every results file.
    lines.push((await readFile(new URL('../../bench/call-breakdown.md', import.meta.url), 'utf8')).trim(), '');
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}
