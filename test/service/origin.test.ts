import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { callPacket, dataPacket, flowPacket, infoPacket } from '../../src/abi/packet.js';
import { AbiViolation, TrapId } from '../../src/abi/trap.js';
import { GateError } from '../../src/errors.js';
import {
  decodeOriginState,
  encodeOriginState,
  OriginAbortedError,
  OriginClosedError,
  OriginService,
  type OriginOptions,
} from '../../src/service/origin.js';
import { ServiceRegistry } from '../../src/service/registry.js';
import { ServiceRestoreError, type ServiceBuffer } from '../../src/service/session.js';
import { ServiceStateError } from '../../src/service/varint.js';
import { ClientInput, ClientOutput, describe as seen, settle, startSession, until, type Seen } from './harness.js';

const enc = (s: string) => new TextEncoder().encode(s);
const accept = () => callPacket(0);
const flow = (id: number, value: number) => flowPacket(0, [{ id, value }]);
const data = (id: number, s: string | Uint8Array = '') => dataPacket(0, id, typeof s === 'string' ? enc(s) : s);

const REPLY = (id: number): Seen => ({ code: 0, call: [id, 0, 0, 0, 0, 0, 0, 0] });
const FLOW = (id: number, value: number): Seen => ({ code: 0, flow: [[id, value]] });
const DATA = (id: number, s = ''): Seen => ({ code: 0, data: [id, s], note: 0 });

function setup(options?: OriginOptions) {
  const origin = new OriginService(options);
  const r = new ServiceRegistry();
  r.register(origin);
  const h = startSession(r);
  h.bind('origin');
  /** Packets seen by the program since the last call. */
  let mark = 0;
  const fresh = (): Seen[] => {
    const out = h.sent.slice(mark).map(seen);
    mark = h.sent.length;
    return out;
  };
  return { origin, h, fresh, handle: (p: Uint8Array) => h.session.handle(p) };
}

interface Client {
  input: ClientInput;
  output: ClientOutput;
  done: Promise<void>;
  settled: () => 'pending' | 'resolved' | 'rejected';
  error: () => unknown;
}

function connect(origin: OriginService, signal?: AbortSignal, input: ClientInput | null = new ClientInput()): Client {
  const output = new ClientOutput();
  let state: 'pending' | 'resolved' | 'rejected' = 'pending';
  let error: unknown;
  const done = origin.connect(input, output, signal);
  done.then(
    () => (state = 'resolved'),
    (e) => {
      state = 'rejected';
      error = e;
    },
  );
  return { input: input ?? new ClientInput(), output, done, settled: () => state, error: () => error };
}

