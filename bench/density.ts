/**
 * Density: how many idle instances (bench/programs/idle.wat `idle`: one page
 * of memory, blocked in `io` forever) one executor process holds, and what
 * each costs in resident memory, with V8's guard regions (the default) and
 * with explicit bounds checks (`--disable-wasm-trap-handler`).
 *
 * Each mode gets its own executor from an ExecutorPool configured as
 * gate-server configures it (sandbox when bubblewrap works, RLIMIT_DATA and
 * cgroup cap of 4 GiB), and instances are launched 64 at a time until one
 * fails or the cap is reached. The executor's RSS (VmRSS of the process tree,
 * from /proc) is read at steps, after a short settle.
 */
import { readFileSync } from 'node:fs';
import { MemoryCache } from '../src/prepare/cache.js';
import { ExecutorPool } from '../src/runtime/node/pool.js';
import { checkSandbox } from '../src/runtime/node/sandbox/sandbox.js';
import { Program } from '../src/runtime/program.js';
import { Runtime, type RunningInstance } from '../src/runtime/runtime.js';
import type { ServiceConnection } from '../src/runtime/runtime.js';
import { DEFAULT_LOCAL_LIMITS } from '../src/wasm/validate.js';
import { benchWat, MiB, processTree, treeRssBytes } from './field.js';
import { fmt } from './stats.js';

const noServices = () => ({ availableNames: () => [], bind() {}, handle() {}, shutdown() {}, restore() {} });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const BATCH = 64;
const STALL_MS = 10_000;
/** gate-server's default principal.maxmemorysize (32 MiB) as the instances' memory limit. */
const MEMORY_LIMIT_PAGES = 512;

interface Step {
  n: number;
  rssBytes: number;
  /** Instances that have written their debug line (reached their blocking io). */
  running: number;
  vmSizeBytes: number;
}

function vmSize(pids: number[]): number {
  let total = 0;
  for (const pid of pids) {
    try {
      const m = /^VmSize:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) total += Number(m[1]) * 1024;
    } catch {
      // gone
    }
  }
  return total;
}

interface Outcome {
  mode: string;
  steps: Step[];
  reached: number;
  stopped: string;
  launchSeconds: number;
}

async function fill(mode: string, nodeArgs: string[], sandbox: 'bwrap' | 'none', cap: number, log: (s: string) => void): Promise<Outcome> {
  const pool = await ExecutorPool.create({ sandbox, nodeArgs, maxInstancesPerExecutor: cap + BATCH, idleTimeoutMs: 0 });
  try {
    const executor = pool.executorFor('bench');
    await executor.started();
    const pid = executor.pid!;
    const runtime = new Runtime({ executor, memoryLimitPages: MEMORY_LIMIT_PAGES, timeResolutionNs: 1000, cache: new MemoryCache() });
    const program = await Program.load(benchWat('idle'), DEFAULT_LOCAL_LIMITS);
    // One launch that stops at once would show a broken setup: check that the first one blocks.
    const instances: Array<RunningInstance<ServiceConnection>> = [];
    let ended: string | undefined;
    const watch = (inst: RunningInstance<ServiceConnection>): void => {
      void inst.wait().then(
        (s) => (ended ??= `an instance stopped: ${JSON.stringify(s)}`),
        (e: unknown) => (ended ??= `an instance failed: ${e instanceof Error ? e.message : String(e)}`),
      );
    };
    let running = 0;
    const debug = (): void => void running++;
    const step = (n: number): Step => ({ n, rssBytes: treeRssBytes(pid), running, vmSizeBytes: vmSize(processTree(pid)) });
    await sleep(300);
    const steps: Step[] = [step(0)];
    const stepEvery = Math.max(BATCH, Math.round(cap / 10 / BATCH) * BATCH);
    let stopped = `the cap (${cap})`;
    const t0 = performance.now();
    while (instances.length < cap) {
      const k = Math.min(BATCH, cap - instances.length);
      const results = await Promise.allSettled(Array.from({ length: k }, () => runtime.launch(program, { entry: 'idle', services: noServices, debug })));
      let failure: string | undefined;
      for (const r of results) {
        if (r.status === 'fulfilled') {
          instances.push(r.value);
          watch(r.value);
        } else failure ??= `launch failed: ${r.reason instanceof Error ? r.reason.message : String(r.reason)}`;
      }
      if (instances.length % stepEvery === 0 || instances.length === cap) {
        // launch() resolves once the executor has the instance; wait until
        // all have run to their blocking call (their debug line), or stall.
        let seen = running;
        let since = performance.now();
        while (running < instances.length && !ended && executor.alive && performance.now() - since < STALL_MS) {
          await sleep(100);
          if (running > seen) {
            seen = running;
            since = performance.now();
          }
        }
        if (running < instances.length && !ended) failure ??= `${instances.length - running} of ${instances.length} launched instances did not reach their blocking call (no progress for ${STALL_MS / 1000} s)`;
        if (!ended && !failure) steps.push(step(instances.length));
        log(`density ${mode}: ${instances.length} instances`);
      }
      if (failure || ended || !executor.alive) {
        stopped = failure ?? ended ?? 'the executor died';
        // The last step counts the instances that did reach their blocking call.
        if (running > steps[steps.length - 1]!.n) steps.push(step(running));
        break;
      }
    }
    const launchSeconds = (performance.now() - t0) / 1000; // until the last step's instances all ran
    await sleep(200);
    if (!ended && executor.alive && stopped.startsWith('the cap')) {
      // All still blocked after the last step?
      const last = steps[steps.length - 1]!;
      if (last.n !== instances.length) steps.push(step(instances.length));
    } else if (ended && stopped.startsWith('the cap')) stopped = ended;
    return { mode, steps, reached: instances.length, stopped, launchSeconds: (steps[steps.length - 1]!.n ? launchSeconds : NaN) };
  } finally {
    await pool.close();
  }
}

