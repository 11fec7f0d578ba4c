/**
 * The `peer` service (docs/services.md "peer"): programs on one server join
 * named groups, see each other join and leave, send each other short
 * messages, and open byte streams to each other, relayed by the server.
 *
 * Design (after the original's 2020 peer service: group, peer, handshake):
 * a stream exists once both programs have asked to connect to each other
 * (the second CONNECT completes the first); each side gets its own stream
 * id. The server buffers nothing: a DATA packet is forwarded at once within
 * the credit the receiving program granted with FLOW (forwarded likewise),
 * and a message is delivered only if the receiver has granted message
 * credit (RECEIVE), else the sender is told BUSY. So a slow peer costs the
 * server a few counters, never a queue.
 *
 * Groups belong to the principal (a group name means a different group for
 * each principal) unless joined with the SHARED flag, which the operator
 * allows for listed group names only (`service.peer.sharedgroups`).
 * Anonymous programs cannot use the service. Groups are local to this
 * server process: a suspended instance leaves its groups (the others see it
 * leave), and rejoins them when it is resumed (on this server, or with the
 * same group names on another one); its streams are closed.
 */
import { dataPacket, Domain, flowPacket, packetContent, packetDomain, readDataPacket, readFlowEntries } from '../abi/packet.js';
import { AbiViolation } from '../abi/trap.js';
import { GateError } from '../errors.js';
import type { ServiceContext, ServiceFactory, ServiceInstance, ServiceInstanceConfig } from './api.js';
import {
  decodeCall,
  emptyReply,
  eventPacket,
  JOIN_SHARED,
  MAX_NAME,
  NOTE_PEER_GONE,
  PeerError,
  PeerEvent,
  PeerOp,
  replyPacket,
  utf8Length,
} from './peer-wire.js';
import { ServiceStateError } from './varint.js';

export interface PeerOptions {
  /** Group names programs of different principals may share (JOIN with the SHARED flag); `*` allows any. Default none. */
  sharedGroups?: readonly string[];
  /** Groups one instance may be in at once (default 16). */
  maxGroups?: number;
  /** Streams (plus pending connection requests) one instance may have at once (default 64). */
  maxStreams?: number;
  /** Members of one group (default 1000). */
  maxMembers?: number;
}

export const DEFAULT_PEER_OPTIONS = { maxGroups: 16, maxStreams: 64, maxMembers: 1000 } as const;

/** Message credit a program may hold at once (RECEIVE beyond it is capped). */
export const MAX_MESSAGE_CREDIT = 1024;
const MAX_CREDIT = 0x7fffffff;

/** The service's options are invalid. */
export class PeerConfigError extends GateError {
  constructor(message: string) {
    super('GATE_CONFIG', message);
  }
}

interface Group {
  readonly key: string;
  readonly name: string;
  readonly members: Map<string, PeerEndpoint>;
}

/** One side of a stream: the stream as one program sees it. */
interface StreamEnd {
  readonly owner: PeerEndpoint;
  readonly id: number;
  readonly groupKey: string;
  other: StreamEnd | undefined;
  /** Bytes this side may still send (granted by the other side's FLOW). */
  credit: number;
  /** This side sent its end of data (empty DATA). */
  sentEof: boolean;
  /** This side has been given the other side's end of data. */
  receivedEof: boolean;
  /** This side stopped receiving (FLOW 0). */
  readClosed: boolean;
  /** This side has been told to stop sending (FLOW 0). */
  writeClosed: boolean;
  /** FLOW packets forwarded to this side since it last sent DATA. */
  unanswered: number;
  /** Credit granted to this side but not forwarded yet (see MAX_UNANSWERED_FLOWS). */
  held: number;
}

/**
 * FLOW packets forwarded to a writer that has sent no DATA since: beyond
 * this, further credit is added up and forwarded with its next DATA, so that
 * a reader granting 1 byte at a time cannot pile packets into a writer that
 * does not read them.
 */
export const MAX_UNANSWERED_FLOWS = 16;
/** JOIN and CONNECT calls per instance: each makes events for other programs. Burst, then per second. */
export const CHURN_BURST = 50;
export const CHURN_RATE = 20;

