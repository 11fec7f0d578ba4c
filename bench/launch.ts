/**
 * Launch latency over thousands of launches: a prepared, loaded module
 * (bench/programs/main.wat: one page, `main` returns at once) in a warm
 * executor, Runtime.launch() → the entry function has run and the instance
 * is HALTED (wait() resolves). Executors: in process, a plain child
 * process, and (where bubblewrap works) a sandboxed child process as
 * gate-server uses; in process and sandboxed also as one principal's
 * instances, which reuse memory objects. The variants alternate launch by
 * launch.
 */
import { MemoryCache } from '../src/prepare/cache.js';
import type { Executor } from '../src/runtime/executor.js';
import { InProcessExecutor } from '../src/runtime/inprocess.js';
import { ChildProcessExecutor } from '../src/runtime/node/child-executor.js';
import { checkSandbox, Sandbox } from '../src/runtime/node/sandbox/sandbox.js';
import { Program } from '../src/runtime/program.js';
import { Runtime } from '../src/runtime/runtime.js';
import { DEFAULT_LOCAL_LIMITS } from '../src/wasm/validate.js';
import { benchWat, percentile } from './field.js';
import { fmt, median } from './stats.js';

const noServices = () => ({ availableNames: () => [], bind() {}, handle() {}, shutdown() {}, restore() {} });

/** `launches`: per executor variant (thousands in a full run). */
export async function launchSection(lines: string[], launches: number, log: (s: string) => void): Promise<void> {
  lines.push('## Launch latency in a warm executor', '');
  const check = await checkSandbox();
  const sandbox = check.available ? Sandbox.create({ mode: 'bwrap' }) : undefined;
  const program = await Program.load(benchWat('main'), DEFAULT_LOCAL_LIMITS);
  const cache = new MemoryCache();
  // A principal's instances (memoryGroup) may reuse memory objects, as gate-server launches them.
  const reusing = ', one principal (memory objects reused)';
  const variants: Array<{ name: string; executor: Executor; memoryGroup?: string }> = [
    { name: 'in process', executor: new InProcessExecutor() },
    { name: `in process${reusing}`, executor: new InProcessExecutor(), memoryGroup: 'ed25519:bench' },
    { name: 'child process (plain node)', executor: new ChildProcessExecutor() },
  ];
  if (sandbox) {
    variants.push({ name: `child process (${sandbox.describe()})`, executor: new ChildProcessExecutor({ launch: sandbox }) });
    variants.push({ name: `child process (${sandbox.describe()})${reusing}`, executor: new ChildProcessExecutor({ launch: sandbox }), memoryGroup: 'ed25519:bench' });
  }
  try {
    const runs = variants.map((v) => ({ ...v, runtime: new Runtime({ executor: v.executor, memoryLimitPages: 16, timeResolutionNs: 1000, cache }), ms: [] as number[] }));
    const warmup = 50;
    const started = performance.now();
    for (let i = 0; i < launches + warmup; i++) {
      for (const r of runs) {
        const t0 = performance.now();
        const inst = await r.runtime.launch(program, { entry: 'main', services: noServices, memoryGroup: r.memoryGroup });
        const status = await inst.wait();
        const ms = performance.now() - t0;
        if (status.state !== 'HALTED') throw new Error(`launch: main ended ${JSON.stringify(status)}`);
        if (i >= warmup) r.ms.push(ms); // the first launches compile and tier up
      }
      if (i % 1000 === 999) log(`launch: ${i + 1} rounds`);
    }
    const wall = (performance.now() - started) / 1000;
    lines.push(
      `Runtime.launch() of a prepared, loaded 1-page module → its entry function has returned (HALTED), one launch at a time; ${launches} launches per executor after ${warmup} warm-up launches, executors alternating launch by launch (${fmt(wall, 0)} s in all). Milliseconds:`,
      '',
    );
    lines.push('| executor | median | p99 | min–max | launches/s (1 / mean) |', '|---|---|---|---|---|');
    for (const r of runs) {
      const mean = r.ms.reduce((a, x) => a + x, 0) / r.ms.length;
      lines.push(`| ${r.name} | ${fmt(median(r.ms), 3)} | ${fmt(percentile(r.ms, 99), 3)} | ${fmt(Math.min(...r.ms), 3)}–${fmt(Math.max(...r.ms), 1)} | ${fmt(1000 / mean, 0)} |`);
    }
    if (!sandbox) lines.push('', `(No sandboxed variant: bubblewrap is not usable here: ${check.reason}.)`);
    lines.push('');
  } finally {
    await Promise.all(variants.map((v) => v.executor.close()));
    sandbox?.dispose();
  }
}
