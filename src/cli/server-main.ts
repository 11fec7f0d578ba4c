/**
 * What gate-server and gate-daemon share: configuration (spec cli.md §1,
 * §3.1, §4.1), the executor pool and its sandbox, logging, signals and
 * graceful shutdown.
 */
import { Command } from 'commander';
import { pino, type Logger } from 'pino';
import { checkKnownKeys, configFlags, configSteps, ConfigError, getBool, getNumber, getPath, getString, getTableList, readConfig, type ConfigTree } from '../config/index.js';
import { GateError } from '../errors.js';
import { isProfile, type Profile } from '../prepare/profile.js';
import { ExecutorPool } from '../runtime/node/pool.js';
import type { SandboxMode } from '../runtime/node/sandbox/sandbox.js';
import { DEFAULT_DEBUG_LIMITS } from '../runtime/debug-limits.js';
import { DEFAULT_DEBUG_LOG_RATE, startServer, type GateServer, type PrincipalLimits, type ServerOptions } from '../server/index.js';
import type { GrpcConfig, GrpcServices } from '../service/grpc/index.js';
import { serverKeys } from './server-keys.js';
import { PEER_KEYS_HELP, serviceRegistryFrom } from './services.js';
import { ExtensionConfigTracker, extensionKeysHelp, importConfiguredExtensions, loadExtensions } from './extensions.js';
import { grpcConfigFrom, startConfiguredGrpc } from './services.js';

export const EXIT_CONFIG = 2;

export interface ProgramSpec {
  name: 'gate-server' | 'gate-daemon';
  description: string;
  defaultFiles: string[];
  /** Extra help text: the configuration keys this program reads. */
  keysHelp: string;
  /** The keys of keysHelp (others are refused; the common ones are added). */
  keys: readonly string[];
  /** Builds the server options from the configuration (minus executors and logger). */
  options(tree: ConfigTree, log: Logger): Promise<Omit<ServerOptions, 'executors' | 'logger'>>;
  limits: PrincipalLimits;
}

export const COMMON_KEYS_HELP = `
  runtime.sandbox            "bwrap" (default: executors under bubblewrap + seccomp) or "none"
  runtime.bwrap              the bubblewrap binary (default: bwrap from /usr/bin, /bin or PATH)
  runtime.profile            instrumentation profile: "suspend-anywhere" (default) or "io-suspend"
  runtime.isolateprincipals  true (default): principals never share an executor process
  runtime.maxinstances       instances per executor process (default 64)
  principal.maxmodulesize    bytes (server 32 MiB)
  principal.maxmemorysize    bytes of linear memory per instance (server 32 MiB)
  principal.timeresolution   nanoseconds (server 10 ms)
  principal.cputime          milliseconds of CPU one run of an instance may use before it is
                             suspended (0, the default: unlimited; programs are time-sliced anyway)
  principal.debugrate        bytes/s of debug output (log=*) per instance (server 64 KiB, daemon
                             8 MiB); more is dropped, and the drop reported in the output
  principal.debugburst       bytes of debug output an instance may write at once (server 1 MiB,
                             daemon 16 MiB)
  service.extensions         extension modules to load: file paths (relative to the configuration
                             file that names them) or package names; each adds services and its own
                             service.<name>.* keys (listed below when the configuration names them)
  service.localhost.addr     gate.computer/localhost: programs make HTTP requests to this server:
                             http://HOST[:PORT], https://HOST[:PORT] or unix:/PATH (default: none)
  state.checkpointinterval   seconds between checkpoints of running persistent instances (default 30;
                             a crash loses at most about twice this; 0: none)
  service.grpc.commands      gRPC services to run: ["[@path] program [args...]", ...]; each gets a
                             socketpair as fd 3 to serve on, is restarted (after 1 s, doubling to
                             60 s) when it exits, and gets SIGTERM when the server stops (docs/grpc.md)
  service.grpc.targets       gRPC services to dial: ["address [insecure] [optional]", ...]; optional:
                             left out if it cannot be reached at startup
  log.level                  pino level: fatal, error, warn, info (default), debug, silent
  log.debugrate              bytes/s of debug output of all instances together in this log
                             (default 262144); more is dropped and reported${PEER_KEYS_HELP}`;

