/**
 * The cluster's shared facts in PostgreSQL (docs/cluster.md): which servers
 * there are (gate_server: address, capacity, heartbeat) and which server owns
 * each instance (instance.owner). Tables are created by the inventory's
 * migrations (src/store/postgres.ts, schema version 2).
 *
 * Ownership changes only in single statements that check the current owner
 * (compare and set), so two servers can never both take one instance: a
 * migration flips it from its owner to a live target, a failover moves it
 * from a server whose heartbeat is older than the failover time to the
 * server that claims it first (FOR UPDATE SKIP LOCKED: concurrent claimers
 * take disjoint sets). Liveness is judged by the database's clock, so the
 * servers' clocks do not matter.
 */
import pg from 'pg';
import type { InstanceRecord, StoredStatus } from '../store/inventory.js';
import { fromRow, INSTANCE_COLUMNS, type InstanceRow } from '../store/postgres.js';

/** Wakes a server whose ownership changed (payload: its name); NOTIFY is delivered on commit. */
const CHANNEL = 'gate_cluster';
const INT8_OID = 20;

export interface ServerRow {
  name: string;
  address: string;
  capacity: number;
  running: number;
  draining: boolean;
  /** Whether its heartbeat is younger than the failover time. */
  live: boolean;
}

export interface OwnedRef {
  principal: string;
  id: string;
}

/** A record of an instance with its owner, for listing across servers. */
export interface ForeignInstance {
  id: string;
  module: string;
  transient: boolean;
  status: StoredStatus;
  tags: string[];
  owner: string;
}

export interface ClusterRegistryOptions {
  dsn: string;
  /** This server's name. */
  name: string;
  /** A server whose heartbeat is older than this is dead (its instances are failed over). */
  failoverMs: number;
  onIdleError?: (err: Error) => void;
  /** Called (with no argument) when another server changed what this one owns. */
  onNotify?: () => void;
}

export class ClusterRegistry {
  private readonly pool: pg.Pool;
  private listener: pg.Client | undefined;
  private closed = false;

  constructor(private readonly opts: ClusterRegistryOptions) {
    this.pool = new pg.Pool({
      connectionString: opts.dsn,
      max: 4,
      // A stalled database must fail a heartbeat well within the failover time, not hang it.
      connectionTimeoutMillis: Math.min(10_000, opts.failoverMs / 2),
      query_timeout: Math.min(10_000, opts.failoverMs / 2),
      types: { getTypeParser: (oid: number, format?: 'text' | 'binary') => (oid === INT8_OID && format !== 'binary' ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) },
    });
    this.pool.on('error', (err) => opts.onIdleError?.(err));
  }

  get name(): string {
    return this.opts.name;
  }

  private get failoverSeconds(): number {
    return this.opts.failoverMs / 1000;
  }

  /** Registers (or re-registers after a restart) this server, and listens for ownership changes addressed to it. */
  async register(address: string, capacity: number): Promise<void> {
    await this.pool.query(
      `INSERT INTO gate_server (name, address, capacity, running, draining, started, heartbeat) VALUES ($1, $2, $3, 0, FALSE, now(), now())
       ON CONFLICT (name) DO UPDATE SET address = excluded.address, capacity = excluded.capacity, draining = FALSE, started = now(), heartbeat = now()`,
      [this.opts.name, address, capacity],
    );
    await this.listen();
  }

  private async listen(): Promise<void> {
    if (this.closed || this.listener) return;
    const client = new pg.Client({ connectionString: this.opts.dsn, connectionTimeoutMillis: 10_000 });
    client.on('error', (err) => {
      this.opts.onIdleError?.(err);
      if (this.listener === client) this.listener = undefined; // the next heartbeat listens again
      void client.end().catch(() => undefined);
    });
    client.on('notification', (n) => {
      if (n.payload === this.opts.name) this.opts.onNotify?.();
    });
    await client.connect();
    await client.query(`LISTEN ${CHANNEL}`);
    this.listener = client;
  }

  /** Proves this server alive; false if its row was gone (it is put back). */
  async heartbeat(running: number, draining: boolean): Promise<boolean> {
    const r = await this.pool.query('UPDATE gate_server SET heartbeat = now(), running = $2, draining = $3 WHERE name = $1', [this.opts.name, running, draining]);
    await this.listen().catch((e: unknown) => this.opts.onIdleError?.(e as Error));
    return r.rowCount === 1;
  }

  /** Every registered server, live or not, by name. */
  async servers(): Promise<ServerRow[]> {
    const r = await this.pool.query<ServerRow>(
      `SELECT name, address, capacity, running, draining, heartbeat > now() - make_interval(secs => $1) AS live FROM gate_server ORDER BY name`,
      [this.failoverSeconds],
    );
    return r.rows;
  }

  async server(name: string): Promise<ServerRow | undefined> {
    return (await this.servers()).find((s) => s.name === name);
  }

  /** Records without an owner (written before this database served a cluster) become this server's. */
  async claimUnowned(): Promise<number> {
    return (await this.pool.query('UPDATE instance SET owner = $1 WHERE owner IS NULL', [this.opts.name])).rowCount ?? 0;
  }

