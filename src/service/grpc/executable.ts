/**
 * gRPC services run as child processes (`service.grpc.commands`, docs/grpc.md):
 * the child gets one end of a Unix socketpair as fd 3 and serves gRPC on it;
 * its stderr goes to the server's log; it gets SIGTERM when the server
 * closes. A child that exits is restarted (the restart policy below).
 *
 * grpc-js cannot be handed an existing socket, so the server end of the
 * socketpair is reached through a Unix socket in a private directory
 * (mode 0700) that forwards the one connection grpc-js makes to it; a
 * second connection is refused, because the socketpair carries a single
 * HTTP/2 connection (as in the original, which does not reconnect either).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { GrpcConnection, type GrpcEndpoint } from './client.js';
import { GrpcStartError } from './errors.js';
import { GateGrpcClient } from './protocol.js';

/** Restart delays: the first after 1 s, doubling up to a minute; back to 1 s after a run of a minute. */
export const RESTART_MIN_DELAY_MS = 1000;
export const RESTART_MAX_DELAY_MS = 60_000;
/** A child that does not exit within this long of SIGTERM (the server closing) gets SIGKILL. */
export const TERMINATE_GRACE_MS = 5000;
/** Stderr lines longer than this are cut in the log; more lines than the rate per second are dropped (and counted). */
const STDERR_LINE_MAX = 4096;
const STDERR_LINES_PER_SECOND = 100;
/** How long a closed connection waits for the process's exit status, which explains it better. */
const EXIT_REASON_WAIT_MS = 500;

export interface CommandLine {
  /** The executable (`@path`, else argv[0], looked up in PATH). */
  path: string;
  /** argv, argv[0] included. */
  args: string[];
}

/** `"[@path] argv0 args…"`, split on whitespace (the original's format). */
export function parseCommandLine(line: string): CommandLine | undefined {
  const fields = line.trim().split(/\s+/).filter((f) => f !== '');
  if (fields.length === 0) return undefined;
  if (fields[0]!.startsWith('@')) {
    const path = fields[0]!.slice(1);
    const args = fields.slice(1);
    if (path === '' || args.length === 0) return undefined;
    return { path, args };
  }
  return { path: fields[0]!, args: fields };
}

/** Keeps the channel from closing an idle connection: the socketpair cannot be dialled again. */
const CHANNEL_OPTIONS: grpc.ChannelOptions = { 'grpc.client_idle_timeout_ms': 2 ** 31 - 1 };

interface Run {
  child: ChildProcess;
  proxy: Server;
  dir: string;
  conn: GrpcConnection;
  started: number;
  exited: Promise<void>;
}