describe('origin: accepting connections (services.md §3.1)', () => {
  it('answers a pending accept when a client connects: reply {id, 0} then FLOW {id, bufsize − 1}', async () => {
    const { origin, h, fresh, handle } = setup();
    handle(accept());
    assert.deepEqual(fresh(), [], 'no immediate reply');
    assert.equal(origin.pendingAccepts, 1);
    connect(origin);
    assert.deepEqual(fresh(), [REPLY(0), FLOW(0, 32767)]);
    assert.equal(h.sent[0]!.length, 16, 'reply total size 16 (hello.cpp)');
    assert.equal(origin.pendingAccepts, 0);
    assert.deepEqual(origin.streamIds(), [0]);
  });

  it('keeps a client waiting until the program accepts', async () => {
    const { origin, fresh, handle } = setup();
    const c = connect(origin);
    await settle();
    assert.equal(c.settled(), 'pending');
    assert.deepEqual(fresh(), []);
    handle(callPacket(0, enc('content is ignored')));
    assert.deepEqual(fresh(), [REPLY(0), FLOW(0, 32767)]);
  });

  it('serves many clients with many accepts, oldest first, lowest unused ids', async () => {
    const { origin, fresh, handle } = setup();
    const clients = Array.from({ length: 10 }, () => connect(origin));
    for (let i = 0; i < 10; i++) handle(accept());
    assert.deepEqual(
      fresh(),
      Array.from({ length: 10 }, (_, i) => [REPLY(i), FLOW(i, 32767)]).flat(),
    );
    for (const [i, c] of clients.entries()) {
      handle(data(i, `hello ${i}\n`));
      assert.equal(c.output.text(), `hello ${i}\n`);
    }
    // Close stream 3 fully; the next client gets id 3 again.
    handle(flow(3, 0));
    handle(data(3));
    await until(() => clients[3]!.settled() === 'resolved');
    assert.deepEqual(origin.streamIds(), [0, 1, 2, 4, 5, 6, 7, 8, 9]);
    fresh();
    handle(accept());
    connect(origin);
    assert.deepEqual(fresh(), [REPLY(3), FLOW(3, 32767)]);
  });

  it('ignores INFO packets', () => {
    const { fresh, handle, h } = setup();
    handle(infoPacket(0, enc('x')));
    assert.deepEqual(fresh(), []);
    assert.equal(h.errors.length, 0);
  });

  it('sends the initial flow with the configured buffer size and checks it', () => {
    const { origin, fresh, handle } = setup({ bufsize: 4096 });
    handle(accept());
    connect(origin);
    assert.deepEqual(fresh(), [REPLY(0), FLOW(0, 4095)]);
    for (const bufsize of [0, 1, 3, 1000, 2 ** 31, 1.5]) {
      assert.throws(() => new OriginService({ bufsize }), (e: unknown) => e instanceof GateError && e.code === 'GATE_CONFIG');
    }
  });

  it('serves one program instance only', () => {
    const { origin } = setup();
    const config = { code: 0, maxSendSize: 65536, context: { principalId: undefined, instanceId: 'x', scope: undefined }, send() {} };
    origin.createInstance(config);
    assert.throws(() => origin.createInstance(config), (e: unknown) => e instanceof GateError && e.code === 'GATE_ORIGIN_REUSED');
  });
});

describe('origin: client → program (services.md §3.2)', () => {
  it('reads only within credit, at most 65536 − 16 bytes per DATA packet', async () => {
    const { origin, fresh, handle } = setup();
    handle(accept());
    const c = connect(origin);
    fresh();
    c.input.push('hello');
    await settle();
    assert.equal(c.input.pulls, 0, 'no reading without credit');
    handle(flow(0, 3));
    await until(() => c.input.pulls === 1);
    await settle();
    assert.deepEqual(fresh(), [DATA(0, 'hel')]);
    handle(flow(0, 10));
    await settle();
    assert.deepEqual(fresh(), [DATA(0, 'lo')], 'the rest of the chunk, then more reading');
    assert.equal(c.input.pulls, 2);
  });

  it('splits big chunks by credit and the packet size limit', async () => {
    const { origin, h, handle } = setup();
    handle(accept());
    const c = connect(origin);
    handle(flow(0, 200_000));
    c.input.push(new Uint8Array(100_000).fill(65));
    c.input.push(new Uint8Array(50_000).fill(66));
    await until(() => h.sent.length >= 5);
    await settle();
    const sizes = h.sent.slice(2).map((p) => p.length - 16);
    assert.deepEqual(sizes, [65520, 34480, 50000]);
    handle(flow(0, 10));
    c.input.push(new Uint8Array(100).fill(67));
    await until(() => h.sent.length === 6);
    assert.equal(h.sent[5]!.length - 16, 100, 'credit left: 50000 + 10');
  });

  it('sends an empty DATA packet at client end-of-file, and on a read error', async () => {
    const { origin, h, handle } = setup();
    handle(accept());
    const c = connect(origin);
    handle(flow(0, 100));
    c.input.push('last');
    c.input.end();
    await until(() => h.sent.length === 4);
    assert.deepEqual(h.sent.slice(2).map(seen), [DATA(0, 'last'), DATA(0)]);
    const e = setup();
    e.handle(accept());
    const c2 = connect(e.origin);
    e.handle(flow(0, 100));
    c2.input.fail(new Error('connection reset'));
    await until(() => e.h.sent.length === 3);
    assert.deepEqual(seen(e.h.sent[2]!), DATA(0));
  });

  it('delivers read-ahead data before the end-of-file once credit allows', async () => {
    const { origin, h, handle } = setup();
    handle(accept());
    const c = connect(origin);
    handle(flow(0, 2));
    c.input.push('abcdef');
    c.input.end();
    await until(() => h.sent.length === 3);
    await settle();
    assert.deepEqual(seen(h.sent[2]!), DATA(0, 'ab'));
    handle(flow(0, 100));
    await until(() => h.sent.length === 5);
    assert.deepEqual(h.sent.slice(3).map(seen), [DATA(0, 'cdef'), DATA(0)]);
  });

  it('acknowledges the program\'s FLOW {id, 0} with an empty DATA packet and stops reading', async () => {
    const { origin, h, handle } = setup();
    handle(accept());
    const c = connect(origin);
    handle(flow(0, 2));
    c.input.push('abcdef');
    await until(() => h.sent.length === 3);
    await settle();
    handle(flow(0, 0));
    assert.deepEqual(h.sent.slice(3).map(seen), [DATA(0)], 'read-ahead bytes dropped, EOF ack');
    c.input.push('more');
    await settle();
    assert.equal(h.sent.length, 4);
    assert.equal(c.input.pulls, 1);
  });

  it('sends end-of-file at once when the client has no input', async () => {
    const { origin, fresh, handle } = setup();
    handle(accept());
    connect(origin, undefined, null);
    assert.deepEqual(fresh(), [REPLY(0), FLOW(0, 32767), DATA(0)]);
  });
});

