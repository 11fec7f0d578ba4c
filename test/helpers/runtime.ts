import { readFileSync } from 'node:fs';
import '../../src/runtime/node/engine-flags.js';
import { MemoryCache } from '../../src/prepare/cache.js';
import type { Profile } from '../../src/prepare/profile.js';
import { instanceServices, type InstanceServices } from '../../src/service/provider.js';
import { InProcessExecutor } from '../../src/runtime/inprocess.js';
import type { DebugLimits } from '../../src/runtime/debug-limits.js';
import type { Executor } from '../../src/runtime/executor.js';
import { Program } from '../../src/runtime/program.js';
import { Runtime, type RunningInstance, type ServiceConnection, type ServiceProvider } from '../../src/runtime/runtime.js';
import type { InstanceStatus } from '../../src/runtime/status.js';
import { DEFAULT_LOCAL_LIMITS } from '../../src/wasm/validate.js';

/** Shared by all tests in a process: each program is prepared once per profile. */
const cache = new MemoryCache();

const BUILD = new URL('../../../test/programs/build/', import.meta.url);

/** Bytes of a test program built by scripts/build-programs.mjs. */
export function programBytes(name: string): Uint8Array {
  return new Uint8Array(readFileSync(new URL(`${name}.wasm`, BUILD)));
}

/** A service set with nothing available. */
export const noServices: ServiceProvider = () => ({
  availableNames: () => [],
  bind() {},
  handle() {},
  shutdown() {},
  restore() {},
});

export interface RunResult {
  status: InstanceStatus;
  debug: string;
  instance: RunningInstance<ServiceConnection>;
}

export interface RunOptions<C extends ServiceConnection> {
  entry?: string;
  profile?: Profile;
  executor?: Executor;
  services?: ServiceProvider<C>;
  timeResolutionNs?: number;
  memoryLimitPages?: number;
  computeLimitMs?: number;
  debugLimits?: DebugLimits;
  /** Called once the instance is launched (e.g. to connect clients, or suspend it). */
  onLaunch?: (inst: RunningInstance<C>) => void;
  /** Called with the whole debug log so far after each write (e.g. to suspend once the program runs). */
  onDebug?: (text: string, inst: RunningInstance<C>) => void;
}

/** Runs a program to its end (in process unless an executor is given). */
export async function runProgram<C extends ServiceConnection = ServiceConnection>(
  bytes: Uint8Array,
  opts: RunOptions<C> = {},
): Promise<RunResult> {
  const executor = opts.executor ?? new InProcessExecutor();
  const runtime = new Runtime({
    executor,
    memoryLimitPages: opts.memoryLimitPages ?? 2048,
    timeResolutionNs: opts.timeResolutionNs ?? 1000,
    computeLimitMs: opts.computeLimitMs,
    debugLimits: opts.debugLimits,
    cache,
  });
  const program = await Program.load(bytes, DEFAULT_LOCAL_LIMITS);
  const chunks: Uint8Array[] = [];
  let launched: RunningInstance<C> | undefined;
  const instance = await runtime.launch(program, {
    entry: opts.entry,
    profile: opts.profile,
    debug: (d) => {
      chunks.push(d);
      if (opts.onDebug && launched) opts.onDebug(Buffer.concat(chunks).toString(), launched);
    },
    services: (opts.services ?? noServices) as ServiceProvider<C>,
  });
  launched = instance;
  opts.onLaunch?.(instance);
  const status = await instance.wait();
  const debug = Buffer.concat(chunks).toString();
  return { status, debug, instance: instance as unknown as RunningInstance<ServiceConnection> };
}

export interface ClientRunResult extends RunResult {
  /** What the program sent to the client over its origin stream. */
  output: string;
}

/**
 * Runs a program with the built-in services, one origin client connected
 * from the start (input `input`, then EOF), as the original's core tests do.
 */
export async function runWithClient(
  bytes: Uint8Array,
  opts: RunOptions<InstanceServices> & { input?: string } = {},
): Promise<ClientRunResult> {
  const out: Uint8Array[] = [];
  let connected: Promise<void> = Promise.resolve();
  const result = await runProgram<InstanceServices>(bytes, {
    ...opts,
    services: opts.services ?? instanceServices({ principalId: 'local' }),
    onLaunch: (inst) => {
      async function* input(): AsyncGenerator<Uint8Array> {
        if (opts.input) yield new TextEncoder().encode(opts.input);
      }
      connected = inst.services.origin
        .connect(input(), { write: (c) => void out.push(c.slice()), end: () => {} })
        .catch(() => undefined);
      opts.onLaunch?.(inst);
    },
  });
  await connected;
  return { ...result, output: Buffer.concat(out).toString() };
}