/** quick: up to 2 000 instances per mode; full: up to 20 000. */
export async function densitySection(lines: string[], quick: boolean, log: (s: string) => void): Promise<void> {
  lines.push('## Density: idle instances per executor', '');
  const cap = quick ? 2000 : 20_000;
  const check = await checkSandbox();
  const sandbox = check.available ? 'bwrap' : 'none';
  const modes: Array<[string, string[]]> = [
    ['guard regions (default)', []],
    ['bounds checks (--disable-wasm-trap-handler)', ['--disable-wasm-trap-handler']],
  ];
  const outcomes: Outcome[] = [];
  for (const [mode, args] of modes) outcomes.push(await fill(mode, args, sandbox, cap, log));
  lines.push(
    `Instances of a 1-page program blocked in \`io\` (bench/programs/idle.wat), memory limit ${MEMORY_LIMIT_PAGES} pages (gate-server's default 32 MiB), suspend-anywhere profile, launched ${BATCH} at a time into one executor of an ExecutorPool as gate-server configures it (sandbox: ${sandbox}; RLIMIT_DATA 4 GiB) until a launch fails, an instance stops, launched instances stop reaching their blocking call (no progress for ${STALL_MS / 1000} s) or the cap of ${cap} is reached; RSS is read at each step once all launched instances have written their debug line (i.e. reached \`io\`). RSS = VmRSS of the executor's process tree (/proc/PID/status). One run per mode, modes one after the other (memory, not time, is measured).`,
    '',
  );
  lines.push('| bounds-check mode | instances launched | of them running (debug line seen) | stopped by | executor RSS empty → full (MiB) | RSS per instance (KiB) | virtual size at the end (GiB) | rate, launched → running (instances/s) |', '|---|---|---|---|---|---|---|---|');
  for (const o of outcomes) {
    const first = o.steps[0]!;
    const last = o.steps[o.steps.length - 1]!;
    const per = last.n > 0 ? (last.rssBytes - first.rssBytes) / last.n / 1024 : NaN;
    lines.push(`| ${o.mode} | ${o.reached} | ${last.running} | ${o.stopped.replace(/\|/g, '\\|').slice(0, 160)} | ${fmt(first.rssBytes / MiB, 0)} → ${fmt(last.rssBytes / MiB, 0)} (at ${last.n}) | ${fmt(per, 1)} | ${fmt(last.vmSizeBytes / 2 ** 30, 0)} | ${fmt(last.running / o.launchSeconds, 0)} |`);
  }
  lines.push('', 'Executor RSS in MiB (virtual size in GiB) by number of idle instances:', '');
  const ns = [...new Set(outcomes.flatMap((o) => o.steps.map((s) => s.n)))].sort((a, b) => a - b);
  lines.push(`| instances | ${outcomes.map((o) => o.mode).join(' | ')} |`, `|---|${outcomes.map(() => '---').join('|')}|`);
  for (const n of ns) lines.push(`| ${n} | ${outcomes.map((o) => {
    const s = o.steps.find((x) => x.n === n);
    return s ? `${fmt(s.rssBytes / MiB, 0)} (${fmt(s.vmSizeBytes / 2 ** 30, 0)})` : '';
  }).join(' | ')} |`);
  const memAvail = (() => {
    try {
      const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
      return m ? Number(m[1]) * 1024 : undefined;
    } catch {
      return undefined;
    }
  })();
  lines.push('');
  if (memAvail) {
    const per = outcomes.map((o) => {
      const first = o.steps[0]!;
      const last = o.steps[o.steps.length - 1]!;
      return `${o.mode}: ~${fmt(memAvail / ((last.rssBytes - first.rssBytes) / last.n) / 1000, 0)}k`;
    });
    lines.push(
      `Per host (an estimate, not measured): this host has ${fmt(memAvail / 2 ** 30, 1)} GiB available; at the RSS per instance above, memory alone would allow ${per.join(', ')} idle instances across executors (each executor's own ~${fmt(outcomes[0]!.steps[0]!.rssBytes / MiB, 0)} MiB aside, and with guard regions no more per executor than the address-space ceiling above).`,
      '',
    );
  }
}