/** One configured command: its current process and connection, restarted when it exits. */
export class GrpcCommand implements GrpcEndpoint {
  readonly label: string;
  private run: Run | undefined;
  private up = false;
  /** Restarts begin once the first start has succeeded (a failed start is the server's start error). */
  private everUp = false;
  private closing = false;
  private delay = RESTART_MIN_DELAY_MS;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly command: CommandLine,
    private readonly log: Logger,
    /** Called after each restart with the services the new process offers. */
    private readonly onRestart: (conn: GrpcConnection) => void = () => undefined,
  ) {
    this.label = `command ${JSON.stringify(command.args.join(' '))}`;
  }

  connection(): GrpcConnection | undefined {
    return this.up ? this.run?.conn : undefined;
  }

  /** Starts the process and asks it for its services; throws GrpcStartError. */
  async start(): Promise<GrpcConnection> {
    const run = this.spawn();
    this.run = run;
    try {
      await run.conn.init();
    } catch (e) {
      await this.stop(run);
      throw new GrpcStartError(`${this.label}: Root.Init failed: ${describe(e)}${run.child.exitCode !== null ? ` (the process exited with code ${run.child.exitCode})` : ''}`, { cause: e });
    }
    this.up = true;
    this.everUp = true;
    return run.conn;
  }

  /** Stops restarting and terminates the process (SIGTERM, SIGKILL after TERMINATE_GRACE_MS). */
  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.timer);
    if (this.run) await this.stop(this.run);
  }

  private spawn(): Run {
    const { path, args } = this.command;
    const dir = mkdtempSync(join(tmpdir(), 'gate-grpc-'));
    const socketPath = join(dir, 'socket');
    // stdio[3] 'pipe' is a Unix stream socketpair (libuv), the child's fd 3.
    const child = spawn(path, args.slice(1), { argv0: args[0], stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
    const pair = child.stdio[3] as Socket;
    const started = Date.now();
    let exitedResolve!: () => void;
    const exited = new Promise<void>((resolve) => (exitedResolve = resolve));
    const conn = new GrpcConnection(this.label, new GateGrpcClient(`unix:${socketPath}`, grpc.credentials.createInsecure(), CHANNEL_OPTIONS), false);
    const proxy = createServer();
    const run: Run = { child, proxy, dir, conn, started, exited };
    let forwarded: Socket | undefined;
    proxy.on('connection', (c) => {
      if (forwarded) {
        c.destroy();
        return;
      }
      forwarded = c;
      c.on('error', () => undefined);
      c.pipe(pair);
      pair.pipe(c);
      c.on('close', () => this.broken(run, 'lost its connection'));
    });
    proxy.on('error', (e) => this.broken(run, `lost its socket: ${e.message}`));
    proxy.listen(socketPath);
    pair.on('error', () => undefined);
    pair.on('close', () => {
      forwarded?.destroy();
      this.broken(run, 'closed fd 3');
    });
    this.logStderr(child);
    child.on('error', (e) => {
      // Could not be started (ENOENT, EACCES): there is no 'exit' then.
      if (child.pid === undefined) exitedResolve();
      this.log.error({ grpc: this.label, err: e }, `gRPC ${this.label}: ${e.message}`);
      conn.lost(`the process could not be started: ${e.message}`);
    });
    child.on('exit', (code, signal) => {
      exitedResolve();
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      conn.lost(`the process ${how}`);
      proxy.close();
      rmSync(dir, { recursive: true, force: true });
      if (this.run !== run || this.closing || !this.everUp) return;
      this.up = false;
      this.log.error({ grpc: this.label, code, signal }, `gRPC ${this.label}: the process ${how}; restarting in ${this.delay / 1000} s`);
      this.scheduleRestart(run);
    });
    return run;
  }

  /**
   * The connection is unusable. If the process is exiting, its exit says
   * why (the socketpair usually closes first); otherwise end it (its exit
   * restarts it).
   */
  private broken(run: Run, why: string): void {
    const exited = (): boolean => run.child.exitCode !== null || run.child.signalCode !== null;
    if (exited()) return;
    const timer = setTimeout(() => {
      if (exited()) return;
      if (!this.closing) this.log.error({ grpc: this.label }, `gRPC ${this.label}: the process ${why}; terminating it`);
      run.conn.lost(`the service process ${why}`);
      run.child.kill('SIGTERM');
    }, EXIT_REASON_WAIT_MS);
    void run.exited.then(() => clearTimeout(timer));
  }

  private scheduleRestart(previous: Run): void {
    if (Date.now() - previous.started >= RESTART_MAX_DELAY_MS) this.delay = RESTART_MIN_DELAY_MS;
    const delay = this.delay;
    this.delay = Math.min(this.delay * 2, RESTART_MAX_DELAY_MS);
    this.timer = setTimeout(() => {
      if (this.closing) return;
      const run = this.spawn();
      this.run = run;
      run.conn.init().then(
        (services) => {
          if (this.run !== run || this.closing) return;
          this.up = true;
          this.log.info({ grpc: this.label, services: services.map((s) => s.name) }, `gRPC ${this.label}: restarted`);
          this.onRestart(run.conn);
        },
        (e: unknown) => {
          if (this.run !== run || this.closing) return;
          this.log.error({ grpc: this.label, err: e }, `gRPC ${this.label}: Root.Init failed after a restart: ${describe(e)}`);
          this.broken(run, 'did not answer Root.Init');
        },
      );
    }, delay);
    this.timer.unref();
  }

  private async stop(run: Run): Promise<void> {
    run.conn.close();
    if (run.child.exitCode === null && run.child.signalCode === null) {
      run.child.kill('SIGTERM');
      const kill = setTimeout(() => {
        this.log.warn({ grpc: this.label }, `gRPC ${this.label}: no exit ${TERMINATE_GRACE_MS / 1000} s after SIGTERM; sending SIGKILL`);
        run.child.kill('SIGKILL');
      }, TERMINATE_GRACE_MS);
      await run.exited;
      clearTimeout(kill);
    } else {
      await Promise.race([run.exited, new Promise((r) => setTimeout(r, 100))]);
    }
    run.proxy.close();
    rmSync(run.dir, { recursive: true, force: true });
  }

  private logStderr(child: ChildProcess): void {
    let pending = '';
    let windowStart = Date.now();
    let lines = 0;
    let dropped = 0;
    const line = (text: string): void => {
      const now = Date.now();
      if (now - windowStart >= 1000) {
        if (dropped > 0) this.log.warn({ grpc: this.label, dropped }, `gRPC ${this.label}: ${dropped} lines of stderr were dropped (more than ${STDERR_LINES_PER_SECOND} a second)`);
        windowStart = now;
        lines = 0;
        dropped = 0;
      }
      if (++lines > STDERR_LINES_PER_SECOND) {
        dropped++;
        return;
      }
      this.log.error({ grpc: this.label, stderr: text.slice(0, STDERR_LINE_MAX) }, 'gRPC service stderr');
    };
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      pending += chunk;
      let i: number;
      while ((i = pending.indexOf('\n')) >= 0) {
        line(pending.slice(0, i));
        pending = pending.slice(i + 1);
      }
      if (pending.length > STDERR_LINE_MAX) {
        line(pending);
        pending = '';
      }
    });
    child.stderr!.on('end', () => {
      if (pending !== '') line(pending);
    });
  }
}

export function describe(e: unknown): string {
  const se = e as Partial<grpc.ServiceError>;
  if (typeof se.code === 'number') return `${grpc.status[se.code] ?? se.code}: ${se.details ?? se.message ?? ''}`;
  return e instanceof Error ? e.message : String(e);
}
