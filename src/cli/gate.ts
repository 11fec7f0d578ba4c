/**
 * The `gate` command (spec cli.md §2): `gate [options] [address] command
 * [arguments]`. With an address (first argument containing `.` or `://`)
 * commands go to a remote gate-server; without, to the local gate-daemon
 * over its Unix socket (started on demand). `gate run` runs a module in
 * this process's own child executor and needs neither.
 */
import { readFile } from 'node:fs/promises';
import { Command, CommanderError, Option } from 'commander';
import { checkKnownKeys, configFlags, configSteps, ConfigError, readConfig, setConfigValue } from '../config/index.js';
import { ApiError } from '../client/index.js';
import { GateError } from '../errors.js';
import { DEFAULT_PROFILE, PROFILES } from '../prepare/profile.js';
import { DEFAULT_LOCAL_LIMITS } from '../wasm/validate.js';
import * as cmd from './client-commands.js';
import { EXIT_FAILURE, EXIT_USAGE, UsageError, type Session } from './client-commands.js';
import type { RunOptions } from './run.js';
import { parsePositiveInt, parseProfile } from './run-options.js';
import { entryNotFoundError, isEntryNotFound } from './entry-hint.js';
import { talk } from './talk-command.js';

/** Default configuration files of the client (spec cli.md §2). */
export const CLIENT_CONFIG_FILES = ['${XDG_CONFIG_HOME}/gate/client.toml', '${XDG_CONFIG_HOME}/gate/client.d/*.toml'];

/** Commands of the local table only (they have no remote form). */
const LOCAL_ONLY = new Set(['pull', 'push', 'version', 'run']);

const VALUE_FLAGS = new Set(['-F', '-f', '-d', '-o', '-i', '--config-reset', '--config', '--config-dir', '--option', '--identity']);

/** An address is the first non-option argument if it contains `.` or `://` (spec cli.md §2). */
export function isAddress(arg: string): boolean {
  return arg.includes('.') || arg.includes('://');
}

/** Takes the address out of `[options] [address] command …`, which commander cannot parse itself. */
export function splitAddress(argv: string[]): { address: string | undefined; rest: string[] } {
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith('-') && argv[i] !== '--') i += VALUE_FLAGS.has(argv[i]!) ? 2 : 1;
  if (i < argv.length && argv[i] !== '--' && isAddress(argv[i]!)) {
    return { address: argv[i], rest: [...argv.slice(0, i), ...argv.slice(i + 1)] };
  }
  return { address: undefined, rest: argv };
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

const SCOPE_HELP = 'scope of the program (repeatable; comma-separated), e.g. program:system';

const ADDRESS_HELP = [
  'Without an address, commands go to your gate-daemon over its Unix socket (${XDG_RUNTIME_DIR}/gate/daemon.sock); it is started when it is not running.',
  'With an address (anything containing "." or "://", https by default: example.net, http://localhost:6473) they go to that gate-server, signed with your Ed25519 key (identityfile).',
  `Configuration: \${XDG_CONFIG_HOME}/gate/client.toml and client.d/*.toml; keys ${cmd.CLIENT_KEYS.keys.join(', ')}. Any other key is an error.`,
  'Exit status: 2 for usage and configuration errors, 1 for failures (server errors are printed), else as each command says.',
].join('\n\n');

