/**
 * The test page's side of the browser runtime tests (test/browser/*.test.ts):
 * runs programs with the bundled runtime (dist/browser/gate.js, loaded as a
 * page would) in a WorkerExecutor, and reports plain data back to the test,
 * which drives it through playwright. Bundled by scripts/build-browser.mjs.
 */
import {
  connectOrigin,
  defineService,
  Domain,
  extensionRegistry,
  instanceServices,
  MemoryCache,
  packetContent,
  packetDomain,
  Program,
  Runtime,
  WorkerExecutor,
  WorkerPreparer,
  DEFAULT_LOCAL_LIMITS,
  type InstanceServices,
  type Profile,
  type RunningInstance,
  type ServiceFactory,
} from '../../src/browser/index.js';

export interface RunRequest {
  /** Test program name (test/programs/build/<name>.wasm), or a snapshot previously kept by `keep`. */
  program?: string;
  /** Bytes of a snapshot kept by an earlier run under this name. */
  snapshot?: string;
  entry?: string;
  profile?: Profile;
  /** Sent to the program over its origin stream, then end of stream. */
  input?: string;
  /** Keep the input stream open instead of ending it after `input`. */
  keepInputOpen?: boolean;
  suspendAfterMs?: number;
  killAfterMs?: number;
  /** Suspend once the origin output contains this text. */
  suspendOnOutput?: string;
  /** Suspend (once) this many milliseconds after the debug output first contains this text. */
  suspendOnDebug?: { text: string; delayMs: number };
  /** Register the page's own `test` service (echoes calls, records INFO packets). */
  testService?: boolean;
  /** Keep the final snapshot (the instance is retained) under this name. */
  keep?: string;
  /** A separate worker for this run (else the page's shared one). */
  ownWorker?: boolean;
  timeResolutionNs?: number;
  /** Close (terminate) the run's executor worker after this many milliseconds. */
  closeWorkerAfterMs?: number;
  /** Prepare in the preparation worker (WorkerPreparer) instead of the page's thread. */
  prepareInWorker?: boolean;
}

export interface RunReport {
  status: { state: string; cause?: string; result?: number; error?: string };
  output: string;
  debug: string;
  id: string;
  /** When the instance stopped (performance.now() of the page), to compare runs' order. */
  endedAt: number;
  /** Size of the kept snapshot in bytes. */
  snapshotBytes?: number;
  testService?: { calls: string[]; infos: string[]; shutdowns: boolean[]; principalId: string | undefined; instanceId: string };
}

const cache = new MemoryCache();
const programs = new Map<string, Uint8Array>();
const kept = new Map<string, Uint8Array>();
let shared: WorkerExecutor | undefined;
let preparer: WorkerPreparer | undefined;

function executor(): WorkerExecutor {
  if (!shared || !shared.alive) shared = new WorkerExecutor({ workerUrl: '/gate/gate-executor-worker.js' });
  return shared;
}

async function programBytes(name: string): Promise<Uint8Array> {
  let b = programs.get(name);
  if (!b) {
    const res = await fetch(`/programs/${name}.wasm`);
    if (!res.ok) throw new Error(`cannot fetch program ${name}: HTTP ${res.status}`);
    b = new Uint8Array(await res.arrayBuffer());
    programs.set(name, b);
  }
  return b;
}

const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

function testService(): { factory: ServiceFactory; seen: NonNullable<RunReport['testService']>[] } {
  const seen: NonNullable<RunReport['testService']>[] = [];
  const factory = defineService({
    name: 'test',
    revision: '0',
    create(config) {
      const s = { calls: [] as string[], infos: [] as string[], shutdowns: [] as boolean[], principalId: config.context.principalId, instanceId: config.context.instanceId };
      seen.push(s);
      return {
        handle(packet) {
          const content = packetContent(packet);
          if (packetDomain(packet) === Domain.Call) {
            s.calls.push(hex(content));
            config.send(packet.slice());
          } else if (packetDomain(packet) === Domain.Info) {
            s.infos.push(new TextDecoder().decode(content));
          }
        },
        shutdown(suspend) {
          s.shutdowns.push(suspend);
        },
      };
    },
  });
  return { factory, seen };
}