/** The log is written asynchronously: past this much unwritten (a slow reader), entries are dropped. */
const LOG_BACKLOG_BYTES = 16 * 1024 * 1024;

export function limitsFrom(tree: ConfigTree, dflt: PrincipalLimits): PrincipalLimits {
  const cpuTimeMs = getNumber(tree, 'principal.cputime', 0);
  if (!(cpuTimeMs >= 0)) throw new ConfigError('principal.cputime must be a number of milliseconds (0: unlimited)');
  const debug = dflt.debugOutput ?? DEFAULT_DEBUG_LIMITS;
  const debugOutput = { rateBytesPerSecond: getNumber(tree, 'principal.debugrate', debug.rateBytesPerSecond), burstBytes: getNumber(tree, 'principal.debugburst', debug.burstBytes) };
  if (!(debugOutput.rateBytesPerSecond >= 0) || !(Number.isSafeInteger(debugOutput.burstBytes) && debugOutput.burstBytes >= 0)) {
    throw new ConfigError('principal.debugrate and principal.debugburst must be non-negative numbers of bytes (per second)');
  }
  return {
    debugOutput,
    maxModuleSize: getNumber(tree, 'principal.maxmodulesize', dflt.maxModuleSize),
    maxMemorySize: getNumber(tree, 'principal.maxmemorysize', dflt.maxMemorySize),
    timeResolutionNs: getNumber(tree, 'principal.timeresolution', dflt.timeResolutionNs),
    ...(cpuTimeMs > 0 ? { cpuTimeMs } : {}),
  };
}

function debugLogRate(tree: ConfigTree): number {
  const rate = getNumber(tree, 'log.debugrate', DEFAULT_DEBUG_LOG_RATE);
  if (!(Number.isFinite(rate) && rate >= 0)) throw new ConfigError('log.debugrate must be a non-negative number of bytes per second');
  return rate;
}

export function profileFrom(tree: ConfigTree): Profile | undefined {
  const p = getString(tree, 'runtime.profile');
  if (p === undefined) return undefined;
  if (!isProfile(p)) throw new ConfigError(`runtime.profile: unknown profile ${JSON.stringify(p)} (use "suspend-anywhere" or "io-suspend")`);
  return p;
}

export function checkpointIntervalFrom(tree: ConfigTree): number {
  const seconds = getNumber(tree, 'state.checkpointinterval', 30);
  if (!(seconds >= 0 && Number.isFinite(seconds))) throw new ConfigError('state.checkpointinterval must be a number of seconds (0: no periodic checkpoints)');
  return seconds * 1000;
}