const groupKey = (principal: string, name: string, shared: boolean): string => (shared ? `shared\n${name}` : `principal\n${principal}\n${name}`);

/**
 * The service factory, and the server-wide registry of groups: register one
 * PeerService in the deployment's registry so that all instances share it.
 */
export class PeerService implements ServiceFactory {
  readonly name = 'peer';
  readonly revision = '0';
  readonly streams = true;

  readonly maxGroups: number;
  readonly maxStreams: number;
  readonly maxMembers: number;
  private readonly shared: ReadonlySet<string>;
  /** @internal */
  readonly groups = new Map<string, Group>();

  constructor(options: PeerOptions = {}) {
    const count = (key: string, v: number | undefined, dflt: number): number => {
      const n = v ?? dflt;
      if (!Number.isSafeInteger(n) || n < 1) throw new PeerConfigError(`service.peer.${key} must be a whole number of at least 1, not ${n}`);
      return n;
    };
    this.maxGroups = count('maxgroups', options.maxGroups, DEFAULT_PEER_OPTIONS.maxGroups);
    this.maxStreams = count('maxstreams', options.maxStreams, DEFAULT_PEER_OPTIONS.maxStreams);
    this.maxMembers = count('maxmembers', options.maxMembers, DEFAULT_PEER_OPTIONS.maxMembers);
    for (const g of options.sharedGroups ?? []) {
      if (g !== '*' && (g.length === 0 || utf8Length(g) > MAX_NAME)) throw new PeerConfigError(`service.peer.sharedgroups: ${JSON.stringify(g)} is not a group name (1–${MAX_NAME} bytes) or "*"`);
    }
    this.shared = new Set(options.sharedGroups ?? []);
  }

  /** Anonymous programs have no principal to scope groups to. */
  discoverable(context: ServiceContext): boolean {
    return context.principalId !== undefined;
  }

  createInstance(config: ServiceInstanceConfig, snapshot?: Uint8Array): ServiceInstance {
    const state = snapshot && snapshot.length > 0 ? decodePeerState(snapshot) : undefined;
    const endpoint = new PeerEndpoint(this, config);
    if (state) endpoint.restore(state);
    return endpoint;
  }

  /** Members of every group, for tests and metrics. */
  memberCount(): number {
    let n = 0;
    for (const g of this.groups.values()) n += g.members.size;
    return n;
  }

  /** @internal */
  sharingAllowed(name: string): boolean {
    return this.shared.has('*') || this.shared.has(name);
  }

  /** @internal */
  keyOf(principal: string, name: string, shared: boolean): string {
    return groupKey(principal, name, shared);
  }

  /** @internal */
  group(key: string, name: string): Group {
    let g = this.groups.get(key);
    if (!g) {
      g = { key, name, members: new Map() };
      this.groups.set(key, g);
    }
    return g;
  }
}

interface Membership {
  readonly group: Group;
  readonly flags: number;
}

/** Saved by a suspension or checkpoint (see encodePeerState). */
interface PeerState {
  credit: number;
  groups: Array<{ flags: number; name: string }>;
  /** `credit`: bytes the program may still send (what it sends after the resume is dropped, not refused). */
  streams: Array<{ id: number; sentEof: boolean; receivedEof: boolean; credit: number }>;
}

/** The peer service instance of one program instance run. */
class PeerEndpoint implements ServiceInstance {
  readonly id: string;
  private readonly principal: string;
  private readonly memberships = new Map<string, Membership>();
  private readonly streams = new Map<number, StreamEnd>();
  /** Pending outgoing connection requests: `groupKey\npeer` → our handshake. */
  private readonly requests = new Map<string, Uint8Array>();
  private credit = 0;
  private stopped = false;
  private churnTokens = CHURN_BURST;
  private churnAt = performance.now();

  constructor(
    private readonly service: PeerService,
    private readonly config: ServiceInstanceConfig,
  ) {
    this.id = config.context.instanceId;
    this.principal = config.context.principalId ?? '';
  }

