/**
 * The client commands of `gate` (spec cli.md §2.1), for both tables: the
 * local daemon over its Unix socket, or a remote server at an address. Both
 * speak the same HTTP/websocket API, so one implementation serves both and
 * the table only changes the details the spec gives each side.
 */
import { lookup } from 'node:dns/promises';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { appendFile, mkdir, readFile, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PassThrough, Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import {
  ApiError,
  GateClient,
  WebSocketCloseError,
  moduleId,
  normaliseAddress,
  formatStatus,
  type Auth,
  type CallResult,
  type InstanceInfo,
  type ModuleRef,
  type Status,
} from '../client/index.js';
import { IdentityError, loadOptionalIdentity } from '../client/identity.js';
import { expandPath, getBool, getNumber, getPath, getString, getStringList, getValue, type ConfigTree, type KnownKeys } from '../config/index.js';
import { GateError } from '../errors.js';
import { ensureDaemon } from './daemon-activation.js';
import { entryNotFoundError, isEntryNotFound } from './entry-hint.js';
import { progress } from './progress.js';
import { DebugCommandError, debugCommand, formatFrames, type FrameJson } from './debug-command.js';

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A command used the wrong way: printed as `gate: …`, exit status 2. */
export class UsageError extends GateError {
  constructor(message: string) {
    super('GATE_USAGE', message);
  }
}

/** What every client command knows: where it talks to and the configuration. */
export interface Session {
  /** Normalised remote address, or undefined for the local daemon. */
  address: string | undefined;
  config: ConfigTree;
}

/** Where a call's debug log goes: `/dev/stderr` (the `-d` shortcut) or a file, appended to (spec cli.md §2.3). */
function debugLogStream(path: string): Writable {
  if (path === '/dev/stderr') return process.stderr;
  return createWriteStream(path, { flags: 'a', mode: 0o644 });
}

/** Client configuration keys and defaults (spec cli.md §2). */
export interface ClientSettings {
  identityFile: string;
  identityFileIsDefault: boolean;
  pin: boolean;
  moduleTags: string[];
  wait: boolean;
  function: string;
  instance: string;
  instanceTags: string[];
  scope: string[];
  suspend: boolean;
  debugLog: string;
  replHistoryFile: string;
  replHistoryLimit: number;
}

/** The keys clientSettings() reads: any other key in the configuration is an error (a typo). */
export const CLIENT_KEYS: KnownKeys = {
  keys: ['identityfile', 'pin', 'moduletags', 'wait', 'function', 'instance', 'instancetags', 'scope', 'suspend', 'debuglog', 'repl.historyfile', 'repl.historylimit'],
};

export function clientSettings(config: ConfigTree): ClientSettings {
  const identity = getPath(config, 'identityfile');
  return {
    identityFile: identity ?? expandPath('${HOME}/.ssh/id_ed25519'),
    identityFileIsDefault: identity === undefined,
    pin: getBool(config, 'pin', true),
    moduleTags: getStringList(config, 'moduletags'),
    wait: getBool(config, 'wait', true),
    function: getString(config, 'function', ''),
    instance: getString(config, 'instance', ''),
    instanceTags: getStringList(config, 'instancetags'),
    scope: getStringList(config, 'scope'),
    suspend: getBool(config, 'suspend', false),
    debugLog: getString(config, 'debuglog', ''),
    replHistoryFile: getPath(config, 'repl.historyfile', ''),
    replHistoryLimit: getNumber(config, 'repl.historylimit', 1000),
  };
}

async function isLoopback(host: string): Promise<boolean> {
  const h = host.replace(/^\[|\]$/g, '');
  try {
    const addrs = await lookup(h, { all: true });
    return addrs.length > 0 && addrs.every((a) => (a.family === 4 ? a.address.startsWith('127.') : a.address === '::1'));
  } catch {
    return false;
  }
}

/**
 * How to authenticate to a remote server (spec cli.md §2.2): identityfile ""
 * → no Authorization; an empty file → an unsigned token, for http loopback
 * addresses only; else the Ed25519 key. A missing default key means
 * anonymous access (the server says when an operation needs a key).
 */
async function remoteAuth(address: string, st: ClientSettings): Promise<Auth> {
  if (st.identityFile === '') return { kind: 'none' };
  let identity;
  try {
    identity = await loadOptionalIdentity(st.identityFile);
  } catch (e) {
    if (e instanceof IdentityError && e.code === 'GATE_IDENTITY_UNREADABLE' && st.identityFileIsDefault && !existsSync(st.identityFile)) {
      return { kind: 'none' };
    }
    throw e;
  }
  if (identity) return { kind: 'identity', identity };
  const url = new URL(address);
  if (url.protocol !== 'http:' || !(await isLoopback(url.hostname))) {
    throw new UsageError(`${st.identityFile}: an empty identity file (unsigned token) may only be used with http addresses of this host`);
  }
  return { kind: 'unsigned' };
}

export async function remoteClient(address: string, st: ClientSettings, scope = st.scope): Promise<GateClient> {
  const addr = normaliseAddress(address);
  return new GateClient({ address: addr, auth: await remoteAuth(addr, st), scope });
}

export async function localClient(scope: string[]): Promise<GateClient> {
  const socketPath = await ensureDaemon();
  // The address only names the server in messages; the socket is what counts.
  return new GateClient({ address: 'http://localhost', socketPath, auth: { kind: 'local' }, scope });
}

export function openClient(s: Session, st: ClientSettings, scope = st.scope): Promise<GateClient> {
  return s.address !== undefined ? remoteClient(s.address, st, scope) : localClient(scope);
}

// ---- arguments -------------------------------------------------------------

const MODULE_ID = /^[0-9a-f]{64}$/;

type ModuleArg = { kind: 'file'; path: string } | { kind: 'id'; id: string } | { kind: 'source'; source: string };

/**
 * A module argument (spec cli.md §2): a file (contains `/` or `.`), a
 * module id (sha256 hex), or remotely a source path such as `/ipfs/Qm…`
 * (an absolute path that is not an existing file).
 */
export function parseModuleArg(arg: string, remote: boolean): ModuleArg {
  if (remote && arg.startsWith('/') && !existsSync(arg)) return { kind: 'source', source: arg };
  if (arg.includes('/') || arg.includes('.')) return { kind: 'file', path: arg };
  if (MODULE_ID.test(arg)) return { kind: 'id', id: arg };
  throw new UsageError(`${arg}: neither a module file (write ./${arg} for a file here) nor a module id (64 lower-case hex digits)`);
}

function moduleIdArg(arg: string): string {
  if (!MODULE_ID.test(arg)) throw new UsageError(`${arg}: not a module id (64 lower-case hex digits)`);
  return arg;
}

async function readModuleFile(path: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    throw new UsageError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

function refOf(m: ModuleArg, bytes?: Uint8Array): ModuleRef {
  if (m.kind === 'id') return { id: m.id };
  if (m.kind === 'source') return { source: m.source };
  return { id: moduleId(bytes!) };
}

/** `-s a,b -s c` → [a, b, c]; without -s, the configured scope. */
function scopeOf(flags: string[] | undefined, st: ClientSettings): string[] {
  if (!flags || flags.length === 0) return st.scope;
  return flags.flatMap((f) => f.split(',')).filter((x) => x !== '');
}

/** The module's bytes, for a hint after an error: the file's, else downloaded (undefined if that fails). */
async function moduleBytesForHint(client: GateClient, m: ModuleArg, bytes: Uint8Array | undefined): Promise<Uint8Array | undefined> {
  if (bytes || m.kind !== 'id') return bytes;
  try {
    const { body } = await client.downloadModule(m.id);
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  } catch {
    return undefined;
  }
}

/** Runs a request naming entry function `fn`; a misspelt one gets an error naming the functions there are. */
async function withEntryHint<T>(request: Promise<T>, fn: string | undefined, client: GateClient, moduleArg: string, m: ModuleArg, bytes?: Uint8Array): Promise<T> {
  try {
    return await request;
  } catch (e) {
    if (fn === undefined || !isEntryNotFound(e)) throw e;
    throw entryNotFoundError(fn, moduleArg, await moduleBytesForHint(client, m, bytes));
  }
}

// ---- output ----------------------------------------------------------------

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

function err(line: string): void {
  process.stderr.write(`${line}\n`);
}

function json(v: unknown): void {
  out(JSON.stringify(v, null, 2));
}

/** Tags as the reference client prints them (Go's %v of a string slice). */
function tagList(tags: string[]): string {
  return `[${tags.join(' ')}]`;
}

function instanceLine(i: InstanceInfo): string {
  return `${i.instance.padEnd(36)} ${formatStatus(i.status)} ${tagList(i.tags)}`;
}

/** A status that is an error (spec cli.md §2.2: a Gate-Status with error is fatal). */
function statusFailed(s: Status): boolean {
  return !s.state || s.error !== undefined;
}

// ---- commands --------------------------------------------------------------

export interface CallFlags {
  scope?: string[];
  debug?: boolean;
  persist?: boolean;
  dump?: boolean;
}

/**
 * call: runs a module to its end with stdin and stdout as its origin
 * stream. SIGINT kills the instance, SIGQUIT suspends it (both need the
 * instance id, which the server gives authenticated and local callers).
 */
export async function call(s: Session, moduleArg: string, fn: string | undefined, flags: CallFlags): Promise<number> {
  const st = clientSettings(s.config);
  const remote = s.address !== undefined;
  const m = parseModuleArg(moduleArg, remote);
  const bytes = m.kind === 'file' ? await readModuleFile(m.path) : undefined;
  const persist = flags.persist === true || flags.dump === true;
  const client = await openClient(s, st, scopeOf(flags.scope, st));

  const abort = new AbortController();
  let instance: string | undefined;
  let pending: 'kill' | 'suspend' | undefined;
  let interrupts = 0;
  const act = (what: 'kill' | 'suspend'): void => {
    if (instance === undefined) {
      // Without an instance id (not created yet, or an anonymous call)
      // closing the connection is the only way to stop it: that kills it.
      if (what === 'kill') abort.abort();
      else pending = 'suspend';
      return;
    }
    const id = instance;
    void (what === 'kill' ? client.kill(id) : client.suspend(id)).catch((e: unknown) => {
      err(`gate: ${what} ${id}: ${(e as Error).message}`);
    });
  };
  const onInt = (): void => {
    if (++interrupts > 1) abort.abort(); // a second Ctrl-C does not wait for the server
    else act('kill');
  };
  const onQuit = (): void => act('suspend');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onInt);
  process.on('SIGQUIT', onQuit);

  const onInstance = (id: string): void => {
    instance = id;
    if (pending) act(pending);
  };

  const log = flags.debug === true || st.debugLog !== '';
  const common = {
    function: fn ?? (st.function || undefined),
    instanceTags: st.instanceTags,
    log,
    output: process.stdout,
    ...(log ? { debug: debugLogStream(flags.debug === true ? '/dev/stderr' : st.debugLog) } : {}),
    signal: abort.signal,
  };
  const callOnce = async (): Promise<CallResult> => {
    if (remote && m.kind !== 'file' && !persist) {
      // A known module or a source: the request body is the input, the
      // status comes in the trailer (spec cli.md §2.1 remote call).
      const r = await client.call(refOf(m), {
        ...common,
        input: process.stdin,
        ...(m.kind === 'source' ? { pin: st.pin, moduleTags: st.moduleTags } : {}),
      });
      if (r.instance) onInstance(r.instance);
      return r;
    }
    // A file (uploaded with the call), locally a known module, or one to
    // keep: a websocket call, which streams input and gives the instance id
    // first. A kept instance is made persistent when it is created: an
    // update sent after the id came would race with a program that ends at
    // once (the call's transient instance is then gone).
    // Anonymous callers cannot pin: the default `pin = true` then yields (an explicit one stays, and fails).
    const pin = st.pin && (!client.anonymous || getValue(s.config, 'pin') !== undefined);
    const upload = bytes ? { upload: bytes, pin, moduleTags: st.moduleTags } : {};
    const source = m.kind === 'source' ? { pin: st.pin, moduleTags: st.moduleTags } : {};
    return client.callWebSocket(refOf(m, bytes), { ...common, ...source, ...upload, input: process.stdin, onInstance, persist });
  };

  let result: CallResult;
  try {
    result = await withEntryHint(callOnce(), common.function, client, moduleArg, m, bytes);
  } catch (e) {
    if (abort.signal.aborted) {
      err('gate: call interrupted');
      return EXIT_FAILURE;
    }
    throw e;
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onInt);
    process.off('SIGQUIT', onQuit);
  }

  const status = result.status;
  if (persist) {
    if (!result.instance) {
      err('gate: cannot keep the instance: an anonymous call has none to keep (use an identity: identityfile, -i)');
      return EXIT_FAILURE;
    }
    // A server without the persist extension made it transient: keeping it now may be too late, which must not pass silently.
    try {
      await client.update(result.instance, { persist: true, tags: [] });
    } catch (e) {
      err(`gate: cannot keep instance ${result.instance}: ${(e as Error).message}`);
      return EXIT_FAILURE;
    }
    err(result.instance);
  }
  // Finished: the program returned (HALTED) or exited (TERMINATED) by itself.
  // The reference client accepts only TERMINATED remotely, but here every
  // entry function that returns gives HALTED, so both tables treat them alike.
  const finished = (status.state === 'HALTED' || status.state === 'TERMINATED') && !status.cause && !statusFailed(status);
  const suspended = status.state === 'SUSPENDED' && !statusFailed(status);
  if (!finished || persist || (!remote && (status.result ?? 0) !== 0)) err(formatStatus(status));
  if (flags.dump && !finished && result.instance) {
    // The kept instance's stack: where it is suspended, or where it trapped.
    try {
      const stack = (await client.debug(result.instance, { op: 'READ_STACK' })) as { frames?: FrameJson[] };
      const lines = formatFrames(stack.frames ?? []);
      err(lines.length ? `Call stack:\n${lines.join('\n')}` : 'Call stack: none (the engine did not say where)');
    } catch (e) {
      err(`Call stack: not available: ${(e as Error).message}`);
    }
  }
  if (finished) return status.result ?? 0;
  if (suspended && !remote) {
    if (result.instance && !persist) err(`instance ${result.instance} (resume with: gate resume ${result.instance})`);
    return 0;
  }
  return EXIT_FAILURE;
}