export function sourcesFrom(tree: ConfigTree): Array<{ name: string; addr: string; kind: 'http' | 'ipfs' }> {
  const ipfsAddr = getString(tree, 'source.ipfs.addr', '');
  if (ipfsAddr !== '' && !/^https?:\/\/[^/?#]+\/?$/.test(ipfsAddr)) throw new ConfigError('source.ipfs.addr must be the http:// or https:// URL of an IPFS node\'s API (http://HOST:PORT, no path)');
  const http = getTableList(tree, 'source.http').map((t, i) => {
    const name = getString(t, 'name');
    const addr = getString(t, 'addr');
    if (!name || !/^[a-z0-9][a-z0-9._-]*$/i.test(name) || name === 'sha256') throw new ConfigError(`source.http[${i}].name must be a simple name other than "sha256"`);
    if (name === 'ipfs' && ipfsAddr !== '') throw new ConfigError(`source.http[${i}].name "ipfs" is taken by source.ipfs.addr`);
    if (!addr || !/^https?:\/\//.test(addr)) throw new ConfigError(`source.http[${i}].addr must be an http:// or https:// URL`);
    return { name, addr, kind: 'http' as const };
  });
  return ipfsAddr === '' ? http : [...http, { name: 'ipfs', addr: ipfsAddr, kind: 'ipfs' as const }];
}

/**
 * For --help: the settings of the extensions the configuration (default
 * files and flags) names, so that `gate-server -f my.toml --help` documents
 * them. A configuration that cannot be read or loaded is only mentioned.
 */
async function configuredExtensionsHelp(spec: ProgramSpec, argv: string[]): Promise<string> {
  const probe = new Command(spec.name).helpOption(false).allowUnknownOption().allowExcessArguments().exitOverride().configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  configFlags(probe);
  try {
    probe.parse(argv);
    const tracker = new ExtensionConfigTracker();
    const tree = readConfig(spec.defaultFiles, configSteps(probe), (piece, source, reset) => tracker.see(piece, source, reset));
    const refs = tracker.references(tree);
    if (refs.length === 0) return '';
    const loaded = (await importConfiguredExtensions(refs)).filter((e) => e.from !== '(built in)');
    const keys = extensionKeysHelp(loaded.map((e) => e.extension));
    return `\n\nKeys of the configured extensions (${refs.map((r) => r.specifier).join(', ')}):${keys ? `\n${keys}` : ' none'}`;
  } catch (e) {
    return `\n\nThe configured extensions could not be loaded: ${e instanceof Error ? e.message : String(e)}`;
  }
}

/**
 * After commander's "unknown option '--state-dir'": settings are
 * configuration keys, given with -o; names the key such an option spells
 * (state.dir), if one does.
 */
function optionAsKeyHint(argv: readonly string[], keys: readonly string[]): string {
  const squash = (s: string): string => s.toLowerCase().replace(/[^a-z0-9]/g, '');
  for (const arg of argv.slice(2)) {
    if (!arg.startsWith('--')) continue;
    const [name, value] = arg.slice(2).split('=', 2) as [string, string | undefined];
    // The whole key (--state-dir), or the only one whose last part it is (--sandbox).
    const byLast = keys.filter((k) => squash(k.slice(k.lastIndexOf('.') + 1)) === squash(name));
    const key = keys.find((k) => squash(k) === squash(name)) ?? (byLast.length === 1 ? byLast[0] : undefined);
    if (key) return `settings are configuration keys: use -o ${key}=${value ?? 'VALUE'} (see --help)`;
  }
  return 'settings are configuration keys, given with -o KEY=VALUE (see --help)';
}

/** Parses flags, starts the server and runs until SIGINT/SIGTERM; returns the exit code. */
export async function runServerProgram(spec: ProgramSpec, argv: string[]): Promise<number> {
  const extensionsHelp = argv.slice(2).some((a) => a === '-h' || a === '--help') ? await configuredExtensionsHelp(spec, argv) : '';
  const cmd = new Command(spec.name).description(spec.description).addHelpText('after', `\nConfiguration keys:${spec.keysHelp}${COMMON_KEYS_HELP}${extensionsHelp}\n\nDefault configuration files: ${spec.defaultFiles.join(', ')}`);
  configFlags(cmd);
  cmd.exitOverride();
  try {
    cmd.parse(argv);
  } catch (e) {
    const code = (e as { exitCode?: number }).exitCode;
    if ((e as { code?: string }).code === 'commander.unknownOption') process.stderr.write(`${spec.name}: ${optionAsKeyHint(argv, serverKeys(spec.keys).keys)}\n`);
    return code === 0 ? 0 : EXIT_CONFIG;
  }
  let tree: ConfigTree;
  let log: Logger;
  let options: Omit<ServerOptions, 'executors' | 'logger'>;
  let sandbox: SandboxMode;
  let logRate: number;
  let grpcConfig: GrpcConfig;
  try {
    // service.* keys are checked once the extensions they may belong to are loaded.
    const known = { ...serverKeys(spec.keys), open: { service: () => undefined } };
    const tracker = new ExtensionConfigTracker();
    tree = readConfig(spec.defaultFiles, configSteps(cmd), (piece, source, reset) => {
      checkKnownKeys(piece, known, source);
      tracker.see(piece, source, reset);
    });
    const extensions = await loadExtensions(tree, tracker);
    log = pino({ name: spec.name, level: getString(tree, 'log.level', 'info') }, pino.destination({ dest: 1, sync: false, maxLength: LOG_BACKLOG_BYTES }));
    for (const e of extensions.enabled) log.info(e, `extension ${e.extension}: services ${e.services.join(', ')}`);
    options = { ...(await spec.options(tree, log)), checkpointIntervalMs: checkpointIntervalFrom(tree), registry: serviceRegistryFrom(tree, extensions.registry) };
    logRate = debugLogRate(tree);
    grpcConfig = grpcConfigFrom(tree);
    const mode = getString(tree, 'runtime.sandbox', 'bwrap');
    if (mode !== 'bwrap' && mode !== 'none') throw new ConfigError(`runtime.sandbox: unknown mode ${JSON.stringify(mode)} (use "bwrap" or "none")`);
    sandbox = mode;
  } catch (e) {
    process.stderr.write(`${spec.name}: ${e instanceof Error ? e.message : String(e)}\n`);
    return EXIT_CONFIG;
  }
  if (sandbox === 'none') log.warn('runtime.sandbox = "none": executors run WITHOUT the bubblewrap/seccomp sandbox; untrusted programs are contained only by WebAssembly and process limits');
  let pool: ExecutorPool;
  try {
    pool = await ExecutorPool.create({
      sandbox,
      bwrapPath: getPath(tree, 'runtime.bwrap'),
      isolatePrincipals: getBool(tree, 'runtime.isolateprincipals', true),
      maxInstancesPerExecutor: getNumber(tree, 'runtime.maxinstances', 64),
      onExecutorExit: (info) =>
        info.violation ? log.error(info, 'executor process broke the protocol and was killed') : info.closed ? log.debug(info, 'executor process closed') : log.warn(info, 'executor process exited'),
    });
  } catch (e) {
    log.fatal({ err: e }, e instanceof Error ? e.message : String(e));
    process.stderr.write(`${spec.name}: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  log.info({ sandbox: pool.describe() }, 'executor sandbox');
  let grpc: GrpcServices;
  try {
    const started = await startConfiguredGrpc(grpcConfig, log, options.registry);
    grpc = started.services;
    options = { ...options, registry: started.registry };
  } catch (e) {
    await pool.close();
    log.fatal({ err: e }, 'cannot start the gRPC services');
    process.stderr.write(`${spec.name}: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  // Signals are taken from here on: one that arrives while the server starts
  // stops it as soon as it has started (not the default action, which would
  // lose what a graceful stop stores).
  let signalled: ((signal: string) => void) | undefined;
  let early: string | undefined;
  const onSignal = (signal: string) => (): void => (signalled ? signalled(signal) : void (early ??= signal));
  process.on('SIGINT', onSignal('SIGINT'));
  process.on('SIGTERM', onSignal('SIGTERM'));
  process.on('SIGHUP', () => undefined);
  let server: GateServer;
  try {
    server = await startServer({ ...options, executors: pool, logger: log, debugLogRate: logRate });
  } catch (e) {
    await pool.close();
    await grpc.close();
    const message = e instanceof GateError ? e.message : e instanceof Error ? `${e.message}` : String(e);
    log.fatal({ err: e }, 'cannot start');
    process.stderr.write(`${spec.name}: ${message}\n`);
    return 1;
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    signalled = (signal: string): void => {
      if (stopping) {
        // A second signal forces the exit; say what that loses.
        const p = server.instances.shutdownProgress();
        const lost = p.total - p.stored;
        log.error({ signal, stored: p.stored, notStored: lost }, `forced exit: ${lost} of ${p.total} persistent instances were not stored and continue from their previous checkpoint`);
        resolve(1);
        return;
      }
      stopping = true;
      log.info({ signal }, 'shutting down: suspending and storing instances (a second signal forces the exit)');
      const started = performance.now();
      server.close().then(
        async () => {
          // After the instances are suspended: their gRPC service instances have given their state.
          await grpc.close();
          const p = server.instances.shutdownProgress();
          const seconds = Math.round(performance.now() - started) / 1000;
          if (p.failed.length > 0) {
            log.error({ stored: p.stored, failed: p.failed, seconds }, `stopped: ${p.failed.length} persistent instances could not be stored`);
            resolve(1);
            return;
          }
          log.info({ stored: p.stored, seconds }, 'stopped');
          resolve(0);
        },
        (e: unknown) => {
          log.error({ err: e }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    if (early) signalled(early);
  });
}