  handle(packet: Uint8Array): void {
    if (this.stopped) return;
    switch (packetDomain(packet)) {
      case Domain.Call:
        this.config.send(this.call(packetContent(packet)));
        return;
      case Domain.Flow:
        if ((packet.length - 8) % 8 !== 0) throw new AbiViolation(`peer service: FLOW packet of ${packet.length} bytes (8 + a multiple of 8)`);
        for (const { id, value } of readFlowEntries(packet)) this.flow(id, value);
        return;
      case Domain.Data: {
        const d = readDataPacket(packet);
        this.data(d.id, d.note, d.data);
        return;
      }
      default:
        return; // INFO from the program: nothing is defined, ignored (services.md §1.1).
    }
  }

  shutdown(suspend: boolean): Uint8Array | void {
    const state = suspend ? this.checkpoint() : undefined;
    this.stopped = true;
    for (const m of [...this.memberships.values()]) this.leave(m, false);
    // Streams are per group, so leaving every group closed them all.
    return state;
  }

  checkpoint(): Uint8Array {
    return encodePeerState({
      credit: this.credit,
      groups: [...this.memberships.values()].map((m) => ({ flags: m.flags, name: m.group.name })),
      streams: [...this.streams.values()].map((s) => ({ id: s.id, sentEof: s.sentEof, receivedEof: s.receivedEof, credit: s.credit })),
    });
  }

  /**
   * A resumed run: the program is told (RESET) that its groups were left
   * while it was suspended, then it rejoins them; its streams are closed
   * (their peers saw them end when it was suspended).
   */
  restore(state: PeerState): void {
    this.credit = Math.min(state.credit, MAX_MESSAGE_CREDIT);
    for (const s of state.streams) {
      const end: StreamEnd = { owner: this, id: s.id, groupKey: '', other: undefined, credit: s.credit, sentEof: s.sentEof, receivedEof: s.receivedEof, readClosed: false, writeClosed: false, unanswered: 0, held: 0 };
      this.streams.set(s.id, end);
      this.peerGone(end);
    }
    for (const { flags, name } of state.groups) {
      const error = this.join(name, flags, false);
      this.config.send(eventPacket({ event: PeerEvent.Reset, status: error, group: name }));
      if (error === PeerError.Ok) this.announce(this.memberships.get(this.service.keyOf(this.principal, name, (flags & JOIN_SHARED) !== 0))!);
    }
  }

  // --- calls ---

  private call(content: Uint8Array): Uint8Array {
    const c = decodeCall(content);
    switch (c.op) {
      case PeerOp.Join: {
        if (!this.takeChurnToken()) return replyPacket(PeerError.Limit);
        const error = this.join(c.group, c.flags, true);
        return replyPacket(error);
      }
      case PeerOp.Leave: {
        const m = this.membership(c.group);
        if (!m) return replyPacket(PeerError.GroupNotFound);
        this.leave(m, true);
        return replyPacket(PeerError.Ok);
      }
      case PeerOp.Connect:
        if (!this.takeChurnToken()) return replyPacket(PeerError.Limit);
        return replyPacket(this.connect(c.group, c.peer, c.handshake));
      case PeerOp.Send:
        return replyPacket(this.send(c.group, c.peer, c.payload));
      case PeerOp.Receive:
        this.credit = Math.min(MAX_MESSAGE_CREDIT, this.credit + c.count);
        return replyPacket(PeerError.Ok);
      default:
        return emptyReply();
    }
  }

  /** Rate limit of the calls that make events for others (CHURN_BURST, then CHURN_RATE a second). */
  private takeChurnToken(): boolean {
    const now = performance.now();
    this.churnTokens = Math.min(CHURN_BURST, this.churnTokens + ((now - this.churnAt) / 1000) * CHURN_RATE);
    this.churnAt = now;
    if (this.churnTokens < 1) return false;
    this.churnTokens--;
    return true;
  }

