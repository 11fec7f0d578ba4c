import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ExecutorError } from '../errors.js';
import type { CpuPriority } from './sandbox/cgroup.js';
import { RemoteExecutor, type ExecutorRequest } from '../remote-executor.js';
import type { RewindSource } from '../rewind-copies.js';
import { MAX_PACKET_SIZE } from '../../abi/packet.js';
import { FrameDecoder, FrameError, corkedWrite, encodeFrame, quoteType, type Message } from './framing.js';
import {
  decodeSnapshot,
  encodeSpec,
  rewindSourceHeader,
  MAX_DEBUG_MESSAGE_BYTES,
  MAX_EXECUTOR_HEADER_BYTES,
  SNAPSHOT_EXTRA_BYTES,
} from './protocol.js';

const MAIN = fileURLToPath(new URL('./executor-main.js', import.meta.url));

/** Why an executor process is gone. */
export interface ExecutorExit {
  pid?: number;
  reason: string;
  /** It broke the protocol (a malformed or impossible message) and was killed for it: it may have been taken over. */
  violation?: boolean;
  /** It was closed on purpose (idle, or the pool closing): nothing went wrong. */
  closed?: boolean;
}

/** A command that starts an executor process (see sandbox/sandbox.ts). */
export interface LaunchCommand {
  file: string;
  args: string[];
  /** Descriptors the process gets as fds 3, 4, ...; closed here once it is started. */
  fds?: number[];
  /** Called once the process has exited (e.g. to remove its cgroup); close() waits for it. */
  exited?(): void | Promise<void>;
  /** Where the launch holds the process's CPU priority from outside (a cpu cgroup). */
  cpu?: CpuPriority;
}

/** The CPU priority an executor is started at. */
export interface LaunchPriority {
  /** Nice steps below the server's (the executor lowers itself by as much too, but what the launch holds from outside counts). */
  nice?: number;
  /** Where the launch holds the priority from outside: idle until ChildProcessExecutor.activate (a spare nobody waits for yet). */
  idle?: boolean;
}

/** How executor processes are started: by default node directly. */
export interface ExecutorLaunch {
  /** The command running `node ...nodeArgv`; `readable` are paths the process must be able to read. */
  command(nodeArgv: string[], readable?: string[], cpu?: LaunchPriority): LaunchCommand;
}

export interface ChildExecutorOptions {
  /** Node flags for the executor (e.g. --disable-wasm-trap-handler). */
  nodeArgs?: string[];
  sliceMs?: number;
  /** No instance's memory grows past this (see ExecutorCore); ExecutorPool sets it below the executor's own cap. */
  instanceMemoryCapBytes?: number;
  /** Starts the process inside a sandbox (ExecutorPool does this); default: plain node. */
  launch?: ExecutorLaunch;
  /** Nice steps the process lowers its CPU priority by, at start (default 0: the server's). */
  nice?: number;
  /**
   * Once an instance has had this much CPU (ms), the process lowers its priority to the lowest and reports it (`demoted`);
   * where the launch holds the priority from outside, it goes idle there too. Default: never.
   */
  demoteAfterMs?: number;
  /**
   * Started before anyone needs it (ExecutorPool's replacement of a demoted executor): where the launch holds the
   * priority from outside, it starts idle, so that its start costs nobody CPU, until `activate`.
   */
  spare?: boolean;
  /** The executor's main module; only tests replace it (e.g. with a probe of the sandbox). */
  main?: string;
  /** Told once when the process reports that it is demoted (see demoteAfterMs). */
  onDemoted?(): void;
  /** Told once when the process is gone (crash, kill, close), for logging. */
  onExit?(info: ExecutorExit): void;
}

/**
 * Runs instances in a separate Node process, started with an empty
 * environment, optionally inside a sandbox (`launch`). If the process dies,
 * its instances are reported KILLED.
 */
export class ChildProcessExecutor extends RemoteExecutor {
  private readonly child: ChildProcess;
  /** Its CPU priority, where the launch holds it from outside. */
  private readonly cpu: CpuPriority | undefined;
  /** Started idle as a spare, not yet activated. */
  private idleSpare: boolean;
  /** Everything the executor sends is bounded before it is buffered (see payloadLimit). */
  private readonly decoder = new FrameDecoder({ maxHeaderBytes: MAX_EXECUTOR_HEADER_BYTES, maxPayloadBytes: (h) => this.payloadLimit(h) });
  private readonly onExit: ChildExecutorOptions['onExit'];
  private stderrTail = '';
  private closing = false;
  private pendingLoads = 0;
  private cleanup: Promise<void> = Promise.resolve();

