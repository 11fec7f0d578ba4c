/**
 * Fuzzes PacketStreamDecoder + ServiceDiscovery with random and mutated
 * packet streams in random chunks (deterministic seeds, bounded time): the
 * decoder must either emit well-formed packets or throw AbiViolation — no
 * other exception, and never buffer more than one maximal packet.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ServiceDiscovery } from '../../src/abi/discovery.js';
import { callPacket, dataPacket, Domain, flowPacket, makePacket } from '../../src/abi/packet.js';
import { MAX_PENDING_BYTES, PacketStreamDecoder } from '../../src/abi/outputstream.js';
import { AbiViolation } from '../../src/abi/trap.js';
import { discoveryRequest, frame } from './stream-helpers.js';

/** xorshift32: small, deterministic. */
function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n: number) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

const NAMES = ['origin', 'catalog', 'random', 'x', 'test', 'ö', '\u{1F600}'];

/** Payload bytes: random for small sizes, a cheap pattern for big ones. */
function payload(r: (n: number) => number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  if (n <= 256) for (let i = 0; i < n; i++) b[i] = r(256);
  else b.fill(r(256));
  return b;
}

/** A valid packet for one of the codes discovered so far (most of the stream). */
function validPacket(r: (n: number) => number, discovered: number): Uint8Array {
  const code = r(Math.max(1, discovered));
  switch (r(4)) {
    case 0:
      return callPacket(code, payload(r, r(40)));
    case 1:
      return flowPacket(code, Array.from({ length: r(4) }, () => ({ id: r(4), value: r(100) })));
    case 2:
      return dataPacket(code, r(4), payload(r, r(8) === 0 ? r(65521) : r(100)));
    default:
      return makePacket(8 + r(30), code, Domain.Info);
  }
}

/** Anything: bad codes, domains, sizes, discovery requests good and bad. */
function randomPacket(r: (n: number) => number, discovered: number): Uint8Array {
  const code = r(10) === 0 ? r(65536) - 32768 : r(Math.max(1, discovered + 2)) - 1;
  switch (r(6)) {
    case 0: {
      const names = Array.from({ length: r(5) }, () => NAMES[r(NAMES.length)]!);
      return discoveryRequest(names, r(8) === 0 ? r(65536) : names.length, r(10) === 0 ? r(256) : Domain.Call);
    }
    case 1:
      return makePacket(8 + r(30), code, r(256));
    case 2:
      return makePacket(8 + r(10), code, Domain.Data);
    case 3:
      return dataPacket(code, r(4), payload(r, r(70000)).subarray(0, 65520));
    default: {
      const p = payload(r, 8 + r(64));
      if (r(2) === 0) new DataView(p.buffer).setUint32(0, p.length, true);
      return p;
    }
  }
}

function mutate(r: (n: number) => number, stream: Uint8Array): Uint8Array {
  const s = stream.slice();
  const flips = 1 + r(3);
  for (let i = 0; i < flips && s.length > 0; i++) s[r(s.length)] = r(256);
  if (r(5) === 0 && s.length > 0) return s.subarray(0, r(s.length));
  return s;
}

function checkWellFormed(p: Uint8Array, discovery: ServiceDiscovery): void {
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  assert.equal(v.getUint32(0, true), p.length, 'size field matches length');
  assert.ok(p.length >= 8 && p.length <= 65536);
  const code = v.getInt16(4, true);
  assert.ok(code >= 0 && code < discovery.count && discovery.isAvailable(code), `code ${code} is available`);
  assert.ok(p[6]! <= Domain.Data);
  if (p[6] === Domain.Data) assert.ok(p.length >= 16);
}

function run(seed: number): { packets: number; violations: number } {
  const r = rng(seed);
  const discovery = new ServiceDiscovery(new Set(['origin', 'catalog', 'random']));
  let packets = 0;
  const decoder = new PacketStreamDecoder(discovery, {
    onDiscovery: (response, bound) => {
      const v = new DataView(response.buffer, response.byteOffset);
      assert.equal(v.getUint32(0, true), response.length);
      assert.equal(v.getUint16(8, true), discovery.count);
      assert.equal(response.length, 10 + discovery.count);
      assert.ok(discovery.count <= 256);
      for (const b of bound) assert.equal(discovery.isAvailable(b.code), b.available);
    },
    onServicePacket: (p) => {
      checkWellFormed(p, discovery);
      packets++;
    },
  });
  const count = 1 + r(30);
  const list: Uint8Array[] = [];
  let discovered = 0;
  if (r(10) !== 0) {
    const names = Array.from({ length: 1 + r(6) }, (_, i) => (i < 3 ? NAMES[i]! : `n${r(1000)}`));
    list.push(discoveryRequest([...new Set(names)]));
    discovered = new Set(names).size;
  }
  for (let i = 0; i < count; i++) {
    const p = r(12) === 0 ? randomPacket(r, discovered) : validPacket(r, discovered);
    if (p[4] === 0xff && p[5] === 0xff) discovered += 5;
    list.push(p);
  }
  let stream = frame(...list);
  if (r(3) === 0) stream = mutate(r, stream);
  let off = 0;
  try {
    while (off < stream.length) {
      const n = 1 + r(r(4) === 0 ? 70000 : 64);
      decoder.write(stream.subarray(off, off + n));
      off += n;
      assert.ok(decoder.pending() <= MAX_PENDING_BYTES, 'bounded buffering');
      assert.ok(decoder.pending() < 8 || decoder.pendingBytes().length === decoder.pending());
    }
  } catch (e) {
    if (!(e instanceof AbiViolation)) throw e;
    assert.throws(() => decoder.write(new Uint8Array(8)), AbiViolation, 'stays failed');
    return { packets, violations: 1 };
  }
  return { packets, violations: 0 };
}

describe('packet stream fuzz', () => {
  it('emits well-formed packets or throws AbiViolation, nothing else', () => {
    const deadline = Date.now() + 6000;
    let runs = 0;
    let packets = 0;
    let violations = 0;
    for (let seed = 1; seed <= 20000 && Date.now() < deadline; seed++) {
      const result = run(seed * 2654435761);
      runs++;
      packets += result.packets;
      violations += result.violations;
    }
    console.log(`fuzz: ${runs} streams, ${packets} packets emitted, ${violations} violations`);
    assert.ok(runs >= 500, `ran ${runs} streams`);
    assert.ok(packets > 100, `emitted ${packets} packets`);
    assert.ok(violations > 50 && violations < runs, `violations: ${violations} of ${runs}`);
  });
});