  /** A group we are in, by the name the program used (its own principal's group first). */
  private membership(name: string): Membership | undefined {
    return this.memberships.get(this.service.keyOf(this.principal, name, false)) ?? this.memberships.get(this.service.keyOf(this.principal, name, true));
  }

  /** Joins; with `announce` the reply is queued first and the JOINED events follow it. */
  private join(name: string, flags: number, announce: boolean): number {
    const shared = (flags & JOIN_SHARED) !== 0;
    if (shared && !this.service.sharingAllowed(name)) return PeerError.NotPermitted;
    const key = this.service.keyOf(this.principal, name, shared);
    // One name, one group: a program cannot be in its own "x" and the shared "x" at once (calls name groups by name only).
    if (this.membership(name)) return PeerError.AlreadyJoined;
    if (this.memberships.size >= this.service.maxGroups) return PeerError.Limit;
    const group = this.service.group(key, name);
    const stale = group.members.get(this.id);
    // The same instance still listed: a previous run that has not been shut down yet.
    if (stale && stale !== this) stale.evict(key);
    if (group.members.size >= this.service.maxMembers) return PeerError.Limit;
    const m: Membership = { group, flags };
    this.memberships.set(key, m);
    for (const other of group.members.values()) other.config.send(eventPacket({ event: PeerEvent.Joined, group: other.groupName(key), peer: this.id }));
    group.members.set(this.id, this);
    if (announce) queueMicrotask(() => this.announce(m));
    return PeerError.Ok;
  }

  /** JOINED events for the members already there (after the JOIN reply). */
  private announce(m: Membership): void {
    if (this.stopped || this.memberships.get(m.group.key) !== m) return;
    for (const other of m.group.members.values()) {
      if (other !== this) this.config.send(eventPacket({ event: PeerEvent.Joined, group: m.group.name, peer: other.id }));
    }
  }

  /** @internal The group's name as this member's program knows it. */
  groupName(key: string): string {
    return this.memberships.get(key)?.group.name ?? '';
  }

  /** @internal A newer run of the same instance joined: this one leaves first. */
  evict(key: string): void {
    const m = this.memberships.get(key);
    if (m) this.leave(m, false);
  }

  private leave(m: Membership, tellSelf: boolean): void {
    const key = m.group.key;
    this.memberships.delete(key);
    if (m.group.members.get(this.id) === this) m.group.members.delete(this.id);
    if (m.group.members.size === 0) this.service.groups.delete(key);
    for (const [k] of this.requests) if (k.startsWith(`${key}\n`)) this.requests.delete(k);
    for (const other of m.group.members.values()) {
      other.dropRequest(key, this.id);
      other.config.send(eventPacket({ event: PeerEvent.Left, group: m.group.name, peer: this.id }));
    }
    for (const end of [...this.streams.values()]) {
      if (end.groupKey !== key) continue;
      const other = end.other;
      end.other = undefined;
      if (other) {
        other.other = undefined;
        other.owner.peerGone(other);
      }
      if (tellSelf) this.peerGone(end);
      else this.streams.delete(end.id);
    }
  }

  /** @internal */
  dropRequest(key: string, peer: string): void {
    this.requests.delete(`${key}\n${peer}`);
  }

  private connect(groupName: string, peer: string, handshake: Uint8Array): number {
    const m = this.membership(groupName);
    if (!m) return PeerError.GroupNotFound;
    if (peer === this.id) return PeerError.Singularity;
    const target = m.group.members.get(peer);
    if (!target) return PeerError.PeerNotFound;
    const key = m.group.key;
    for (const end of this.streams.values()) {
      if (end.groupKey === key && end.other?.owner === target) return PeerError.AlreadyConnected;
    }
    if (this.requests.has(`${key}\n${peer}`)) return PeerError.AlreadyConnecting;
    if (this.streams.size + this.requests.size >= this.service.maxStreams) return PeerError.Limit;
    const theirs = target.requests.get(`${key}\n${this.id}`);
    if (theirs === undefined) {
      this.requests.set(`${key}\n${peer}`, handshake.slice());
      target.config.send(eventPacket({ event: PeerEvent.Request, group: target.groupName(key), peer: this.id, handshake }));
      return PeerError.Ok;
    }
    // Their request counted against their limit already; ours completes it.
    target.requests.delete(`${key}\n${this.id}`);
    const mine = this.newEnd(key);
    const other = target.newEnd(key);
    mine.other = other;
    other.other = mine;
    queueMicrotask(() => {
      if (mine.other === other) this.config.send(eventPacket({ stream: mine.id, event: PeerEvent.Connected, group: m.group.name, peer: target.id, handshake: theirs }));
    });
    target.config.send(eventPacket({ stream: other.id, event: PeerEvent.Connected, group: target.groupName(key), peer: this.id, handshake }));
    return PeerError.Ok;
  }