export async function launch(s: Session, moduleArg: string, fn: string | undefined, tags: string[], flags: { scope?: string[]; debug?: boolean }): Promise<number> {
  const st = clientSettings(s.config);
  const m = parseModuleArg(moduleArg, s.address !== undefined);
  const bytes = m.kind === 'file' ? await readModuleFile(m.path) : undefined;
  const client = await openClient(s, st, scopeOf(flags.scope, st));
  const entry = fn ?? (st.function || undefined);
  const r = await withEntryHint(client.launch(refOf(m, bytes), {
    function: entry,
    instanceTags: tags.length > 0 ? tags : st.instanceTags,
    log: flags.debug === true || st.debugLog !== '',
    suspend: st.suspend,
    ...(st.instance ? { instance: st.instance } : {}),
    ...(m.kind !== 'id' ? { pin: st.pin, moduleTags: st.moduleTags } : {}),
    ...(bytes ? { upload: { body: bytes, length: bytes.length } } : {}),
  }), entry, client, moduleArg, m, bytes);
  out(r.instance);
  return 0;
}

export async function instances(s: Session, opts: { json?: boolean }): Promise<number> {
  const list = await (await openClient(s, clientSettings(s.config))).listInstances();
  if (opts.json) json(list);
  else for (const i of list) out(instanceLine(i));
  return 0;
}