describe('origin: program → client (services.md §3.2)', () => {
  it('writes data to the client and refreshes credit as bytes are written', async () => {
    const { origin, fresh, handle } = setup();
    handle(accept());
    const c = connect(origin);
    fresh();
    handle(data(0, 'hello, world\n'));
    assert.equal(c.output.text(), 'hello, world\n');
    assert.deepEqual(fresh(), [FLOW(0, 13)], 'free space − 1 − outstanding credit');
  });

  it('grants no credit while the client write is pending', async () => {
    const { origin, fresh, handle } = setup();
    handle(accept());
    const c = connect(origin);
    c.output.hold = true;
    fresh();
    handle(data(0, 'abc'));
    handle(data(0, 'de'));
    assert.deepEqual(fresh(), []);
    assert.deepEqual(c.output.log, ['write:3']);
    c.output.release();
    await until(() => c.output.log.length === 2);
    assert.deepEqual(c.output.log, ['write:3', 'write:2'], 'queued data written in one piece');
    assert.deepEqual(fresh(), [FLOW(0, 3)]);
    c.output.release();
    await settle();
    assert.deepEqual(fresh(), [FLOW(0, 2)]);
    assert.equal(c.output.text(), 'abcde');
  });

  it('kills the program with ABI_VIOLATION when it exceeds its credit', async () => {
    const { origin, h, handle } = setup({ bufsize: 16 });
    handle(accept());
    const c = connect(origin);
    c.output.hold = true;
    handle(data(0, 'x'.repeat(15)));
    assert.equal(h.errors.length, 0, 'exactly the credit is fine');
    handle(data(0, 'y'));
    assert.equal(h.errors.length, 1);
    assert.ok(h.errors[0] instanceof AbiViolation);
    assert.equal(h.errors[0]!.trap, TrapId.AbiViolation);
    assert.equal(h.errors[0]!.message, 'write stream buffer overflow');
    void c;
  });

  it('flushes, ends the client writer, then sends FLOW {id, 0} on the program\'s empty DATA', async () => {
    const { origin, h, fresh, handle } = setup();
    handle(accept());
    const c = connect(origin);
    let sentAtEnd = -1;
    c.output.end = () => {
      c.output.ended = true;
      c.output.log.push('end');
      sentAtEnd = h.sent.length;
    };
    c.output.hold = true;
    fresh();
    handle(data(0, 'bye'));
    handle(data(0));
    assert.equal(c.output.ended, false, 'not before the data is written');
    c.output.release();
    await until(() => c.output.ended);
    assert.deepEqual(c.output.log, ['write:3', 'end']);
    assert.equal(h.sent.length, sentAtEnd + 1);
    assert.deepEqual(fresh(), [FLOW(0, 0)], 'no credit after end of stream, FLOW 0 after end');
  });

  it('sends FLOW {id, 0} when writing to the client fails, and drops later data', async () => {
    const { origin, fresh, handle, h } = setup();
    handle(accept());
    const c = connect(origin);
    c.output.failWrites = true;
    fresh();
    handle(data(0, 'lost'));
    await settle();
    assert.deepEqual(fresh(), [FLOW(0, 0)]);
    handle(data(0, 'more within credit'));
    handle(data(0));
    await settle();
    assert.deepEqual(fresh(), []);
    assert.equal(h.errors.length, 0);
    assert.equal(c.output.ended, false, 'a failed writer is not ended');
  });
});