  /** @internal A stream end with the lowest free id. */
  newEnd(key: string): StreamEnd {
    let id = 0;
    while (this.streams.has(id)) id++;
    const end: StreamEnd = { owner: this, id, groupKey: key, other: undefined, credit: 0, sentEof: false, receivedEof: false, readClosed: false, writeClosed: false, unanswered: 0, held: 0 };
    this.streams.set(id, end);
    return end;
  }

  private send(groupName: string, peer: string, payload: Uint8Array): number {
    const m = this.membership(groupName);
    if (!m) return PeerError.GroupNotFound;
    if (peer === this.id) return PeerError.Singularity;
    const target = m.group.members.get(peer);
    if (!target) return PeerError.PeerNotFound;
    if (target.credit === 0) return PeerError.Busy;
    target.credit--;
    target.config.send(eventPacket({ event: PeerEvent.Message, group: target.groupName(m.group.key), peer: this.id, payload }));
    return PeerError.Ok;
  }

  // --- streams ---

  private end(id: number, what: string): StreamEnd {
    const end = this.streams.get(id);
    if (!end) throw new AbiViolation(`peer service: ${what} for stream ${id}, which is not open`);
    return end;
  }

  private flow(id: number, value: number): void {
    const end = this.end(id, 'FLOW');
    if (value < 0) throw new AbiViolation(`peer service: negative FLOW ${value} for stream ${id}`);
    const other = end.other;
    if (value === 0) {
      if (end.readClosed) return;
      end.readClosed = true;
      if (other && !other.sentEof && !other.writeClosed) {
        other.writeClosed = true;
        other.owner.config.send(flowPacket(0, [{ id: other.id, value: 0 }]));
      }
      return;
    }
    if (end.readClosed) throw new AbiViolation(`peer service: FLOW ${value} for stream ${id} after closing it with FLOW 0`);
    if (!other) return; // The other side is gone: nothing more will come.
    if (other.credit + value > MAX_CREDIT) throw new AbiViolation(`peer service: FLOW for stream ${id} grants more than 2^31-1 bytes in total`);
    other.credit += value;
    if (other.sentEof || other.writeClosed) return;
    if (other.unanswered >= MAX_UNANSWERED_FLOWS) {
      other.held += value;
      return;
    }
    other.unanswered++;
    other.owner.config.send(flowPacket(0, [{ id: other.id, value: value + other.held }]));
    other.held = 0;
  }

  private data(id: number, note: number, bytes: Uint8Array): void {
    const end = this.end(id, 'DATA');
    if (end.sentEof) throw new AbiViolation(`peer service: DATA for stream ${id} after its end of data`);
    const other = end.other;
    if (bytes.length === 0) {
      end.sentEof = true;
      if (other && !other.receivedEof) {
        other.receivedEof = true;
        other.owner.config.send(dataPacket(0, other.id, new Uint8Array(0), note));
        other.owner.release(other);
      }
      this.release(end);
      return;
    }
    if (bytes.length > end.credit) {
      throw new AbiViolation(`peer service: ${bytes.length} bytes of DATA for stream ${id} exceed the ${end.credit} bytes the peer granted`);
    }
    end.credit -= bytes.length;
    end.unanswered = 0;
    if (end.held > 0 && !end.writeClosed) {
      end.unanswered = 1;
      this.config.send(flowPacket(0, [{ id: end.id, value: end.held }]));
      end.held = 0;
    }
    // After the other side's FLOW 0 (or its end), data already under way is dropped.
    if (other && !other.readClosed) other.owner.config.send(dataPacket(0, other.id, bytes, note));
  }