export async function status(s: Session, id: string, opts: { json?: boolean }): Promise<number> {
  const info = await (await openClient(s, clientSettings(s.config))).instanceInfo(id);
  if (opts.json) json(info);
  else out(`${formatStatus(info.status)} ${tagList(info.tags)}`);
  return 0;
}

function printStatus(st: Status, opts: { json?: boolean }): number {
  if (opts.json) json(st);
  else out(formatStatus(st));
  return statusFailed(st) ? EXIT_FAILURE : 0;
}

export async function wait(s: Session, id: string, opts: { json?: boolean }): Promise<number> {
  return printStatus(await (await openClient(s, clientSettings(s.config))).wait(id), opts);
}

/** kill and suspend: request it, and with `wait` (the default) print the status the instance stops with. */
async function stopInstance(s: Session, id: string, opts: { json?: boolean }, action: 'kill' | 'suspend'): Promise<number> {
  const st = clientSettings(s.config);
  const client = await openClient(s, st);
  if (!st.wait) {
    await client[action](id);
    return 0;
  }
  return printStatus(await client[action](id, true), opts);
}

export function kill(s: Session, id: string, opts: { json?: boolean }): Promise<number> {
  return stopInstance(s, id, opts, 'kill');
}

export function suspend(s: Session, id: string, opts: { json?: boolean }): Promise<number> {
  return stopInstance(s, id, opts, 'suspend');
}

