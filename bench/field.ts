/**
 * Helpers shared by the field benchmarks (launch, http, density, migration):
 * WAT programs of bench/programs built on demand, gate-server and workerd
 * processes on loopback, and process-tree RSS from /proc.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * bench/build/<name>.wasm, assembled from bench/programs/<name>.wat with
 * wat2wasm when it is missing or older than its source.
 */
export function benchWat(name: string): Uint8Array {
  const src = join(root, 'bench/programs', `${name}.wat`);
  const out = join(root, 'bench/build', `${name}.wasm`);
  let fresh = false;
  try {
    fresh = statSync(out).mtimeMs >= statSync(src).mtimeMs;
  } catch {
    // not built yet
  }
  if (!fresh) execFileSync(process.env.WAT2WASM ?? 'wat2wasm', [src, '-o', out], { stdio: ['ignore', 'ignore', 'inherit'] });
  return new Uint8Array(readFileSync(out));
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, proc: ChildProcess, what: string, stderr: () => string): Promise<void> {
  const deadline = performance.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`${what} exited before listening: ${stderr()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1');
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    if (performance.now() > deadline) throw new Error(`${what} did not listen on ${port} within 30 s: ${stderr()}`);
    await sleep(50);
  }
}

/** A server process on loopback that this benchmark started (and must stop). */
export interface ServerProcess {
  url: string;
  pid: number;
  /** SIGTERM, then SIGKILL after 10 s; resolves when the process is gone. */
  stop(): Promise<void>;
}

function stopper(proc: ChildProcess, cleanup: () => void): () => Promise<void> {
  return async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const gone = new Promise<void>((r) => proc.once('exit', () => r()));
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(timer);
    }
    cleanup();
  };
}

export interface GateServerProcess extends ServerProcess {
  /** The identity string tokens must name as audience. */
  identity: string;
  stateDir: string;
}

/**
 * Starts bin/gate-server with an empty configuration plus `options`
 * (`key=value`, TOML values) in a fresh state directory, logging errors
 * only (no per-request logging cost). `checkout`: the built project whose
 * bin/gate-server runs (another checkout, for a before/after comparison).
 */
export async function startGateServer(options: string[], checkout = root): Promise<GateServerProcess> {
  const port = await freePort();
  const stateDir = mkdtempSync(join(tmpdir(), 'gate-bench-state-'));
  const args = ['-F', '/dev/null', '-o', 'access.policy="public"', '-o', `http.addr="127.0.0.1:${port}"`, '-o', `state.dir=${JSON.stringify(stateDir)}`, '-o', 'log.level="error"'];
  for (const o of options) args.push('-o', o);
  // Only PATH (to find bwrap) and HOME: e.g. NODE_EXTRA_CA_CERTS would slow every process start.
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/' };
  const proc = spawn(process.execPath, [join(checkout, 'bin/gate-server'), ...args], { stdio: ['ignore', 'ignore', 'pipe'], env });
  let err = '';
  proc.stderr!.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-2000)));
  const stop = stopper(proc, () => rmSync(stateDir, { recursive: true, force: true }));
  try {
    await waitForPort(port, proc, 'gate-server', () => err);
  } catch (e) {
    await stop();
    throw e;
  }
  const url = `http://127.0.0.1:${port}`;
  return { url, identity: `${url}/gate-0/`, pid: proc.pid!, stateDir, stop };
}

/**
 * The peer runtime: Cloudflare's workerd, npm package `workerd` at a pinned
 * version. It is not a devDependency because the lock file would have to name
 * its binary packages for every platform, which this machine's registry
 * mirror does not serve; the benchmark installs it on first use into
 * bench/.peers (ignored by git).
 */
export const WORKERD_VERSION = '1.20261117.1';
const PEERS = join(root, 'bench/.peers');

export function workerdBinary(): string {
  const bin = join(PEERS, 'node_modules/workerd/bin/workerd');
  if (!existsSync(bin)) {
    mkdirSync(PEERS, { recursive: true });
    execFileSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', PEERS, `workerd@${WORKERD_VERSION}`], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  return bin;
}

export function workerdVersion(): string {
  try {
    return execFileSync(workerdBinary(), ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    return 'workerd unavailable';
  }
}

/** Starts workerd with bench/workerd/config.capnp (the greet worker) on a free loopback port. */
export async function startWorkerd(): Promise<ServerProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'gate-bench-workerd-'));
  benchWat('greet');
  copyFileSync(join(root, 'bench/workerd/config.capnp'), join(dir, 'config.capnp'));
  copyFileSync(join(root, 'bench/workerd/worker.mjs'), join(dir, 'worker.mjs'));
  copyFileSync(join(root, 'bench/build/greet.wasm'), join(dir, 'greet.wasm'));
  const port = await freePort();
  const proc = spawn(workerdBinary(), ['serve', join(dir, 'config.capnp'), '--socket-addr', `http=127.0.0.1:${port}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: {},
  });
  let err = '';
  proc.stderr!.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-2000)));
  const stop = stopper(proc, () => rmSync(dir, { recursive: true, force: true }));
  try {
    await waitForPort(port, proc, 'workerd', () => err);
  } catch (e) {
    await stop();
    throw e;
  }
  return { url: `http://127.0.0.1:${port}`, pid: proc.pid!, stop };
}

/** VmRSS of one process in bytes (0 if it is gone). */
export function rssBytes(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** `pid` and all its descendants (e.g. bwrap → launcher → node). */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(name));
      children.set(ppid, list);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/** CPU time (user + system) `pid` has used, in clock ticks (usually 10 ms); 0 once it is gone. */
export function cpuTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}

/** Clock ticks per second of /proc's CPU times (Linux's USER_HZ). */
export const TICKS_PER_SECOND = 100;

/** Summed VmRSS of `pid` and its descendants, in bytes. */
export const treeRssBytes = (pid: number): number => processTree(pid).reduce((a, p) => a + rssBytes(p), 0);

/** p-th percentile (0–100), nearest rank. */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export const MiB = 1024 * 1024;