  /** @internal The other side is gone: end what it sent, tell this side to stop sending. */
  peerGone(end: StreamEnd): void {
    if (this.stopped) return;
    if (!end.receivedEof) {
      end.receivedEof = true;
      this.config.send(dataPacket(0, end.id, new Uint8Array(0), NOTE_PEER_GONE));
    }
    if (!end.sentEof && !end.writeClosed) {
      end.writeClosed = true;
      this.config.send(flowPacket(0, [{ id: end.id, value: 0 }]));
    }
    this.release(end);
  }

  /** @internal A stream id is free once data has ended both ways. */
  release(end: StreamEnd): void {
    if (end.sentEof && end.receivedEof && this.streams.get(end.id) === end) this.streams.delete(end.id);
  }
}

// --- state buffer: u8 version 0, u16 message credit, u8 n, n × {u8 flags, u8 len, group name},
//     u16 m, m × {i32 id, u8 flags (1 sent EOF, 2 received EOF), i32 send credit} ---

const STATE_VERSION = 0;
const SENT_EOF = 1;
const RECEIVED_EOF = 2;

function encodePeerState(s: PeerState): Uint8Array {
  const names = s.groups.map((g) => new TextEncoder().encode(g.name));
  const size = 1 + 2 + 1 + names.reduce((n, b) => n + 2 + b.length, 0) + 2 + s.streams.length * 9;
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  let o = 0;
  out[o++] = STATE_VERSION;
  v.setUint16(o, s.credit, true);
  o += 2;
  out[o++] = s.groups.length;
  s.groups.forEach((g, i) => {
    out[o++] = g.flags;
    out[o++] = names[i]!.length;
    out.set(names[i]!, o);
    o += names[i]!.length;
  });
  v.setUint16(o, s.streams.length, true);
  o += 2;
  for (const st of s.streams) {
    v.setInt32(o, st.id, true);
    out[o + 4] = (st.sentEof ? SENT_EOF : 0) | (st.receivedEof ? RECEIVED_EOF : 0);
    v.setInt32(o + 5, st.credit, true);
    o += 9;
  }
  return out;
}

function decodePeerState(b: Uint8Array): PeerState {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let o = 0;
  const need = (n: number): void => {
    if (o + n > b.length) throw new ServiceStateError('peer service state ends early');
  };
  need(4);
  if (b[o++] !== STATE_VERSION) throw new ServiceStateError(`peer service state has unknown version ${b[0]}`);
  const credit = v.getUint16(o, true);
  o += 2;
  const groups: PeerState['groups'] = [];
  for (let n = b[o++]!; n > 0; n--) {
    need(2);
    const flags = b[o++]!;
    const len = b[o++]!;
    need(len);
    let name: string;
    try {
      name = new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(o, o + len));
    } catch {
      throw new ServiceStateError('peer service state has a group name that is not UTF-8');
    }
    if (len === 0 || (flags & ~JOIN_SHARED) !== 0) throw new ServiceStateError('peer service state has an invalid group entry');
    o += len;
    groups.push({ flags, name });
  }
  need(2);
  const streams: PeerState['streams'] = [];
  let n = v.getUint16(o, true);
  o += 2;
  for (; n > 0; n--) {
    need(9);
    const id = v.getInt32(o, true);
    const flags = b[o + 4]!;
    const credit = v.getInt32(o + 5, true);
    o += 9;
    if (id < 0 || credit < 0 || (flags & ~(SENT_EOF | RECEIVED_EOF)) !== 0) throw new ServiceStateError('peer service state has an invalid stream entry');
    streams.push({ id, sentEof: (flags & SENT_EOF) !== 0, receivedEof: (flags & RECEIVED_EOF) !== 0, credit });
  }
  if (o !== b.length) throw new ServiceStateError('peer service state has trailing bytes');
  return { credit, groups, streams };
}
