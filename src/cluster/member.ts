/**
 * One server's part in a cluster (docs/cluster.md): it registers itself,
 * proves itself alive every heartbeat, keeps what it runs in step with what
 * the database says it owns (adopting instances given to it, dropping those
 * taken from it), takes over the instances of servers whose heartbeat is
 * lost, forwards requests for instances owned elsewhere, and moves
 * instances to other servers on request (migrate) or when it drains.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { HttpError } from '../server/errors.js';
import { sendError } from '../server/http.js';
import { statusJson, type InstanceManager, type ServerInstance } from '../server/instances.js';
import type { InstanceStatus } from '../runtime/status.js';
import { claimedPrincipal, endpointPathId, forwardHttp, forwardUpgrade, HOP_HEADER, instancePathId, isLaunch } from './proxy.js';
import type { ClusterRegistry, ServerRow } from './registry.js';

export interface ClusterOptions {
  /** This server's name in the cluster (unique; a restarted server keeps its name and what it still owns). */
  name: string;
  /** Base URL the other servers forward requests to (default: the listening URL). */
  address?: string;
  /** Instances this server is willing to run; failovers do not push it past this. */
  capacity: number;
  heartbeatMs: number;
  /** Heartbeat age after which a server is dead and its instances are taken over. */
  failoverMs: number;
  /** Directory shared by all servers for modules and snapshots. */
  blobDir: string;
  /** On SIGTERM, move persistent instances to the other servers before exiting (instead of storing them for this server's restart). */
  drain: boolean;
}

/** Instances taken over from dead servers per heartbeat (restores are spread over time and over the live servers). */
const CLAIM_BATCH = 16;

export class ClusterMember {
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private reconciling: Promise<void> = Promise.resolve();
  private lastBeat = performance.now();
  /** Where the others reach this server ('' until it listens). */
  private address = '';
  private fenced = false;
  private closing = false;
  private draining = false;
  /** The servers as of the latest heartbeat (placement reads this instead of asking the database per launch). */
  private view: ServerRow[] = [];

  constructor(
    private readonly registry: ClusterRegistry,
    private readonly instances: InstanceManager,
    private readonly opts: ClusterOptions,
    private readonly log: Logger,
  ) {}

  get name(): string {
    return this.opts.name;
  }

  /** After listening: the final address is known; heartbeats start. */
  async start(address: string): Promise<void> {
    this.address = this.opts.address ?? address;
    await this.registry.register(this.address, this.opts.capacity);
    this.lastBeat = performance.now();
    this.timer = setInterval(() => {
      // Checked even while a heartbeat hangs (a partition may stall a query rather than fail it).
      void this.fenceIfLost();
      this.ticking ??= this.tick().finally(() => (this.ticking = undefined));
    }, this.opts.heartbeatMs);
    this.timer.unref();
    this.log.info({ cluster: this.opts.name, address: this.address, capacity: this.opts.capacity }, 'joined the cluster');
  }

  /** Another server gave this one an instance: adopt it now rather than at the next heartbeat. */
  notified(): void {
    void this.reconcile().catch((e: unknown) => this.log.warn({ err: e }, 'cluster: reconciling ownership failed'));
  }

  private async tick(): Promise<void> {
    if (this.closing) return;
    const sent = performance.now();
    try {
      const present = await this.registry.heartbeat(this.instances.runningCount, this.draining);
      if (!present) await this.registry.register(this.address, this.opts.capacity);
      this.lastBeat = sent;
      if (this.fenced) this.log.info('cluster: the database is reachable again; taking back what this server still owns');
      this.fenced = false;
    } catch (e) {
      this.log.warn({ err: e }, 'cluster: heartbeat failed');
      await this.fenceIfLost();
      return;
    }
    try {
      this.view = await this.registry.servers();
      await this.reconcile();
      if (!this.draining) await this.failover();
    } catch (e) {
      this.log.warn({ err: e }, 'cluster: reconciling ownership failed');
    }
  }

  /**
   * Before the others may take over (failover time after our last
   * heartbeat), stop running what they will restore: never two copies.
   */
  private async fenceIfLost(): Promise<void> {
    if (this.fenced || this.closing || performance.now() - this.lastBeat <= this.fenceMs) return;
    this.fenced = true;
    const all = this.instances.persistent();
    this.log.error({ instances: all.length }, "cluster: no heartbeat for too long; stopping this server's persistent instances (another server restores them from their latest checkpoint)");
    await Promise.all(all.map((inst) => this.instances.relinquish(inst)));
  }

  /** Half the failover time, or failover minus two heartbeats if that is longer. */
  private get fenceMs(): number {
    return Math.max(this.opts.failoverMs / 2, this.opts.failoverMs - 2 * this.opts.heartbeatMs);
  }

