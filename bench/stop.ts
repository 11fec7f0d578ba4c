/**
 * Graceful stop and restart of a gate-server process holding many
 * persistent RUNNING instances (bench/programs/idle.wat `idle`: one page,
 * blocked in `io`): the instances are launched through the API, then
 * SIGTERM; the table shows how long the stop took, its exit code, how many
 * instances it reported stored, and, after starting the server again on the
 * same state directory, how long until it listened, until every instance
 * was RUNNING again, and how many were.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { identityFromPrivateKey, type ClientIdentity } from '../src/client/identity.js';
import { makeToken } from '../src/client/token.js';
import { checkSandbox } from '../src/runtime/node/sandbox/sandbox.js';
import { benchWat } from './field.js';
import { fmt } from './stats.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Launch requests in flight at once. */
const LAUNCH_PARALLEL = 16;

interface Server {
  url: string;
  identity: string;
  proc: ChildProcess;
  /** Log lines (JSON) so far. */
  lines(): Array<Record<string, unknown>>;
  exited: Promise<number | null>;
  listenedMs: number;
}

function startServer(stateDir: string, options: string[]): Promise<Server> {
  const args = ['-F', '/dev/null', '-o', 'http.addr="127.0.0.1:0"', '-o', `state.dir=${JSON.stringify(stateDir)}`, '-o', 'log.level="info"'];
  for (const o of options) args.push('-o', o);
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/' };
  const t0 = performance.now();
  const proc = spawn(process.execPath, [join(root, 'bin/gate-server'), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  let out = '';
  let err = '';
  proc.stderr!.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-2000)));
  const lines = (): Array<Record<string, unknown>> =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return new Promise((resolve, reject) => {
    proc.stdout!.on('data', (c: Buffer) => {
      const had = out.includes('"msg":"listening"');
      out += c.toString();
      if (had) return;
      const listening = lines().find((l) => l.msg === 'listening');
      if (listening) {
        const url = String(listening.url);
        resolve({ url, identity: `${url}/gate-0/`, proc, lines, exited, listenedMs: performance.now() - t0 });
      }
    });
    void exited.then((code) => reject(new Error(`gate-server exited (${code}) before listening: ${err}`)));
  });
}

function call(server: Server, key: ClientIdentity, method: string, path: string, headers: Record<string, string> = {}, body?: Uint8Array): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
  const h = { ...headers, Authorization: `Bearer ${makeToken(key, { audience: server.identity })}` };
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

interface Row {
  n: number;
  launchSeconds: number;
  stopSeconds: number;
  exitCode: number | null;
  stored: number;
  listenSeconds: number;
  restoredSeconds: number;
  restored: number;
  running: number;
}

async function runningCount(server: Server, key: ClientIdentity): Promise<number> {
  const r = await call(server, key, 'POST', 'instance/');
  if (r.status !== 200) return 0;
  return (JSON.parse(r.text).instances as Array<{ status: { state: string } }>).filter((i) => i.status.state === 'RUNNING').length;
}

async function measure(n: number, options: string[], log: (s: string) => void): Promise<Row> {
  const stateDir = mkdtempSync(join(tmpdir(), 'gate-bench-stop-'));
  const key = identityFromPrivateKey(generateKeyPairSync('ed25519').privateKey);
  const idle = benchWat('idle');
  const hash = createHash('sha256').update(idle).digest('hex');
  try {
    const first = await startServer(stateDir, options);
    const pin = await call(first, key, 'PUT', `module/sha256/${hash}?action=pin`, { 'Content-Type': 'application/wasm' }, idle);
    if (pin.status !== 201) throw new Error(`pin: ${pin.status} ${pin.text}`);
    let launched = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: LAUNCH_PARALLEL }, async () => {
        while (launched < n) {
          const k = ++launched;
          const r = await call(first, key, 'POST', `module/sha256/${hash}?action=launch&function=idle`);
          if (r.status !== 200) {
            const errors = first.lines().filter((l) => l.level === 50 || l.level === 60);
            throw new Error(`launch ${k}: ${r.status} ${r.text}; server errors: ${JSON.stringify(errors.slice(-3))}`);
          }
          if (k % 1000 === 0) log(`stop: ${k} of ${n} launched`);
        }
      }),
    );
    const launchSeconds = (performance.now() - t0) / 1000;
    const t1 = performance.now();
    first.proc.kill('SIGTERM');
    const exitCode = await first.exited;
    const stopSeconds = (performance.now() - t1) / 1000;
    const stopped = first.lines().find((l) => l.msg === 'stopped' || String(l.msg).startsWith('stopped:'));
    const stored = typeof stopped?.stored === 'number' ? stopped.stored : 0;
    log(`stop: ${n} instances stopped in ${fmt(stopSeconds, 1)} s (exit ${exitCode}, ${stored} stored)`);

    const t2 = performance.now();
    const second = await startServer(stateDir, options);
    // The server logs how many it restored once every instance that was running runs again.
    const deadline = performance.now() + 600_000;
    let done: Record<string, unknown> | undefined;
    while (!(done = second.lines().find((l) => l.msg === 'persistent instances restored')) && performance.now() < deadline) await sleep(50);
    const restoredSeconds = (performance.now() - t2) / 1000;
    const running = await runningCount(second, key);
    second.proc.kill('SIGTERM');
    await second.exited;
    return { n, launchSeconds, stopSeconds, exitCode, stored, listenSeconds: second.listenedMs / 1000, restoredSeconds, restored: typeof done?.restored === 'number' ? done.restored : 0, running };
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
  }
}

export async function stopSection(lines: string[], quick: boolean, log: (s: string) => void): Promise<void> {
  const check = await checkSandbox();
  const sandbox = check.available ? 'bwrap' : 'none';
  const options = [`runtime.sandbox="${sandbox}"`, 'access.policy="public"'];
  const sizes = quick ? [1000] : [1000, 4000, 8000];
  lines.push(
    '## Graceful stop and restart with many persistent instances',
    '',
    `gate-server (sandbox ${sandbox}, default runtime.maxinstances) holding n RUNNING instances of bench/programs/idle.wat \`idle\` (1 page, blocked in io), launched ${LAUNCH_PARALLEL} at a time through the API; then SIGTERM. "stored": instances the stop reported stored. Restart: the same state directory; "listening" is when the server logged that it listens (it knows every instance then, and requests for one not yet restored wait for it), "restored" when it logged that every instance that was running runs again, and how many it restored; "running": instances listed RUNNING after that.`,
    '',
    '| instances | launch (s) | stop (s) | exit | stored | restart: listening (s) | restart: restored (s) | restored | running |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const n of sizes) {
    const r = await measure(n, options, log);
    lines.push(`| ${r.n} | ${fmt(r.launchSeconds, 1)} | ${fmt(r.stopSeconds, 1)} | ${r.exitCode} | ${r.stored} | ${fmt(r.listenSeconds, 1)} | ${fmt(r.restoredSeconds, 1)} | ${r.restored} | ${r.running} |`);
  }
  lines.push('');
}
