import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InputQueue } from '../../src/abi/inputqueue.js';
import { callPacket, dataPacket, makePacket } from '../../src/abi/packet.js';
import { GateError } from '../../src/errors.js';
import { frame } from './stream-helpers.js';

describe('InputQueue', () => {
  it('pads packets to 8 bytes with zeros', () => {
    const q = new InputQueue();
    const a = callPacket(0, Uint8Array.of(1, 2, 3)); // 11 → 16
    const b = makePacket(16, 1, 0); // 16 → 16
    const c = dataPacket(2, 7, Uint8Array.of(9)); // 17 → 24
    q.push(a);
    q.push(b);
    q.push(c);
    assert.equal(q.buffered(), 56);
    const out = new Uint8Array(100).fill(0xaa);
    assert.equal(q.read(out), 56);
    assert.deepEqual(out.subarray(0, 56), frame(a, b, c));
    assert.equal(out[56], 0xaa);
    assert.equal(q.buffered(), 0);
    assert.equal(q.read(out), 0);
  });

  it('supports partial reads of any size', () => {
    const packets = Array.from({ length: 50 }, (_, i) => callPacket(i, new Uint8Array(i).fill(i)));
    const expected = frame(...packets);
    for (const step of [1, 3, 8, 13, 100]) {
      const q = new InputQueue();
      for (const p of packets) q.push(p);
      const got = new Uint8Array(expected.length);
      let off = 0;
      while (q.buffered() > 0) {
        const before = q.buffered();
        const n = q.read(got.subarray(off, Math.min(off + step, got.length)));
        assert.equal(q.buffered(), before - n);
        off += n;
      }
      assert.equal(off, expected.length);
      assert.deepEqual(got, expected);
    }
  });

  it('queues raw framed bytes and drains everything', () => {
    const q = new InputQueue();
    q.pushRaw(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8));
    q.pushRaw(new Uint8Array(0));
    q.push(callPacket(3));
    const first = new Uint8Array(3);
    q.read(first);
    assert.deepEqual([...first], [1, 2, 3]);
    const rest = q.drain();
    assert.deepEqual(rest, Uint8Array.of(4, 5, 6, 7, 8, ...callPacket(3)));
    assert.equal(q.buffered(), 0);
  });

  it('refuses packets that would break the framing', () => {
    const q = new InputQueue();
    assert.throws(() => q.push(new Uint8Array(7)), (e: unknown) => e instanceof GateError && e.code === 'GATE_INVALID_PACKET');
    assert.throws(() => q.push(new Uint8Array(65537)), GateError);
    const bad = callPacket(0, Uint8Array.of(1));
    new DataView(bad.buffer).setUint32(0, 8, true);
    assert.throws(() => q.push(bad), /does not match/);
    assert.equal(q.buffered(), 0);
  });

  it('stays linear with many small packets and reads', () => {
    const q = new InputQueue();
    const p = callPacket(0, Uint8Array.of(1));
    const n = 200_000;
    const start = performance.now();
    const dst = new Uint8Array(5);
    let read = 0;
    for (let i = 0; i < n; i++) {
      q.push(p);
      if (i % 2 === 0) read += q.read(dst);
    }
    while (q.buffered() > 0) read += q.read(dst);
    assert.equal(read, n * 16);
    assert.ok(performance.now() - start < 3000, 'took too long');
  });
});