  constructor(opts: ChildExecutorOptions = {}) {
    super({ sender: 'executor', gone: 'executor process is gone' });
    const main = opts.main ?? MAIN;
    // The environment stays empty: nothing of the server's leaks in, and
    // variables such as NODE_EXTRA_CA_CERTS would cost ~30 ms per start.
    const nodeArgv = [
      ...(opts.nodeArgs ?? []),
      main,
      ...(opts.sliceMs ? [`--slice-ms=${opts.sliceMs}`] : []),
      ...(opts.instanceMemoryCapBytes ? [`--instance-memory-cap=${Math.floor(opts.instanceMemoryCapBytes)}`] : []),
      ...(opts.nice ? [`--nice=${Math.floor(opts.nice)}`] : []),
      ...(opts.demoteAfterMs ? [`--demote-after-ms=${Math.ceil(opts.demoteAfterMs)}`] : []),
    ];
    const cmd: LaunchCommand = opts.launch ? opts.launch.command(nodeArgv, [dirname(main)], { nice: opts.nice, idle: opts.spare }) : { file: process.execPath, args: nodeArgv };
    this.onExit = opts.onExit;
    this.cpu = cmd.cpu;
    this.idleSpare = opts.spare === true && cmd.cpu !== undefined;
    const onDemoted = opts.onDemoted;
    try {
      this.child = spawn(cmd.file, cmd.args, {
        // Its own session and process group: a terminal's Ctrl-C and Ctrl-\ (sent to the
        // foreground group) reach only us, and we stop or suspend its instances in order.
        detached: true,
        env: {},
        stdio: ['pipe', 'pipe', 'pipe', ...(cmd.fds ?? [])],
      });
    } finally {
      for (const fd of cmd.fds ?? []) closeSync(fd);
    }
    if (cmd.exited) {
      const exited = cmd.exited;
      this.cleanup = new Promise((res) => this.child.once('exit', () => void Promise.resolve(exited()).catch(() => undefined).then(res)));
    }
    // The executor's stderr carries untrusted text (runtime errors): pass it
    // on as sanitised lines, within a budget.
    let stderrBudget = 64 * 1024;
    this.child.stderr!.on('data', (chunk: Buffer) => {
      if (stderrBudget <= 0) return;
      const text = chunk.toString('utf8', 0, Math.min(chunk.length, stderrBudget)).replace(/[^\t\n\x20-\x7e]/g, '?');
      stderrBudget -= chunk.length;
      this.stderrTail = (this.stderrTail + text).slice(-300);
      process.stderr.write(text.replace(/^/gm, 'executor: '));
    });
    this.child.stdout!.on('data', (chunk: Buffer) => {
      // Given up (e.g. after a malformed message): nothing more it says counts.
      if (!this.alive) return;
      let messages: Message[];
      try {
        messages = this.decoder.push(chunk);
      } catch (e) {
        this.fail(`executor sent a malformed message: ${e instanceof Error ? e.message : e}`, true);
        return;
      }
      for (const m of messages) {
        if (!this.alive) return;
        if (m.header.t === 'ready') this.markReady();
        else if (m.header.t === 'demoted') {
          if (!this.demoted) {
            this.demoted = true;
            this.idleSpare = false;
            this.cpu?.idle();
            onDemoted?.();
          }
        } else this.onMessage(m);
      }
    });
    this.child.stdin!.on('error', () => {});
    this.child.on('error', (e) => {
      this.failReady(new ExecutorError(`cannot start executor process: ${e.message}`));
      this.fail(`executor process error: ${e.message}`);
    });
    this.child.on('exit', (code, signal) => {
      // A sandboxed node killed by a signal is reported by bwrap as 128 + signal.
      const how = signal ?? (code !== null && code > 128 && code < 160 ? `code ${code}, signal ${code - 128}` : `code ${code}`);
      const last = this.stderrTail.trim().split('\n').pop();
      this.failReady(new ExecutorError(`executor process exited early (${how})${last ? `: ${last}` : ''}`));
      this.fail(this.closing ? 'executor closed' : `executor process exited (${how})`);
    });
  }

  /**
   * It runs at the lowest CPU priority now, because one of its instances
   * computed long (ChildExecutorOptions.demoteAfterMs). Only the executor
   * says so: a lying one costs at most another process (ExecutorPool bounds them).
   */
  demoted = false;

