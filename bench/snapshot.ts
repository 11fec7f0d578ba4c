/**
 * Suspend, snapshot and restore latency, for a 1-page and a 64 MiB program,
 * in both executor hosts (in process and child process).
 *
 * Each case keeps one instance per executor and goes round a chain: restore
 * from the previous round's snapshot (timed until the program prints
 * "resumed"), let it run for a random 0–20 ms, suspend it (timed until
 * wait() resolves), snapshot it (timed), then time the parts of a snapshot
 * once more on the same retained instance. Executors alternate within each
 * round, and only the instance being measured is running. Modules are
 * prepared once up front through a shared MemoryCache, so no time here is
 * preparation (a restore still re-runs the rewrite stage to find its key).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { TrapId } from '../src/abi/trap.js';
import { MemoryCache } from '../src/prepare/cache.js';
import { sha256Hex } from '../src/prepare/pipeline.js';
import { framesFromRaw } from '../src/runtime/frames.js';
import { decodeRawStack } from '../src/runtime/unwinder.js';
import type { Profile } from '../src/prepare/profile.js';
import type { Executor, ExecutorSnapshot } from '../src/runtime/executor.js';
import { InProcessExecutor } from '../src/runtime/inprocess.js';
import { ChildProcessExecutor } from '../src/runtime/node/child-executor.js';
import { FrameDecoder, encodeFrame } from '../src/runtime/node/framing.js';
import { decodeSnapshot, decodeSpec, encodeSnapshot, encodeSpec } from '../src/runtime/node/protocol.js';
import { Program } from '../src/runtime/program.js';
import { Runtime, type RunningInstance } from '../src/runtime/runtime.js';
import { instanceServices, type InstanceServices } from '../src/service/provider.js';
import { writeSnapshot, writeSnapshotParts } from '../src/snapshot/format.js';
import type { SnapshotState } from '../src/snapshot/state.js';
import { DEFAULT_LOCAL_LIMITS } from '../src/wasm/validate.js';
import { fmt, median, summary } from './stats.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const now = (): number => performance.now();

interface Case {
  name: string;
  file: URL;
  entry: string;
  profile: Profile;
  /** Debug output that shows the program runs again after a restore (undefined: none soon enough). */
  sign: string | undefined;
  /** Debug output that shows a fresh instance is ready to be measured. */
  ready: string;
}

interface Host {
  name: string;
  executor: Executor;
  runtime: Runtime;
  cache: MemoryCache;
}

/** Measurements of one case in one executor host, one entry per round. */
interface Samples {
  suspend: number[];
  snapshot: number[];
  size: number[];
  /** executor.snapshot(): memory copy in the executor (+ encode, transfer and decode for a child). */
  executorSnapshot: number[];
  /** writeSnapshot() on the executor's state. */
  write: number[];
  /** writeSnapshotParts(): the scan without the copy. */
  writeParts: number[];
  load: number[];
  launch: number[];
  firstSign: number[];
  /** sha256 of the snapshot bytes (part of Program.load). */
  hash: number[];
  /** Program.prepare on the restored program, a cache hit (part of launch). */
  prepare: number[];
  unwound: number[];
  /** Links that threw, with where and why. */
  failures: string[];
}

const newSamples = (): Samples => ({
  suspend: [],
  snapshot: [],
  size: [],
  executorSnapshot: [],
  write: [],
  writeParts: [],
  load: [],
  launch: [],
  firstSign: [],
  hash: [],
  prepare: [],
  unwound: [],
  failures: [],
});

interface Run {
  inst: RunningInstance<InstanceServices>;
  /** Resolves with performance.now() when the debug log first contains `text`. */
  seen(text: string): Promise<number>;
}

