/**
 * Test helpers: a session with recording callbacks, packet readers, and a
 * fake origin client built from real async iterables.
 */
import { Domain, packetCode, packetContent, packetDomain, readDataPacket, readFlowEntries } from '../../src/abi/packet.js';
import type { Trap } from '../../src/abi/trap.js';
import type { ServiceContext } from '../../src/service/api.js';
import type { ServiceRegistry } from '../../src/service/registry.js';
import { ServiceSession } from '../../src/service/session.js';

export const INSTANCE_ID = '0b6a2b8e-6d2b-4e8f-9b47-1f6f7a1c2d3e';

export function makeContext(over: Partial<ServiceContext> = {}): ServiceContext {
  return { principalId: 'local', instanceId: INSTANCE_ID, scope: undefined, ...over };
}

export interface Harness {
  session: ServiceSession;
  /** Packets sent to the program, in order. */
  sent: Uint8Array[];
  errors: Trap[];
  /** Binds names to codes 0, 1, … in order. */
  bind(...names: string[]): void;
}

export function startSession(registry: ServiceRegistry, context: ServiceContext = makeContext()): Harness {
  const sent: Uint8Array[] = [];
  const errors: Trap[] = [];
  const session = new ServiceSession({
    registry,
    context,
    sendToProgram: (p) => sent.push(p),
    onError: (e) => errors.push(e),
  });
  return {
    session,
    sent,
    errors,
    bind(...names) {
      for (const name of names) session.bind(session.count, name);
    },
  };
}

/** A readable summary of a packet sent to the program. */
export type Seen =
  | { code: number; call: number[] }
  | { code: number; info: number[] }
  | { code: number; flow: Array<[number, number]> }
  | { code: number; data: [number, string]; note: number };

export function describe(p: Uint8Array): Seen {
  const code = packetCode(p);
  switch (packetDomain(p)) {
    case Domain.Call:
      return { code, call: [...packetContent(p)] };
    case Domain.Info:
      return { code, info: [...packetContent(p)] };
    case Domain.Flow:
      return { code, flow: readFlowEntries(p).map((e) => [e.id, e.value]) };
    default: {
      const d = readDataPacket(p);
      return { code, data: [d.id, new TextDecoder().decode(d.data)], note: d.note };
    }
  }
}

/** Resolves once `cond` holds, checking after every macrotask turn; rejects after `ms`. */
export async function until(cond: () => boolean, ms = 2000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

/** Lets pending promise callbacks and immediates run. */
export async function settle(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
}

/** A client's input: an async iterable fed by the test. Counts how often it was asked for data. */
export class ClientInput implements AsyncIterable<Uint8Array> {
  private readonly chunks: Uint8Array[] = [];
  private ended = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  pulls = 0;

  push(chunk: Uint8Array | string): void {
    this.chunks.push(typeof chunk === 'string' ? new TextEncoder().encode(chunk) : chunk);
    this.wake?.();
  }

  end(): void {
    this.ended = true;
    this.wake?.();
  }

  fail(e: Error): void {
    this.failure = e;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    for (;;) {
      this.pulls++;
      while (this.chunks.length === 0 && !this.ended && !this.failure) {
        await new Promise<void>((r) => (this.wake = r));
        this.wake = undefined;
      }
      if (this.chunks.length > 0) {
        yield this.chunks.shift()!;
        continue;
      }
      if (this.failure) throw this.failure;
      return;
    }
  }
}

/** A client's output: records writes; optionally holds each write until released. */
export class ClientOutput {
  readonly chunks: Uint8Array[] = [];
  ended = false;
  /** Events in order: 'write:<n>' and 'end'. */
  readonly log: string[] = [];
  hold = false;
  failWrites = false;
  private held: Array<() => void> = [];

  write = (chunk: Uint8Array): Promise<void> | void => {
    if (this.failWrites) return Promise.reject(new Error('client went away'));
    this.chunks.push(chunk.slice());
    this.log.push(`write:${chunk.length}`);
    if (this.hold) return new Promise<void>((r) => this.held.push(r));
  };

  end = (): void => {
    this.ended = true;
    this.log.push('end');
  };

  /** Completes the writes held so far. */
  release(): void {
    const h = this.held;
    this.held = [];
    for (const r of h) r();
  }

  text(): string {
    return new TextDecoder().decode(Buffer.concat(this.chunks));
  }

  bytes(): number {
    return this.chunks.reduce((n, c) => n + c.length, 0);
  }
}