  /** Makes memory agree with the owner column: adopt what is ours and not here, drop what is here and not ours. */
  reconcile(): Promise<void> {
    const next = this.reconciling.then(() => this.reconcileOnce());
    this.reconciling = next.catch(() => undefined);
    return next;
  }

  private async reconcileOnce(): Promise<void> {
    if (this.closing || this.fenced) return;
    const owned = await this.registry.owned();
    const mine = new Set(owned.map((r) => `${r.principal}\n${r.id}`));
    for (const ref of owned) {
      if (this.instances.has(ref.principal, ref.id)) continue;
      const rec = await this.registry.record(ref.principal, ref.id);
      if (!rec) continue;
      this.log.info({ instance: rec.id, running: rec.running }, 'cluster: adopting an instance this server owns now');
      // Known at once (requests wait for its restore); the restore goes on in the background.
      void this.instances.adopt(rec);
    }
    for (const inst of this.instances.persistent()) {
      if (inst.principal === undefined || mine.has(`${inst.principal}\n${inst.id}`)) continue;
      const owner = await this.registry.ownerOf(inst.principal, inst.id);
      // No record: being launched or deleted here. Ours: launched since the query above.
      if (owner === undefined || owner === this.opts.name) continue;
      this.log.warn({ instance: inst.id, owner }, 'cluster: another server owns this instance now; stopping it here');
      await this.instances.relinquish(inst);
    }
  }

  private async failover(): Promise<void> {
    const room = Math.min(CLAIM_BATCH, this.opts.capacity - this.instances.runningCount);
    const claimed = await this.registry.claimFromDead(room);
    for (const rec of claimed) {
      this.log.info({ instance: rec.id, running: rec.running }, 'cluster: took over an instance of a server whose heartbeat is lost');
      void this.instances.adopt(rec);
    }
    await this.registry.forgetDead();
  }

  /**
   * Forwards a request for an instance that another live server owns; false
   * when it is for this server to answer (its own instances, other paths,
   * requests already forwarded once).
   */
  async forward(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    if (req.headers[HOP_HEADER] !== undefined) return false;
    if (isLaunch(req)) {
      const target = this.placement();
      if (target === undefined) return false;
      await forwardHttp(req, res, target.address, this.opts.name);
      return true;
    }
    const endpoint = endpointPathId(req.url);
    if (endpoint !== undefined) return this.forwardById(endpoint, req, res);
    const id = instancePathId(req.url);
    if (id === undefined) return false;
    const principal = claimedPrincipal(req.headers.authorization);
    if (principal === undefined || this.instances.has(principal, id)) return false;
    return this.forwardToOwner(req, res, async () => this.ownerAddress(await this.registry.ownerOf(principal, id)));
  }

  /** An endpoint request (anonymous: the instance id alone decides, as for websocket io). */
  private async forwardById(id: string, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    if (this.instances.hasId(id)) return false;
    const owners = await this.registry.ownersOfId(id);
    if (owners.length !== 1) return false;
    return this.forwardToOwner(req, res, () => this.ownerAddress(owners[0]));
  }

  /** Forwards to the owner's address (undefined: not forwarded, served here); an HttpError finding it is the answer. */
  private async forwardToOwner(req: IncomingMessage, res: ServerResponse, address: () => Promise<string | undefined>): Promise<boolean> {
    let base: string | undefined;
    try {
      base = await address();
    } catch (e) {
      if (!(e instanceof HttpError)) throw e;
      sendError(req, res, e);
      return true;
    }
    if (base === undefined) return false;
    await forwardHttp(req, res, base, this.opts.name);
    return true;
  }

  /** As forward, for a websocket io upgrade (its principal is only known after the upgrade: the instance id decides). */
  async forwardUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<boolean> {
    if (req.headers[HOP_HEADER] !== undefined) return false;
    const id = instancePathId(req.url);
    if (id === undefined || this.instances.hasId(id)) return false;
    const owners = await this.registry.ownersOfId(id);
    if (owners.includes(this.opts.name)) {
      await this.reconcile();
      return false;
    }
    // Ids chosen by clients may repeat across principals: only an unambiguous owner is forwarded to.
    if (owners.length !== 1) return false;
    let base: string | undefined;
    try {
      base = await this.ownerAddress(owners[0]);
    } catch {
      return false; // answered here: not found, as for any instance this server does not know
    }
    if (base === undefined) return false;
    forwardUpgrade(req, socket, head, base, this.opts.name);
    return true;
  }