  /** The owner of one instance (undefined: no such record). */
  async ownerOf(principal: string, id: string): Promise<string | undefined> {
    const r = await this.pool.query<{ owner: string | null }>('SELECT owner FROM instance WHERE principal = $1 AND id = $2', [principal, id]);
    return r.rows[0]?.owner ?? undefined;
  }

  /** Owners of the instances with this id, of any principal (websocket io names its principal only after the upgrade). */
  async ownersOfId(id: string): Promise<string[]> {
    const r = await this.pool.query<{ owner: string | null }>('SELECT DISTINCT owner FROM instance WHERE id = $1', [id]);
    return r.rows.map((row) => row.owner ?? '');
  }

  /** What this server owns according to the database (persistent records). */
  async owned(): Promise<OwnedRef[]> {
    return (await this.pool.query<OwnedRef>('SELECT principal, id FROM instance WHERE owner = $1 AND NOT transient', [this.opts.name])).rows;
  }

  /** The principal's instances owned by other servers. */
  async foreignInstances(principal: string): Promise<ForeignInstance[]> {
    const r = await this.pool.query<InstanceRow & { owner: string }>(
      `SELECT ${INSTANCE_COLUMNS}, owner FROM instance WHERE principal = $1 AND owner IS NOT NULL AND owner <> $2 ORDER BY created, id`,
      [principal, this.opts.name],
    );
    return r.rows.map((row) => {
      const { id, module, transient, status, tags } = fromRow(row);
      return { id, module, transient, status, tags, owner: row.owner };
    });
  }

  /**
   * Moves one instance from this server to `target` if this server still
   * owns it and `target` is live and not draining: one statement, so either
   * both hold and the owner changes, or nothing changes. The target is
   * notified on commit. Returns whether it moved.
   */
  async handOver(principal: string, id: string, target: string): Promise<boolean> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const r = await client.query(
        `UPDATE instance SET owner = $4 WHERE principal = $1 AND id = $2 AND owner = $3
           AND EXISTS (SELECT 1 FROM gate_server WHERE name = $4 AND NOT draining AND heartbeat > now() - make_interval(secs => $5))`,
        [principal, id, this.opts.name, target, this.failoverSeconds],
      );
      if (r.rowCount !== 1) {
        await client.query('ROLLBACK');
        return false;
      }
      await client.query('SELECT pg_notify($1, $2)', [CHANNEL, target]);
      await client.query('COMMIT');
      return true;
    } catch (e) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw e;
    } finally {
      client.release();
    }
  }

  /**
   * Takes over at most `limit` instances of servers whose heartbeat is older
   * than the failover time. Concurrent claimers skip each other's locked
   * rows, so every instance goes to exactly one of them. Returns the records
   * now owned by this server.
   */
  async claimFromDead(limit: number): Promise<InstanceRecord[]> {
    if (limit <= 0) return [];
    const r = await this.pool.query<{ principal: string; id: string }>(
      `UPDATE instance SET owner = $1 WHERE (principal, id) IN (
         SELECT principal, id FROM instance
         WHERE NOT transient AND owner IN (SELECT name FROM gate_server WHERE name <> $1 AND heartbeat <= now() - make_interval(secs => $2))
         ORDER BY updated LIMIT $3 FOR UPDATE SKIP LOCKED)
       AND owner <> $1
       RETURNING principal, id`,
      [this.opts.name, this.failoverSeconds, limit],
    );
    return this.records(r.rows);
  }

  /** Removes the rows of dead servers that own nothing any more (they register again when they start). */
  async forgetDead(): Promise<void> {
    await this.pool.query(
      `DELETE FROM gate_server s WHERE s.name <> $1 AND s.heartbeat <= now() - make_interval(secs => $2)
         AND NOT EXISTS (SELECT 1 FROM instance i WHERE i.owner = s.name AND NOT i.transient)`,
      [this.opts.name, this.failoverSeconds],
    );
  }

  /** Marks this server draining (it is no migration target); used while it hands its instances over before exiting. */
  async setDraining(): Promise<void> {
    await this.pool.query('UPDATE gate_server SET draining = TRUE WHERE name = $1', [this.opts.name]);
  }

  private async records(refs: OwnedRef[]): Promise<InstanceRecord[]> {
    const out: InstanceRecord[] = [];
    for (const ref of refs) {
      const rec = await this.record(ref.principal, ref.id);
      if (rec) out.push(rec);
    }
    return out;
  }

  /** One record, if this server owns it. */
  async record(principal: string, id: string): Promise<InstanceRecord | undefined> {
    const r = await this.pool.query<InstanceRow>(`SELECT ${INSTANCE_COLUMNS} FROM instance WHERE principal = $1 AND id = $2 AND owner = $3`, [principal, id, this.opts.name]);
    const row = r.rows[0];
    return row ? fromRow(row) : undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const listener = this.listener;
    this.listener = undefined;
    await listener?.end().catch(() => undefined);
    await this.pool.end();
  }
}