async function run(req: RunRequest): Promise<RunReport> {
  const exec = req.ownWorker ? new WorkerExecutor({ workerUrl: '/gate/gate-executor-worker.js' }) : executor();
  try {
    if (req.prepareInWorker && !preparer) preparer = new WorkerPreparer({ workerUrl: '/gate/gate-prepare-worker.js', limits: DEFAULT_LOCAL_LIMITS });
    const runtime = new Runtime({
      executor: exec,
      memoryLimitPages: 2048,
      timeResolutionNs: req.timeResolutionNs ?? 1000,
      cache,
      ...(req.prepareInWorker ? { preparer: preparer!.prepare } : {}),
    });
    let bytes: Uint8Array;
    if (req.snapshot !== undefined) {
      const s = kept.get(req.snapshot);
      if (!s) throw new Error(`no snapshot kept as ${req.snapshot}`);
      bytes = s;
    } else {
      bytes = await programBytes(req.program ?? 'hello');
    }
    const program = await Program.load(bytes, DEFAULT_LOCAL_LIMITS);
    const ext = req.testService ? testService() : undefined;
    const services = instanceServices({ principalId: 'local', ...(ext ? { registry: extensionRegistry([ext.factory]) } : {}) });
    const debug: Uint8Array[] = [];
    let watchDebug = req.suspendOnDebug;
    let launched: RunningInstance<InstanceServices> | undefined;
    const inst: RunningInstance<InstanceServices> = await runtime.launch(program, {
      entry: req.entry,
      profile: req.profile,
      debug: (d) => {
        debug.push(d.slice());
        if (watchDebug && new TextDecoder().decode(concat(debug)).includes(watchDebug.text)) {
          setTimeout(() => launched?.suspend(), watchDebug.delayMs);
          watchDebug = undefined;
        }
      },
      services,
      retain: req.keep !== undefined,
    });
    launched = inst;
    let output = '';
    const decoder = new TextDecoder();
    const pipe = connectOrigin(inst.services.origin, (chunk) => {
      output += decoder.decode(chunk, { stream: true });
      if (req.suspendOnOutput !== undefined && output.includes(req.suspendOnOutput)) inst.suspend();
    });
    if (req.input) pipe.send(req.input);
    if (!req.keepInputOpen) pipe.end();
    if (req.suspendAfterMs !== undefined) setTimeout(() => inst.suspend(), req.suspendAfterMs);
    if (req.killAfterMs !== undefined) setTimeout(() => inst.kill(), req.killAfterMs);
    if (req.closeWorkerAfterMs !== undefined) setTimeout(() => void exec.close(), req.closeWorkerAfterMs);
    const status = await inst.wait();
    const endedAt = performance.now();
    await pipe.done.catch(() => undefined);
    const report: RunReport = { status: { ...status }, output, debug: decoder.decode(concat(debug)), id: inst.id, endedAt };
    if (req.keep !== undefined) {
      const snap = await inst.snapshot();
      inst.release();
      kept.set(req.keep, snap);
      report.snapshotBytes = snap.length;
    }
    if (ext) report.testService = ext.seen[0];
    return report;
  } finally {
    if (req.ownWorker) await exec.close();
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Runs several at once (the conformance suite's concurrency cases). */
async function runAll(reqs: RunRequest[]): Promise<RunReport[]> {
  return Promise.all(reqs.map(run));
}

export interface MigrateRequest {
  /** gate-server's base URL (its CORS origins must include this page's). */
  server: string;
  id: string;
  /** Suspend in the browser once the counter has counted this many more rounds here (else once it runs here). */
  rounds?: number;
}

export interface MigrateReport {
  /** Counts the counter sent to the page, in order. */
  counts: number[];
  status: RunReport['status'];
  debug: string;
  snapshotBytes: number;
  /** Size of the snapshot that came from the server. */
  downloadedBytes: number;
  /**
   * Milliseconds of each phase: on the server suspend → snapshot → download
   * (→ delete, untimed); load and launch here; here suspend → snapshot; upload
   * (pin) → launch there.
   */
  ms: { suspend: number; snapshot: number; download: number; resume: number; suspendHere: number; upload: number; launch: number };
}

/** A fresh token for each request (window.gateToken is provided by the test). */
async function authorized(init: RequestInit = {}): Promise<RequestInit> {
  const token = await (globalThis as unknown as { gateToken(): Promise<string> }).gateToken();
  return { ...init, headers: { ...(init.headers as Record<string, string>), Authorization: `Bearer ${token}` } };
}

async function api(url: string, init: RequestInit, expect: number): Promise<Response> {
  const res = await fetch(url, await authorized(init));
  if (res.status !== expect) throw new Error(`${init.method ?? 'GET'} ${url}: HTTP ${res.status} ${await res.text()}`);
  return res;
}

/**
 * Moves a running counter instance from gate-server into this page and back,
 * using only the documented HTTP API: suspend, snapshot, download, delete;
 * resume here under the same id until it has counted `rounds` more; suspend,
 * upload the snapshot and launch it with `instance=<same id>`.
 */
async function migrate(req: MigrateRequest): Promise<MigrateReport> {
  const I = `${req.server}/gate-0/instance/${req.id}`;
  const t0 = performance.now();
  await api(`${I}?action=suspend&action=wait`, { method: 'POST' }, 200);
  const t1 = performance.now();
  const snap = await api(`${I}?action=snapshot`, { method: 'POST' }, 201);
  const location = snap.headers.get('Location');
  if (!location) throw new Error('snapshot answered without a Location');
  const t2 = performance.now();
  const bytes = new Uint8Array(await (await api(new URL(location, req.server).href, { method: 'GET' }, 200)).arrayBuffer());
  const t3 = performance.now();
  await api(`${I}?action=delete`, { method: 'POST' }, 200);

  const t4 = performance.now();
  const runtime = new Runtime({ executor: executor(), memoryLimitPages: 2048, timeResolutionNs: 1000, cache });
  const program = await runtime.load(bytes);
  const debug: Uint8Array[] = [];
  const inst = await runtime.launch(program, {
    instanceId: req.id,
    retain: true,
    debug: (d) => void debug.push(d.slice()),
    services: instanceServices({ principalId: 'local' }),
  });
  const t5 = performance.now();
  const counts: number[] = [];
  let text = '';
  const decoder = new TextDecoder();
  const pipe = connectOrigin(inst.services.origin, (chunk) => {
    text += decoder.decode(chunk, { stream: true });
    const lines = text.split('\n');
    text = lines.pop()!;
    for (const line of lines) counts.push(Number(line));
    if (req.rounds !== undefined && counts.length >= req.rounds) inst.suspend();
  });
  let t6 = performance.now();
  if (req.rounds === undefined) {
    t6 = performance.now();
    inst.suspend();
  }
  const status = await inst.wait();
  await pipe.done.catch(() => undefined);
  if (req.rounds !== undefined) t6 = performance.now();
  const out = await inst.snapshot();
  inst.release();
  const t7 = performance.now();

  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', out as Uint8Array<ArrayBuffer>));
  const K = `${req.server}/gate-0/module/sha256/${hex(digest)}`;
  await api(`${K}?action=pin`, { method: 'PUT', headers: { 'Content-Type': 'application/wasm' }, body: out as Uint8Array<ArrayBuffer> }, 201);
  const t8 = performance.now();
  const launched = await api(`${K}?action=launch&instance=${req.id}`, { method: 'POST' }, 200);
  if (launched.headers.get('Gate-Instance') !== req.id) throw new Error(`the server launched it as ${launched.headers.get('Gate-Instance')}, not ${req.id}`);
  const t9 = performance.now();
  return {
    counts,
    status: { ...status },
    debug: decoder.decode(concat(debug)),
    snapshotBytes: out.length,
    downloadedBytes: bytes.length,
    ms: { suspend: t1 - t0, snapshot: t2 - t1, download: t3 - t2, resume: t5 - t4, suspendHere: t7 - t6, upload: t8 - t7, launch: t9 - t8 },
  };
}

/**
 * Runs hello `greet` on a lying worker: a classic worker that answers `load`
 * as the real one does and, on `create`, runs `scenario` (JavaScript with
 * `id` and `send(message)`). Reports the instance's status and why the
 * WorkerExecutor gave the worker up.
 */
async function runOnLiar(scenario: string): Promise<{ status: RunReport['status']; exit: string | undefined }> {
  const code = `
const send = (m) => postMessage(m);
onmessage = (e) => {
  const m = e.data;
  if (m.t === 'load') send({ t: 'loaded', seq: m.seq });
  if (m.t === 'create') { const id = m.spec.id; { ${scenario} } }
};
send({ t: 'ready' });`;
  const url = URL.createObjectURL(new Blob([code], { type: 'text/javascript' }));
  let exit: string | undefined;
  const exec = new WorkerExecutor({ worker: new Worker(url), onExit: (r) => (exit = r) });
  try {
    const runtime = new Runtime({ executor: exec, memoryLimitPages: 16, timeResolutionNs: 1000, cache });
    const inst = await runtime.launch(await runtime.load(await programBytes('hello')), { entry: 'greet', services: instanceServices() });
    const status = await inst.wait();
    return { status: { ...status }, exit };
  } finally {
    await exec.close();
    URL.revokeObjectURL(url);
  }
}

/** Loads module bytes as the page would load a downloaded snapshot; reports the error (name, code, message) or 'ok'. */
async function load(bytes: number[]): Promise<{ name: string; code?: string; message: string } | 'ok'> {
  try {
    await new Runtime({ executor: executor(), memoryLimitPages: 16, timeResolutionNs: 1000 }).load(new Uint8Array(bytes));
    return 'ok';
  } catch (e) {
    const err = e as Error & { code?: string };
    return { name: err.name, code: err.code, message: err.message };
  }
}

const harness = { run, runAll, migrate, runOnLiar, load, ready: true };
(globalThis as unknown as { gateHarness: typeof harness }).gateHarness = harness;
export type Harness = typeof harness;