export async function resume(s: Session, id: string, fn: string | undefined, flags: { scope?: string[]; debug?: boolean }): Promise<number> {
  const st = clientSettings(s.config);
  if (s.address !== undefined && fn !== undefined) {
    throw new UsageError('resume takes no function argument with an address (usage: gate ADDRESS resume INSTANCE)');
  }
  const client = await openClient(s, st, scopeOf(flags.scope, st));
  try {
    await client.resume(id, { ...(fn ? { function: fn } : {}), log: flags.debug === true || st.debugLog !== '' });
  } catch (e) {
    if (fn === undefined || !isEntryNotFound(e)) throw e;
    throw entryNotFoundError(fn, `the module of instance ${id}`, undefined);
  }
  return 0;
}

export async function snapshot(s: Session, id: string, tags: string[]): Promise<number> {
  const st = clientSettings(s.config);
  out(await (await openClient(s, st)).snapshot(id, tags.length > 0 ? tags : st.moduleTags));
  return 0;
}

export async function deleteInstance(s: Session, id: string): Promise<number> {
  await (await openClient(s, clientSettings(s.config))).deleteInstance(id);
  return 0;
}

/** update: makes the instance persistent and replaces its tags (the reference client's `transient` key is not copied). */
export async function update(s: Session, id: string, tags: string[]): Promise<number> {
  if (tags.length === 0) throw new UsageError('no tags');
  await (await openClient(s, clientSettings(s.config))).update(id, { persist: true, tags });
  return 0;
}

