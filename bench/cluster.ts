/**
 * A cluster of gate-server processes on one PostgreSQL on loopback
 * (docs/cluster.md): a request forwarded by a server that does not own the
 * instance against the same request to its owner; `action=migrate` between
 * servers until the target answers RUNNING; and the time from a kill -9 of
 * an instance's owner until another server runs it again.
 */
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { identityFromPrivateKey, type ClientIdentity } from '../src/client/identity.js';
import { makeToken } from '../src/client/token.js';
import { checkSandbox } from '../src/runtime/node/sandbox/sandbox.js';
import { postgresBinDir, startTestPostgres } from '../test/helpers/postgres.js';
import { benchWat, MiB, percentile, startGateServer, type GateServerProcess } from './field.js';
import { fmt, median, summary } from './stats.js';

const AUDIENCE = 'http://gate.bench.cluster/gate-0/';
const HEARTBEAT_S = 0.5;
const FAILOVER_S = 3;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function call(server: GateServerProcess, key: ClientIdentity, method: string, path: string, headers: Record<string, string> = {}, body?: Uint8Array): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
  const h = { ...headers, Authorization: `Bearer ${makeToken(key, { audience: AUDIENCE })}` };
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${server.url}/gate-0/${path}`, { method, headers: h }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Polls until the instance answers RUNNING on `server` (at most 60 s). */
async function untilRunning(server: GateServerProcess, key: ClientIdentity, id: string, pollMs: number): Promise<void> {
  const deadline = performance.now() + 60_000;
  while (!(await running(server, key, id))) {
    if (performance.now() > deadline) throw new Error(`instance ${id} is not RUNNING on ${server.url} after 60 s`);
    await sleep(pollMs);
  }
}

async function running(server: GateServerProcess, key: ClientIdentity, id: string): Promise<boolean> {
  const r = await call(server, key, 'POST', `instance/${id}`, { Accept: 'application/json' }).catch(() => undefined);
  return r?.status === 200 && r.text.includes('RUNNING');
}

export async function clusterSection(lines: string[], rounds: number, log: (s: string) => void): Promise<void> {
  lines.push('## Cluster: forwarding, migration, failover', '');
  if (postgresBinDir() === undefined) {
    lines.push('Not measured: PostgreSQL binaries not found (Debian package `postgresql`).', '');
    return;
  }
  const pg = await startTestPostgres({ durable: true });
  const db = await pg.createDatabase();
  const blobDir = mkdtempSync(join(tmpdir(), 'gate-bench-blobs-'));
  const sandbox = (await checkSandbox()).available ? 'bwrap' : 'none';
  const servers: GateServerProcess[] = [];
  const start = async (name: string): Promise<GateServerProcess> => {
    const s = await startGateServer([
      `runtime.sandbox="${sandbox}"`,
      `inventory.dsn=${JSON.stringify(pg.dsn(db))}`,
      'http.authority="gate.bench.cluster"',
      `cluster.name="${name}"`,
      `cluster.blobdir=${JSON.stringify(blobDir)}`,
      `cluster.heartbeat=${HEARTBEAT_S}`,
      `cluster.failover=${FAILOVER_S}`,
      'state.checkpointinterval=1',
      // A 32 MiB instance's snapshot is a little larger than its memory.
      `principal.maxmemorysize=${128 * MiB}`,
      `principal.maxmodulesize=${128 * MiB}`,
    ]);
    servers.push(s);
    return s;
  };
  try {
    const [a, b] = [await start('a'), await start('b')];
    await start('c');
    await sleep(2 * HEARTBEAT_S * 1000);
    const key = identityFromPrivateKey(generateKeyPairSync('ed25519').privateKey);
    const idle = benchWat('idle');
    const hash = createHash('sha256').update(idle).digest('hex');
    const pin = await call(a, key, 'PUT', `module/sha256/${hash}?action=pin`, { 'Content-Type': 'application/wasm' }, idle);
    if (pin.status !== 201 && pin.status !== 200) throw new Error(`pin: ${pin.status} ${pin.text}`);
    const launch = async (on: GateServerProcess, entry: string): Promise<string> => {
      const r = await call(on, key, 'POST', `module/sha256/${hash}?action=launch&function=${entry}`);
      if (r.status !== 200) throw new Error(`launch: ${r.status} ${r.text}`);
      return String(r.headers['gate-instance']);
    };

    // Forwarding: the same request (instance info, JSON) to the owner and through another server.
    const id = await launch(a, 'idle');
    const n = rounds * 100;
    const times = { direct: [] as number[], forwarded: [] as number[] };
    for (let i = 0; i < n + 50; i++) {
      for (const [kind, server] of [['direct', a], ['forwarded', b]] as const) {
        const t0 = performance.now();
        const r = await call(server, key, 'POST', `instance/${id}`, { Accept: 'application/json' });
        const t = performance.now() - t0;
        if (r.status !== 200) throw new Error(`info (${kind}): ${r.status} ${r.text}`);
        if (i >= 50) times[kind].push(t);
      }
    }
    log('cluster: forwarding measured');
    lines.push(
      `Three gate-server processes (sandbox: ${sandbox}) on one PostgreSQL ${'(fsync on)'} on loopback, sharing a blob directory; heartbeat ${HEARTBEAT_S} s, failover ${FAILOVER_S} s, checkpoints every second. One signed principal; each request with a fresh token (no nonce).`,
      '',
      `Instance info (\`POST /gate-0/instance/<id>\`, JSON), ${n} requests each after 50 warm-up, alternating; milliseconds:`,
      '',
      '| to | median | p90 | p99 |',
      '|---|---|---|---|',
    );
    for (const [kind, xs] of Object.entries(times)) lines.push(`| ${kind === 'direct' ? 'the owner' : 'another server (forwarded)'} | ${fmt(median(xs))} | ${fmt(percentile(xs, 90))} | ${fmt(percentile(xs, 99))} |`);
    lines.push('');

    // Migration: action=migrate until the target answers RUNNING (requests there wait for the restore).
    const sizes = [
      { name: '1 page', entry: 'idle', settleMs: 200 },
      { name: '32 MiB (dense)', entry: 'idle32m', settleMs: 2000 },
    ];
    lines.push('`action=migrate` (asked of the owner) until the target answers RUNNING, between the three servers in turn; milliseconds, median (min–max):', '', '| instance memory | migrate answered | running on the target |', '|---|---|---|');
    for (const size of sizes) {
      const mid = await launch(a, size.entry);
      await sleep(size.settleMs);
      await untilRunning(a, key, mid, 5);
      let at = 0;
      const answered: number[] = [];
      const runningAfter: number[] = [];
      for (let round = 0; round < rounds * 2 + 1; round++) {
        const to = (at + 1) % 3;
        const t0 = performance.now();
        const r = await call(servers[at]!, key, 'POST', `instance/${mid}?action=migrate&server=${'abc'[to]}`);
        const t1 = performance.now();
        if (r.status !== 200) throw new Error(`migrate ${size.name}: ${r.status} ${r.text}`);
        await untilRunning(servers[to]!, key, mid, 5);
        const t2 = performance.now();
        if (round > 0) {
          answered.push(t1 - t0);
          runningAfter.push(t2 - t0);
        }
        at = to;
      }
      lines.push(`| ${size.name} | ${summary(answered)} | **${summary(runningAfter)}** |`);
      await call(servers[at]!, key, 'POST', `instance/${mid}?action=kill&action=wait`);
      log(`cluster: migration ${size.name} measured`);
    }
    lines.push('');

    // Failover: kill -9 of the owner until another server answers RUNNING.
    const failovers: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const victim = await start(`v${round}`);
      await sleep(2 * HEARTBEAT_S * 1000);
      const fid = await launch(victim, 'idle1m');
      await sleep(1500); // a checkpoint
      const t0 = performance.now();
      process.kill(victim.pid, 'SIGKILL');
      await untilRunning(a, key, fid, 20);
      failovers.push(performance.now() - t0);
      await call(a, key, 'POST', `instance/${fid}?action=kill&action=wait`);
    }
    log('cluster: failover measured');
    lines.push(
      `Failover: kill -9 of the server running an instance (1 MiB) until another server answers RUNNING for it, ${rounds} times: ${summary(failovers.map((x) => x / 1000), 2)} s (the failover time is ${FAILOVER_S} s after the last heartbeat; then the next heartbeat of a live server claims and restores it).`,
      '',
    );
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    await pg.stop();
    rmSync(blobDir, { recursive: true, force: true });
  }
}