export function buildProgram(address?: string): Command {
  const cli = new Command('gate')
    .usage('[options] [address] command [arguments]')
    .description(`Run Gate programs: untrusted WebAssembly that talks to its client over streams.\n\n${ADDRESS_HELP}`)
    .enablePositionalOptions() // -f/-d before the command are configuration, after it the command's own
    .exitOverride()
    .showHelpAfterError()
    .configureHelp({ sortSubcommands: true });
  configFlags(cli);
  cli.option('-i, --identity <file>', 'sign requests with this OpenSSH Ed25519 private key (the identityfile key; default ~/.ssh/id_ed25519)');

  const session = (): Session => {
    const config = readConfig(CLIENT_CONFIG_FILES, configSteps(cli), (piece, source) => checkKnownKeys(piece, cmd.CLIENT_KEYS, source));
    const identity = cli.opts<{ identity?: string }>().identity;
    if (identity !== undefined) setConfigValue(config, 'identityfile', identity);
    return { address, config };
  };

  /** Runs a command with the configuration read; its result is the exit status. */
  const act =
    <A extends unknown[]>(fn: (s: Session, ...args: A) => Promise<number> | number) =>
    async (...args: A): Promise<void> => {
      process.exitCode = await fn(session(), ...args);
    };

  // The table is checked before the command's arguments, as the reference client does.
  cli.hook('preSubcommand', (_cli, sub) => {
    const name = sub.name();
    if (address !== undefined && LOCAL_ONLY.has(name)) {
      if (name === 'pull' || name === 'push') throw new UsageError(`the address goes after the command: gate [options] ${name} address module`);
      throw new UsageError('Command not supported for specified address.');
    }
  });

  const jsonOption = (c: Command): Command => c.option('--json', 'print JSON instead of text (for scripts)');

  cli
    .command('call')
    .summary('run a module to its end, with stdin and stdout as its stream')
    .description(
      [
        'Run a module: a local file (uploaded, and pinned unless pin=false), a module id, or with an address a source path such as /ipfs/Qm…. Stdin and stdout are the program\'s origin stream.',
        'Ctrl-C kills the instance, Ctrl-\\ (SIGQUIT) suspends it (it is then kept: see resume, snapshot).',
        'Exit status: locally 0 when SUSPENDED, the result when HALTED or TERMINATED, else 1; with an address the result when TERMINATED normally, else 1. Other outcomes are printed to stderr.',
      ].join('\n\n'),
    )
    .argument('<module>', 'file, module id or source path')
    .argument('[function]', 'entry function (default: the function key, else _start)')
    .option('-s, --scope <scope>', SCOPE_HELP, collect)
    .option('-d, --debug', 'enable the program\'s debug log (written where the server sends debug logs)')
    .option('-p, --persist', 'keep the instance after the call (its id is printed to stderr; an error if it cannot be kept)')
    .option('-D, --dump', 'like -d -p')
    .action(act((s, module: string, fn: string | undefined, o: { scope?: string[]; debug?: boolean; persist?: boolean; dump?: boolean }) =>
      cmd.call(s, module, fn, { ...o, debug: o.debug === true || o.dump === true }),
    ));

  cli
    .command('launch')
    .summary('start an instance in the background; print its id')
    .description('Start a persistent instance of a module (file, module id or source path) and print its id. Configuration: suspend (create it suspended), instance (choose the id), pin, moduletags, instancetags.')
    .argument('<module>', 'file, module id or source path')
    .argument('[function]', 'entry function')
    .argument('[instancetag...]', 'tags of the instance')
    .option('-s, --scope <scope>', SCOPE_HELP, collect)
    .option('-d, --debug', 'enable the program\'s debug log')
    .action(act((s, module: string, fn: string | undefined, tags: string[], o: { scope?: string[]; debug?: boolean }) => cmd.launch(s, module, fn, tags, o)));

  cli
    .command('debug')
    .summary('show or set breakpoints, or read the stack, globals or memory of an instance')
    .description('Commands: (none) list breakpoints; break WHERE…; delete WHERE…; detach (remove all); bt (backtrace); globals; mem ADDR SIZE. WHERE is a code offset, a function name or FILE:LINE (from the module\'s DWARF; the module must be pinned). See docs/debugging.md.')
    .argument('<instance>')
    .argument('[command]')
    .argument('[args...]')
    .action(act((s, id: string, command: string | undefined, args: string[]) => cmd.debug(s, id, command, args)));

  cli
    .command('delete')
    .summary('forget a stopped instance')
    .argument('<instance>')
    .action(act((s, id: string) => cmd.deleteInstance(s, id)));

  cli
    .command('export')
    .summary('download a module to a file or stdout')
    .argument('<module>', 'module id')
    .argument('[filename]', 'file to write (through a temporary file in the same directory); default stdout')
    .action(act((s, id: string, file: string | undefined) => cmd.exportModule(s, id, file)));

  cli
    .command('import')
    .summary('upload and pin a module file; print its id')
    .argument('<filename>')
    .argument('[moduletag...]', 'tags of the module (default: the moduletags key)')
    .action(act((s, file: string, tags: string[]) => cmd.importModule(s, file, tags)));

  jsonOption(
    cli
      .command('instances')
      .summary('list instances: id, status and tags')
      .action(act((s, o: { json?: boolean }) => cmd.instances(s, o))),
  );

  cli
    .command('talk')
    .summary('chat with the other clients of a peer group, through examples/talk.wasm')
    .description('Run examples/talk.wasm with the group name as its first input line, then stdin: each line goes to the other members of the group (your own principal\'s group of that name), theirs come to stdout. The server must enable the peer service (service.peer.enabled). Ctrl-C or end of input leaves.')
    .argument('<group>', 'group name (1-255 bytes)')
    .action(act((s, group: string) => talk(s, group)));

  cli
    .command('io')
    .summary('connect stdin and stdout to a running instance')
    .description('Connect stdin and stdout to the origin stream of a running instance. Fails (exit 1) if the instance does not accept a connection.')
    .argument('<instance>')
    .action(act((s, id: string) => cmd.io(s, id)));

  jsonOption(
    cli
      .command('kill')
      .summary('kill an instance (and wait, printing its status, if wait=true)')
      .argument('<instance>')
      .action(act((s, id: string, o: { json?: boolean }) => cmd.kill(s, id, o))),
  );

  jsonOption(
    cli
      .command('modules')
      .summary('list pinned modules: id and tags')
      .action(act((s, o: { json?: boolean }) => cmd.modules(s, o))),
  );

  cli
    .command('pin')
    .summary('pin a module (id, file or source path), with tags')
    .argument('<module>')
    .argument('[moduletag...]')
    .action(act((s, module: string, tags: string[]) => cmd.pin(s, module, tags)));

  cli
    .command('repl')
    .summary('line-oriented terminal on a running instance')
    .description('Send each line of input (with a newline) to a running instance and print its output as it arrives. End of input ends the program\'s input; Ctrl-C disconnects.')
    .argument('<instance>')
    .action(act((s, id: string) => cmd.repl(s, id)));

  cli
    .command('resume')
    .summary('resume a suspended (or, with a function, halted) instance')
    .argument('<instance>')
    .argument('[function]', 'entry function for a halted instance (local only)')
    .option('-s, --scope <scope>', SCOPE_HELP, collect)
    .option('-d, --debug', 'enable the program\'s debug log')
    .action(act((s, id: string, fn: string | undefined, o: { scope?: string[]; debug?: boolean }) => cmd.resume(s, id, fn, o)));

  jsonOption(
    cli
      .command('show')
      .summary('print the tags of a pinned module')
      .argument('<module>', 'module id')
      .action(act((s, id: string, o: { json?: boolean }) => cmd.show(s, id, o))),
  );

  cli
    .command('snapshot')
    .summary('snapshot a stopped instance into a pinned module; print its id')
    .argument('<instance>')
    .argument('[moduletag...]')
    .action(act((s, id: string, tags: string[]) => cmd.snapshot(s, id, tags)));

  cli
    .command('clone')
    .summary('copy an instance under a new id (the original runs on); print the copy\'s id')
    .description(
      [
        'Copy an instance: its state now (a running one is checkpointed and runs on; its clients stay connected) is launched as a new persistent instance under a new id.',
        'Without DESTINATION the copy is made where the instance is (one request). With a DESTINATION server the snapshot is copied there and launched.',
        'The copy starts as a restored snapshot does: fresh random bytes, disconnected origin streams, services restored by their rules (docs/services.md).',
      ].join('\n\n'),
    )
    .argument('<instance>')
    .argument('[destination]', 'another server to make the copy on')
    .option('--suspend', 'create the copy suspended (resume it later)')
    .action(act((s, id: string, destination: string | undefined, o: { suspend?: boolean }) => cmd.clone(s, id, destination, o)));

  jsonOption(
    cli
      .command('status')
      .summary('print the status and tags of an instance')
      .argument('<instance>')
      .action(act((s, id: string, o: { json?: boolean }) => cmd.status(s, id, o))),
  );

  jsonOption(
    cli
      .command('suspend')
      .summary('suspend an instance (and wait, printing its status, if wait=true)')
      .argument('<instance>')
      .action(act((s, id: string, o: { json?: boolean }) => cmd.suspend(s, id, o))),
  );

  cli
    .command('unpin')
    .summary('unpin a module')
    .argument('<module>', 'module id')
    .action(act((s, id: string) => cmd.unpin(s, id)));

  cli
    .command('update')
    .summary('make an instance persistent and replace its tags')
    .argument('<instance>')
    .argument('[instancetag...]')
    .action(act((s, id: string, tags: string[]) => cmd.update(s, id, tags)));

  jsonOption(
    cli
      .command('wait')
      .summary('wait until an instance stops running; print its status')
      .argument('<instance>')
      .action(act((s, id: string, o: { json?: boolean }) => cmd.wait(s, id, o))),
  );

  cli
    .command('pull')
    .summary('copy a module from a server to the daemon (local only)')
    .argument('<address>', 'the server')
    .argument('<module>', 'module id')
    .action(act((s, addr: string, id: string) => cmd.pull(s, addr, id)));

  cli
    .command('push')
    .summary('copy a module from the daemon to a server (local only)')
    .argument('<address>', 'the server')
    .argument('<module>', 'module id')
    .action(act((s, addr: string, id: string) => cmd.push(s, addr, id)));

  cli
    .command('version')
    .summary('print the version')
    .action(act(() => cmd.version()));

  cli
    .command('run')
    .summary('run a wasm module file in this process\'s own executor (no daemon)')
    .description(
      [
        'Run a wasm module from a local file without a daemon or server: a program, or a snapshot made with --snapshot, which continues where it stopped. The origin stream is wired to stdin and stdout.',
        'Exit status: 0 when the program finishes cleanly (returns, or exits with 0); 1 when it exits with a non-zero status, traps, is killed or suspended (the state and cause are printed to stderr); 2 when the module cannot be used (bad module, unsupported import, unknown function).',
        'Ctrl-C kills the program; Ctrl-\\ (SIGQUIT) suspends it; Ctrl-Z stops it (with gate) until fg or bg.',
      ].join('\n\n'),
    )
    .argument('<file>', 'path of the .wasm module')
    .argument('[function]', 'entry function to call (default: _start if exported, else none)')
    .option('-d, --debug', 'write the program\'s debug log (fds 1 and 2) to stderr', false)
    .addOption(
      new Option('-f, --profile <profile>', `instrumentation profile: ${PROFILES.join(' or ')}`).default(DEFAULT_PROFILE).argParser(parseProfile),
    )
    .addOption(new Option('--memory-limit <bytes>', 'maximum memory of the instance').default(2 ** 31 - 65536).argParser(parsePositiveInt))
    .addOption(new Option('--time-resolution <ns>', 'clock resolution visible to the program, in nanoseconds').default(1).argParser(parsePositiveInt))
    .addOption(new Option('--max-exports <n>', 'largest number of exports accepted').default(DEFAULT_LOCAL_LIMITS.maxExports).argParser(parsePositiveInt))
    .addOption(
      new Option('--sandbox <mode>', 'bwrap: run the program\'s executor under bubblewrap + seccomp, as gate-server does; none: only in a plain child process (WebAssembly and process limits)')
        .choices(['bwrap', 'none'])
        .default('bwrap'),
    )
    .option('--no-cache', 'do not read or write the cache of prepared modules (~/.cache/gate/prepared)')
    .option('--snapshot <file>', 'when the program stops, write its snapshot (a wasm module) to FILE; `gate run FILE` continues it (exit status 0 when it was suspended)')
    .action(
      act(async (_s, file: string, fn: string | undefined, opts: RunOptions) => {
        try {
          // Loaded here: the runtime is heavy and only `run` needs it.
          const { run } = await import('./run.js');
          return await run(file, fn, opts);
        } catch (e) {
          // Modules that cannot be used (bad bytes, imports, functions): status 2.
          if (!(e instanceof GateError)) throw e;
          const shown = fn !== undefined && isEntryNotFound(e) ? entryNotFoundError(fn, file, await readFile(file).catch(() => undefined)) : e;
          process.stderr.write(`gate: ${shown.message}\n`);
          return EXIT_USAGE;
        }
      }),
    );

  return cli;
}

