import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ExecutorError, InstanceStateError } from '../errors.js';
import type { Executor, ExecutorSnapshot, InstanceEvents, InstanceSpec, KillReason } from '../executor.js';
import { isValidBinding, parseStatus } from '../executor-checks.js';
import { internalFailure } from '../status.js';
import { MAX_PACKET_SIZE } from '../../abi/packet.js';
import { OUTPUT_WINDOW } from '../channel.js';
import { FrameDecoder, FrameError, corkedWrite, encodeFrame, quoteType, type Message } from './framing.js';
import {
  decodeSnapshot,
  encodeSpec,
  MAX_DEBUG_MESSAGE_BYTES,
  MAX_EXECUTOR_HEADER_BYTES,
  SNAPSHOT_EXTRA_BYTES,
} from './protocol.js';

/**
 * Packet bytes an instance may have sent and not had acknowledged: its output
 * window (PacketChannel), which a packet completed when the window had room
 * for only its last bytes may exceed by up to a packet.
 */
const MAX_UNACKED_OUTPUT = OUTPUT_WINDOW + 2 * MAX_PACKET_SIZE;

/** How long a killed instance may take to stop before its whole executor process is killed. */
const KILL_GRACE_MS = 5000;

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
}

/** How executor processes are started: by default node directly. */
export interface ExecutorLaunch {
  /** The command running `node ...nodeArgv`; `readable` are paths the process must be able to read. */
  command(nodeArgv: string[], readable?: string[]): LaunchCommand;
}

export interface ChildExecutorOptions {
  /** Node flags for the executor (e.g. --disable-wasm-trap-handler). */
  nodeArgs?: string[];
  sliceMs?: number;
  /** No instance's memory grows past this (see ExecutorCore); ExecutorPool sets it below the executor's own cap. */
  instanceMemoryCapBytes?: number;
  /** Starts the process inside a sandbox (ExecutorPool does this); default: plain node. */
  launch?: ExecutorLaunch;
  /** The executor's main module; only tests replace it (e.g. with a probe of the sandbox). */
  main?: string;
  /** Told once when the process is gone (crash, kill, close), for logging. */
  onExit?(info: ExecutorExit): void;
}

/**
 * Runs instances in a separate Node process, started with an empty
 * environment, optionally inside a sandbox (`launch`). If the process dies,
 * its instances are reported KILLED.
 */
export class ChildProcessExecutor implements Executor {
  private readonly child: ChildProcess;
  /** Everything the executor sends is bounded before it is buffered (see payloadLimit). */
  private readonly decoder = new FrameDecoder({ maxHeaderBytes: MAX_EXECUTOR_HEADER_BYTES, maxPayloadBytes: (h) => this.payloadLimit(h) });
  private readonly instances = new Map<string, InstanceEvents>();
  /** Bytes of packets each running instance sent that the trusted side has not acknowledged yet. */
  private readonly unacked = new Map<string, number>();
  /** The most memory each instance created here (and not released) may have: bounds its snapshot. */
  private readonly memoryBytes = new Map<string, number>();
  private readonly loaded = new Set<string>();
  private readonly loading = new Map<number, { resolve(): void; reject(e: Error): void }>();
  private readonly killTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly snapshots = new Map<number, { id: string; resolve(s: ExecutorSnapshot): void; reject(e: Error): void }>();
  private seq = 0;
  private exited = false;
  private readonly ready: Promise<void>;
  /** Stopped instances kept for snapshots (until released). */
  private readonly retained = new Set<string>();
  private readonly onExit: ChildExecutorOptions['onExit'];
  private stderrTail = '';
  private closing = false;
  private pendingLoads = 0;
  private cleanup: Promise<void> = Promise.resolve();