describe('origin: full close handshake (abi.md §11.3)', () => {
  type Step = 'clientEOF' | 'programFlow0' | 'programEOF' | 'writeFails';
  const orders: Step[][] = [
    ['clientEOF', 'programFlow0', 'programEOF'],
    ['clientEOF', 'programEOF', 'programFlow0'],
    ['programEOF', 'clientEOF', 'programFlow0'],
    ['programEOF', 'programFlow0'],
    ['programFlow0', 'programEOF'],
    ['programFlow0', 'clientEOF', 'programEOF'],
    ['writeFails', 'programFlow0', 'programEOF'],
    ['programFlow0', 'writeFails', 'programEOF'],
  ];
  for (const order of orders) {
    it(order.join(' → '), async () => {
      const { origin, h, fresh, handle } = setup();
      handle(accept());
      const c = connect(origin);
      handle(flow(0, 100));
      await settle();
      assert.deepEqual(fresh(), [REPLY(0), FLOW(0, 32767)]);
      const expected: Seen[] = [];
      let readSending = true;
      for (const [i, step] of order.entries()) {
        assert.equal(c.settled(), 'pending', `still open before ${step}`);
        assert.deepEqual(origin.streamIds(), [0]);
        switch (step) {
          case 'clientEOF': {
            const before = h.sent.length;
            c.input.end();
            if (readSending) {
              await until(() => h.sent.length > before, 1000, 'end-of-file DATA');
              expected.push(DATA(0));
            }
            readSending = false;
            break;
          }
          case 'programFlow0':
            handle(flow(0, 0));
            if (readSending) expected.push(DATA(0));
            readSending = false;
            break;
          case 'programEOF':
            handle(data(0));
            await until(() => c.output.ended || c.output.failWrites);
            await settle();
            if (!c.output.failWrites) expected.push(FLOW(0, 0));
            break;
          case 'writeFails':
            c.output.failWrites = true;
            handle(data(0, 'x'));
            await settle();
            expected.push(FLOW(0, 0));
            break;
        }
        await settle();
        assert.deepEqual(fresh(), expected.splice(0), `after step ${i}: ${step}`);
      }
      await until(() => c.settled() === 'resolved', 1000, 'connect() to resolve');
      assert.deepEqual(origin.streamIds(), [], 'forgotten');
      assert.equal(h.errors.length, 0);
      // Anything more for the forgotten stream is a violation.
      handle(flow(0, 1));
      assert.equal(h.errors[0]?.message, 'flow packet for unknown origin stream: 0');
    });
  }
});

