/**
 * Neighbours: what a hostile anonymous program costs a well-behaved caller
 * on the same gate-server.
 *
 * The well-behaved caller makes sequential calls of test/programs/hello.wasm
 * `greet` (it writes one line to its origin stream and returns), once as an
 * anonymous caller (the module uploaded with each call) and once as a signed
 * principal (the module pinned); latency is measured per request on the
 * client. Each scenario first starts its hostile anonymous calls (requests
 * held open, so their instances keep running), then measures, then drops the
 * hostile connections (which kills their instances). Hostile programs are
 * test/programs/attacks: `spin` (an endless loop) and `debug_forever` (writes
 * to the debug log without end; called with `log=*`).
 */
import { createHash, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent, request as httpRequest, type ClientRequest } from 'node:http';
import { fileURLToPath } from 'node:url';
import { identityFromPrivateKey, type ClientIdentity } from '../src/client/identity.js';
import { makeToken } from '../src/client/token.js';
import { checkSandbox } from '../src/runtime/node/sandbox/sandbox.js';
import { percentile, startGateServer, type GateServerProcess } from './field.js';
import { fmt } from './stats.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const programs = fileURLToPath(new URL('../../test/programs/build/', import.meta.url));

interface Hostile {
  name: string;
  count: number;
  entry?: string;
  log?: boolean;
}

const SCENARIOS: Hostile[] = [
  { name: 'idle', count: 0 },
  { name: '2 × spin (endless loop)', count: 2, entry: 'spin' },
  { name: '8 × spin (endless loop)', count: 8, entry: 'spin' },
  { name: '2 × debug_forever (log=*)', count: 2, entry: 'debug_forever', log: true },
];

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

interface Reply {
  status: number;
  body: string;
}

function send(server: GateServerProcess, path: string, opts: { key?: ClientIdentity; body?: Uint8Array; agent?: Agent; method?: string }): { req: ClientRequest; done: Promise<Reply> } {
  const headers: Record<string, string> = {};
  if (opts.key) headers.Authorization = `Bearer ${makeToken(opts.key, { audience: server.identity })}`;
  if (opts.body) headers['Content-Type'] = 'application/wasm';
  let req!: ClientRequest;
  const done = new Promise<Reply>((resolve, reject) => {
    req = httpRequest(`${server.url}/gate-0/${path}`, { method: opts.method ?? 'POST', headers, agent: opts.agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
  return { req, done };
}

async function latencies(n: number, call: () => Promise<Reply>): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = await call();
    const ms = performance.now() - t0;
    if (r.status !== 200 || !r.body.includes('hello')) throw new Error(`hello call: ${r.status} ${r.body.slice(0, 200)}`);
    times.push(ms);
  }
  return times;
}

export async function neighboursSection(lines: string[], quick: boolean, log: (s: string) => void): Promise<void> {
  const calls = quick ? 100 : 300;
  const check = await checkSandbox();
  const server = await startGateServer([`runtime.sandbox="${check.available ? 'bwrap' : 'none'}"`, 'access.policy="public"']);
  const rows: string[] = [];
  try {
    const hello = readFileSync(`${programs}hello.wasm`);
    const attacks = readFileSync(`${programs}attacks/attacks.wasm`);
    const key = identityFromPrivateKey(generateKeyPairSync('ed25519').privateKey);
    const pin = await send(server, `module/sha256/${sha256(hello)}?action=pin`, { key, body: hello, method: 'PUT' }).done;
    if (pin.status !== 200 && pin.status !== 201) throw new Error(`pin: ${pin.status} ${pin.body}`);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const anonymous = (): Promise<Reply> => send(server, `module/sha256/${sha256(hello)}?action=call&function=greet`, { body: hello, agent }).done;
    const signed = (): Promise<Reply> => send(server, `module/sha256/${sha256(hello)}?action=call&function=greet`, { key, agent }).done;
    await latencies(20, anonymous);
    await latencies(20, signed);
    const baseline: Record<string, number> = {};
    for (const s of SCENARIOS) {
      const hostile = Array.from({ length: s.count }, () => {
        const q = `module/sha256/${sha256(attacks)}?action=call&function=${s.entry!}${s.log ? '&log=*' : ''}`;
        const h = send(server, q, { body: attacks });
        h.done.catch(() => undefined);
        return h;
      });
      await sleep(s.count ? 1000 : 0);
      try {
        for (const [who, call] of [['anonymous', anonymous], ['signed', signed]] as const) {
          const t = await latencies(calls, call);
          const p50 = percentile(t, 50);
          const p99 = percentile(t, 99);
          if (s.count === 0) baseline[who] = p99;
          const ratio = baseline[who] ? p99 / baseline[who]! : NaN;
          rows.push(`| ${s.name} | ${who} | ${fmt(p50, 2)} | ${fmt(p99, 2)} | ${s.count ? `${fmt(ratio, 1)}×` : '1×'} |`);
          log(`neighbours: ${s.name}, ${who}: p50 ${fmt(p50, 2)} ms, p99 ${fmt(p99, 2)} ms`);
        }
      } catch (e) {
        rows.push(`| ${s.name} | | failed: ${(e instanceof Error ? e.message : String(e)).replace(/\|/g, '\\|').slice(0, 200)} | | |`);
      } finally {
        for (const h of hostile) h.req.destroy();
      }
      await sleep(s.count ? 1000 : 0);
    }
    agent.destroy();
  } finally {
    await server.stop();
  }
  lines.push('## Neighbours: a well-behaved caller next to hostile anonymous programs', '');
  lines.push(
    `One gate-server (default configuration, \`access.policy="public"\`). The well-behaved caller makes ${calls} sequential calls of test/programs/hello.wasm \`greet\` per row over one keep-alive connection: anonymous (module uploaded with each call) and signed (module pinned). The hostile anonymous calls are started 1 s before and held open during the measurement: test/programs/attacks \`spin\` (endless loop) and \`debug_forever\` (debug output without end, \`log=*\`). Milliseconds per call on the client; the last column is p99 over the idle row's p99.`,
    '',
    '| hostile programs | caller | p50 (ms) | p99 (ms) | p99 vs idle |',
    '|---|---|---|---|---|',
    ...rows,
    '',
  );
}