async function launch(host: Host, program: Program, c: Case, profile?: Profile): Promise<Run> {
  let log = '';
  const waiters: Array<{ text: string; resolve(t: number): void }> = [];
  const inst = await host.runtime.launch(program, {
    entry: program.snapshot ? undefined : c.entry,
    profile,
    retain: true,
    debug: (d) => {
      const t = now();
      log += Buffer.from(d).toString();
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (log.includes(waiters[i]!.text)) {
          waiters[i]!.resolve(t);
          waiters.splice(i, 1);
        }
      }
      if (log.length > 4096) log = log.slice(-1024);
    },
    services: instanceServices({ principalId: 'local' }),
  });
  const seen = (text: string): Promise<number> =>
    new Promise((resolve, reject) => {
      if (log.includes(text)) return resolve(now());
      waiters.push({ text, resolve });
      inst.wait().then((s) => reject(new Error(`${c.name}: instance stopped ${JSON.stringify(s)} before printing "${text.trim()}"`)));
    });
  lastRun = { inst, seen };
  return lastRun;
}

/** The instance launched last (for cleaning up after a failed link). */
let lastRun: Run | undefined;

/** The state RunningInstance.snapshot() builds, for timing writeSnapshot alone. */
function stateOf(program: Program, s: ExecutorSnapshot, profile: Profile): SnapshotState {
  return {
    trap: TrapId.Suspended,
    result: 0,
    final: false,
    monotonicNs: s.monotonicNs,
    breakpoints: [],
    memory: s.memory,
    memoryMaxPages: program.memoryLimits?.max,
    globals: s.globals,
    input: s.input,
    output: s.outputTail,
    services: [],
    stack: {
      profile,
      startFunction: program.module.start,
      startPending: false,
      entry: s.calls.find((x) => x !== '__gate_start'),
      frames: s.stack ? framesFromRaw(decodeRawStack(s.stack), program.unwindLayouts(profile)) : [],
    },
  };
}

/**
 * One link of the chain: suspend a running instance, snapshot it, time the
 * snapshot's parts, release it. Returns the snapshot bytes.
 */
async function suspendAndSnapshot(
  host: Host,
  program: Program,
  run: Run,
  c: Case,
  _key: string,
  s: Samples | undefined,
): Promise<{ bytes: Uint8Array; es: ExecutorSnapshot }> {
  await sleep(Math.random() * 20);
  let t = now();
  run.inst.suspend();
  const status = await run.inst.wait();
  const suspendMs = now() - t;
  if (status.state !== 'SUSPENDED') throw new Error(`${c.name} (${host.name}): suspend gave ${JSON.stringify(status)}`);
  t = now();
  const bytes = await run.inst.snapshot();
  const snapshotMs = now() - t;
  // Parts of a restore, timed here where nothing runs (an in-process
  // instance would otherwise run slices while these await): the hash
  // Program.load computes, and the cache hit launch() gets from prepare.
  t = now();
  await sha256Hex(bytes);
  const hashMs = now() - t;
  t = now();
  await program.prepare(c.profile, host.cache);
  const prepareMs = now() - t;
  // The parts, once more on the same retained instance.
  t = now();
  const es = await host.executor.snapshot(run.inst.id);
  const executorMs = now() - t;
  const state = stateOf(program, es, c.profile);
  t = now();
  const parts = writeSnapshotParts(program.module, state);
  const partsMs = now() - t;
  t = now();
  const again = writeSnapshot(program.module, state);
  const writeMs = now() - t;
  if (parts.size !== again.length) throw new Error('writeSnapshotParts and writeSnapshot disagree on the size');
  run.inst.release();
  if (s) {
    s.suspend.push(suspendMs);
    s.snapshot.push(snapshotMs);
    s.size.push(bytes.length);
    s.executorSnapshot.push(executorMs);
    s.writeParts.push(partsMs);
    s.write.push(writeMs);
    s.unwound.push(es.stack?.length ?? 0);
    s.hash.push(hashMs);
    s.prepare.push(prepareMs);
  }
  return { bytes, es };
}

