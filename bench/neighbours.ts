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
 *
 * Each scenario has its own idle baseline, measured just before it, because
 * the host's own load drifts during a run; the ratio to the first idle
 * baseline is shown too, and idle is measured once more after the last
 * scenario (whatever the hostile programs left behind shows there).
 */
import { createHash, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent, request as httpRequest, type ClientRequest } from 'node:http';
import { fileURLToPath } from 'node:url';
import { identityFromPrivateKey, type ClientIdentity } from '../src/client/identity.js';
import { makeToken } from '../src/client/token.js';
import { Cgroups } from '../src/runtime/node/sandbox/cgroup.js';
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
  /** All hostile calls from one address (127.0.0.2), else each from its own (127.0.0.10, .11, …). */
  oneAddress?: boolean;
}

const SCENARIOS: Hostile[] = [
  { name: '2 × spin (endless loop), 2 addresses', count: 2, entry: 'spin' },
  { name: '8 × spin, 8 addresses', count: 8, entry: 'spin' },
  { name: '8 × spin, 1 address', count: 8, entry: 'spin', oneAddress: true },
  { name: '2 × debug_forever (log=*), 2 addresses', count: 2, entry: 'debug_forever', log: true },
];

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

interface Reply {
  status: number;
  body: string;
}

function send(server: GateServerProcess, path: string, opts: { key?: ClientIdentity; body?: Uint8Array; agent?: Agent; method?: string; from?: string }): { req: ClientRequest; done: Promise<Reply> } {
  const headers: Record<string, string> = {};
  if (opts.key) headers.Authorization = `Bearer ${makeToken(opts.key, { audience: server.identity })}`;
  if (opts.body) headers['Content-Type'] = 'application/wasm';
  let req!: ClientRequest;
  const done = new Promise<Reply>((resolve, reject) => {
    req = httpRequest(`${server.url}/gate-0/${path}`, { method: opts.method ?? 'POST', headers, agent: opts.agent, localAddress: opts.from }, (res) => {
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

/**
 * Server configurations compared side by side in one run: the anonymous
 * executors at the server's CPU priority (as before anonymous.nice existed)
 * and lowered (with demotion of executors that compute long). The CPU budget of anonymous runs is off in both, so
 * that the hostile programs run through the whole measurement.
 */
const NICE_VALUES = [0, 5, 10];

/** Calls per row, and before the first row (warm-up: module cache, JIT, connection). */
const CALLS = { quick: 300, full: 1000 };
const WARM_UP_CALLS = 50;

/** `nice`: only these anonymous.nice values (default 0, 5 and 10). */
export async function neighboursSection(lines: string[], quick: boolean, log: (s: string) => void, nice: number[] = NICE_VALUES): Promise<void> {
  const calls = quick ? CALLS.quick : CALLS.full;
  const check = await checkSandbox();
  const cpuCgroups = Cgroups.detect()?.cpu === true;
  const rows: string[] = [];
  const variants = nice.map((n) => ({ name: `anonymous.nice=${n}`, keys: [`anonymous.nice=${n}`, 'anonymous.cputime=0'] }));
  for (const variant of variants) {
    const server = await startGateServer([`runtime.sandbox="${check.available ? 'bwrap' : 'none'}"`, 'access.policy="public"', ...variant.keys]);
    try {
      await measure(server, variant.name, calls, rows, log);
    } finally {
      await server.stop();
    }
  }
  lines.push('## Neighbours: a well-behaved caller next to hostile anonymous programs', '');
  lines.push(
    `One gate-server per configuration (\`access.policy="public"\`, \`anonymous.cputime=0\` so that the hostile programs run throughout; \`anonymous.nice=0\` runs anonymous executors at the server's CPU priority and never demotes them, as before the key existed; with 5 or 10 they run that many nice steps below it, and one whose program has computed 50 ms drops to the lowest priority: ${cpuCgroups ? 'idle in its cpu cgroup, since this host lets the server use that controller' : 'nice 19, since this host does not let the server use the cpu cgroup controller'}). The well-behaved caller makes ${calls} sequential calls of test/programs/hello.wasm \`greet\` per row (after ${WARM_UP_CALLS} warm-up calls) over one keep-alive connection from 127.0.0.1: anonymous (module uploaded with each call) and signed (module pinned). The hostile anonymous calls come from other loopback addresses, are started 1 s before and are held open during the measurement: test/programs/attacks \`spin\` (endless loop) and \`debug_forever\` (debug output without end, \`log=*\`); "admitted" is how many of them the server did not refuse (429). Before each hostile row the same calls are made with nothing hostile running (its baseline, 1 s after the previous row's hostile calls were dropped), and once more after the last row. Milliseconds per call on the client; the ratios are p99 over the p99 of the idle calls just before the row, and over the p99 of the first idle calls of the configuration (on a steady host they agree; where other work on the host comes and goes during a run, the baseline just before the row is the fairer one).`,
    '',
    '| configuration | hostile programs | admitted | caller | p50 (ms) | p99 (ms) | idle p99 just before (ms) | p99 vs idle just before | p99 vs first idle |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
  );
}

async function measure(server: GateServerProcess, variant: string, calls: number, rows: string[], log: (s: string) => void): Promise<void> {
  const hello = readFileSync(`${programs}hello.wasm`);
  const attacks = readFileSync(`${programs}attacks/attacks.wasm`);
  const key = identityFromPrivateKey(generateKeyPairSync('ed25519').privateKey);
  const pin = await send(server, `module/sha256/${sha256(hello)}?action=pin`, { key, body: hello, method: 'PUT' }).done;
  if (pin.status !== 200 && pin.status !== 201) throw new Error(`pin: ${pin.status} ${pin.body}`);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const anonymous = (): Promise<Reply> => send(server, `module/sha256/${sha256(hello)}?action=call&function=greet`, { body: hello, agent }).done;
  const signed = (): Promise<Reply> => send(server, `module/sha256/${sha256(hello)}?action=call&function=greet`, { key, agent }).done;
  await latencies(WARM_UP_CALLS, anonymous);
  await latencies(WARM_UP_CALLS, signed);
  const callers = [['anonymous', anonymous], ['signed', signed]] as const;
  const idle = async (): Promise<Record<string, number[]>> => {
    const times: Record<string, number[]> = {};
    for (const [who, call] of callers) times[who] = await latencies(calls, call);
    return times;
  };
  const measured: Array<{ s: Hostile; admitted: number; idleBefore: Record<string, number[]>; times?: Record<string, number[]>; error?: string }> = [];
  for (const s of SCENARIOS) {
    // The idle baseline of this row, just before it: the host's own load drifts during a run.
    const idleBefore = await idle();
    let refused = 0;
    const hostile = Array.from({ length: s.count }, (_, i) => {
      const q = `module/sha256/${sha256(attacks)}?action=call&function=${s.entry!}${s.log ? '&log=*' : ''}`;
      const h = send(server, q, { body: attacks, from: s.oneAddress ? '127.0.0.2' : `127.0.0.${10 + i}` });
      h.done.then((r) => void (r.status === 429 && refused++)).catch(() => undefined);
      return h;
    });
    await sleep(1000);
    try {
      measured.push({ s, admitted: s.count - refused, idleBefore, times: await idle() });
    } catch (e) {
      measured.push({ s, admitted: s.count - refused, idleBefore, error: e instanceof Error ? e.message : String(e) });
    } finally {
      for (const h of hostile) h.req.destroy();
    }
    await sleep(1000);
  }
  const idleAfter = await idle();
  const first = measured[0]!.idleBefore;
  const ratio = (a: number, b: number): string => `${fmt(a / b, 1)}×`;
  const row = (label: string, admitted: number, who: string, t: number[], before?: number[]): void => {
    const p50 = percentile(t, 50);
    const p99 = percentile(t, 99);
    const firstP99 = percentile(first[who]!, 99);
    const beforeP99 = before ? percentile(before, 99) : undefined;
    const cells = beforeP99 === undefined ? ['', '', ratio(p99, firstP99)] : [fmt(beforeP99, 2), ratio(p99, beforeP99), ratio(p99, firstP99)];
    rows.push(`| ${variant} | ${label} | ${admitted} | ${who} | ${fmt(p50, 2)} | ${fmt(p99, 2)} | ${cells.join(' | ')} |`);
    log(`neighbours (${variant}): ${label}, ${who}: p50 ${fmt(p50, 2)} ms, p99 ${fmt(p99, 2)} ms, ${cells.join(' ')}`);
  };
  for (const [who] of callers) row('idle, first', 0, who, first[who]!);
  for (const m of measured) {
    if (m.error) rows.push(`| ${variant} | ${m.s.name} | ${m.admitted} | | failed: ${m.error.replace(/\|/g, '\\|').slice(0, 200)} | | | | |`);
    else for (const [who] of callers) row(m.s.name, m.admitted, who, m.times![who]!, m.idleBefore[who]);
  }
  for (const [who] of callers) row('idle, after the last', 0, who, idleAfter[who]!);
  agent.destroy();
}