  /**
   * Where a new instance goes (docs/cluster.md): the live server that is not
   * draining with the most free capacity (capacity minus running instances
   * at its latest heartbeat; this server's own count is current). Ties stay
   * here; undefined means here.
   */
  private placement(): ServerRow | undefined {
    let best: ServerRow | undefined;
    let bestFree = this.opts.capacity - this.instances.runningCount;
    for (const s of this.view) {
      if (s.name === this.opts.name || !s.live || s.draining || s.address === '') continue;
      const free = s.capacity - s.running;
      if (free > bestFree) {
        best = s;
        bestFree = free;
      }
    }
    return best;
  }

  /** Where requests for an owner's instances go; undefined: this server (adopting it first if needed). */
  private async ownerAddress(owner: string | undefined): Promise<string | undefined> {
    if (owner === undefined || owner === '') return undefined;
    if (owner === this.opts.name) {
      await this.reconcile();
      return undefined;
    }
    // The view of the latest heartbeat spares a query per forwarded request; a server not seen alive there is asked for.
    // One seen starting (no address yet) may have its address by now.
    const seen = this.view.find((s) => s.name === owner);
    const server = seen?.live && seen.address !== '' ? seen : await this.registry.server(owner);
    if (!server || !server.live) {
      const seconds = Math.ceil(this.opts.failoverMs / 1000);
      throw new HttpError(503, `the server running this instance (${owner}) is not responding; another server takes it over within ${seconds} s of its last heartbeat; retry`, { 'Retry-After': String(Math.min(seconds, 5)) });
    }
    if (server.address === '') throw new HttpError(503, `the server running this instance (${owner}) is starting; retry`, { 'Retry-After': '1' });
    return server.address;
  }

  /** `action=migrate&server=NAME`: moves the instance there through a stored snapshot; the owner changes in one statement. */
  async migrate(inst: ServerInstance, target: string): Promise<void> {
    if (target === this.opts.name) return;
    const server = await this.registry.server(target);
    if (!server) throw new HttpError(404, `no server named ${JSON.stringify(target)} in the cluster`);
    if (!server.live) throw new HttpError(503, `server ${target} is not responding (no heartbeat); choose another`, { 'Retry-After': '5' });
    if (server.draining) throw new HttpError(409, `server ${target} is draining; choose another`);
    const moved = await this.instances.handOver(inst, () => this.registry.handOver(inst.principal!, inst.id, target));
    if (!moved) throw new HttpError(409, `the instance could not be given to ${target} (it went away, began draining, or the instance was moved meanwhile); it stays where it was`);
    this.log.info({ instance: inst.id, to: target }, 'cluster: migrated an instance');
  }

  /** The principal's instances on other servers, as the instance list shows them (from their stored records). */
  async foreignInstances(principal: string): Promise<Record<string, unknown>[]> {
    const out: Record<string, unknown>[] = [];
    for (const f of await this.registry.foreignInstances(principal)) {
      if (this.instances.has(principal, f.id)) continue;
      const info: Record<string, unknown> = { instance: f.id, module: f.module, status: statusJson(f.status as InstanceStatus) };
      if (f.transient) info.transient = true;
      if (f.tags.length) info.tags = f.tags;
      out.push(info);
    }
    return out;
  }

  /**
   * SIGTERM with drain: every persistent instance is moved to the live
   * server with the most free capacity; those that cannot be are stored for
   * this server's restart (or another's failover) as without drain.
   */
  async drain(): Promise<{ moved: number; kept: number }> {
    this.draining = true;
    await this.registry.setDraining();
    let moved = 0;
    let kept = 0;
    const load = new Map<string, number>();
    for (const inst of this.instances.persistent()) {
      const servers = (await this.registry.servers()).filter((s) => s.live && !s.draining && s.name !== this.opts.name);
      const best = servers.sort((a, b) => b.capacity - (b.running + (load.get(b.name) ?? 0)) - (a.capacity - (a.running + (load.get(a.name) ?? 0))))[0];
      if (!best) {
        kept++;
        continue;
      }
      try {
        if (await this.instances.handOver(inst, () => this.registry.handOver(inst.principal!, inst.id, best.name))) {
          moved++;
          load.set(best.name, (load.get(best.name) ?? 0) + 1);
        } else kept++;
      } catch (e) {
        kept++;
        this.log.warn({ err: e, instance: inst.id }, 'cluster: drain could not move an instance; it is stored here');
      }
    }
    this.log.info({ moved, kept }, 'cluster: drained');
    return { moved, kept };
  }

  get drainOnStop(): boolean {
    return this.opts.drain;
  }

  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.timer);
    await this.ticking;
    await this.reconciling;
    await this.registry.close();
  }
}
