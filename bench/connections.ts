/**
 * Connections at scale: how many idle websocket `io` sessions one gate-server
 * holds, and what each costs in the server process's memory.
 *
 * N instances of bench/programs/idle.wat (`idle`: one page, blocked in `io`)
 * are launched through the API by one signed principal, then N websocket io
 * sessions are opened to them all at once (as N clients arriving together
 * would), each sending its setup message and waiting for `{"connected":true}`.
 * Failures are counted by their error. The server process's RSS (the server
 * alone, not its executors) is read before and after the sessions are open,
 * after a settle; the difference divided by the sessions is the cost of one.
 */
import { createHash, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import WebSocket from 'ws';
import { identityFromPrivateKey, type ClientIdentity } from '../src/client/identity.js';
import { makeToken } from '../src/client/token.js';
import { checkSandbox } from '../src/runtime/node/sandbox/sandbox.js';
import { benchWat, MiB, rssBytes, startGateServer, type GateServerProcess } from './field.js';
import { fmt } from './stats.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const LAUNCH_CONCURRENCY = 32;

export function post(server: GateServerProcess, key: ClientIdentity, path: string, headers: Record<string, string> = {}, body?: Uint8Array): Promise<{ status: number; instance?: string; body: string }> {
  const h = { ...headers, Authorization: `Bearer ${makeToken(key, { audience: server.identity })}` };
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${server.url}/gate-0/${path}`, { method: body ? 'PUT' : 'POST', headers: h }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, instance: res.headers['gate-instance'] as string | undefined, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Opens one io session; resolves with the open socket or rejects with why not. */
export function openIo(server: GateServerProcess, key: ClientIdentity, id: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${server.url.replace(/^http/, 'ws')}/gate-0/instance/${id}?action=io`, { perMessageDeflate: false });
    const fail = (e: Error): void => {
      ws.terminate();
      reject(e);
    };
    ws.once('error', fail);
    ws.once('close', (code) => reject(new Error(`closed ${code}`)));
    ws.once('open', () => ws.send(JSON.stringify({ authorization: `Bearer ${makeToken(key, { audience: server.identity })}` })));
    ws.once('message', (data) => {
      const reply = JSON.parse(String(data)) as { connected?: boolean };
      if (reply.connected !== true) return fail(new Error('not connected'));
      ws.removeAllListeners('close');
      resolve(ws);
    });
  });
}

/** The kernel's count of connections dropped because a listen queue was full (whole machine). */
function listenOverflows(): number {
  const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n');
  for (let i = 0; i + 1 < lines.length; i++) {
    if (!lines[i]!.startsWith('TcpExt:')) continue;
    const names = lines[i]!.split(/\s+/);
    const values = lines[i + 1]!.split(/\s+/);
    const k = names.indexOf('ListenOverflows');
    return k >= 0 ? Number(values[k]) : NaN;
  }
  return NaN;
}

export interface ConnectionsOutcome {
  sessions: number;
  opened: number;
  errors: Map<string, number>;
  openSeconds: number;
  /** Listen queue overflows on this machine while the sessions were opened. */
  overflows: number;
  rssBefore: number;
  rssAfter: number;
}

export async function holdSessions(sessions: number, log: (s: string) => void, extraOptions: string[] = []): Promise<ConnectionsOutcome> {
  const check = await checkSandbox();
  const server = await startGateServer([
    `runtime.sandbox="${check.available ? 'bwrap' : 'none'}"`,
    'access.policy="public"',
    ...extraOptions,
  ]);
  const open: WebSocket[] = [];
  try {
    const key = identityFromPrivateKey(generateKeyPairSync('ed25519').privateKey);
    const idle = benchWat('idle');
    const hash = createHash('sha256').update(idle).digest('hex');
    const pin = await post(server, key, `module/sha256/${hash}?action=pin`, { 'Content-Type': 'application/wasm' }, idle);
    if (pin.status !== 200 && pin.status !== 201) throw new Error(`pin: ${pin.status} ${pin.body}`);
    const ids: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: LAUNCH_CONCURRENCY }, async () => {
        while (next < sessions) {
          next++;
          const r = await post(server, key, `module/sha256/${hash}?action=launch&function=idle`);
          if ((r.status !== 200 && r.status !== 201) || !r.instance) throw new Error(`launch: ${r.status} ${r.body}`);
          ids.push(r.instance);
        }
      }),
    );
    log(`connections: ${ids.length} instances launched`);
    await sleep(1000);
    const rssBefore = rssBytes(server.pid);
    const errors = new Map<string, number>();
    const overflowsBefore = listenOverflows();
    const t0 = performance.now();
    const results = await Promise.allSettled(ids.map((id) => openIo(server, key, id)));
    const openSeconds = (performance.now() - t0) / 1000;
    const overflows = listenOverflows() - overflowsBefore;
    for (const r of results) {
      if (r.status === 'fulfilled') open.push(r.value);
      else {
        const why = r.reason instanceof Error ? ((r.reason as NodeJS.ErrnoException).code ?? r.reason.message) : String(r.reason);
        errors.set(why, (errors.get(why) ?? 0) + 1);
      }
    }
    await sleep(2000);
    const rssAfter = rssBytes(server.pid);
    log(`connections: ${open.length}/${sessions} open in ${fmt(openSeconds, 1)} s; errors ${JSON.stringify([...errors])}; listen queue overflows ${overflows}`);
    return { sessions, opened: open.length, errors, openSeconds, overflows, rssBefore, rssAfter };
  } finally {
    for (const ws of open) ws.terminate();
    await server.stop();
  }
}

export async function connectionsSection(lines: string[], quick: boolean, log: (s: string) => void): Promise<void> {
  const counts = quick ? [2000, 10_000] : [2000, 5000, 10_000];
  lines.push('## Idle websocket io sessions on one gate-server', '');
  lines.push(
    'N instances of bench/programs/idle.wat (`idle`, blocked in `io`) launched by one signed principal (default configuration: 64 instances per executor process), then N websocket `io` sessions opened to them at once from one client process, each waiting for `{"connected":true}`. RSS is the gate-server process alone (not its executors), 1 s after launching and 2 s after the sessions are open.',
    '',
    '| sessions | opened | errors | listen queue overflows (kernel counter) | time to open all (s) | server RSS before → after (MiB) | per session (KiB) |',
    '|---|---|---|---|---|---|---|',
  );
  for (const n of counts) {
    const o = await holdSessions(n, log);
    const errors = o.errors.size ? [...o.errors].map(([k, v]) => `${k}: ${v}`).join(', ') : 'none';
    const perSession = o.opened ? (o.rssAfter - o.rssBefore) / o.opened / 1024 : NaN;
    lines.push(`| ${n} | ${o.opened} | ${errors} | ${o.overflows} | ${fmt(o.openSeconds, 1)} | ${fmt(o.rssBefore / MiB, 0)} → ${fmt(o.rssAfter / MiB, 0)} | ${fmt(perSession, 1)} |`);
  }
  lines.push('');
}
