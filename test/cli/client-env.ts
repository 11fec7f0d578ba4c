/**
 * End-to-end setup for `gate` client tests: a private HOME with XDG
 * directories and a real OpenSSH Ed25519 key, servers on real sockets (a
 * remote gate-server on loopback TCP, a daemon on the Unix socket where the
 * CLI looks for it), and a runner for bin/gate as a process.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.js';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const GATE = join(ROOT, 'bin/gate');
export const PROGRAMS = join(ROOT, 'test/programs/build');
export const EXAMPLES = join(ROOT, 'examples');

export interface ClientEnv {
  home: string;
  env: NodeJS.ProcessEnv;
  runtimeDir: string;
  configDir: string;
  keyFile: string;
  socketPath: string;
}

/** A fresh HOME with XDG directories and ~/.ssh/id_ed25519 made by ssh-keygen. */
export function makeClientEnv(): ClientEnv {
  const home = mkdtempSync(join(tmpdir(), 'gate-cli-home-'));
  const dirs = {
    XDG_CONFIG_HOME: join(home, '.config'),
    XDG_CACHE_HOME: join(home, '.cache'),
    XDG_STATE_HOME: join(home, '.local/state'),
    XDG_DATA_HOME: join(home, '.local/share'),
    XDG_RUNTIME_DIR: join(home, 'run'),
  };
  for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true, mode: 0o700 });
  mkdirSync(join(home, '.ssh'), { mode: 0o700 });
  const keyFile = join(home, '.ssh/id_ed25519');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'gate-test', '-f', keyFile]);
  if (!existsSync(keyFile)) throw new Error(`ssh-keygen did not write ${keyFile}`);
  return {
    home,
    env: { PATH: process.env['PATH'], HOME: home, ...dirs },
    runtimeDir: dirs.XDG_RUNTIME_DIR,
    configDir: join(dirs.XDG_CONFIG_HOME, 'gate'),
    keyFile,
    socketPath: join(dirs.XDG_RUNTIME_DIR, 'gate', 'daemon.sock'),
  };
}

/** A gate-server on loopback with the public access policy. */
export function startRemote(): Promise<TestServer> {
  return startTestServer();
}

/** A daemon-mode server (local principal) listening where the CLI of `env` looks for its daemon. */
export function startDaemon(env: ClientEnv): Promise<TestServer> {
  mkdirSync(join(env.runtimeDir, 'gate'), { recursive: true, mode: 0o700 });
  return startTestServer({ listen: { path: env.socketPath }, local: true });
}

/** Both command tables: with a remote address, or none (the daemon). */
export const TABLES: ReadonlyArray<{ name: 'remote' | 'local'; prefix: (remote: TestServer) => string[] }> = [
  { name: 'remote', prefix: (remote) => [remote.url] },
  { name: 'local', prefix: () => [] },
];

export interface ClientServers {
  env: ClientEnv;
  remote: TestServer;
  daemon: TestServer;
}

/**
 * Registers the enclosing suite's hooks: a client environment, a remote
 * gate-server and a daemon where that environment's CLI looks for it.
 * The fields are set once the suite's `before` has run.
 */
export function useClientServers(): ClientServers {
  const s = {} as ClientServers;
  before(async () => {
    s.env = makeClientEnv();
    s.remote = await startRemote();
    s.daemon = await startDaemon(s.env);
  });
  after(async () => {
    await s.remote.stop();
    await s.daemon.stop();
  });
  return s;
}

export interface Result {
  code: number | null;
  stdout: string;
  stdoutBytes: Buffer;
  stderr: string;
}

export interface RunOptions {
  input?: string | Buffer;
  /** Keep stdin open (until `whenOutput` has been acted on). */
  holdInput?: boolean;
  onSpawn?: (child: ChildProcess) => void;
  /** Once stdout or stderr (joined) matches, call `then` with the child. */
  whenOutput?: { match: RegExp; then: (child: ChildProcess) => void };
}

export function gate(env: ClientEnv, args: string[], opts: RunOptions = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(GATE, args, { env: env.env });
    opts.onSpawn?.(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let fired = false;
    const check = (): void => {
      if (!opts.whenOutput || fired) return;
      if (opts.whenOutput.match.test(Buffer.concat(out).toString() + Buffer.concat(err).toString())) {
        fired = true;
        opts.whenOutput.then(child);
      }
    };
    child.stdout.on('data', (c: Buffer) => {
      out.push(c);
      check();
    });
    child.stderr.on('data', (c: Buffer) => {
      err.push(c);
      check();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString(), stdoutBytes: Buffer.concat(out), stderr: Buffer.concat(err).toString() }));
    if (opts.input !== undefined) child.stdin.write(opts.input);
    if (!opts.holdInput) child.stdin.end();
  });
}

/** Runs gate and expects exit status 0; returns stdout. */
export async function ok(env: ClientEnv, args: string[], opts: RunOptions = {}): Promise<string> {
  const r = await gate(env, args, opts);
  if (r.code !== 0) throw new Error(`gate ${args.join(' ')} exited with ${r.code}: ${r.stderr}`);
  return r.stdout;
}