  constructor(opts: ChildExecutorOptions = {}) {
    const main = opts.main ?? MAIN;
    // The environment stays empty: nothing of the server's leaks in, and
    // variables such as NODE_EXTRA_CA_CERTS would cost ~30 ms per start.
    const nodeArgv = [
      ...(opts.nodeArgs ?? []),
      main,
      ...(opts.sliceMs ? [`--slice-ms=${opts.sliceMs}`] : []),
      ...(opts.instanceMemoryCapBytes ? [`--instance-memory-cap=${Math.floor(opts.instanceMemoryCapBytes)}`] : []),
    ];
    const cmd: LaunchCommand = opts.launch ? opts.launch.command(nodeArgv, [dirname(main)]) : { file: process.execPath, args: nodeArgv };
    this.onExit = opts.onExit;
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
    let markReady!: () => void;
    let failReady!: (e: Error) => void;
    this.ready = new Promise((res, rej) => {
      markReady = res;
      failReady = rej;
    });
    // Nobody may be waiting yet when the process fails to start.
    this.ready.catch(() => undefined);
    this.child.stdout!.on('data', (chunk: Buffer) => {
      // Given up (e.g. after a malformed message): nothing more it says counts.
      if (this.exited) return;
      let messages: Message[];
      try {
        messages = this.decoder.push(chunk);
      } catch (e) {
        this.fail(`executor sent a malformed message: ${e instanceof Error ? e.message : e}`, true);
        return;
      }
      for (const m of messages) {
        if (this.exited) return;
        if (m.header.t === 'ready') markReady();
        else this.onMessage(m);
      }
    });
    this.child.stdin!.on('error', () => {});
    this.child.on('error', (e) => {
      failReady(new ExecutorError(`cannot start executor process: ${e.message}`));
      this.fail(`executor process error: ${e.message}`);
    });
    this.child.on('exit', (code, signal) => {
      // A sandboxed node killed by a signal is reported by bwrap as 128 + signal.
      const how = signal ?? (code !== null && code > 128 && code < 160 ? `code ${code}, signal ${code - 128}` : `code ${code}`);
      const last = this.stderrTail.trim().split('\n').pop();
      failReady(new ExecutorError(`executor process exited early (${how})${last ? `: ${last}` : ''}`));
      this.fail(this.closing ? 'executor closed' : `executor process exited (${how})`);
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Whether the process still serves (it has not exited or been given up). */
  get alive(): boolean {
    return !this.exited;
  }

  /** Instances running or retained here, and modules being loaded (what keeps this executor busy). */
  get load(): number {
    let n = this.instances.size + this.pendingLoads;
    for (const id of this.retained) if (!this.instances.has(id)) n++;
    return n;
  }

  /** Resolves once the process is ready for work (rejects if it failed to start). */
  started(): Promise<void> {
    return this.ready;
  }

  async loadModule(key: string, bytes: Uint8Array): Promise<void> {
    if (this.loaded.has(key)) return;
    // A launch in progress keeps the executor busy (see `load`).
    this.pendingLoads++;
    try {
      await this.ready;
      const seq = ++this.seq;
      await new Promise<void>((resolve, reject) => {
        this.loading.set(seq, { resolve, reject });
        this.send({ t: 'load', key, seq }, bytes);
      });
      this.loaded.add(key);
    } finally {
      this.pendingLoads--;
    }
  }

  hasModule(key: string): boolean {
    return this.loaded.has(key);
  }

  createInstance(spec: InstanceSpec, events: InstanceEvents): void {
    if (this.exited) {
      queueMicrotask(() => events.stopped(internalFailure('executor process is gone')));
      return;
    }
    if (this.instances.has(spec.id)) throw new InstanceStateError(`instance ${spec.id} is already running in this executor`);
    this.instances.set(spec.id, events);
    this.memoryBytes.set(spec.id, spec.memoryPages.maximum * 65536);
    if (spec.retain) this.retained.add(spec.id);
    const { header, payload } = encodeSpec(spec);
    this.send({ t: 'create', ...header }, payload);
  }

  snapshot(id: string): Promise<ExecutorSnapshot> {
    if (this.exited) return Promise.reject(new ExecutorError('executor process is gone'));
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.snapshots.set(seq, { id, resolve, reject });
      this.send({ t: 'snapshot', id, seq });
    });
  }

  release(id: string): void {
    this.retained.delete(id);
    if (!this.instances.has(id)) this.memoryBytes.delete(id);
    this.send({ t: 'release', id });
  }

  deliver(id: string, packet: Uint8Array): void {
    this.send({ t: 'deliver', id }, packet);
  }

  ack(id: string, bytes: number): void {
    const left = (this.unacked.get(id) ?? 0) - bytes;
    if (left > 0) this.unacked.set(id, left);
    else this.unacked.delete(id);
    this.send({ t: 'ack', id, bytes });
  }

  suspend(id: string): void {
    this.send({ t: 'suspend', id });
  }

  kill(id: string, reason?: KillReason): void {
    // A program that never reaches a check point (it should not happen:
    // every loop and call has one) cannot hold its executor forever.
    if (this.instances.has(id) && !this.killTimers.has(id)) {
      const timer = setTimeout(() => this.fail(`instance ${id} did not stop within ${KILL_GRACE_MS} ms of being killed`), KILL_GRACE_MS);
      timer.unref();
      this.killTimers.set(id, timer);
    }
    this.send(reason === undefined ? { t: 'kill', id } : { t: 'kill', id, trap: reason.trap, message: reason.message });
  }

  async close(): Promise<void> {
    if (this.exited) return this.cleanup;
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

  private send(header: Message['header'], payload?: Uint8Array | Uint8Array[]): void {
    if (this.exited) return;
    corkedWrite(this.child.stdin!, encodeFrame(header, payload));
  }

  private onMessage(m: Message): void {
    const h = m.header;
    if (h.t === 'loaded') {
      const pending = this.loading.get(Number(h.seq));
      this.loading.delete(Number(h.seq));
      if (typeof h.error === 'string') pending?.reject(new ExecutorError(`executor could not compile the module: ${h.error.slice(0, 1000)}`));
      else pending?.resolve();
      return;
    }
    if (h.t === 'snapshot') {
      const pending = this.snapshots.get(Number(h.seq));
      this.snapshots.delete(Number(h.seq));
      if (!pending) return;
      if (typeof h.error === 'string') {
        pending.reject(new InstanceStateError(h.error.slice(0, 1000)));
        return;
      }
      try {
        pending.resolve(decodeSnapshot(h, m.payload));
      } catch (e) {
        pending.reject(new ExecutorError(`executor sent an invalid snapshot: ${e instanceof Error ? e.message : e}`));
        this.fail('executor sent an invalid snapshot', true);
      }
      return;
    }
    const id = String(h.id);
    const ev = this.instances.get(id);
    if (!ev) return;
    switch (h.t) {
      case 'packet': {
        const packet = m.payload ?? new Uint8Array(0);
        // The executor stops a program's output at its window of unacknowledged packets.
        const unacked = (this.unacked.get(id) ?? 0) + packet.length;
        if (unacked > MAX_UNACKED_OUTPUT) {
          this.fail(`executor sent ${unacked} bytes of packets not yet acknowledged (at most ${MAX_UNACKED_OUTPUT})`, true);
          return;
        }
        this.unacked.set(id, unacked);
        ev.packet(packet);
        break;
      }
      case 'bind':
        if (!isValidBinding(h.code, h.name)) {
          this.fail('executor sent an invalid service binding', true);
          return;
        }
        ev.bind(h.code, h.name as string);
        break;
      case 'debug': {
        const dropped = h.dropped ?? 0;
        if (!Number.isSafeInteger(dropped) || (dropped as number) < 0) {
          this.fail('executor sent an invalid count of dropped debug output', true);
          return;
        }
        ev.debug(m.payload ?? new Uint8Array(0), dropped as number);
        break;
      }
      case 'stopped': {
        this.instances.delete(id);
        this.unacked.delete(id);
        if (!this.retained.has(id)) this.memoryBytes.delete(id);
        clearTimeout(this.killTimers.get(id));
        this.killTimers.delete(id);
        const status = parseStatus(h.status);
        if (!status) {
          ev.stopped(internalFailure('executor reported an invalid status'));
          this.fail('executor sent an invalid status', true);
          return;
        }
        const tf = h.trapFunction;
        ev.stopped(status, typeof tf === 'number' && Number.isInteger(tf) && tf >= 0 && tf <= 0xffffffff ? tf : undefined);
        break;
      }
      default:
        this.fail(`executor sent an unknown message type ${quoteType(h.t)}`, true);
    }
  }

  /**
   * The most payload a message with this header may legitimately carry;
   * throws (the executor is then given up) for a message nobody can send.
   */
  private payloadLimit(h: Message['header']): number {
    switch (h.t) {
      case 'ready':
      case 'loaded':
      case 'bind':
      case 'stopped':
        return 0;
      case 'packet':
        return MAX_PACKET_SIZE;
      case 'debug':
        return MAX_DEBUG_MESSAGE_BYTES;
      case 'snapshot': {
        const pending = this.snapshots.get(Number(h.seq));
        if (!pending) throw new FrameError('a snapshot that was not asked for');
        if (h.error !== undefined) return 0;
        return (this.memoryBytes.get(pending.id) ?? 0) + SNAPSHOT_EXTRA_BYTES;
      }
      default:
        throw new FrameError(`unknown message type ${quoteType(h.t)}`);
    }
  }

  private fail(reason: string, violation = false): void {
    if (!this.exited && this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    if (!this.exited) {
      try {
        this.onExit?.(violation ? { pid: this.child.pid, reason, violation } : this.closing ? { pid: this.child.pid, reason, closed: true } : { pid: this.child.pid, reason });
      } catch {
        // a logger's failure is not ours
      }
    }
    this.exited = true;
    this.retained.clear();
    for (const p of this.loading.values()) p.reject(new ExecutorError(reason));
    this.loading.clear();
    for (const p of this.snapshots.values()) p.reject(new ExecutorError(reason));
    this.snapshots.clear();
    this.memoryBytes.clear();
    this.unacked.clear();
    for (const t of this.killTimers.values()) clearTimeout(t);
    this.killTimers.clear();
    const lost = [...this.instances.values()];
    this.instances.clear();
    for (const ev of lost) ev.stopped(internalFailure(reason));
  }
}

export { parseStatus } from '../executor-checks.js';
