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
    const runtime = new Runtime({ executor: exec, memoryLimitPages: 2048, timeResolutionNs: req.timeResolutionNs ?? 1000, cache });
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

const harness = { run, runAll, ready: true };
(globalThis as unknown as { gateHarness: typeof harness }).gateHarness = harness;
export type Harness = typeof harness;
