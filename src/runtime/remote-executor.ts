/**
 * The trusted side of an executor that runs elsewhere (a child process, a Web
 * Worker) and is not trusted: the bookkeeping of its instances, modules and
 * snapshots, and the checks of what it reports. A host subclass keeps only
 * its transport: it encodes and sends requests, and hands over the replies it
 * has decoded and checked as far as its own encoding requires.
 */
import { MAX_TRAP_FRAMES } from './trap-frames.js';
import { MAX_PACKET_SIZE } from '../abi/packet.js';
import { OUTPUT_WINDOW } from './channel.js';
import { ExecutorError, InstanceStateError } from './errors.js';
import { isValidBinding, parseStatus } from './executor-checks.js';
import type { Executor, ExecutorSnapshot, InstanceEvents, InstanceSpec, KillReason } from './executor.js';
import { internalFailure, State } from './status.js';
import type { RewindSource } from './rewind-copies.js';

/**
 * Packet bytes an instance may have sent and not had acknowledged: its output
 * window (PacketChannel), which a packet completed when the window had room
 * for only its last bytes may exceed by up to a packet.
 */
export const MAX_UNACKED_OUTPUT = OUTPUT_WINDOW + 2 * MAX_PACKET_SIZE;

/** How long a killed instance may take to stop before its whole executor is given up. */
export const KILL_GRACE_MS = 5000;

/**
 * Runs `fn` at the end of this turn of the event loop, after the I/O
 * callbacks of the turn (setImmediate where it exists): the requests of
 * several HTTP requests that arrived together leave in one write. Elsewhere
 * (a browser), after this task.
 */
const endOfTurn: (fn: () => void) => void =
  typeof (globalThis as { setImmediate?: unknown }).setImmediate === 'function'
    ? (fn) => void (globalThis as unknown as { setImmediate(f: () => void): unknown }).setImmediate(fn)
    : (fn) => queueMicrotask(fn);

/** How long a release may wait for a batch to go with (see RemoteExecutor.releases). */
export const RELEASE_DELAY_MS = 50;

/** A request to the executor, before the host encodes it. */
export type ExecutorRequest =
  | { t: 'load'; seq: number; key: string; bytes: Uint8Array; source: RewindSource | undefined }
  | { t: 'create'; spec: InstanceSpec }
  | { t: 'deliver'; id: string; packet: Uint8Array }
  | { t: 'ack'; id: string; bytes: number }
  | { t: 'suspend'; id: string }
  | { t: 'snapshot'; seq: number; id: string }
  | { t: 'release'; id: string }
  | { t: 'kill'; id: string; trap?: number; message?: string };

/** What the executor reports about one instance; fields are unchecked. */
export type InstanceReply =
  | { t: 'packet'; packet: unknown }
  | { t: 'bind'; code: unknown; name: unknown }
  | { t: 'debug'; data: unknown; dropped: unknown }
  | { t: 'stopped'; status: unknown; trapFrames?: unknown };

/** How a host names its executor in messages. */
export interface RemoteExecutorNames {
  /** Who sends in violation messages, e.g. "executor" ("executor sent an invalid status"). */
  sender: string;
  /** Why work is refused once the executor is gone, e.g. "executor process is gone". */
  gone: string;
}