describe('origin: protocol violations', () => {
  const cases: Array<[string, Uint8Array[], string]> = [
    ['negative flow', [flow(0, -1)], 'stream flow increment is negative'],
    ['unknown stream (flow)', [flowPacket(0, [{ id: 0, value: 1 }, { id: 7, value: 1 }])], 'flow packet for unknown origin stream: 7'],
    ['unknown stream (data)', [data(5, 'x')], 'data packet for unknown origin stream: 5'],
    ['flow after FLOW 0', [flow(0, 0), flow(0, 5)], 'read stream already closed'],
    ['data after EOF', [data(0), data(0, 'x')], 'write stream already closed'],
    ['EOF twice', [data(0), data(0)], 'write stream already closed'],
    ['credit overflow', [flow(0, 0x7fffffff), flow(0, 1)], 'stream flow credit overflow'],
  ];
  for (const [what, packets, message] of cases) {
    it(what, () => {
      const { origin, h, handle } = setup();
      handle(accept());
      connect(origin, undefined, null);
      for (const p of packets) handle(p);
      assert.equal(h.errors.length, 1, what);
      assert.ok(h.errors[0] instanceof AbiViolation);
      assert.equal(h.errors[0]!.message, message);
    });
  }
});

describe('origin: instance stop and client abort', () => {
  it('rejects waiting clients when the instance stops; attached ones resolve', async () => {
    const { origin, h, handle } = setup();
    handle(accept());
    const attached = connect(origin);
    const waiting = connect(origin);
    await h.session.shutdown(false);
    await settle();
    assert.equal(attached.settled(), 'resolved');
    assert.equal(waiting.settled(), 'rejected');
    assert.ok(waiting.error() instanceof OriginClosedError);
    assert.equal((waiting.error() as GateError).code, 'GATE_ORIGIN_CLOSED');
    assert.equal(attached.output.ended, false, 'the caller decides how to finish the client');
    const late = connect(origin);
    await settle();
    assert.ok(late.error() instanceof OriginClosedError);
  });

  it('close() rejects waiting clients even if the program never used origin', async () => {
    const origin = new OriginService();
    const c = connect(origin);
    origin.close();
    await settle();
    assert.ok(c.error() instanceof OriginClosedError);
  });

  it('an abort before the accept rejects; after, it closes the client side', async () => {
    const { origin, fresh, handle } = setup();
    const ac = new AbortController();
    const c = connect(origin, ac.signal);
    ac.abort(new Error('client went home'));
    await settle();
    assert.ok(c.error() instanceof OriginAbortedError);
    assert.equal((c.error() as GateError).code, 'GATE_ORIGIN_ABORTED');
    handle(accept());
    assert.deepEqual(fresh(), [], 'the aborted client is not attached');
    const pre = new AbortController();
    pre.abort();
    const c0 = connect(origin, pre.signal);
    await settle();
    assert.ok(c0.error() instanceof OriginAbortedError);

    const ac2 = new AbortController();
    const c2 = connect(origin, ac2.signal);
    assert.deepEqual(fresh(), [REPLY(0), FLOW(0, 32767)]);
    ac2.abort();
    await settle();
    assert.equal(c2.settled(), 'resolved');
    assert.deepEqual(fresh(), [FLOW(0, 0), DATA(0)]);
    // The program still closes its halves; then the stream is forgotten.
    handle(flow(0, 0));
    handle(data(0));
    assert.deepEqual(origin.streamIds(), []);
  });
});