/** Restores a snapshot; with samples, times it (until the program's sign of life, if it has one). */
async function restore(host: Host, bytes: Uint8Array, c: Case, s: Samples | undefined): Promise<{ run: Run; program: Program }> {
  const t0 = now();
  const program = await Program.load(bytes, DEFAULT_LOCAL_LIMITS);
  const t1 = now();
  const run = await launch(host, program, c);
  const t2 = now();
  const signAt = c.sign !== undefined ? await run.seen(c.sign) : undefined;
  if (s) {
    s.load.push(t1 - t0);
    s.launch.push(t2 - t1);
    if (signAt !== undefined) s.firstSign.push(signAt - t0);
  }
  return { run, program };
}

/**
 * In-process estimate of what the child-process path adds around the
 * executor's own copy: encodeSnapshot + encodeFrame (in the child),
 * FrameDecoder + decodeSnapshot (in the parent); the same for the spec of a
 * restore. The pipe itself is not included.
 */
function codecCost(es: ExecutorSnapshot, program: Program, c: Case): { snapshot: number; spec: number } {
  let t = now();
  const { header, payload } = encodeSnapshot(es);
  const frame = encodeFrame({ t: 'snapshot', id: 'x', seq: 1, ...header }, payload);
  const dec = new FrameDecoder();
  let msgs: ReturnType<FrameDecoder['push']> = [];
  for (let off = 0; off < frame.length; off += 65536) msgs = msgs.concat(dec.push(frame.subarray(off, Math.min(frame.length, off + 65536))));
  decodeSnapshot(msgs[0]!.header, msgs[0]!.payload);
  const snapshot = now() - t;

  t = now();
  const spec = encodeSpec({
    id: 'x',
    moduleKey: 'k',
    profile: c.profile,
    entry: undefined,
    hasStart: false,
    memoryPages: { initial: es.memory.length / 65536, maximum: 65536 },
    timeResolutionNs: 1,
    debug: true,
    services: [],
    computeLimitMs: 10000,
    globalTypes: program.globalTypes,
    init: program.initialState(),
    resume: { stack: es.stack ?? new Uint8Array(0), calls: es.calls, monotonicNs: es.monotonicNs, input: es.input, outputTail: es.outputTail, services: [] },
    retain: true,
  });
  const specFrame = encodeFrame({ t: 'create', ...spec.header }, spec.payload);
  const dec2 = new FrameDecoder();
  let msgs2: ReturnType<FrameDecoder['push']> = [];
  for (let off = 0; off < specFrame.length; off += 65536) msgs2 = msgs2.concat(dec2.push(specFrame.subarray(off, Math.min(specFrame.length, off + 65536))));
  decodeSpec(msgs2[0]!.header, msgs2[0]!.payload);
  return { snapshot, spec: now() - t };
}

/**
 * What moving 64 MiB costs on this machine, whatever the runtime does: the
 * floors under the 64 MiB rows above. Alternating within rounds.
 */