/** Exit status of a program killed by SIGPIPE, as a shell reports it. */
const EXIT_BROKEN_PIPE = 128 + 13;

/**
 * Output into a closed pipe (`gate instances | head -1`): stop quietly, as a
 * program killed by SIGPIPE would (Node ignores the signal and reports EPIPE
 * as an error event, which would otherwise crash with a stack trace).
 */
function exitOnBrokenPipe(stream: NodeJS.WriteStream): void {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(EXIT_BROKEN_PIPE);
    throw e;
  });
}

export async function main(argv: string[] = process.argv.slice(2)): Promise<void> {
  exitOnBrokenPipe(process.stdout);
  exitOnBrokenPipe(process.stderr);
  const { address, rest } = splitAddress(argv);
  try {
    await buildProgram(address).parseAsync(rest, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version are successes; anything commander rejects is usage.
      process.exitCode = e.exitCode === 0 ? 0 : EXIT_USAGE;
    } else if (e instanceof UsageError || e instanceof ConfigError) {
      process.stderr.write(`gate: ${e.message}\n`);
      process.exitCode = EXIT_USAGE;
    } else if (e instanceof GateError) {
      process.stderr.write(`gate: ${e.message}\n`);
      if (e instanceof ApiError && e.status === 401 && /missing authentication credentials/.test(e.message)) {
        // The request went anonymous because there is no key where the client looked.
        process.stderr.write('gate: this needs a key: create one with `ssh-keygen -t ed25519` (~/.ssh/id_ed25519), or name one with -i FILE or identityfile\n');
      }
      process.exitCode = EXIT_FAILURE;
    } else {
      throw e;
    }
  } finally {
    // Input piped into a request may be left half-read; it must not keep us alive.
    if (!process.stdin.destroyed) process.stdin.destroy();
  }
}
