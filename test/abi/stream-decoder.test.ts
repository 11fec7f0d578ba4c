import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ServiceDiscovery, type DiscoveryBinding } from '../../src/abi/discovery.js';
import { callPacket, dataPacket, Domain, flowPacket, makePacket } from '../../src/abi/packet.js';
import { MAX_PENDING_BYTES, PacketStreamDecoder } from '../../src/abi/outputstream.js';
import { AbiViolation } from '../../src/abi/trap.js';
import { discoveryRequest, frame, parseStates } from './stream-helpers.js';

function setup(available = ['origin', 'catalog']) {
  const discovery = new ServiceDiscovery(new Set(available));
  const responses: Uint8Array[] = [];
  const bound: DiscoveryBinding[] = [];
  const packets: Uint8Array[] = [];
  const decoder = new PacketStreamDecoder(discovery, {
    onDiscovery: (r, b) => {
      responses.push(r);
      bound.push(...b);
    },
    onServicePacket: (p) => packets.push(p),
  });
  return { discovery, decoder, responses, bound, packets };
}

function violation(message: string) {
  return (e: unknown) => e instanceof AbiViolation && e.message === message;
}

describe('PacketStreamDecoder', () => {
  const stream = frame(
    discoveryRequest(['origin', 'test', 'catalog']),
    callPacket(0),
    callPacket(2, new TextEncoder().encode('json')),
    callPacket(1, Uint8Array.of(1, 2, 3)), // unavailable: dropped
    flowPacket(0, [{ id: 0, value: 100 }]),
    dataPacket(0, 0, new TextEncoder().encode('hello, world\n')),
    makePacket(8, 0, Domain.Info),
  );

  it('frames, validates and dispatches a packet stream', () => {
    const s = setup();
    s.decoder.write(stream);
    assert.equal(s.responses.length, 1);
    assert.deepEqual(parseStates(s.responses[0]!).states, [1, 0, 1]);
    assert.deepEqual(s.bound.map((b) => [b.code, b.name, b.available]), [
      [0, 'origin', true],
      [1, 'test', false],
      [2, 'catalog', true],
    ]);
    assert.deepEqual(s.packets.map((p) => [p.length, p[4], p[6]]), [
      [8, 0, Domain.Call],
      [12, 2, Domain.Call],
      [16, 0, Domain.Flow],
      [29, 0, Domain.Data],
      [8, 0, Domain.Info],
    ]);
    assert.equal(s.decoder.pending(), 0);
  });

  it('gives the same result for every chunking of the stream', () => {
    const whole = setup();
    whole.decoder.write(stream);
    for (const step of [1, 2, 3, 5, 7, 8, 9, 13, 64]) {
      const s = setup();
      for (let off = 0; off < stream.length; off += step) s.decoder.write(stream.subarray(off, off + step));
      assert.deepEqual(s.packets, whole.packets, `chunk size ${step}`);
      assert.deepEqual(s.responses, whole.responses);
      assert.equal(s.decoder.pending(), 0);
    }
  });

  it('waits for the padding before handling a packet and reports pending bytes', () => {
    const s = setup();
    s.decoder.write(frame(discoveryRequest(['origin'])));
    const p = dataPacket(0, 5, Uint8Array.of(1, 2, 3)); // 19 bytes, 24 on the wire
    const wire = frame(p);
    s.decoder.write(wire.subarray(0, 19));
    assert.equal(s.packets.length, 0);
    assert.equal(s.decoder.pending(), 19);
    assert.deepEqual(s.decoder.pendingBytes(), wire.subarray(0, 19));
    s.decoder.write(wire.subarray(19, 23));
    assert.equal(s.packets.length, 0);
    s.decoder.write(wire.subarray(23));
    assert.deepEqual(s.packets, [p]);
    assert.equal(s.decoder.pending(), 0);
    s.decoder.write(wire.subarray(0, 5));
    assert.equal(s.decoder.pending(), 5);
    assert.deepEqual(s.decoder.pendingBytes(), wire.subarray(0, 5));
  });

  it('emits owned exact-size copies with the domain high bits cleared', () => {
    const s = setup();
    const input = frame(discoveryRequest(['origin']), makePacket(9, 0, 0xf1));
    s.decoder.write(input);
    const p = s.packets[0]!;
    assert.equal(p.length, 9);
    assert.equal(p[6], Domain.Info);
    input.fill(0xee);
    assert.equal(p[6], Domain.Info, 'not a view of the input');
    assert.equal(p.byteOffset, 0);
  });

  it('rejects bad sizes as soon as the header arrives', () => {
    for (const size of [0, 7, 65537, 0xffffffff]) {
      const s = setup();
      const header = makePacket(8, 0, 0);
      new DataView(header.buffer).setUint32(0, size, true);
      s.decoder.write(header.subarray(0, 4));
      assert.throws(() => s.decoder.write(header.subarray(4)), violation(`runtime: invalid op packet size: ${size}`));
      assert.equal(s.decoder.pending(), 0);
    }
    const s = setup();
    assert.doesNotThrow(() => s.decoder.write(frame(discoveryRequest(['origin']))));
    const max = makePacket(65536, 0, Domain.Call);
    s.decoder.write(max.subarray(0, 65535));
    assert.equal(s.decoder.pending(), 65535);
    s.decoder.write(max.subarray(65535));
    assert.equal(s.packets.length, 1);
  });

  it('reports invalid codes, domains and short data packets with the runtime messages', () => {
    const cases: Array<[Uint8Array, string]> = [
      [makePacket(8, -2, Domain.Call), 'invalid code in incoming packet: -2'],
      [makePacket(8, -32768, Domain.Call), 'invalid code in incoming packet: -32768'],
      [makePacket(8, 1, Domain.Call), 'invalid service code in packet: 1'],
      [makePacket(8, 32767, Domain.Call), 'invalid service code in packet: 32767'],
      [makePacket(8, 0, 4), 'invalid domain in packet: 4'],
      [makePacket(8, 0, 0x2f), 'invalid domain in packet: 15'],
      [makePacket(15, 0, Domain.Data), 'data packet is too short: 15 bytes'],
      [makePacket(8, 0, Domain.Data), 'data packet is too short: 8 bytes'],
      [makePacket(9, -1, Domain.Call), 'service discovery packet is too short: 9 bytes'],
      [makePacket(10, -1, Domain.Flow), 'service discovery packet has wrong domain: 2'],
    ];
    for (const [packet, message] of cases) {
      const s = setup();
      s.decoder.write(frame(discoveryRequest(['origin'])));
      assert.throws(() => s.decoder.write(frame(packet)), violation(message));
      // The decoder stays failed.
      assert.throws(() => s.decoder.write(frame(callPacket(0))), violation(message));
      assert.equal(s.packets.length, 0);
    }
  });

  it('checks service codes against the codes discovered so far', () => {
    const s = setup();
    assert.throws(() => s.decoder.write(frame(callPacket(0))), violation('invalid service code in packet: 0'));
  });

  it('handles packets that precede a violation in the same chunk', () => {
    const s = setup();
    assert.throws(() => s.decoder.write(frame(discoveryRequest(['origin']), callPacket(0), makePacket(8, 5, 0))), AbiViolation);
    assert.equal(s.responses.length, 1);
    assert.equal(s.packets.length, 1);
  });

  it('never buffers more than one maximal packet', () => {
    assert.equal(MAX_PENDING_BYTES, 65536);
    const s = setup();
    s.decoder.write(frame(discoveryRequest(['origin'])));
    const big = frame(makePacket(65536, 0, Domain.Call), makePacket(65530, 0, Domain.Call));
    for (let off = 0; off < big.length; off += 4099) {
      s.decoder.write(big.subarray(off, off + 4099));
      assert.ok(s.decoder.pending() <= MAX_PENDING_BYTES);
    }
    assert.deepEqual(s.packets.map((p) => p.length), [65536, 65530]);
  });
});