  /** A spare started idle (ChildExecutorOptions.spare) gets its priority: someone is about to use it. */
  activate(): void {
    if (!this.idleSpare || this.demoted) return;
    this.idleSpare = false;
    this.cpu?.active();
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Instances running or retained here, and modules being loaded (what keeps this executor busy). */
  override get load(): number {
    return super.load + this.pendingLoads;
  }

  async loadModule(key: string, bytes: Uint8Array, source?: RewindSource): Promise<void> {
    if (this.hasModule(key)) return;
    // A launch in progress keeps the executor busy (see `load`).
    this.pendingLoads++;
    try {
      await this.ready;
      await this.requestLoad(key, bytes, source);
    } finally {
      this.pendingLoads--;
    }
  }

  async close(): Promise<void> {
    if (!this.alive) return this.cleanup;
    this.closing = true;
    const exited = new Promise<void>((res) => this.child.once('exit', () => res()));
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(timer);
    await this.cleanup;
  }

  /** Kills the executor process at once (all its instances end KILLED). */
  terminate(): void {
    this.child.kill('SIGKILL');
  }

  protected send(m: ExecutorRequest): void {
    if (!this.alive) return;
    switch (m.t) {
      case 'load':
        return corkedWrite(this.child.stdin!, encodeFrame(m.source ? { t: 'load', key: m.key, seq: m.seq, source: rewindSourceHeader(m.source) } : { t: 'load', key: m.key, seq: m.seq }, m.source ? [m.bytes, m.source.module] : m.bytes));
      case 'create': {
        const { header, payload } = encodeSpec(m.spec);
        return corkedWrite(this.child.stdin!, encodeFrame({ t: 'create', ...header }, payload));
      }
      case 'deliver':
        return corkedWrite(this.child.stdin!, encodeFrame({ t: 'deliver', id: m.id }, m.packet));
      default:
        return corkedWrite(this.child.stdin!, encodeFrame(m));
    }
  }

  private onMessage(m: Message): void {
    const h = m.header;
    switch (h.t) {
      case 'loaded':
        return this.loadedReply(Number(h.seq), h.error);
      case 'snapshot':
        // payloadLimit refused a snapshot nobody asked for; a second reply to one request in the same chunk is ignored.
        this.snapshotReply(Number(h.seq), h.error, () => {
          try {
            return decodeSnapshot(h, m.payload);
          } catch (e) {
            throw new ExecutorError(`executor sent an invalid snapshot: ${e instanceof Error ? e.message : e}`);
          }
        });
        return;
      case 'packet':
        return this.instanceReply(h.id, { t: 'packet', packet: m.payload ?? new Uint8Array(0) });
      case 'bind':
        return this.instanceReply(h.id, { t: 'bind', code: h.code, name: h.name });
      case 'debug':
        return this.instanceReply(h.id, { t: 'debug', data: m.payload ?? new Uint8Array(0), dropped: h.dropped ?? 0 });
      case 'stopped':
        return this.instanceReply(h.id, { t: 'stopped', status: h.status, trapFrames: h.trapFrames });
      default:
        // Unreachable: payloadLimit refuses unknown types.
        this.violation(`an unknown message type ${quoteType(h.t)}`);
    }
  }

  /** Payloads are bounded by payloadLimit; only the count of dropped bytes is left to check. */
  protected invalidDebug(_data: unknown, dropped: unknown): string | undefined {
    return Number.isSafeInteger(dropped) && (dropped as number) >= 0 ? undefined : 'an invalid count of dropped debug output';
  }

  /**
   * The most payload a message with this header may legitimately carry;
   * throws (the executor is then given up) for a message nobody can send.
   */
  private payloadLimit(h: Message['header']): number {
    switch (h.t) {
      case 'ready':
      case 'demoted':
      case 'loaded':
      case 'bind':
      case 'stopped':
        return 0;
      case 'packet':
        return MAX_PACKET_SIZE;
      case 'debug':
        return MAX_DEBUG_MESSAGE_BYTES;
      case 'snapshot': {
        const memoryBytes = this.awaitedSnapshotMemory(Number(h.seq));
        if (memoryBytes === undefined) throw new FrameError('a snapshot that was not asked for');
        if (h.error !== undefined) return 0;
        return memoryBytes + SNAPSHOT_EXTRA_BYTES;
      }
      default:
        throw new FrameError(`unknown message type ${quoteType(h.t)}`);
    }
  }

  protected shutDown(reason: string, violation: boolean): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    try {
      this.onExit?.(violation ? { pid: this.child.pid, reason, violation } : this.closing ? { pid: this.child.pid, reason, closed: true } : { pid: this.child.pid, reason });
    } catch {
      // a logger's failure is not ours
    }
  }
}

export { parseStatus } from '../executor-checks.js';