async function floors(lines: string[], rounds: number): Promise<void> {
  const N = 64 * 2 ** 20;
  const src = new Uint8Array(N);
  for (let i = 0; i < N; i += 4) src[i] = (i * 2654435761) >>> 24 || 1;
  const touched = new Uint8Array(N).fill(1);
  const child = spawn(process.execPath, ['-e', `const b = Buffer.alloc(${N}, 7); process.stdin.on('data', () => process.stdout.write(b)); process.stdin.on('end', () => process.exit(0));`], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: {},
  });
  const pipe = (): Promise<number> =>
    new Promise((resolve) => {
      const t0 = now();
      let got = 0;
      const on = (chunk: Buffer): void => {
        got += chunk.length;
        if (got >= N) {
          child.stdout!.off('data', on);
          resolve(now() - t0);
        }
      };
      child.stdout!.on('data', on);
      child.stdin!.write('x');
    });
  const timeIt = async (f: () => unknown): Promise<number> => {
    const t0 = now();
    await f();
    return now() - t0;
  };
  const steps: Array<[string, () => Promise<number>]> = [
    ['copy into fresh memory (`slice()`)', () => timeIt(() => src.slice())],
    ['copy into memory touched before (`set`)', () => timeIt(() => touched.set(src))],
    ['`new WebAssembly.Memory` of 1024 pages + `set`', () => timeIt(() => new Uint8Array(new WebAssembly.Memory({ initial: 1024 }).buffer).set(src))],
    ['SHA-256, WebCrypto (`sha256Hex`, as `Program.load`)', () => timeIt(() => sha256Hex(src))],
    ['SHA-256, `node:crypto` `createHash`', () => timeIt(() => createHash('sha256').update(src).digest())],
    ['pipe, child process → parent (`data` events, no copy)', pipe],
  ];
  const times = new Map<string, number[]>(steps.map(([n]) => [n, []]));
  try {
    await pipe(); // start-up
    for (let round = 0; round < rounds; round++) {
      for (const [name, f] of round % 2 ? [...steps].reverse() : steps) times.get(name)!.push(await f());
    }
  } finally {
    child.stdin!.end();
  }
  lines.push('### Floors: moving 64 MiB on this machine', '');
  lines.push(`Milliseconds, median (min–max) of ${rounds} rounds, steps alternating. No runtime code except \`sha256Hex\`.`, '');
  lines.push('| step | time |', '|---|---|');
  for (const [name] of steps) lines.push(`| ${name} | ${summary(times.get(name)!, 1)} |`);
  lines.push('');
}