export async function modules(s: Session, opts: { json?: boolean }): Promise<number> {
  const list = await (await openClient(s, clientSettings(s.config))).listModules();
  if (opts.json) json(list);
  else for (const m of list) out(`${m.module} ${tagList(m.tags)}`);
  return 0;
}

export async function show(s: Session, id: string, opts: { json?: boolean }): Promise<number> {
  const info = await (await openClient(s, clientSettings(s.config))).moduleInfo(moduleIdArg(id));
  if (opts.json) json(info);
  else out(tagList(info.tags));
  return 0;
}

async function uploadFile(client: GateClient, path: string, tags: string[]): Promise<string> {
  const bytes = await readModuleFile(path);
  const id = moduleId(bytes);
  await client.uploadModule(id, { body: Readable.from([bytes]).pipe(progress(`uploading ${path}`, bytes.length)), length: bytes.length }, tags);
  return id;
}

export async function pin(s: Session, moduleArg: string, tags: string[]): Promise<number> {
  const st = clientSettings(s.config);
  const m = parseModuleArg(moduleArg, s.address !== undefined);
  const client = await openClient(s, st);
  const moduleTags = tags.length > 0 ? tags : st.moduleTags;
  if (m.kind === 'file') out(await uploadFile(client, m.path, moduleTags));
  else {
    const id = await client.pinModule(refOf(m), moduleTags);
    if (m.kind === 'source' && id) out(id);
  }
  return 0;
}

export async function unpin(s: Session, id: string): Promise<number> {
  await (await openClient(s, clientSettings(s.config))).unpinModule(moduleIdArg(id));
  return 0;
}

export async function importModule(s: Session, file: string, tags: string[]): Promise<number> {
  const st = clientSettings(s.config);
  const client = await openClient(s, st);
  out(await uploadFile(client, file, tags.length > 0 ? tags : st.moduleTags));
  return 0;
}

/** Counts bytes, so that a short download is noticed. */
function counter(): { stream: PassThrough; count: () => number } {
  let n = 0;
  const stream = new PassThrough();
  stream.on('data', (c: Buffer) => (n += c.length));
  return { stream, count: () => n };
}

/**
 * export: writes the module to a file through a temporary name in the same
 * directory (renamed when complete), or to stdout. A short download is an error.
 */
