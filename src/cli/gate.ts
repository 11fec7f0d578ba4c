import { Command, InvalidArgumentError, Option } from 'commander';
import { open, readFile, rename } from 'node:fs/promises';
import { GateError } from '../errors.js';
import { DEFAULT_PROFILE, PROFILES, isProfile, type Profile } from '../prepare/profile.js';
import { ChildProcessExecutor } from '../runtime/node/child-executor.js';
import { FileCache } from '../runtime/node/file-cache.js';
import { Program } from '../runtime/program.js';
import { Runtime, type RunningInstance } from '../runtime/runtime.js';
import type { InstanceServices } from '../service/provider.js';
import { formatStatus, State, type InstanceStatus } from '../runtime/status.js';
import { DEFAULT_LOCAL_LIMITS } from '../wasm/validate.js';
import { createLocalServices } from './services.js';
import { connectStdio } from './stdio.js';

const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

function parsePositiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

function parseProfile(v: string): Profile {
  if (!isProfile(v)) throw new InvalidArgumentError(`must be one of: ${PROFILES.join(', ')}`);
  return v;
}

interface CallOptions {
  debug: boolean;
  profile: Profile;
  memoryLimit: number;
  timeResolution: number;
  maxExports: number;
  cache: boolean;
  snapshot: string | undefined;
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

async function call(file: string, fn: string | undefined, opts: CallOptions): Promise<number> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(file));
  } catch (e) {
    process.stderr.write(`gate: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? e}\n`);
    return EXIT_USAGE;
  }
  const program = await Program.load(bytes, { ...DEFAULT_LOCAL_LIMITS, maxExports: opts.maxExports });
  // Untrusted code never runs in this process.
  const executor = new ChildProcessExecutor();
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
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onInt);
  process.on('SIGQUIT', onQuit);
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
    await executor.close();
  }
}

export function buildProgram(): Command {
  const cli = new Command('gate')
    .description('Run Gate programs: untrusted WebAssembly that talks to its client over streams.')
    .showHelpAfterError()
    .configureHelp({ sortSubcommands: true });

  cli
    .command('call')
    .summary('run a wasm module (a program or a snapshot) from a local file')
    .description(
      [
        'Run a wasm module from a local file: a program, or a snapshot made with --snapshot, which continues where it stopped. The origin stream is wired to stdin and stdout.',
        'Exit status: 0 when the program finishes cleanly (returns, or exits with 0); 1 when it exits with a non-zero status, traps, is killed or suspended (the state and cause are printed to stderr); 2 when the module cannot be used (bad module, unsupported import, unknown function).',
        'Ctrl-C kills the program; Ctrl-\\ (SIGQUIT) suspends it.',
      ].join('\n\n'),
    )
    .argument('<file>', 'path of the .wasm module')
    .argument('[function]', 'entry function to call (default: _start if exported, else none)')
    .option('-d, --debug', 'write the program\'s debug log (fds 1 and 2) to stderr', false)
    .addOption(
      new Option('-f, --profile <profile>', `instrumentation profile: ${PROFILES.join(' or ')}`)
        .default(DEFAULT_PROFILE)
        .argParser(parseProfile),
    )
    .addOption(new Option('--memory-limit <bytes>', 'maximum memory of the instance').default(2 ** 31 - 65536).argParser(parsePositiveInt))
    .addOption(new Option('--time-resolution <ns>', 'clock resolution visible to the program, in nanoseconds').default(1).argParser(parsePositiveInt))
    .addOption(new Option('--max-exports <n>', 'largest number of exports accepted').default(DEFAULT_LOCAL_LIMITS.maxExports).argParser(parsePositiveInt))
    .option('--no-cache', 'do not read or write the cache of prepared modules (~/.cache/gate/prepared)')
    .option('--snapshot <file>', 'when the program stops, write its snapshot (a wasm module) to FILE; `gate call FILE` continues it (exit status 0 when it was suspended)')
    .action(async (file: string, fn: string | undefined, opts: CallOptions) => {
      process.exitCode = await call(file, fn, opts);
    });

  return cli;
}

export async function main(): Promise<void> {
  try {
    await buildProgram().parseAsync(process.argv);
  } catch (e) {
    if (e instanceof GateError) {
      process.stderr.write(`gate: ${e.message}\n`);
      process.exitCode = EXIT_USAGE;
      return;
    }
    throw e;
  }
}