export async function snapshotSection(lines: string[], rounds: number, log: (s: string) => void): Promise<void> {
  const snapbench = new URL('../../bench/build/snapbench.wasm', import.meta.url);
  const suspendWasm = new URL('../../test/programs/build/suspend.wasm', import.meta.url);
  const cases: Case[] = [
    { name: '1 page (snapbench small)', file: snapbench, entry: 'small', profile: 'suspend-anywhere', sign: 'resumed\n', ready: 'running\n' },
    { name: '1 MiB (snapbench medium)', file: snapbench, entry: 'medium', profile: 'suspend-anywhere', sign: 'resumed\n', ready: 'running\n' },
    { name: '64 MiB (snapbench big)', file: snapbench, entry: 'big', profile: 'suspend-anywhere', sign: 'resumed\n', ready: 'running\n' },
    { name: '2 pages (suspend.wasm loop)', file: suspendWasm, entry: 'loop', profile: 'io-suspend', sign: undefined, ready: 'running: 0\n' },
  ];

  const cache = new MemoryCache();
  const child = new ChildProcessExecutor();
  const hosts: Host[] = [
    { name: 'in-process', executor: new InProcessExecutor() },
    { name: 'child process', executor: child },
  ].map((h) => ({ ...h, cache, runtime: new Runtime({ executor: h.executor, memoryLimitPages: 2048, timeResolutionNs: 1000, cache }) }));

  const results: Array<{ c: Case; h: Host; s: Samples; codec?: { snapshot: number[]; spec: number[] } }> = [];
  try {
    for (const c of cases) {
      const bytes = new Uint8Array(await readFile(c.file));
      const original = await Program.load(bytes, DEFAULT_LOCAL_LIMITS);
      const key = (await original.prepare(c.profile, cache)).key; // prepared once, up front
      const chain = new Map<Host, { bytes: Uint8Array; program: Program }>();
      const samples = new Map<Host, Samples>(hosts.map((h) => [h, newSamples()]));
      const codec = { snapshot: [] as number[], spec: [] as number[] };
      // A failed link (an exception anywhere in it) is recorded; the chain
      // then goes on from the last snapshot that worked.
      const attempt = async (h: Host, what: string, f: () => Promise<void>): Promise<boolean> => {
        lastRun = undefined;
        try {
          await f();
          return true;
        } catch (e) {
          // Where in the runtime it was thrown: the innermost frame in src/.
          const at = e instanceof Error ? /at (?:async )?(\S+) \(.*?\/src\/([^):]+)/.exec(e.stack ?? '') : null;
          samples.get(h)!.failures.push(`${what}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}${at ? ` (in ${at[1]}, src/${at[2]!.replace(/\.js$/, '.ts')})` : ''}`);
          log(`snapshot: ${c.name}, ${h.name}: ${what} failed: ${e instanceof Error ? e.message : e}`);
          const run = lastRun as Run | undefined;
          if (run) {
            if (run.inst.status.state === 'RUNNING') run.inst.kill();
            await run.inst.wait();
            run.inst.release();
          }
          return false;
        }
      };
      // A fresh instance per host, run to its steady state, then one unmeasured link (warm-up).
      for (const h of hosts) {
        for (let tries = 0; tries < 5 && !chain.has(h); tries++) {
          await attempt(h, 'warm-up', async () => {
            const run = await launch(h, original, c, c.profile);
            await run.seen(c.ready);
            const first = await suspendAndSnapshot(h, original, run, c, key, undefined);
            const r = await restore(h, first.bytes, c, undefined);
            if (c.sign) await r.run.seen(c.sign);
            else await sleep(50);
            const { bytes: b } = await suspendAndSnapshot(h, r.program, r.run, c, key, undefined);
            chain.set(h, { bytes: b, program: r.program });
          });
        }
      }
      for (let round = 0; round < rounds; round++) {
        for (const h of round % 2 ? [...hosts].reverse() : hosts) {
          const from = chain.get(h);
          if (!from) continue;
          await attempt(h, `round ${round + 1}`, async () => {
            // Samples of a link count only if the whole link worked.
            const s = newSamples();
            const { run, program } = await restore(h, from.bytes, c, s);
            if (!c.sign) await sleep(50);
            const { bytes: b, es } = await suspendAndSnapshot(h, program, run, c, key, s);
            chain.set(h, { bytes: b, program });
            const all = samples.get(h)!;
            for (const k of Object.keys(s) as Array<keyof Samples>) (all[k] as unknown[]).push(...(s[k] as unknown[]));
            if (h.executor !== child) {
              // The codec estimate, while nothing runs.
              const cc = codecCost(es, program, c);
              codec.snapshot.push(cc.snapshot);
              codec.spec.push(cc.spec);
            }
          });
        }
      }
      for (const h of hosts) results.push({ c, h, s: samples.get(h)!, codec: h.executor === child ? codec : undefined });
      log(`snapshot: ${c.name} done`);
    }
  } finally {
    await child.close();
  }

  const ms = (xs: number[]): string => summary(xs, xs.length && median(xs) < 10 ? 2 : 1);
  lines.push('## Suspend, snapshot and restore', '');
  lines.push(
    `Milliseconds, median (min–max) of ${rounds} rounds per row; executors alternate within each round, and only the instance being measured runs. ` +
      'Programs: `bench/programs/snapbench.c` — `small` computes in a 1-page memory, `medium` and `big` grow to 1 MiB and 64 MiB, fill it densely (no zero 64-byte block: the largest snapshot that size gives) and check random words; all make an empty `io` call every ~0.1 ms and print "resumed" on the first one after a restore. ' +
      '`test/programs/build/suspend.wasm` `loop` makes empty `io` calls without pause (io-suspend can only stop at those). ' +
      'Each round restores the previous round\'s snapshot, lets it run for a random 0–20 ms, suspends it and snapshots it. Modules are prepared up front (shared MemoryCache).',
    '',
  );
  lines.push(
    '| program | profile | executor | suspend | snapshot() | size | restore: load | restore: launch() | restore: until "resumed" | failed links |',
    '|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const { c, h, s } of results) {
    const size = s.size.length ? median(s.size) : NaN;
    const sizeText = !s.size.length ? '–' : size > 1e6 ? `${fmt(size / 2 ** 20, 2)} MiB` : `${fmt(size / 1024, 1)} KiB`;
    const sign = !c.sign ? 'no prompt sign' : ms(s.firstSign);
    lines.push(`| ${c.name} | ${c.profile} | ${h.name} | ${ms(s.suspend)} | ${ms(s.snapshot)} | ${sizeText} | ${ms(s.load)} | ${ms(s.launch)} | ${sign} | ${s.failures.length} of ${s.failures.length + s.suspend.length} |`);
  }
  const failed = results.filter((r) => r.s.failures.length);
  if (failed.length) {
    lines.push('', '**Failures** (a failed link is left out of the numbers; the chain goes on from the last snapshot that worked):', '');
    for (const { c, h, s } of failed) {
      const counts = new Map<string, number>();
      for (const f of s.failures) {
        const why = f.replace(/^round \d+: /, 'in a round: ').replace(/^warm-up: /, 'in the warm-up: ');
        counts.set(why, (counts.get(why) ?? 0) + 1);
      }
      for (const [why, n] of counts) lines.push(`- ${c.name}, ${h.name}: ${n}× ${why.replace(/\|/g, '\\|')}`);
    }
  }
  lines.push(
    '',
    '- **suspend**: `suspend()` until `wait()` resolves. An executor runs instances in 10 ms slices and handles requests between them, so in a child process this includes the rest of the running slice (0–10 ms); in process, the request is made between slices (the caller shares the thread) and takes effect at the next turn.',
    '- **snapshot()**: `RunningInstance.snapshot()` of the suspended, retained instance until the module bytes exist: `executor.snapshot()` (for a child: encoding, the pipe and decoding) + `writeSnapshot` (scan + one copy into the output).',
    '- **restore**: *load* = `Program.load(bytes)` (sha256, parse, validate, read the Gate sections); *launch()* = `runtime.launch()` resolving (prepare is a cache hit but re-runs the rewrite stage to find its key; module already compiled in that executor; for a child, `launch()` resolves once the create message is written, before the child has it); *until "resumed"* = from the start of load until the program\'s first debug output after the rewind (includes memory initialisation and, for a child, the transfer).',
    '',
  );

  lines.push('### Where the time goes', '');
  lines.push(
    'The parts, timed separately on the same state (a second call, so memory the first call touched may be warm).',
    '',
    '| program | executor | executor.snapshot() | writeSnapshotParts (scan) | writeSnapshot (scan + copy) | sha256 of the snapshot | prepare (cache hit) | encode+frame+decode, snapshot (in process) | encode+frame+decode, create spec (in process) | unwound stack |',
    '|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const { c, h, s, codec } of results) {
    lines.push(
      `| ${c.name} | ${h.name} | ${ms(s.executorSnapshot)} | ${ms(s.writeParts)} | ${ms(s.write)} | ${ms(s.hash)} | ${ms(s.prepare)} | ${codec ? ms(codec.snapshot) : ''} | ${codec ? ms(codec.spec) : ''} | ${s.unwound.length ? `${fmt(median(s.unwound), 0)} B` : '–'} |`,
    );
  }
  lines.push(
    '',
    '- **executor.snapshot()**: what the executor hands over for a stopped instance. In process, `Instance.snapshotState()`; in a child, that in the child, `encodeSnapshot` + `encodeFrame` there, the pipe, and `FrameDecoder` + `decodeSnapshot` here. (At the commit in the header line: the in-process memory is a view of the stopped instance\'s memory, no copy; the child builds the frame as one Buffer — one copy — and the decoder joins the pipe\'s chunks — another — and hands a payload over 1 MiB out in place.)',
    '- **encode+frame+decode**: those codec steps run back to back in this process (frames fed to the decoder in 64 KiB chunks, as a pipe delivers them), without the pipe: the child-process cost minus this is roughly pipe transfer and scheduling. *create spec* is the same for the message that starts a restored instance (its memory as data segments).',
    '',
  );
  await floors(lines, rounds);
}
