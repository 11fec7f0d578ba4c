import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { callPacket, flowPacket, infoPacket, packetContent } from '../../src/abi/packet.js';
import { DEFAULT_BITS_PER_MINUTE, randomByteIntervalMs, randomService } from '../../src/service/random.js';
import { ServiceRegistry } from '../../src/service/registry.js';
import { GateError } from '../../src/errors.js';
import { makeContext, startSession, until } from './harness.js';

/** 1 ms per byte. */
const FAST = 8 * 60 * 1000;

function setup(bitsPerMinute = FAST) {
  const r = new ServiceRegistry();
  r.register(randomService({ bitsPerMinute }));
  const h = startSession(r);
  h.bind('random');
  return h;
}

describe('random (services.md §6)', () => {
  it('computes the byte interval like the original', () => {
    assert.equal(DEFAULT_BITS_PER_MINUTE, 7680);
    assert.equal(randomByteIntervalMs(7680), 62.5);
    assert.equal(randomByteIntervalMs(FAST), 1);
    assert.equal(randomByteIntervalMs(7), Math.ceil(480e9 / 7) / 1e6);
  });

  it('is discoverable only with a positive rate and rejects bad configuration', () => {
    assert.equal(randomService().discoverable(makeContext()), true);
    assert.equal(randomService({ bitsPerMinute: 0 }).discoverable(makeContext()), false);
    assert.throws(() => randomService({ bitsPerMinute: -1 }), GateError);
    assert.throws(() => randomService({ bitsPerMinute: NaN }), GateError);
    assert.equal(randomService().streams, false);
  });

  it('answers count 0 (or no content) at once with an empty reply', () => {
    const h = setup(60); // 8 s per byte: anything non-empty would be delayed
    h.session.handle(callPacket(0));
    h.session.handle(callPacket(0, Uint8Array.of(0, 5)));
    assert.deepEqual(h.sent, [callPacket(0), callPacket(0)]);
    void h.session.shutdown(false);
  });

  it('delays a reply until lastSent + count × interval, counting from creation', async () => {
    const h = setup();
    const start = performance.now();
    h.session.handle(callPacket(0, Uint8Array.of(40)));
    assert.equal(h.sent.length, 0, 'not immediately');
    // While the reply is pending, further calls get an immediate empty reply (the quirk).
    h.session.handle(callPacket(0, Uint8Array.of(3)));
    assert.deepEqual(h.sent, [callPacket(0)]);
    await until(() => h.sent.length === 2, 3000, 'delayed reply');
    assert.ok(performance.now() - start >= 39, `waited ${performance.now() - start} ms`);
    const reply = packetContent(h.sent[1]!);
    assert.equal(reply.length, 40);
    assert.ok(reply.some((b) => b !== 0), 'random bytes');
    // Enough time passes: the next reply is immediate.
    await new Promise((r) => setTimeout(r, 20));
    h.session.handle(callPacket(0, Uint8Array.of(10)));
    assert.equal(h.sent.length, 3);
    assert.equal(packetContent(h.sent[2]!).length, 10);
    // …and rate limiting applies again from that send.
    h.session.handle(callPacket(0, Uint8Array.of(255)));
    assert.equal(h.sent.length, 3);
    await h.session.shutdown(false);
  });

  it('ignores non-call packets', async () => {
    const h = setup();
    h.session.handle(infoPacket(0, Uint8Array.of(1)));
    await h.session.idle();
    assert.equal(h.sent.length, 0);
    h.session.handle(flowPacket(0, []));
    assert.equal(h.errors.length, 1, 'no streams');
  });

  it('saves [1] for an outstanding reply and answers it with one byte on restore', async () => {
    const h = setup(60);
    h.session.handle(callPacket(0, Uint8Array.of(16)));
    const saved = await h.session.shutdown(true);
    assert.deepEqual(saved, [{ name: 'random', buffer: Uint8Array.of(1) }]);
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(h.sent.length, 0, 'nothing after shutdown');

    const r = new ServiceRegistry();
    r.register(randomService({ bitsPerMinute: 60 }));
    const h2 = startSession(r);
    h2.session.restore(saved);
    assert.equal(h2.sent.length, 1, 'sent at once');
    assert.equal(packetContent(h2.sent[0]!).length, 1);
    assert.deepEqual(await h2.session.shutdown(true), [{ name: 'random', buffer: new Uint8Array(0) }]);

    const idle = setup(60);
    idle.session.handle(callPacket(0));
    assert.deepEqual(await idle.session.shutdown(true), [{ name: 'random', buffer: new Uint8Array(0) }]);

    const h3 = startSession(r);
    h3.session.restore([{ name: 'random', buffer: Uint8Array.of(0) }]);
    assert.equal(h3.sent.length, 0);
    assert.throws(() => startSession(r).session.restore([{ name: 'random', buffer: Uint8Array.of(1, 1) }]), /at most 1 byte/);
  });
});
