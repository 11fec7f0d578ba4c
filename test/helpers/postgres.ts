/**
 * A private PostgreSQL cluster for tests: initdb in a temp directory, the
 * server as a child process on a loopback port (and a Unix socket in the same
 * directory), removed by stop() or when the test process exits. PostgreSQL
 * refuses to run as root, so as root the cluster runs as `nobody`, owning its
 * directory. Needs Debian's postgresql package (binaries under
 * /usr/lib/postgresql/<version>/bin); postgresBinDir() says whether it is there.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, openSync, closeSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

const PG_ROOT = '/usr/lib/postgresql';

/** The bin directory of the newest installed PostgreSQL, or undefined. */
export function postgresBinDir(): string | undefined {
  let versions: string[];
  try {
    versions = readdirSync(PG_ROOT).filter((v) => /^\d+$/.test(v));
  } catch {
    return undefined;
  }
  versions.sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const bin = join(PG_ROOT, v, 'bin');
    if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'postgres'))) return bin;
  }
  return undefined;
}

export const NO_POSTGRES = `PostgreSQL binaries not found under ${PG_ROOT}/*/bin: install Debian's postgresql package (.ci/run does) to run these tests`;

export interface TestPostgres {
  host: string;
  port: number;
  /** The cluster's superuser (trust authentication: any password is accepted). */
  user: string;
  /** postgres://USER@127.0.0.1:PORT/DATABASE */
  dsn(database: string, password?: string): string;
  /** Creates an empty database (a new name each call unless given) and returns its name. */
  createDatabase(name?: string, extra?: string): Promise<string>;
  /** Runs one statement in `database` as the superuser. */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(database: string, sql: string, params?: unknown[]): Promise<pg.QueryResult<R>>;
  /** The server's log so far. */
  log(): string;
  stop(): Promise<void>;
}

interface RunAs {
  uid: number;
  gid: number;
}

/** As root: the uid/gid of `nobody`, which the cluster runs as. */
function runAs(): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('nobody:'));
  if (line === undefined) throw new Error('running as root and there is no user "nobody" to run PostgreSQL as');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let databaseCounter = 0;

/** Durability is not under test (the inventory's statements are): without fsync a test cluster is much faster. */
const FAST = ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'];

export interface TestPostgresOptions {
  /** fsync and synchronous commit as in production (default false: a test cluster need not survive power loss, and is faster without). */
  durable?: boolean;
}

export async function startTestPostgres(options: TestPostgresOptions = {}): Promise<TestPostgres> {
  const bin = postgresBinDir();
  if (bin === undefined) throw new Error(NO_POSTGRES);
  const as = runAs();
  const dir = mkdtempSync(join(tmpdir(), 'gate-test-pg-'));
  if (as) chownSync(dir, as.uid, as.gid);
  const data = join(dir, 'data');
  const logFile = join(dir, 'server.log');
  const user = 'gate';
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C.UTF-8', TZ: 'UTC' };
  const init = spawnSync(join(bin, 'initdb'), ['-D', data, '-U', user, '-A', 'trust', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync', '--no-instructions'], {
    cwd: dir,
    env,
    encoding: 'utf8',
    ...as,
  });
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed (${init.status ?? init.signal}): ${init.stderr}${init.stdout}`);
  }

  let child: ChildProcess | undefined;
  const killNow = (): void => {
    // Synchronous cleanup for a test process that exits without stop(): the backends notice the postmaster's death and exit.
    if (child && child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', killNow);
  // A test runner's timeout ends the process with SIGTERM, whose default action skips 'exit' handlers: clean up, then die of it.
  const onTerm = (): void => {
    killNow();
    process.kill(process.pid, 'SIGTERM');
  };
  process.once('SIGTERM', onTerm);

  // The port is free when chosen but may be taken before the server binds it: try a few.
  let port = 0;
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    const out = openSync(logFile, 'a');
    if (as) chownSync(logFile, as.uid, as.gid);
    const proc = spawn(
      join(bin, 'postgres'),
      ['-D', data, '-h', '127.0.0.1', '-p', String(port), '-k', dir, '-c', 'max_connections=200', ...(options.durable ? [] : FAST)],
      { cwd: dir, env, stdio: ['ignore', out, out], ...as },
    );
    closeSync(out);
    child = proc;
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    if (await waitReady(port, user, exited)) break;
    if (proc.exitCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
    if (attempt === 3) {
      const log = readFileSync(logFile, 'utf8');
      killNow();
      throw new Error(`PostgreSQL did not start: ${log}`);
    }
  }

  const dsn = (database: string, password?: string): string => `postgres://${user}${password === undefined ? '' : ':' + encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
  const query = async <R extends pg.QueryResultRow>(database: string, sql: string, params?: unknown[]): Promise<pg.QueryResult<R>> => {
    const client = new pg.Client({ connectionString: dsn(database) });
    await client.connect();
    try {
      return await client.query<R>(sql, params);
    } finally {
      await client.end();
    }
  };
  return {
    host: '127.0.0.1',
    port,
    user,
    dsn,
    query,
    async createDatabase(name = `gate_test_${databaseCounter++}`, extra = '') {
      await query('postgres', `CREATE DATABASE ${name} ${extra}`);
      return name;
    },
    log: () => readFileSync(logFile, 'utf8'),
    async stop() {
      const proc = child;
      if (proc && proc.exitCode === null) {
        const exited = new Promise<void>((r) => proc.once('exit', () => r()));
        proc.kill('SIGINT'); // fast shutdown: disconnects clients, no waiting for them
        const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      process.off('exit', killNow);
      process.off('SIGTERM', onTerm);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls until the server accepts a connection (true), it exits (false) or 30 s pass (false). */
async function waitReady(port: number, user: string, exited: Promise<void>): Promise<boolean> {
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + 30_000;
  while (!gone && Date.now() < deadline) {
    const client = new pg.Client({ host: '127.0.0.1', port, user, database: 'postgres', connectionTimeoutMillis: 1000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.end();
      return true;
    } catch {
      await client.end().catch(() => undefined);
      await sleep(100);
    }
  }
  return false;
}
