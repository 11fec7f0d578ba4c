/**
 * `gate run`: runs a module in a child executor of this process, without a
 * daemon or server (the original `gate call` of this project). Signals:
 * SIGINT kills, SIGQUIT suspends; --snapshot writes the stopped state.
 */
import { open, readFile, rename } from 'node:fs/promises';
import type { Profile } from '../prepare/profile.js';
import { ChildProcessExecutor } from '../runtime/node/child-executor.js';
import { FileCache } from '../runtime/node/file-cache.js';
import { checkSandbox, Sandbox, type SandboxMode } from '../runtime/node/sandbox/sandbox.js';
import { Program } from '../runtime/program.js';
import { Runtime, type RunningInstance } from '../runtime/runtime.js';
import type { InstanceServices } from '../service/provider.js';
import { formatStatus, State, type InstanceStatus } from '../runtime/status.js';
import { DEFAULT_LOCAL_LIMITS } from '../wasm/validate.js';
import { createLocalServices } from './services.js';
import { connectStdio } from './stdio.js';

const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

export interface RunOptions {
  debug: boolean;
  profile: Profile;
  memoryLimit: number;
  timeResolution: number;
  maxExports: number;
  cache: boolean;
  snapshot: string | undefined;
  /** 'bwrap' (default): the executor runs under bubblewrap + seccomp as gate-server's do; 'none' only in a plain child process. */
  sandbox: SandboxMode;
}

/** Writes a file from pieces, through a temporary name, so that a crash leaves no half-written snapshot. */
async function writeParts(path: string, parts: Uint8Array[]): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  const file = await open(tmp, 'w');
  try {
    await file.writev(parts);
  } finally {
    await file.close();
  }
  await rename(tmp, path);
}

/** Exit code for a finished call: 0 only for a clean finish. */
export function exitCodeFor(status: InstanceStatus): number {
  if ((status.state === State.Halted || status.state === State.Terminated) && !status.cause && status.result === 0) return 0;
  return EXIT_FAILURE;
}

export async function run(file: string, fn: string | undefined, opts: RunOptions): Promise<number> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(file));
  } catch (e) {
    process.stderr.write(`gate: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? e}\n`);
    return EXIT_USAGE;
  }
  const program = await Program.load(bytes, { ...DEFAULT_LOCAL_LIMITS, maxExports: opts.maxExports });
  // Untrusted code never runs in this process, and by default not outside the sandbox either.
  if (opts.sandbox === 'bwrap') {
    const check = await checkSandbox();
    if (!check.available) {
      process.stderr.write(
        `gate: the sandbox is not available here: ${check.reason ?? 'unknown reason'}.\n` +
          'Install bubblewrap (Debian: apt-get install bubblewrap), or run with --sandbox none to contain the program only by WebAssembly and process limits.\n',
      );
      return EXIT_FAILURE;
    }
  }
  const sandbox = Sandbox.create({ mode: opts.sandbox });
  const executor = new ChildProcessExecutor({ launch: sandbox });
  const runtime = new Runtime({
    executor,
    memoryLimitPages: Math.floor(opts.memoryLimit / 65536),
    timeResolutionNs: opts.timeResolution,
    profile: opts.profile,
    cache: opts.cache ? new FileCache() : undefined,
  });
  // Signals are handled from the start, so that one arriving while the module
  // is being prepared still ends the run in order.
  let instance: RunningInstance<InstanceServices> | undefined;
  let pending: 'kill' | 'suspend' | undefined;
  const onInt = (): void => {
    if (instance) instance.kill();
    else pending = 'kill';
  };
  const onQuit = (): void => {
    if (!instance) {
      pending ??= 'suspend';
      return;
    }
    try {
      instance.suspend();
    } catch {
      // not running any more
    }
  };
  // Ctrl-Z: the executor has a process group of its own (so that Ctrl-C and
  // Ctrl-\ reach only us), so the terminal stops only us: stop it with us,
  // and continue it when we are continued (fg, bg).
  const executorGroup = (signal: NodeJS.Signals): void => {
    if (executor.pid === undefined) return;
    try {
      process.kill(-executor.pid, signal);
    } catch {
      // gone already
    }
  };
  const onStop = (): void => {
    executorGroup('SIGSTOP');
    process.kill(process.pid, 'SIGSTOP');
  };
  const onCont = (): void => executorGroup('SIGCONT');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onInt);
  process.on('SIGQUIT', onQuit);
  process.on('SIGTSTP', onStop);
  process.on('SIGCONT', onCont);
  try {
    instance = await runtime.launch(program, {
      entry: fn,
      debug: opts.debug ? (d) => process.stderr.write(d) : undefined,
      services: createLocalServices(),
      retain: opts.snapshot !== undefined,
    });
    if (pending === 'kill') onInt();
    else if (pending === 'suspend') onQuit();
    const detach = connectStdio(instance);
    const status = await instance.wait();
    await detach();
    if (opts.snapshot !== undefined) {
      await writeParts(opts.snapshot, (await instance.snapshotParts()).parts);
      process.stderr.write(`gate: ${formatStatus(status)}; snapshot written to ${opts.snapshot}\n`);
      return status.state === State.Suspended ? 0 : exitCodeFor(status);
    }
    const code = exitCodeFor(status);
    if (code !== 0) process.stderr.write(`gate: ${formatStatus(status)}\n`);
    return code;
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onInt);
    process.off('SIGQUIT', onQuit);
    process.off('SIGTSTP', onStop);
    process.off('SIGCONT', onCont);
    await executor.close();
    sandbox.dispose();
  }
}

