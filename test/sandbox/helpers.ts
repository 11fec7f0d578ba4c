/** Running programs in pool executors, with a well-behaved companion instance. */
import { readFileSync } from 'node:fs';
import { MemoryCache } from '../../src/prepare/cache.js';
import type { Profile } from '../../src/prepare/profile.js';
import type { DebugLimits } from '../../src/runtime/debug-limits.js';
import type { Executor } from '../../src/runtime/executor.js';
import { Program } from '../../src/runtime/program.js';
import { Runtime, type RunningInstance } from '../../src/runtime/runtime.js';
import type { InstanceStatus } from '../../src/runtime/status.js';
import { instanceServices, type InstanceServices } from '../../src/service/provider.js';
import { DEFAULT_LOCAL_LIMITS } from '../../src/wasm/validate.js';

const cache = new MemoryCache();
const BUILD = new URL('../../../test/programs/build/', import.meta.url);

/** A built test program: 'hello', or 'attacks/attacks'. */
export function program(name: string): Uint8Array {
  return new Uint8Array(readFileSync(new URL(`${name}.wasm`, BUILD)));
}

export interface LaunchOpts {
  entry?: string;
  profile?: Profile;
  cpuBudgetMs?: number;
  memoryLimitPages?: number;
  /** Collect the debug log (default: discarded, as without `gate call -d`). */
  debug?: boolean;
  onDebug?: (bytes: number, inst: RunningInstance<InstanceServices>) => void;
  debugLimits?: DebugLimits;
}

export async function launch(executor: Executor, bytes: Uint8Array, opts: LaunchOpts = {}): Promise<{ inst: RunningInstance<InstanceServices>; debug: () => string }> {
  const runtime = new Runtime({ executor, memoryLimitPages: opts.memoryLimitPages ?? 2048, timeResolutionNs: 1000, cache, debugLimits: opts.debugLimits });
  const chunks: Buffer[] = [];
  let total = 0;
  let inst: RunningInstance<InstanceServices> | undefined;
  inst = await runtime.launch(await Program.load(bytes, DEFAULT_LOCAL_LIMITS), {
    entry: opts.entry,
    profile: opts.profile,
    cpuBudgetMs: opts.cpuBudgetMs,
    services: instanceServices({ principalId: 'local' }),
    debug:
      opts.debug || opts.onDebug
        ? (d) => {
            total += d.length;
            // Only the start is kept: a flood would fill the test's memory.
            if (opts.debug && total < 1 << 20) chunks.push(Buffer.from(d));
            if (inst) opts.onDebug?.(total, inst);
          }
        : undefined,
  });
  return { inst, debug: () => Buffer.concat(chunks).toString() };
}

/**
 * Runs a program to its end; `during` runs once it is launched (before it is
 * awaited). With `client`, one origin client connects (no input) and
 * `output` is what the program sent it.
 */
export async function run(
  executor: Executor,
  bytes: Uint8Array,
  opts: LaunchOpts & { client?: boolean; during?: (inst: RunningInstance<InstanceServices>) => Promise<void> | void } = {},
): Promise<{ status: InstanceStatus; debug: string; output: string }> {
  const { inst, debug } = await launch(executor, bytes, opts);
  const out: Buffer[] = [];
  const connected = opts.client ? inst.services.origin.connect(null, { write: (c) => void out.push(Buffer.from(c)), end: () => {} }).catch(() => undefined) : undefined;
  await opts.during?.(inst);
  const status = await inst.wait();
  await connected;
  return { status, debug: debug(), output: Buffer.concat(out).toString() };
}

/** hello's `greet` in `executor`: its status and what it said. */
export async function greet(executor: Executor): Promise<{ status: InstanceStatus; output: string }> {
  const r = await run(executor, program('hello'), { entry: 'greet', client: true });
  return { status: r.status, output: r.output };
}

/**
 * hello's `multi` entry: serves clients forever (accept, greet, close). The
 * well-behaved neighbour that must keep answering while attacks run in the
 * same executor.
 */
export class Responder {
  private constructor(readonly inst: RunningInstance<InstanceServices>) {}

  static async start(executor: Executor): Promise<Responder> {
    const { inst } = await launch(executor, program('hello'), { entry: 'multi' });
    return new Responder(inst);
  }

  /** Connects a client and returns what the program sent before closing. */
  async ask(): Promise<string> {
    const out: Buffer[] = [];
    await this.inst.services.origin.connect(null, { write: (c) => void out.push(Buffer.from(c)), end: () => {} });
    return Buffer.concat(out).toString();
  }

  async stop(): Promise<InstanceStatus> {
    this.inst.kill();
    return this.inst.wait();
  }
}