describe('origin: snapshot buffer (services.md §3.4)', () => {
  it('is empty with nothing pending and holds the accept count otherwise', async () => {
    const a = setup();
    a.handle(infoPacket(0));
    assert.deepEqual(await a.h.session.shutdown(true), [{ name: 'origin', buffer: new Uint8Array(0) }]);
    const b = setup();
    b.handle(accept());
    b.handle(accept());
    assert.deepEqual((await b.h.session.shutdown(true))[0]!.buffer, Uint8Array.of(2));
  });

  it('encodes streams as varint id, read state, write state', async () => {
    const { origin, h, handle } = setup();
    handle(accept());
    handle(accept());
    const c = connect(origin);
    handle(flow(0, 10));
    handle(data(0, 'abc'));
    await settle();
    assert.equal(c.output.text(), 'abc');
    const [entry] = await h.session.shutdown(true);
    // accepting 1, 1 stream, id 0; read: flags 7, credit 10, no data; write: flags 7, credit 32767, no data.
    assert.deepEqual([...entry!.buffer], [1, 1, 0, 7, 10, 0, 7, 0xff, 0xff, 0x01, 0]);
    assert.equal(c.settled(), 'resolved');
  });

  it('drops unwritten program data and records a flushing writer as closed', async () => {
    const { origin, h, handle } = setup();
    handle(accept());
    const c = connect(origin, undefined, null);
    c.output.hold = true;
    handle(flow(0, 0));
    handle(data(0, 'pending'));
    handle(data(0));
    const [entry] = await h.session.shutdown(true);
    const state = decodeOriginState(entry!.buffer, 32768, 65536);
    assert.deepEqual(state.streams[0]!.state.read, { flags: 0, subscribed: 0, data: new Uint8Array(0) });
    assert.deepEqual(state.streams[0]!.state.write, { flags: 1, subscribed: 32767 - 7, data: new Uint8Array(0) });
  });

  it('round-trips: restored accepts stay pending, restored streams are driven to closure', async () => {
    const first = setup();
    first.handle(accept());
    first.handle(accept());
    const c = connect(first.origin);
    first.handle(flow(0, 5));
    first.handle(data(0, 'hi'));
    await settle();
    const saved: ServiceBuffer[] = await first.h.session.shutdown(true);
    assert.equal(c.settled(), 'resolved');

    const origin = new OriginService();
    const r = new ServiceRegistry();
    r.register(origin);
    const h = startSession(r);
    h.session.restore(saved);
    // Read half: end-of-file; write half: FLOW 0 (no client any more).
    assert.deepEqual(h.sent.map(seen), [DATA(0), FLOW(0, 0)]);
    assert.equal(origin.pendingAccepts, 1);
    assert.deepEqual(origin.streamIds(), [0]);
    // A new client is attached to the restored accept, avoiding the restored id.
    const c2 = connect(origin);
    assert.deepEqual(h.sent.slice(2).map(seen), [REPLY(1), FLOW(1, 32767)]);
    // The restored stream still accepts what the program was allowed to send.
    h.session.handle(data(0, 'x'.repeat(32767 - 2)));
    h.session.handle(flow(0, 3));
    h.session.handle(flow(0, 0));
    h.session.handle(data(0));
    assert.equal(h.errors.length, 0);
    assert.deepEqual(origin.streamIds(), [1]);
    const again = await h.session.shutdown(true);
    assert.deepEqual([...again[0]!.buffer], [0, 1, 1, 7, 0, 0, 7, 0xff, 0xff, 0x01, 0]);
    void c2;
  });

  it('delivers restored read data before the end-of-file', () => {
    const buffer = encodeOriginState({
      accepting: 0,
      streams: [
        {
          id: 4,
          state: {
            read: { flags: 1 | 4, subscribed: 3, data: enc('xyz') },
            write: { flags: 4, subscribed: 10, data: new Uint8Array(0) },
          },
        },
        {
          id: 2,
          state: {
            read: { flags: 0, subscribed: 0, data: new Uint8Array(0) },
            write: { flags: 0, subscribed: 0, data: new Uint8Array(0) },
          },
        },
      ],
    });
    const origin = new OriginService();
    const r = new ServiceRegistry();
    r.register(origin);
    const h = startSession(r);
    h.session.restore([{ name: 'origin', buffer }]);
    assert.deepEqual(h.sent.map(seen), [DATA(4, 'xyz'), DATA(4)]);
    assert.deepEqual(origin.streamIds(), [4], 'a closed restored stream is forgotten at once');
    h.session.handle(data(4, 'x'.repeat(10)));
    assert.equal(h.errors.length, 0);
    h.session.handle(data(4, 'y'));
    assert.equal(h.errors[0]?.message, 'write stream buffer overflow');
  });

  it('rejects inconsistent or malformed state with a restore error', () => {
    const half = (flags: number, subscribed = 0, size = 0) => [flags, subscribed, size, ...new Array(size).fill(65)];
    const bad: Array<[string, number[]]> = [
      ['truncated', [1, 1, 0, 7]],
      ['varint out of range', [0x80, 0x80, 0x80, 0x80, 0x08]],
      ['endless varint', Array(11).fill(0x80)],
      ['trailing bytes', [1, 0, 9]],
      ['duplicate id', [0, 2, 0, ...half(0), ...half(0), 0, ...half(0), ...half(0)]],
      ['data without sending', [0, 1, 0, ...half(1, 0, 1), ...half(4)]],
      ['reading without sending', [0, 1, 0, ...half(2), ...half(4)]],
      ['writing without receiving', [0, 1, 0, ...half(4), ...half(2)]],
      ['flags out of range', [0, 1, 0, ...half(8), ...half(4)]],
      ['write credit ≥ bufsize', [0, 1, 0, ...half(4), 4, 0x80, 0x80, 0x02, 0]],
      ['write data > bufsize', [0, 1, 0, ...half(4), 4, 0, 0x81, 0x80, 0x02]],
      ['read data > max packet', [0, 1, 0, 4, 0, 0x81, 0x80, 0x04]],
    ];
    for (const [what, bytes] of bad) {
      assert.throws(() => decodeOriginState(Uint8Array.from(bytes), 32768, 65536), ServiceStateError, what);
      const r = new ServiceRegistry();
      r.register(new OriginService());
      assert.throws(
        () => startSession(r).session.restore([{ name: 'origin', buffer: Uint8Array.from(bytes) }]),
        (e: unknown) => e instanceof ServiceRestoreError && e.cause instanceof ServiceStateError,
        what,
      );
    }
    // Non-minimal varints are accepted, as by Go's Uvarint.
    assert.deepEqual(decodeOriginState(Uint8Array.of(0x81, 0x00), 32768, 65536), { accepting: 1, streams: [] });
  });
});