export abstract class RemoteExecutor implements Executor {
  private readonly instances = new Map<string, InstanceEvents>();
  /** Bytes of packets each running instance sent that the trusted side has not acknowledged yet. */
  private readonly unacked = new Map<string, number>();
  /** The most memory each instance created here (and not released) may have: bounds its snapshot. */
  private readonly memoryBytes = new Map<string, number>();
  /** Stopped instances kept for snapshots (until released). */
  private readonly retained = new Set<string>();
  /**
   * Retained instances that stopped SUSPENDED: what is sent to them still
   * goes, also what was sent in the turn they stopped in (it belongs in
   * their snapshot's input: the service that sent it counts it as received).
   */
  private readonly suspendedRetained = new Set<string>();
  private readonly loaded = new Set<string>();
  private readonly loading = new Map<number, { resolve(): void; reject(e: Error): void }>();
  private readonly snapshots = new Map<number, { id: string; resolve(s: ExecutorSnapshot): void; reject(e: Error): void }>();
  private readonly killTimers = new Map<string, ReturnType<typeof setTimeout>>();
  /**
   * Requests of this turn of the event loop, sent together at its end. A
   * request about a running instance (`for`: its events when it was made) is
   * left out if that instance has stopped meanwhile: replies the trusted side
   * made to an instance's last packets, in the same turn as its end, would
   * only cost the executor a wake-up to ignore them.
   */
  private outbox: Array<{ m: ExecutorRequest; for?: InstanceEvents }> = [];
  /**
   * Releases not sent yet: nothing waits for one, so it goes with the next
   * batch (ahead of it: a create may reuse the id) or after RELEASE_DELAY_MS,
   * instead of waking the executor once more at the end of every call.
   */
  private releases: string[] = [];
  private releaseTimer: ReturnType<typeof setTimeout> | undefined;
  private seq = 0;
  private exited = false;
  protected readonly ready: Promise<void>;
  /** The executor said it is ready for work. */
  protected markReady!: () => void;
  /** The executor failed before it was ready. */
  protected failReady!: (e: Error) => void;

  constructor(private readonly names: RemoteExecutorNames) {
    this.ready = new Promise((res, rej) => {
      this.markReady = res;
      this.failReady = rej;
    });
    // Nobody may be waiting yet when the executor fails to start.
    this.ready.catch(() => undefined);
  }

  /** Encodes a request for the executor and sends it (nothing once the executor is gone). */
  protected abstract send(m: ExecutorRequest): void;

  /** Stops the transport and tells the host's owner why; called once, when the executor is given up. */
  protected abstract shutDown(reason: string, violation: boolean): void;

  /** Why debug output the executor reported is impossible (e.g. "invalid debug output"), or undefined if it is fine. */
  protected abstract invalidDebug(data: unknown, dropped: unknown): string | undefined;

  /** Whether the executor still serves (it has not exited or been given up). */
  get alive(): boolean {
    return !this.exited;
  }

  /** Instances running or retained here (what keeps this executor busy). */
  get load(): number {
    let n = this.instances.size;
    for (const id of this.retained) if (!this.instances.has(id)) n++;
    return n;
  }

  /** Resolves once the executor is ready for work (rejects if it failed to start). */
  started(): Promise<void> {
    return this.ready;
  }

  abstract loadModule(key: string, bytes: Uint8Array, source?: RewindSource): Promise<void>;

  hasModule(key: string): boolean {
    return this.loaded.has(key);
  }

  createInstance(spec: InstanceSpec, events: InstanceEvents): void {
    if (this.exited) {
      queueMicrotask(() => events.stopped(internalFailure(this.names.gone)));
      return;
    }
    if (this.instances.has(spec.id)) throw new InstanceStateError(`instance ${spec.id} is already running in this executor`);
    this.instances.set(spec.id, events);
    this.memoryBytes.set(spec.id, spec.memoryPages.maximum * 65536);
    if (spec.retain) this.retained.add(spec.id);
    this.post({ t: 'create', spec });
  }