export async function exportModule(s: Session, id: string, filename: string | undefined): Promise<number> {
  const client = await openClient(s, clientSettings(s.config));
  const { length, body } = await client.downloadModule(moduleIdArg(id));
  const c = counter();
  const shown = progress(`downloading ${id.slice(0, 12)}`, length);
  if (filename === undefined || filename === '-') {
    await pipeline(body, shown, c.stream, endless(process.stdout));
  } else {
    const tmp = join(dirname(filename), `.${id.slice(0, 16)}.${process.pid}.tmp`);
    try {
      await pipeline(body, shown, c.stream, createWriteStream(tmp));
      if (c.count() !== length) throw new GateError('GATE_SHORT_DOWNLOAD', `short download: ${c.count()} of ${length} bytes`);
      await rename(tmp, filename);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
  }
  if (c.count() !== length) throw new GateError('GATE_SHORT_DOWNLOAD', `short download: ${c.count()} of ${length} bytes`);
  return 0;
}

/** A writable that forwards to stdout without ending it (pipeline would end it). */
function endless(target: Writable): Writable {
  const p = new PassThrough();
  p.on('data', (c: Buffer) => {
    if (!target.write(c)) {
      p.pause();
      target.once('drain', () => p.resume());
    }
  });
  return p;
}

/** pull (local only): downloads a module from a server and uploads it to the daemon, pinned. */
export async function pull(s: Session, address: string, id: string): Promise<number> {
  const st = clientSettings(s.config);
  moduleIdArg(id);
  const from = await remoteClient(address, st);
  const to = await localClient(st.scope);
  const { length, body } = await from.downloadModule(id);
  await to.uploadModule(id, { body: body.pipe(progress(`pulling ${id.slice(0, 12)}`, length)), length }, st.moduleTags);
  return 0;
}

/** push (local only): downloads a module from the daemon and uploads it to a server, pinned. */
export async function push(s: Session, address: string, id: string): Promise<number> {
  const st = clientSettings(s.config);
  moduleIdArg(id);
  const from = await localClient(st.scope);
  const to = await remoteClient(address, st);
  const { length, body } = await from.downloadModule(id);
  await to.uploadModule(id, { body: body.pipe(progress(`pushing ${id.slice(0, 12)}`, length)), length }, st.moduleTags);
  return 0;
}

/**
 * clone: copies an instance under a new id, the original going on; prints
 * the copy's id. Without a destination the server (or daemon) clones it
 * itself in one request. With one, the snapshot (taken as the snapshot
 * command takes it) is copied there and launched; pins this made are
 * removed again on both sides (the copy's record keeps its module).
 */
export async function clone(s: Session, id: string, destination: string | undefined, flags: { suspend?: boolean }): Promise<number> {
  const st = clientSettings(s.config);
  const from = await openClient(s, st);
  if (destination === undefined) {
    out(await from.clone(id, { suspend: flags.suspend === true }));
    return 0;
  }
  const to = await remoteClient(destination, st);
  const info = await from.instanceInfo(id);
  const pinnedBefore = new Set((await from.listModules()).map((m) => m.module));
  const hash = await from.snapshot(id);
  try {
    const present = await to.moduleInfo(hash).then(
      () => true,
      (e: unknown) => {
        if (e instanceof ApiError && e.status === 404) return false;
        throw e;
      },
    );
    if (!present) {
      const { length, body } = await from.downloadModule(hash);
      await to.uploadModule(hash, { body: body.pipe(progress(`cloning ${id}`, length)), length });
    }
    // A halted state cannot run on without a function: the copy is created halted, like the original.
    const suspend = flags.suspend === true || info.status.state === 'HALTED';
    const launched = await to.launch({ id: hash }, { suspend, instanceTags: info.tags });
    if (!present) await to.unpinModule(hash);
    out(launched.instance);
    return 0;
  } finally {
    if (!pinnedBefore.has(hash)) await from.unpinModule(hash).catch(() => undefined);
  }
}

/** The server turns io away without a reason (409, or `connected: false`): say what the instance's state is. */
async function notConnected(client: GateClient, id: string, e: unknown): Promise<never> {
  const rejected = (e instanceof ApiError && e.status === 409) || (e instanceof WebSocketCloseError && e.message === 'connection rejected');
  if (!rejected) throw e;
  let status: Status | undefined;
  try {
    status = (await client.instanceInfo(id)).status;
  } catch {
    status = undefined; // gone meanwhile: the generic text below
  }
  if (status !== undefined && status.state !== 'RUNNING') {
    const next = status.state === 'SUSPENDED' ? ` (gate resume ${id} first)` : '';
    throw new GateError('GATE_NOT_CONNECTED', `instance ${id} is ${formatStatus(status)}: only a running instance accepts a connection${next}`);
  }
  throw new GateError('GATE_NOT_CONNECTED', `instance ${id} does not accept a connection: another client may be connected to it, or its program no longer reads input`);
}

/** io: connects stdin and stdout to a running instance's origin (HTTP: the request body is the input). */
export async function io(s: Session, id: string): Promise<number> {
  const client = await openClient(s, clientSettings(s.config));
  const abort = new AbortController();
  const onInt = (): void => abort.abort();
  process.on('SIGINT', onInt);
  try {
    await client.io(id, { input: process.stdin, output: process.stdout, signal: abort.signal });
  } catch (e) {
    if (abort.signal.aborted) return EXIT_FAILURE;
    return notConnected(client, id, e);
  } finally {
    process.off('SIGINT', onInt);
  }
  return 0;
}

/** The 8 bytes the reference REPL sends before its first prompt (spec cli.md §2.1). */
const REPL_PREAMBLE = '\r\r\r\r\r\r\r\n';

/**
 * repl: a line-oriented terminal on a running instance's origin over a
 * websocket: each line is sent with `\n`, output is printed as it comes.
 * At the end of input the program gets end-of-input and we wait for it.
 */
export async function repl(s: Session, id: string): Promise<number> {
  const st = clientSettings(s.config);
  const client = await openClient(s, st);
  const input = new PassThrough();
  const terminal = process.stdin.isTTY === true;
  let history: string[] = [];
  if (st.replHistoryFile && terminal) {
    try {
      history = readFileSync(st.replHistoryFile, 'utf8').split('\n').filter((l) => l !== '').reverse();
    } catch {
      // no history yet
    }
  }
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal, history, historySize: st.replHistoryLimit });
  rl.setPrompt(terminal ? '> ' : '');
  const output = new PassThrough();
  output.on('data', (c: Buffer) => {
    process.stdout.write(c);
    if (terminal) rl.prompt(true);
  });
  const abort = new AbortController();
  rl.on('SIGINT', () => abort.abort());
  rl.on('line', (line) => {
    input.write(`${line}\n`);
    if (st.replHistoryFile && terminal && line !== '') {
      void mkdir(dirname(st.replHistoryFile), { recursive: true })
        .then(() => appendFile(st.replHistoryFile, `${line}\n`))
        .catch(() => undefined);
    }
    rl.prompt();
  });
  rl.on('close', () => input.end());
  input.write(REPL_PREAMBLE);
  try {
    const done = client.ioWebSocket(id, { input, output, signal: abort.signal });
    rl.prompt();
    await done;
  } catch (e) {
    if (abort.signal.aborted) return EXIT_FAILURE;
    return notConnected(client, id, e);
  } finally {
    rl.close();
    if (terminal) process.stdout.write('\n');
  }
  return 0;
}

export function version(): number {
  let v: string | undefined;
  try {
    const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../../../package.json', import.meta.url)), 'utf8')) as { version?: unknown };
    if (typeof pkg.version === 'string') v = pkg.version;
  } catch {
    // unknown
  }
  out(v ? `Gate client version: ${v}` : 'Gate client version is unknown');
  out(`Node.js version: ${process.version}`);
  return 0;
}

/** `gate debug INSTANCE [COMMAND [ARG…]]` (debug-command.ts, docs/debugging.md). */
export async function debug(s: Session, id: string, command: string | undefined, args: string[]): Promise<number> {
  const client = await openClient(s, clientSettings(s.config));
  try {
    await debugCommand(client, id, command, args, out);
  } catch (e) {
    if (e instanceof DebugCommandError) throw new UsageError(e.message);
    throw e;
  }
  return 0;
}