describe('origin: misbehaving clients never hurt the program', () => {
  it('a broken input iterable fails only its own connect', async () => {
    const { origin, h, fresh, handle } = setup();
    handle(accept());
    const broken = { [Symbol.asyncIterator]: (): AsyncIterator<Uint8Array> => { throw new Error('not iterable today'); } };
    await assert.rejects(origin.connect(broken, new ClientOutput()), /not iterable today/);
    assert.deepEqual(fresh(), []);
    assert.equal(origin.pendingAccepts, 1, 'the accept is still pending');
    connect(origin);
    assert.deepEqual(fresh(), [REPLY(0), FLOW(0, 32767)]);
    assert.equal(h.errors.length, 0);
  });

  it('synchronous write/end exceptions and non-byte input close the client side', async () => {
    const { origin, h, fresh, handle } = setup();
    handle(accept());
    handle(accept());
    const output = {
      write: (): void => {
        throw new Error('EPIPE');
      },
      end: (): void => {},
    };
    async function* strings(): AsyncGenerator<Uint8Array> {
      yield 'not bytes' as unknown as Uint8Array;
    }
    const done = origin.connect(strings(), output);
    fresh();
    handle(flow(0, 10));
    handle(data(0, 'x'));
    await settle();
    assert.deepEqual(fresh(), [FLOW(0, 0), DATA(0)], 'write failed at once; the string ended the input');
    handle(flow(0, 0));
    handle(data(0));
    await done;
    const c = connect(origin, undefined, null);
    c.output.end = () => {
      throw new Error('already closed');
    };
    fresh();
    handle(data(0));
    assert.deepEqual(fresh(), [FLOW(0, 0)]);
    assert.equal(h.errors.length, 0);
  });
});
