/**
 * Executor start time (plain child process vs the sandbox layers) and the
 * launch latency of a prepared module in a warm executor (plain vs
 * sandboxed). Variants alternate within each round, in one process.
 */
import { readFile } from 'node:fs/promises';
import { MemoryCache } from '../src/prepare/cache.js';
import type { Executor } from '../src/runtime/executor.js';
import { ChildProcessExecutor } from '../src/runtime/node/child-executor.js';
import { checkSandbox, Sandbox } from '../src/runtime/node/sandbox/sandbox.js';
import { Program } from '../src/runtime/program.js';
import { Runtime } from '../src/runtime/runtime.js';
import { DEFAULT_LOCAL_LIMITS } from '../src/wasm/validate.js';
import { summary } from './stats.js';

const noServices = () => ({ availableNames: () => [], bind() {}, handle() {}, shutdown() {}, restore() {} });

interface Variant {
  name: string;
  create(): ChildProcessExecutor;
}

export async function sandboxSection(lines: string[], rounds: number, log: (s: string) => void): Promise<void> {
  const check = await checkSandbox();
  lines.push('## Executor sandbox: start time and launch latency', '');
  if (!check.available) {
    lines.push(`Skipped: bubblewrap is not usable here (${check.reason}).`, '');
    return;
  }
  const none = Sandbox.create({ mode: 'none' });
  const bwrapNoCgroup = Sandbox.create({ mode: 'bwrap', cgroups: false });
  const bwrap = Sandbox.create({ mode: 'bwrap' });
  const variants: Variant[] = [
    { name: 'plain node (empty env)', create: () => new ChildProcessExecutor() },
    { name: `launcher: rlimits${none.cgroups ? ` + ${none.cgroups.describe()}` : ''}`, create: () => new ChildProcessExecutor({ launch: none }) },
    { name: 'bwrap + seccomp + rlimits', create: () => new ChildProcessExecutor({ launch: bwrapNoCgroup }) },
    { name: `bwrap + seccomp + rlimits${bwrap.cgroups ? ` + ${bwrap.cgroups.describe()}` : ''}`, create: () => new ChildProcessExecutor({ launch: bwrap }) },
  ];
  try {
    // Start time: from spawning until the executor reports ready.
    const starts: number[][] = variants.map(() => []);
    for (let i = 0; i < rounds + 1; i++) {
      for (const [k, v] of variants.entries()) {
        const t0 = performance.now();
        const ex = v.create();
        await ex.started();
        const ms = performance.now() - t0;
        if (i > 0) starts[k]!.push(ms); // round 0 warms the page cache
        await ex.close();
      }
    }
    lines.push(`Executor start, spawn → ready message (ms, median (min–max) of ${rounds}, variants interleaved):`, '');
    lines.push('| executor | start (ms) |', '|---|---|');
    variants.forEach((v, k) => lines.push(`| ${v.name} | ${summary(starts[k]!)} |`));
    lines.push('');
    log('sandbox: start times done');

    // Launch latency: a prepared, loaded module (nop) in warm executors, launch → HALTED.
    const bytes = new Uint8Array(await readFile(new URL('../../test/programs/build/nop.wasm', import.meta.url)));
    const cache = new MemoryCache();
    const program = await Program.load(bytes, DEFAULT_LOCAL_LIMITS);
    const warm: Array<{ name: string; executor: Executor; runtime: Runtime; ms: number[] }> = [variants[0]!, variants[3]!].map((v) => {
      const executor = v.create();
      return { name: v.name, executor, runtime: new Runtime({ executor, memoryLimitPages: 16, timeResolutionNs: 1000, cache }), ms: [] };
    });
    for (let i = 0; i < rounds * 4 + 5; i++) {
      for (const w of warm) {
        const t0 = performance.now();
        const inst = await w.runtime.launch(program, { services: noServices });
        const status = await inst.wait();
        if (status.state !== 'HALTED') throw new Error(`nop ended ${JSON.stringify(status)}`);
        if (i >= 5) w.ms.push(performance.now() - t0); // the first launches load and tier up
      }
    }
    lines.push(`Launch of a prepared module (nop.wasm) in a warm executor, launch() → HALTED (ms, ${rounds * 4} launches each, interleaved):`, '');
    lines.push('| executor | launch (ms) |', '|---|---|');
    for (const w of warm) lines.push(`| ${w.name} | ${summary(w.ms, 2)} |`);
    lines.push('');
    await Promise.all(warm.map((w) => w.executor.close()));
    log('sandbox: launch latency done');
  } finally {
    none.dispose();
    bwrapNoCgroup.dispose();
    bwrap.dispose();
  }
}
