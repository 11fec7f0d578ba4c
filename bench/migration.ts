/**
 * Migration between two gate-server processes on loopback, through the
 * public API only: an instance of bench/programs/idle.wat (1 page, 1 MiB or
 * 64 MiB of dense memory, blocked in `io`) is suspended on the source
 * (`suspend` + `wait` → SUSPENDED), its snapshot taken (`snapshot` → 201
 * with the snapshot module's Location), downloaded (GET), uploaded to the
 * target with `launch&instance=<same id>` (POST with the module as body; answered once the instance
 * runs there). The instance then goes back the other way in the next round,
 * so each round migrates the same instance once more; the sizes alternate
 * within each round. One signed principal on both servers.
 */
import { createHash, generateKeyPairSync } from 'node:crypto';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { identityFromPrivateKey, type ClientIdentity } from '../src/client/identity.js';
import { makeToken } from '../src/client/token.js';
import { checkSandbox } from '../src/runtime/node/sandbox/sandbox.js';
import { benchWat, startGateServer, MiB, type GateServerProcess } from './field.js';
import { fmt, median, summary } from './stats.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

function call(server: GateServerProcess, key: ClientIdentity, method: string, path: string, headers: Record<string, string> = {}, body?: Uint8Array): Promise<Reply> {
  const h = { ...headers, Authorization: `Bearer ${makeToken(key, { audience: server.identity })}` };
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${server.url}/gate-0/${path}`, { method, headers: h }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

function expect(r: Reply, ok: number[], what: string): Reply {
  if (!ok.includes(r.status)) throw new Error(`${what}: ${r.status} ${r.body.toString().slice(0, 200)}`);
  return r;
}

interface Case {
  name: string;
  entry: string;
  /** Time for a fresh instance to fill its memory and block (not measured). */
  settleMs: number;
}

interface Samples {
  suspend: number[];
  snapshot: number[];
  download: number[];
  upload: number[];
  total: number[];
  size: number;
}

/** `rounds` migrations per size (each round moves every instance once). */
export async function migrationSection(lines: string[], rounds: number, log: (s: string) => void): Promise<void> {
  lines.push('## Migration between two gate-servers', '');
  const check = await checkSandbox();
  const sandbox = check.available ? 'bwrap' : 'none';
  const options = [`runtime.sandbox="${sandbox}"`, 'access.policy="public"', `principal.maxmemorysize=${128 * MiB}`, `principal.maxmodulesize=${128 * MiB}`];
  const servers: GateServerProcess[] = [];
  try {
    servers.push(await startGateServer(options));
    servers.push(await startGateServer(options));
    const key = identityFromPrivateKey(generateKeyPairSync('ed25519').privateKey);
    const idle = benchWat('idle');
    const hash = createHash('sha256').update(idle).digest('hex');
    const cases: Case[] = [
      { name: '1 page', entry: 'idle', settleMs: 200 },
      { name: '1 MiB (dense)', entry: 'idle1m', settleMs: 300 },
      { name: '32 MiB (dense)', entry: 'idle32m', settleMs: 2000 },
      { name: '64 MiB (dense)', entry: 'idle64m', settleMs: 3000 },
    ];
    // Where each case's instance is now (index into servers) and its id.
    const where = new Map<string, { at: number; id: string }>();
    /** Cases that failed, with why (they are not tried again). */
    const failed = new Map<string, string>();
    const samples = new Map<string, Samples>(cases.map((c) => [c.name, { suspend: [], snapshot: [], download: [], upload: [], total: [], size: 0 }]));
    expect(await call(servers[0]!, key, 'PUT', `module/sha256/${hash}?action=pin`, { 'Content-Type': 'application/wasm' }, idle), [200, 201], 'pin idle.wasm');
    for (const c of cases) {
      const r = expect(await call(servers[0]!, key, 'POST', `module/sha256/${hash}?action=launch&function=${c.entry}`), [200, 201], `launch ${c.entry}`);
      where.set(c.name, { at: 0, id: String(r.headers['gate-instance']) });
    }
    await sleep(Math.max(...cases.map((c) => c.settleMs)));

    for (let round = 0; round < rounds + 1; round++) {
      for (const c of cases) {
        if (failed.has(c.name)) continue;
        const w = where.get(c.name)!;
        const from = servers[w.at]!;
        const to = servers[1 - w.at]!;
        try {
          const t0 = performance.now();
          const s = expect(await call(from, key, 'POST', `instance/${w.id}?action=suspend&action=wait`), [200], `suspend ${c.name}`);
          const t1 = performance.now();
          const state = String(s.headers['gate-status']);
          if (!state.includes('SUSPENDED')) throw new Error(`${c.name}: suspended to ${state}`);
          const snap = expect(await call(from, key, 'POST', `instance/${w.id}?action=snapshot`), [201], `snapshot ${c.name}`);
          const t2 = performance.now();
          const location = String(snap.headers.location).replace(/^\/gate-0\//, '');
          const bytes = expect(await call(from, key, 'GET', location, { Accept: 'application/wasm' }), [200], `download ${c.name}`).body;
          const t3 = performance.now();
          expect(await call(to, key, 'POST', `${location}?action=launch&instance=${w.id}`, { 'Content-Type': 'application/wasm' }, bytes), [200, 201], `upload+launch ${c.name}`);
          const t4 = performance.now();
          // Not timed: it runs there (blocked in io again), and the source forgets it.
          const info = expect(await call(to, key, 'POST', `instance/${w.id}`, { Accept: 'application/json' }), [200], `status ${c.name}`);
          if (!info.body.toString().includes('RUNNING')) throw new Error(`${c.name} on the target: ${info.body.toString()}`);
          expect(await call(from, key, 'POST', `instance/${w.id}?action=delete`), [200], `delete ${c.name}`);
          expect(await call(from, key, 'POST', `${location}?action=unpin`), [200, 404], `unpin ${c.name}`);
          where.set(c.name, { at: 1 - w.at, id: w.id });
          if (round === 0) continue; // warm-up round (JIT, executors, caches of the snapshot's code)
          const m = samples.get(c.name)!;
          m.suspend.push(t1 - t0);
          m.snapshot.push(t2 - t1);
          m.download.push(t3 - t2);
          m.upload.push(t4 - t3);
          m.total.push(t4 - t0);
          m.size = bytes.length;
        } catch (e) {
          failed.set(c.name, e instanceof Error ? e.message : String(e));
          log(`migration: ${c.name} failed: ${failed.get(c.name)}`);
        }
      }
      log(`migration: round ${round}`);
    }
    lines.push(
      `Two gate-server processes on loopback (sandbox: ${sandbox}), one signed principal, through the HTTP API only: \`suspend&wait\` → \`snapshot\` (201) → GET the snapshot module → POST it to the other server with \`action=launch&instance=<same id>\` (answered when the instance runs there; checked RUNNING afterwards, untimed). The same instance goes back and forth, ${rounds} timed migrations per size after one warm-up, sizes alternating within rounds. Milliseconds, median (min–max):`,
      '',
    );
    lines.push('| instance memory | snapshot size | suspend | snapshot | download | upload + launch | **suspend → running elsewhere** |', '|---|---|---|---|---|---|---|');
    for (const c of cases) {
      const m = samples.get(c.name)!;
      if (!m.total.length) {
        lines.push(`| ${c.name} | | not measured: ${(failed.get(c.name) ?? 'no samples').replace(/\s+/g, ' ').replace(/\|/g, '\\|')} | | | | |`);
        continue;
      }
      lines.push(`| ${c.name} | ${m.size >= MiB ? `${fmt(m.size / MiB, 1)} MiB` : `${fmt(m.size / 1024, 1)} KiB`} | ${summary(m.suspend)} | ${summary(m.snapshot)} | ${summary(m.download)} | ${summary(m.upload)} | **${fmt(median(m.total), 1)}** (${summary(m.total).replace(/^[^(]*\(/, '').replace(/\)$/, '')}) |`);
    }
    lines.push('');
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}
