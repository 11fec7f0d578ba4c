/**
 * The server's instances: launching, the lifecycle actions of the API
 * (spec web-api.md §9, §13), and persistence. A persistent instance's state
 * lives in the executor while it runs and as a snapshot module in the
 * module store while it does not; its record in the inventory says which
 * snapshot is the latest and whether it was running, so that a restart or a
 * crash resumes it from there.
 */
import { State, statusOfSnapshot, transientEnd, type InstanceStatus } from '../runtime/status.js';
import type { DebugSink } from '../runtime/debug-log.js';
import type { Program } from '../runtime/program.js';
import type { TrapFrame } from '../runtime/backtrace.js';
import type { Runtime, RunningInstance, ServiceProvider } from '../runtime/runtime.js';
import { InstanceStateError } from '../runtime/errors.js';
import type { InstanceServices } from '../service/provider.js';
import { OriginClosedError, type AbortLike, type OriginInput, type OriginOutput } from '../service/origin.js';
import { DuplicateInstanceError } from '../store/errors.js';
import type { Inventory, InstanceRecord } from '../store/inventory.js';
import { conflict, HttpError, instanceNotFound } from './errors.js';
import { sha256Hex, type ModuleRegistry } from './modules.js';
import { debugResponseJson, newBreakpoints, readState, type DebugRequest } from './debug.js';
import { withBreakpoints } from '../snapshot/format.js';

export interface InstanceManagerDeps {
  inventory: Inventory;
  modules: ModuleRegistry;
  /** The runtime whose executor runs instances of this principal (undefined: anonymous). */
  /** The runtime of the executor for a principal's instance, or for an anonymous one of `group`. */
  runtimeFor(principal: string | undefined, group?: string): Runtime;
  /** `clientConnects`: see InstanceServicesOptions. */
  services(principal: string | undefined, scope: readonly string[] | undefined, clientConnects?: boolean): ServiceProvider<InstanceServices>;
  /** Where a program's debug output goes when it was launched with `log=*`. */
  debugSink(id: string): DebugSink;
  onError(message: string, error: unknown): void;
  /**
   * How often running persistent instances are checkpointed (their state
   * stored while they run on, clients staying connected), in milliseconds;
   * 0: never. Default DEFAULT_CHECKPOINT_INTERVAL_MS.
   */
  checkpointIntervalMs?: number;
  /** How long a request for an instance still being restored after a restart waits before 503 (default 10 s). */
  restoreWaitMs?: number;
  /** An instance trapped in a known function of its program (for the log). */
  onTrapped?(id: string, status: InstanceStatus, where: TrapLocation): void;
}

/** Where an instance trapped: a frame of its program (RunningInstance.trapLocation). */
export type TrapLocation = TrapFrame;

/** A crash loses at most about twice this much of an instance's work. */
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 30_000;

export interface LaunchRequest {
  /** undefined: anonymous (always transient, not addressable). */
  principal: string | undefined;
  scope?: readonly string[];
  module: string;
  program: Program;
  function?: string;
  id?: string;
  transient: boolean;
  /** Create the instance without running it (spec §7.4 `suspend`). */
  suspend: boolean;
  tags: string[];
  debugLog: boolean;
  /** Where this run's debug output goes when debugLog is set (default: the server's log). */
  debugSink?: DebugSink;
  /** Anonymous instances: the executor group to run in (default 'anonymous'). */
  executorGroup?: string;
  /**
   * A client connects to the program's origin as soon as this launch returns
   * (a call): the program's first accept is answered in the executor, ahead
   * (InstanceServicesOptions.clientConnects).
   */
  clientConnects?: boolean;
}

export interface CloneRequest {
  /** The copy's id (default: a new random UUID). */
  id?: string;
  /** Create the copy suspended. */
  suspend: boolean;
  /** The copy's instance tags (default: the original's). */
  tags?: string[];
  /** The request scope the copy runs with. */
  scope?: readonly string[];
}

/** Status as the API's JSON shows it: zero values omitted (spec §12). */
export function statusJson(s: InstanceStatus): Record<string, unknown> {
  const out: Record<string, unknown> = { state: s.state };
  if (s.cause) out.cause = s.cause;
  if (s.result && (s.state === State.Halted || s.state === State.Terminated)) out.result = s.result;
  if (s.error) out.error = s.error;
  return out;
}

/**
 * The status JSON for the `Gate-Status` header or trailer: ASCII only (an
 * error may name a function of the program, in any characters, and a header
 * takes Latin-1 at most), so everything else is escaped as JSON allows.
 */