  snapshot(id: string): Promise<ExecutorSnapshot> {
    if (this.exited) return Promise.reject(new ExecutorError(this.names.gone));
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.snapshots.set(seq, { id, resolve, reject });
      this.post({ t: 'snapshot', seq, id });
    });
  }

  release(id: string): void {
    // Only a retained instance is kept by the executor once it has stopped.
    const wasRetained = this.retained.delete(id);
    this.suspendedRetained.delete(id);
    if (!this.instances.has(id)) this.memoryBytes.delete(id);
    if (!wasRetained || this.exited) return;
    this.releases.push(id);
    if (this.releaseTimer === undefined) {
      this.releaseTimer = setTimeout(() => this.flush(true), RELEASE_DELAY_MS);
      (this.releaseTimer as { unref?(): void }).unref?.();
    }
  }

  deliver(id: string, packet: Uint8Array): void {
    // A running instance gets it, and so does a retained one that stopped
    // suspended (a service's reply still in flight then is in its snapshot's
    // input), also when it stops later in this turn: see flush.
    if (this.instances.has(id) || this.suspendedRetained.has(id)) this.post({ t: 'deliver', id, packet }, this.instances.get(id));
  }

  ack(id: string, bytes: number): void {
    const left = (this.unacked.get(id) ?? 0) - bytes;
    if (left > 0) this.unacked.set(id, left);
    else this.unacked.delete(id);
    this.postFor(id, { t: 'ack', id, bytes });
  }

  suspend(id: string): void {
    this.postFor(id, { t: 'suspend', id });
  }

  kill(id: string, reason?: KillReason): void {
    // A program that never reaches a check point (it should not happen:
    // every loop and call has one) cannot hold its executor forever.
    if (this.instances.has(id) && !this.killTimers.has(id)) {
      const timer = setTimeout(() => this.fail(`instance ${id} did not stop within ${KILL_GRACE_MS} ms of being killed`), KILL_GRACE_MS);
      (timer as { unref?(): void }).unref?.();
      this.killTimers.set(id, timer);
    }
    this.postFor(id, reason === undefined ? { t: 'kill', id } : { t: 'kill', id, trap: reason.trap, message: reason.message });
  }

  /** Queues a request for the end of this turn (see outbox). */
  private post(m: ExecutorRequest, forInstance?: InstanceEvents): void {
    if (this.outbox.length === 0) endOfTurn(() => this.flush());
    this.outbox.push({ m, for: forInstance });
  }

  /** Queues a request about a running instance; nothing if it is not running (it has stopped, or never ran here). */
  private postFor(id: string, m: ExecutorRequest): void {
    const ev = this.instances.get(id);
    if (ev !== undefined) this.post(m, ev);
  }

  /** Sends the outbox, with the releases ahead of it; releases alone go only when `releasesDue` (their delay is over). */
  private flush(releasesDue = false): void {
    const batch = this.outbox.filter(({ m, for: ev }) => ev === undefined || this.instances.get((m as { id: string }).id) === ev || (m.t === 'deliver' && this.suspendedRetained.has(m.id)));
    this.outbox = [];
    // A call's last packets are acknowledged in the turn it ends, and then released: that batch has only the release left.
    if (batch.length === 0 && !releasesDue) return;
    clearTimeout(this.releaseTimer);
    this.releaseTimer = undefined;
    const releases = this.releases;
    this.releases = [];
    try {
      for (const id of releases) this.send({ t: 'release', id });
      for (const { m } of batch) this.send(m);
    } catch (e) {
      // Nobody is on the stack to tell (this runs at the end of the turn): what was asked cannot be done.
      this.fail(`a request could not be sent to the ${this.names.sender}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  abstract close(): Promise<void>;

  /** Asks the executor to compile a module (once it is ready); resolves once it has. */
  protected async requestLoad(key: string, bytes: Uint8Array, source: RewindSource | undefined): Promise<void> {
    const seq = ++this.seq;
    await new Promise<void>((resolve, reject) => {
      this.loading.set(seq, { resolve, reject });
      this.post({ t: 'load', seq, key, bytes, source });
    });
    this.loaded.add(key);
  }

  /** The memory bound of the snapshot awaited under `seq`, or undefined if none is. */
  protected awaitedSnapshotMemory(seq: number): number | undefined {
    const pending = this.snapshots.get(seq);
    return pending && (this.memoryBytes.get(pending.id) ?? 0);
  }

  /** The executor compiled a module, or could not (`error`). */
  protected loadedReply(seq: unknown, error: unknown): void {
    const pending = this.loading.get(seq as number);
    this.loading.delete(seq as number);
    if (typeof error === 'string') pending?.reject(new ExecutorError(`executor could not compile the module: ${error.slice(0, 1000)}`));
    else pending?.resolve();
  }

  /**
   * The executor answered a snapshot request: `decode` checks the snapshot
   * (within the instance's memory bound) and throws an Error that says why
   * it is invalid. False if no snapshot was awaited under `seq`.
   */
  protected snapshotReply(seq: unknown, error: unknown, decode: (maxMemoryBytes: number) => ExecutorSnapshot): boolean {
    const pending = this.snapshots.get(seq as number);
    this.snapshots.delete(seq as number);
    if (!pending) return false;
    if (typeof error === 'string') {
      pending.reject(new InstanceStateError(error.slice(0, 1000)));
      return true;
    }
    try {
      pending.resolve(decode(this.memoryBytes.get(pending.id) ?? 0));
    } catch (e) {
      pending.reject(e as Error);
      this.violation('an invalid snapshot');
    }
    return true;
  }

  /** The executor reported on an instance; ignored once the instance is gone. */
  protected instanceReply(rawId: unknown, m: InstanceReply): void {
    const id = String(rawId);
    const ev = this.instances.get(id);
    if (!ev) return;
    switch (m.t) {
      case 'packet': {
        if (!(m.packet instanceof Uint8Array) || m.packet.length > MAX_PACKET_SIZE) return this.violation('an invalid packet');
        // The executor stops a program's output at its window of unacknowledged packets.
        const unacked = (this.unacked.get(id) ?? 0) + m.packet.length;
        if (unacked > MAX_UNACKED_OUTPUT) return this.violation(`${unacked} bytes of packets not yet acknowledged (at most ${MAX_UNACKED_OUTPUT})`);
        this.unacked.set(id, unacked);
        ev.packet(m.packet);
        return;
      }
      case 'bind':
        if (!isValidBinding(m.code, m.name)) return this.violation('an invalid service binding');
        ev.bind(m.code, m.name as string);
        return;
      case 'debug': {
        const invalid = this.invalidDebug(m.data, m.dropped);
        if (invalid !== undefined) return this.violation(invalid);
        ev.debug(m.data as Uint8Array, m.dropped as number);
        return;
      }
      case 'stopped': {
        this.instances.delete(id);
        this.unacked.delete(id);
        if (!this.retained.has(id)) this.memoryBytes.delete(id);
        clearTimeout(this.killTimers.get(id));
        this.killTimers.delete(id);
        const status = parseStatus(m.status);
        if (!status) {
          ev.stopped(internalFailure('executor reported an invalid status'));
          return this.violation('an invalid status');
        }
        if (status.state === State.Suspended && this.retained.has(id)) this.suspendedRetained.add(id);
        // Where it trapped, for the debugger and logs; anything else than (function, offset) pairs is left out.
        const tf = m.trapFrames;
        const valid =
          Array.isArray(tf) &&
          tf.length % 2 === 0 &&
          tf.length <= 2 * MAX_TRAP_FRAMES &&
          tf.every((x, i) => typeof x === 'number' && Number.isInteger(x) && x >= (i % 2 ? -1 : 0) && x <= 0xffffffff);
        ev.stopped(status, valid && tf.length ? (tf as number[]) : undefined);
        return;
      }
    }
  }

  /** Gives the executor up for sending something impossible (`what`, e.g. "an invalid status"). */
  protected violation(what: string): void {
    this.fail(`${this.names.sender} sent ${what}`, true);
  }

  /** Gives the executor up: everything pending fails and its instances end KILLED (INTERNAL). */
  protected fail(reason: string, violation = false): void {
    if (!this.exited) {
      this.exited = true;
      this.shutDown(reason, violation);
    }
    this.retained.clear();
    this.suspendedRetained.clear();
    for (const p of this.loading.values()) p.reject(new ExecutorError(reason));
    this.loading.clear();
    for (const p of this.snapshots.values()) p.reject(new ExecutorError(reason));
    this.snapshots.clear();
    this.memoryBytes.clear();
    this.unacked.clear();
    for (const t of this.killTimers.values()) clearTimeout(t);
    this.killTimers.clear();
    clearTimeout(this.releaseTimer);
    this.releaseTimer = undefined;
    this.releases = [];
    this.outbox = [];
    const lost = [...this.instances.values()];
    this.instances.clear();
    for (const ev of lost) ev.stopped(internalFailure(reason));
  }
}