export function statusHeader(s: InstanceStatus): string {
  return JSON.stringify(statusJson(s)).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export class ServerInstance {
  status: InstanceStatus;
  run: RunningInstance<InstanceServices> | undefined;
  /** Settles when the current run has stopped and its state is stored. */
  settled: Promise<void> = Promise.resolve();
  /** Hash of the latest stored snapshot, if any. */
  snapshot: string | undefined;
  /** Resume this instance when the server starts again (it was running when the server stopped). */
  resumeOnRestart = false;
  /** The request scope of the latest launch or resume, for automatic restores. */
  scope: readonly string[] | undefined;
  /** Restores after executor deaths (bounded, so that a program that kills its executor cannot loop). */
  crashRestores = 0;
  /** The module's program, when known in memory (launch, not restore). */
  program: Program | undefined;
  /** The client's debug log for the first run (a websocket call); later runs log to the server. */
  debugSink: DebugSink | undefined;
  /** Anonymous instances: which executor group they run in. */
  executorGroup: string | undefined;
  /** When its stored state was last brought up to date with its run (ms since the epoch; 0: never). */
  checkpointed = 0;
  /** Set while the instance waits to be restored after a restart (requests for it wait). */
  restoring: Deferred | undefined;
  /** Why its state could not be stored when its latest run stopped (undefined: it was stored). */
  storeError: unknown;
  /** Where the latest run trapped, innermost frame first, when it did and the engine said (not persisted). */
  trapBacktrace: TrapFrame[] | undefined;
  /** Debugger breakpoints (docs/debugging.md); undefined: not known yet (restored record, read from its snapshot when needed). */
  breakpoints: readonly bigint[] | undefined;
  /** Given up to another server of the cluster (docs/cluster.md): its run is not stored here any more. */
  relinquished = false;
  /** Operations that change the run are serialised through this chain. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly principal: string | undefined,
    readonly id: string,
    readonly module: string,
    public transient: boolean,
    public tags: string[],
    public fn: string | undefined,
    public debugLog: boolean,
    status: InstanceStatus,
    readonly created = Date.now(),
  ) {
    this.status = status;
  }

  info(): Record<string, unknown> {
    const out: Record<string, unknown> = { instance: this.id, module: this.module, status: statusJson(this.status) };
    if (this.transient) out.transient = true;
    if (this.tags.length) out.tags = this.tags;
    if (this.breakpoints?.length) out.debugging = true;
    return out;
  }

  record(): InstanceRecord {
    return {
      principal: this.principal!,
      id: this.id,
      module: this.module,
      transient: this.transient,
      status: { ...this.status },
      tags: this.tags,
      function: this.fn,
      snapshot: this.snapshot,
      running: this.run !== undefined || this.resumeOnRestart,
      debugLog: this.debugLog,
      created: this.created,
      updated: Date.now(),
    };
  }

  serialize<T>(op: () => Promise<T>): Promise<T> {
    const next = this.queue.then(op, op);
    this.queue = next.catch(() => undefined);
    return next;
  }
}

/** Instances suspended and stored at the same time during a shutdown. */
const SHUTDOWN_PARALLEL = 16;

export interface ShutdownProgress {
  /** Persistent instances that were running when the shutdown began. */
  total: number;
  /** Of those, how many have been suspended and stored. */
  stored: number;
  /** Ids of those whose state could not be stored (they continue from their previous checkpoint). */
  failed: string[];
}

/** Instances checkpointed at the same time by a periodic sweep. */
const CHECKPOINT_PARALLEL = 4;

/** Instances restored at the same time after a restart. */
const RESTORE_PARALLEL = 16;
/** How long a request for an instance still being restored waits before it gets 503. */
const RESTORE_WAIT_MS = 10_000;
const RETRY_AFTER_S = 2;

/** A promise with its resolve function. */
class Deferred {
  resolve!: () => void;
  readonly promise = new Promise<void>((r) => (this.resolve = r));
}

/** How often one instance is restored after its executor died. */
const MAX_CRASH_RESTORES = 3;

export class InstanceManager {
  private readonly owned = new Map<string, Map<string, ServerInstance>>();
  private readonly anonymous = new Set<ServerInstance>();
  private closing = false;
  private readonly stopProgress: ShutdownProgress = { total: 0, stored: 0, failed: [] };
  /** Instances found running by loadAll, not yet restored. */
  private readonly toRestore: ServerInstance[] = [];
  private restoringAll: Promise<{ restored: number; failed: number }> | undefined;

  private readonly checkpointTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;

  constructor(private readonly deps: InstanceManagerDeps) {
    const interval = deps.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
    if (interval > 0) {
      this.checkpointTimer = setInterval(() => void (this.sweeping ??= this.sweep(interval).finally(() => (this.sweeping = undefined))), interval);
      this.checkpointTimer.unref();
    }
  }

  get(principal: string, id: string): ServerInstance {
    const inst = this.owned.get(principal)?.get(id);
    if (!inst) throw instanceNotFound();
    return inst;
  }

  /** Whether the principal has instance `id` and it is not running. */
  stoppedInstance(principal: string, id: string): boolean {
    const inst = this.owned.get(principal)?.get(id);
    return inst !== undefined && inst.run === undefined && inst.restoring === undefined;
  }

  list(principal: string): ServerInstance[] {
    return [...(this.owned.get(principal)?.values() ?? [])];
  }

  /** Instances currently running, for metrics. */
  get runningCount(): number {
    let n = this.anonymous.size;
    for (const m of this.owned.values()) for (const i of m.values()) if (i.run) n++;
    return n;
  }

  async launch(req: LaunchRequest): Promise<ServerInstance> {
    if (this.closing) throw new HttpError(503, 'service unavailable');
    const transient = req.principal === undefined || req.transient;
    const id = req.id ?? globalThis.crypto.randomUUID();
    if (req.principal !== undefined && this.owned.get(req.principal)?.has(id)) throw conflict('duplicate instance id');
    // Entry problems are the client's (404), found before anything is created.
    const entry = req.program.entry(req.function);
    const initial = req.suspend ? stoppedStateOf(req.program, entry) : { state: State.Running };
    const inst = new ServerInstance(req.principal, id, req.module, transient, req.tags, req.function, req.debugLog, initial);
    inst.program = req.program;
    inst.breakpoints = req.program.snapshot?.breakpoints ?? [];
    inst.debugSink = req.debugSink;
    inst.executorGroup = req.executorGroup;
    this.add(inst);
    this.deps.modules.acquire(inst.module);
    try {
      if (!transient) {
        await this.deps.modules.store(inst.module, [req.program.bytes]);
        try {
          await this.deps.inventory.createInstance(inst.record());
        } catch (e) {
          if (e instanceof DuplicateInstanceError) throw conflict('duplicate instance id');
          throw e;
        }
      }
      // No checkpoint at launch: start() records it as running from its
      // module, which is what a crash before the first periodic checkpoint
      // brings it back RUNNING from (a checkpoint now would only pause a
      // program that has not run yet, at the cost of a snapshot per launch).
      if (!req.suspend) await this.start(inst, req.program, req.scope, req.function, req.clientConnects);
      else if (!transient) await this.save(inst);
    } catch (e) {
      this.remove(inst);
      if (!transient && !(e instanceof HttpError && e.status === 409)) await this.deps.inventory.deleteInstance(inst.principal!, id).catch(() => undefined);
      await this.deps.modules.releaseUse(inst.module);
      throw e;
    }
    return inst;
  }

  /** Blocks until the instance is not running (and its state is stored). */
  async wait(inst: ServerInstance): Promise<InstanceStatus> {
    while (inst.run) {
      await inst.run.wait();
      await inst.settled;
    }
    await inst.settled;
    return inst.status;
  }

  kill(inst: ServerInstance): void {
    inst.run?.kill();
  }

  /** Requests suspension and makes the instance persistent (spec §9.2). */
  async suspend(inst: ServerInstance): Promise<void> {
    if (inst.transient && inst.principal !== undefined) await this.persist(inst);
    if (inst.run && inst.run.status.state === State.Running) inst.run.suspend();
  }

  async resume(inst: ServerInstance, fn: string | undefined, debugLog: boolean, scope?: readonly string[]): Promise<void> {
    return inst.serialize(async () => {
      await inst.settled;
      const state = inst.status.state;
      if (inst.run || (state !== State.Suspended && state !== State.Halted)) throw conflict('instance must be suspended or halted');
      if (state === State.Suspended && fn !== undefined) throw conflict('function specified for suspended instance');
      if (state === State.Halted && fn === undefined) throw conflict('function must be specified when resuming halted instance');
      inst.debugLog = debugLog;
      const program = await this.programOf(inst);
      if (fn !== undefined) inst.fn = fn;
      await this.start(inst, program, scope, inst.snapshot ? fn : inst.fn);
    });
  }

  /**
   * Stores the instance's state as a module (spec snapshot.md §1): a running
   * instance is checkpointed (its clients stay connected), or, if it cannot
   * be, suspended for it and resumed afterwards. Returns its hash.
   */
  async snapshot(inst: ServerInstance, scope?: readonly string[]): Promise<string> {
    return inst.serialize(async () => {
      if (inst.run?.status.state === State.Running) {
        if (inst.transient) await this.persist(inst);
        if ((await this.checkpointNow(inst)) && inst.snapshot) return inst.snapshot;
      }
      let resume = false;
      if (inst.run) {
        if (inst.run.status.state === State.Running) {
          resume = true;
          if (inst.transient) await this.persist(inst);
          inst.run.suspend();
        }
        await this.wait(inst);
      }
      if (!inst.snapshot) {
        // Never ran (launched suspended, or transient and stopped): run it
        // just far enough to be suspended, which stores its state.
        if (inst.run) throw conflict('instance must not be running');
        const program = await this.programOf(inst);
        await this.start(inst, program, scope, inst.fn);
        const run = inst.run as RunningInstance<InstanceServices> | undefined;
        if (run && run.status.state === State.Running) run.suspend();
        await this.wait(inst);
      }
      const hash = inst.snapshot;
      if (!hash) throw new HttpError(500, 'internal error');
      if (resume && inst.status.state === State.Suspended) {
        await this.start(inst, await this.programOf(inst), scope).catch((e: unknown) => this.deps.onError(`instance ${inst.id}: resume after snapshot failed`, e));
      }
      return hash;
    });
  }

  /**
   * Clones an instance in one step: its state now becomes a new persistent
   * instance of the same principal under a new id, and the original goes on
   * as it was. A running original is checkpointed (it runs on, its clients
   * stay connected); if it cannot be (a CPU budget, a service without
   * checkpoint support), a persistent one is suspended, stored and resumed,
   * and a transient one (a call) gets 409. A suspended or halted original
   * gives its latest snapshot. The copy starts from that state as a restore
   * does: its random pool is refilled and its services follow their restore
   * rules (docs/services.md), under its own id. It runs, unless `suspend` is
   * set or its state cannot run on (halted: resume it with a function).
   */
  async clone(inst: ServerInstance, req: CloneRequest): Promise<ServerInstance> {
    if (inst.principal === undefined) throw conflict('anonymous instances cannot be cloned');
    const source = await inst.serialize(() => this.cloneSource(inst));
    // Held in use until the copy's record refers to it, so that the original's next snapshot cannot remove it meanwhile.
    try {
      const program = await this.deps.modules.storedProgram(source.hash);
      if (!program) throw new InstanceStateError(`the stored state of instance ${inst.id} is missing (module ${source.hash})`);
      const stopped = stoppedStateOf(program, source.fn);
      return await this.launch({
        principal: inst.principal,
        scope: req.scope,
        module: source.hash,
        program,
        function: source.fn,
        id: req.id,
        transient: false,
        suspend: req.suspend || stopped.state !== State.Suspended,
        tags: req.tags ?? [...inst.tags],
        debugLog: inst.debugLog,
      });
    } finally {
      await this.deps.modules.releaseUse(source.hash);
    }
  }

  /** The state a clone starts from (a stored module, acquired for the caller), and the function to run when it never ran. */
  private async cloneSource(inst: ServerInstance): Promise<{ hash: string; fn?: string }> {
    const held = (hash: string, fn?: string): { hash: string; fn?: string } => {
      this.deps.modules.acquire(hash);
      return fn === undefined ? { hash } : { hash, fn };
    };
    const run = inst.run;
    if (run && run.status.state === State.Running) {
      const checkpointed = await this.checkpointForClone(inst, run);
      if (checkpointed) return held(checkpointed);
      if (inst.transient) throw conflict('a running call cannot be cloned now (it cannot be checkpointed, and suspending it would end the call): make it persistent first, or clone it when it is suspended');
      run.suspend();
      await this.wait(inst);
      const hash = inst.snapshot;
      if (!hash) throw new InstanceStateError(`instance ${inst.id}: its state could not be stored for the clone`);
      const source = held(hash);
      if (inst.status.state === State.Suspended) {
        await this.start(inst, await this.programOf(inst), inst.scope).catch((e: unknown) => this.deps.onError(`instance ${inst.id}: resume after clone failed`, e));
      }
      return source;
    }
    await this.wait(inst);
    const state = inst.status.state;
    if (state !== State.Suspended && state !== State.Halted) throw conflict('instance must be running, suspended or halted');
    if (inst.snapshot) return held(inst.snapshot);
    // Never ran (launched suspended): the copy starts from the module too.
    return held(inst.module, inst.fn);
  }

  /** A checkpoint of a running instance for a clone, stored as a module; undefined when it cannot be taken now. */
  private async checkpointForClone(inst: ServerInstance, run: RunningInstance<InstanceServices>): Promise<string | undefined> {
    // A persistent instance's checkpoint is also its latest state (as the snapshot action's is).
    if (!inst.transient) return (await this.checkpointNow(inst)) ? inst.snapshot : undefined;
    const bytes = await this.deps.runtimeFor(inst.principal, inst.executorGroup).checkpoint(run);
    if (!bytes) return undefined;
    const hash = sha256Hex([bytes]);
    await this.deps.modules.store(hash, [bytes]);
    return hash;
  }

  /**
   * Stores the state of a running persistent instance while it runs on
   * (Runtime.checkpoint: its clients stay connected), so that a crash of the
   * server resumes it from here. Returns whether a checkpoint was stored.
   * Failures are logged; the instance runs on either way.
   */
  checkpoint(inst: ServerInstance): Promise<boolean> {
    return inst.serialize(() => this.checkpointNow(inst));
  }

  private async checkpointNow(inst: ServerInstance): Promise<boolean> {
    const run = inst.run;
    if (!run || inst.transient || inst.principal === undefined || run.status.state !== State.Running || this.closing) return false;
    try {
      const bytes = await this.deps.runtimeFor(inst.principal).checkpoint(run);
      if (!bytes) return false;
      const hash = sha256Hex([bytes]);
      await this.deps.modules.store(hash, [bytes]);
      if (inst.run !== run || run.status.state !== State.Running) {
        // It stopped meanwhile and stored a newer state.
        if (inst.snapshot !== hash) await this.deps.modules.collect(hash);
        return false;
      }
      const previous = inst.snapshot;
      inst.snapshot = hash;
      inst.checkpointed = Date.now();
      await this.save(inst);
      if (previous && previous !== hash) await this.deps.modules.collect(previous);
      return true;
    } catch (e) {
      this.deps.onError(`instance ${inst.id}: checkpoint failed`, e);
      return false;
    }
  }

  /** Checkpoints the running persistent instances whose stored state is older than half an interval. */
  private async sweep(interval: number): Promise<void> {
    const due = Date.now() - interval / 2;
    const queue: ServerInstance[] = [];
    for (const m of this.owned.values()) for (const inst of m.values()) if (inst.run && !inst.transient && inst.checkpointed < due) queue.push(inst);
    const worker = async (): Promise<void> => {
      for (let inst = queue.shift(); inst && !this.closing; inst = queue.shift()) await this.checkpoint(inst);
    };
    await Promise.all(Array.from({ length: CHECKPOINT_PARALLEL }, worker));
  }

  async delete(inst: ServerInstance): Promise<void> {
    return inst.serialize(async () => {
      // A run that has ended but whose state is still being stored (the
      // list already shows it stopped) is waited for, not refused.
      if (inst.run && inst.run.status.state === State.Running) throw conflict('instance must not be running');
      await inst.settled;
      if (inst.run) throw conflict('instance must not be running');
      this.remove(inst);
      if (inst.principal !== undefined) await this.deps.inventory.deleteInstance(inst.principal, inst.id);
      if (inst.snapshot) await this.deps.modules.collect(inst.snapshot);
      await this.deps.modules.releaseUse(inst.module);
    });
  }

  async update(inst: ServerInstance, persist: boolean, tags: string[]): Promise<void> {
    if (tags.length && (tags.length !== inst.tags.length || tags.some((t, i) => t !== inst.tags[i]))) inst.tags = tags;
    if (persist && inst.transient) await this.persist(inst);
    else if (!inst.transient) await this.save(inst);
  }

  /** Loads the breakpoints of an instance restored from the inventory (they live in its snapshot), for InstanceInfo.debugging. */
  async loadBreakpoints(inst: ServerInstance): Promise<void> {
    if (inst.breakpoints !== undefined) return;
    try {
      inst.breakpoints = (await this.stateProgram(inst)).snapshot?.breakpoints ?? [];
    } catch (e) {
      this.deps.onError(`instance ${inst.id}: reading its breakpoints failed`, e);
    }
  }

  /**
   * The debug action (docs/debugging.md): CONFIG_GET at any time; the other
   * ops only while the instance is stopped (409 otherwise). A new breakpoint
   * configuration is written into the instance's latest snapshot (so it
   * travels with it) and used by its next run.
   */
  async debug(inst: ServerInstance, req: DebugRequest): Promise<Record<string, unknown>> {
    return inst.serialize(async () => {
      if (req.op !== 'CONFIG_GET') {
        if (inst.run || inst.status.state === State.Running) throw conflict('instance must be stopped');
        await inst.settled;
      }
      const program = await this.stateProgram(inst);
      const current = inst.breakpoints ?? program.snapshot?.breakpoints ?? [];
      const next = newBreakpoints(program, current, req);
      const read = readState(program, req, inst.trapBacktrace);
      if (next && (next.length !== current.length || next.some((b, i) => b !== current[i]))) {
        if (inst.snapshot) {
          const bytes = withBreakpoints(program.module, next);
          const hash = sha256Hex([bytes]);
          await this.deps.modules.store(hash, [bytes]);
          const previous = inst.snapshot;
          inst.snapshot = hash;
          await this.save(inst);
          if (previous !== hash) await this.deps.modules.collect(previous);
        }
        inst.breakpoints = next;
      } else inst.breakpoints = current;
      const out = debugResponseJson(inst.module, statusJson(inst.status), inst.breakpoints, read);
      return inst.trapBacktrace ? { ...out, trap: inst.trapBacktrace[0] } : out;
    });
  }

  /** Connects a client to the program's origin (spec §9.2 `io`); 409 when it cannot accept. */
  async connect(inst: ServerInstance, input: OriginInput, output: OriginOutput, signal?: AbortLike): Promise<void> {
    const run = inst.run;
    if (!run || run.status.state !== State.Running) throw new HttpError(409, '');
    await run.services.origin.connect(input, output, signal);
  }

  /** Whether this server has the instance in memory (a cluster forwards requests for others). */
  has(principal: string, id: string): boolean {
    return this.owned.get(principal)?.has(id) === true;
  }

  /** Whether any principal's instance here has this id. */
  hasId(id: string): boolean {
    for (const m of this.owned.values()) if (m.has(id)) return true;
    return false;
  }

  /** The persistent instances in memory (a cluster compares them with what it owns). */
  persistent(): ServerInstance[] {
    const out: ServerInstance[] = [];
    for (const m of this.owned.values()) for (const inst of m.values()) if (!inst.transient) out.push(inst);
    return out;
  }

  /**
   * Takes on a record another server gave up (a migration, a failover):
   * it becomes known here and, if it was running, continues from its latest
   * stored state; requests for it wait meanwhile. Idempotent.
   */
  async adopt(rec: InstanceRecord): Promise<void> {
    if (this.closing || this.has(rec.principal, rec.id)) return;
    const inst = this.known(rec);
    if (!inst.resumeOnRestart) return;
    this.toRestore.splice(this.toRestore.indexOf(inst), 1);
    try {
      await inst.serialize(async () => {
        try {
          await this.start(inst, await this.programOf(inst), undefined, inst.snapshot ? undefined : inst.fn);
        } catch (e) {
          inst.resumeOnRestart = false;
          inst.status = { state: State.Killed, cause: 'INTERNAL', error: 'could not be restored' };
          await this.save(inst).catch(() => undefined);
          this.deps.onError(`instance ${inst.id} could not be restored`, e);
        }
      });
    } finally {
      inst.restoring?.resolve();
      inst.restoring = undefined;
    }
  }

  /**
   * Forgets an instance another server owns now: a run here is killed
   * without storing anything (the record is the new owner's).
   */
  async relinquish(inst: ServerInstance): Promise<void> {
    inst.relinquished = true;
    inst.resumeOnRestart = false;
    if (inst.run) {
      inst.run.kill();
      await inst.run.wait().catch(() => undefined);
      await inst.settled.catch(() => undefined);
    }
    this.remove(inst);
    // The module stays: the record that refers to it is the new owner's.
    await this.deps.modules.releaseUse(inst.module).catch(() => undefined);
  }

  /**
   * Moves a persistent instance to another server (docs/cluster.md): a
   * running one is suspended and its state stored, marked to run on; then
   * `flip` changes the owner in the database. If it does not (the target went
   * away), a suspended run continues here. Returns whether it moved.
   */
  async handOver(inst: ServerInstance, flip: () => Promise<boolean>): Promise<boolean> {
    if (inst.transient) throw conflict('a call cannot be migrated: make it persistent first');
    const moved = await inst.serialize(async () => {
      let resume = false;
      if (inst.run) {
        resume = inst.run.status.state === State.Running;
        inst.resumeOnRestart = resume;
        if (resume) inst.run.suspend();
        await this.wait(inst);
        if (inst.storeError !== undefined) {
          inst.resumeOnRestart = false;
          if (resume && inst.status.state === State.Suspended) await this.start(inst, await this.programOf(inst), inst.scope);
          throw new HttpError(500, 'the instance could not be stored for the migration; it stays here', {}, { cause: inst.storeError });
        }
        // It may have ended by itself meanwhile: then it moves as it is.
        if (inst.status.state !== State.Suspended) resume = false;
        inst.resumeOnRestart = resume;
        await this.save(inst);
      }
      let flipped = false;
      try {
        flipped = await flip();
        // From here on it is the new owner's: operations queued behind this one must not run it here.
        if (flipped) inst.relinquished = true;
      } finally {
        if (!flipped) {
          inst.resumeOnRestart = false;
          if (resume) await this.start(inst, await this.programOf(inst), inst.scope);
        }
      }
      return flipped;
    });
    if (moved) await this.relinquish(inst);
    return moved;
  }

  /**
   * Makes the stored persistent instances known (before the server
   * listens, so that none is ever "not found"); those that were running are
   * then resumed by `restoreRunning`, and requests for them wait until then.
   */
  async loadAll(): Promise<void> {
    for (const rec of await this.deps.inventory.allPersistentInstances()) this.known(rec);
  }

  /** A stored record made known; one that was running is queued for restoring. */
  private known(rec: InstanceRecord): ServerInstance {
    const inst = new ServerInstance(rec.principal, rec.id, rec.module, false, rec.tags, rec.function, rec.debugLog ?? false, rec.status as InstanceStatus, rec.created);
    inst.snapshot = rec.snapshot;
    this.add(inst);
    this.deps.modules.acquire(inst.module);
    if (!rec.running) return inst;
    // Listed as RUNNING (its stored status says how it stopped) until the restore says otherwise.
    inst.status = { state: State.Running };
    inst.resumeOnRestart = true;
    inst.restoring = new Deferred();
    this.toRestore.push(inst);
    return inst;
  }

  /**
   * Resumes the instances loadAll found running (stopped by a shutdown or a
   * crash), from their latest snapshot, `RESTORE_PARALLEL` at a time. A
   * shutdown that begins meanwhile stops it; the rest stay marked as running
   * for the next start.
   */
  restoreRunning(scopeFor: (principal: string) => readonly string[] | undefined): Promise<{ restored: number; failed: number }> {
    this.restoringAll ??= (async () => {
      let restored = 0;
      let failed = 0;
      const restoreOne = async (inst: ServerInstance): Promise<void> => {
        try {
          await this.start(inst, await this.programOf(inst), scopeFor(inst.principal!), inst.snapshot ? undefined : inst.fn);
          restored++;
        } catch (e) {
          failed++;
          inst.resumeOnRestart = false;
          inst.status = { state: State.Killed, cause: 'INTERNAL', error: 'could not be restored' };
          await this.save(inst).catch(() => undefined);
          this.deps.onError(`instance ${inst.id} could not be restored`, e);
        }
      };
      const worker = async (): Promise<void> => {
        for (let inst = this.toRestore.shift(); inst; inst = this.toRestore.shift()) {
          if (this.closing) {
            // Not restored: it stays RUNNING in the inventory and is resumed on the next start.
            inst.restoring?.resolve();
            inst.restoring = undefined;
            continue;
          }
          await inst.serialize(() => restoreOne(inst));
          inst.restoring?.resolve();
          inst.restoring = undefined;
        }
      };
      await Promise.all(Array.from({ length: RESTORE_PARALLEL }, worker));
      return { restored, failed };
    })();
    return this.restoringAll;
  }

  /**
   * The instance, once it is restored: a request for one that is still
   * being restored after a restart waits for it (at most `waitMs`), then
   * gets 503 with Retry-After.
   */
  async ready(principal: string, id: string, waitMs = this.deps.restoreWaitMs ?? RESTORE_WAIT_MS): Promise<ServerInstance> {
    const inst = this.get(principal, id);
    const restoring = inst.restoring;
    if (!restoring) return inst;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((r) => (timer = setTimeout(() => r(true), waitMs)));
    const late = await Promise.race([restoring.promise.then(() => false), timedOut]);
    clearTimeout(timer);
    if (late) throw new HttpError(503, 'instance is being restored after a restart; retry', { 'Retry-After': String(RETRY_AFTER_S) });
    return this.get(principal, id);
  }

  /**
   * Server shutdown (spec §13): authenticated callers' instances are
   * suspended and stored to be resumed on the next start, anonymous ones
   * killed. Instances are suspended and stored in parallel, at most
   * `SHUTDOWN_PARALLEL` at a time (each holds its memory twice while it is
   * written out); there is no deadline: everything is stored, however long
   * it takes (see shutdownProgress for what a forced exit would lose).
   */
  async shutdown(): Promise<ShutdownProgress> {
    this.closing = true;
    clearInterval(this.checkpointTimer);
    await this.sweeping;
    // Restores already under way finish (and are stored again below); the rest are left for the next start.
    await this.restoringAll;
    const killing: Promise<unknown>[] = [];
    for (const inst of this.anonymous) {
      inst.run?.kill();
      if (inst.run) killing.push(inst.run.wait());
    }
    const queue: ServerInstance[] = [];
    for (const m of this.owned.values()) for (const inst of m.values()) if (inst.run) queue.push(inst);
    const progress = this.stopProgress;
    progress.total = queue.filter((i) => !i.transient).length;
    const stopOne = async (inst: ServerInstance): Promise<void> => {
      if (!inst.run) return;
      if (!inst.transient) inst.resumeOnRestart = true;
      if (inst.run.status.state === State.Running) inst.run.suspend();
      await this.wait(inst);
      if (inst.transient) return;
      if (inst.storeError === undefined) progress.stored++;
      else progress.failed.push(inst.id);
    };
    const worker = async (): Promise<void> => {
      for (let inst = queue.shift(); inst; inst = queue.shift()) await stopOne(inst).catch((e: unknown) => {
        progress.failed.push(inst!.id);
        this.deps.onError(`instance ${inst!.id}: stopping it failed`, e);
      });
    };
    await Promise.all([...Array.from({ length: SHUTDOWN_PARALLEL }, worker), Promise.allSettled(killing)]);
    return { ...progress, failed: [...progress.failed] };
  }

  /** How far a shutdown is: persistent instances to store, stored, and those whose state could not be stored. */
  shutdownProgress(): ShutdownProgress {
    return { ...this.stopProgress, failed: [...this.stopProgress.failed] };
  }

  private async start(inst: ServerInstance, program: Program, scope?: readonly string[], fn?: string, clientConnects = false): Promise<void> {
    if (inst.relinquished) throw new HttpError(503, 'the instance has moved to another server; retry', { 'Retry-After': '1' });
    inst.scope = scope;
    const runtime = this.deps.runtimeFor(inst.principal, inst.executorGroup);
    const run = await runtime.launch(program, {
      entry: fn,
      instanceId: inst.id,
      retain: true,
      // A principal's instances may reuse each other's memory objects (reset); anonymous ones never do.
      memoryGroup: inst.principal,
      services: this.deps.services(inst.principal, scope, clientConnects),
      debug: inst.debugLog ? (inst.debugSink ?? this.deps.debugSink(inst.id)) : undefined,
      breakpoints: inst.breakpoints,
    });
    inst.debugSink = undefined;
    inst.run = run;
    inst.status = run.status;
    inst.resumeOnRestart = false;
    // What it starts from is stored (its module or its latest snapshot).
    inst.checkpointed = Date.now();
    inst.settled = run.wait().then((status) => this.stopped(inst, run, status));
    if (!inst.transient) await this.save(inst);
  }

  private async stopped(inst: ServerInstance, run: RunningInstance<InstanceServices>, status: InstanceStatus): Promise<void> {
    inst.status = inst.transient ? transientEnd(status) : status;
    inst.trapBacktrace = run.trapBacktrace;
    if (inst.trapBacktrace) this.deps.onTrapped?.(inst.id, status, inst.trapBacktrace[0]!);
    if (this.executorDied(inst, status)) {
      // The executor process died (a crash, the OOM killer, an operator's
      // kill): its state is gone, but a persistent instance continues from
      // its latest snapshot, as after a crash of the whole server.
      run.release();
      inst.run = undefined;
      inst.crashRestores++;
      this.deps.onError(`instance ${inst.id}: its executor died (${status.error}); restoring it from its latest snapshot`, undefined);
      try {
        inst.status = { state: State.Suspended };
        await this.start(inst, await this.programOf(inst), inst.scope, inst.snapshot ? undefined : inst.fn);
        return;
      } catch (e) {
        inst.status = status;
        this.deps.onError(`instance ${inst.id} could not be restored`, e);
        await this.save(inst).catch(() => undefined);
        return;
      }
    }
    try {
      if (!inst.transient && !inst.relinquished) {
        const { parts } = await run.snapshotParts();
        const hash = sha256Hex(parts);
        await this.deps.modules.store(hash, parts);
        const previous = inst.snapshot;
        inst.snapshot = hash;
        inst.run = undefined;
        await this.save(inst);
        inst.checkpointed = Date.now();
        inst.storeError = undefined;
        if (previous && previous !== hash) {
          await this.deps.modules.collect(previous).catch((e: unknown) => this.deps.onError(`instance ${inst.id}: removing its previous snapshot failed`, e));
        }
      }
    } catch (e) {
      inst.storeError = e;
      this.deps.onError(`instance ${inst.id}: storing its state failed`, e);
    } finally {
      inst.run = undefined;
      run.release();
      if (inst.transient) {
        this.remove(inst);
        await this.deps.modules.releaseUse(inst.module, false).catch(() => undefined);
      }
    }
  }

  private executorDied(inst: ServerInstance, status: InstanceStatus): boolean {
    return (
      !this.closing &&
      !inst.transient &&
      inst.crashRestores < MAX_CRASH_RESTORES &&
      status.state === State.Killed &&
      status.cause === 'INTERNAL' &&
      /^executor process (exited|is gone|error)/.test(status.error ?? '')
    );
  }

  private async persist(inst: ServerInstance): Promise<void> {
    inst.transient = false;
    // A call's module may have been uploaded without pinning: keep its bytes now.
    if (inst.program) await this.deps.modules.store(inst.module, [inst.program.bytes]);
    await this.save(inst);
  }

  private save(inst: ServerInstance): Promise<void> {
    if (inst.principal === undefined || inst.transient || inst.relinquished) return Promise.resolve();
    return this.deps.inventory.putInstance(inst.record());
  }

  /** The instance's state as a program: its latest snapshot, else its module (in memory when launched here). */
  private stateProgram(inst: ServerInstance): Promise<Program> {
    return !inst.snapshot && inst.program ? Promise.resolve(inst.program) : this.programOf(inst);
  }

  /** The program to continue from: the latest snapshot, else the module. */
  private async programOf(inst: ServerInstance): Promise<Program> {
    const hash = inst.snapshot ?? inst.module;
    const program = await this.deps.modules.storedProgram(hash);
    if (!program) throw new InstanceStateError(`the stored state of instance ${inst.id} is missing (module ${hash})`);
    return program;
  }

  private add(inst: ServerInstance): void {
    if (inst.principal === undefined) {
      this.anonymous.add(inst);
      return;
    }
    let m = this.owned.get(inst.principal);
    if (!m) this.owned.set(inst.principal, (m = new Map()));
    m.set(inst.id, inst);
  }

  private remove(inst: ServerInstance): void {
    if (inst.principal === undefined) this.anonymous.delete(inst);
    else this.owned.get(inst.principal)?.delete(inst.id);
  }
}

/** State of an instance created without running (spec §13 `launch&suspend`). */
function stoppedStateOf(program: Program, entry: string | undefined): InstanceStatus {
  const snap = program.snapshot;
  if (snap?.final) return statusOfSnapshot(snap.trap, snap.result);
  if (snap) return snap.stack || entry !== undefined ? { state: State.Suspended } : { state: State.Halted };
  return entry !== undefined || program.hasStart ? { state: State.Suspended } : { state: State.Halted };
}

export { OriginClosedError };
