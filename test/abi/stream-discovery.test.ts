import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ServiceDiscovery } from '../../src/abi/discovery.js';
import { Domain, makePacket } from '../../src/abi/packet.js';
import { AbiViolation } from '../../src/abi/trap.js';
import { discoveryRequest, parseStates } from './stream-helpers.js';

const available = new Set(['origin', 'catalog', 'random']);

function violation(message: string) {
  return (e: unknown) => e instanceof AbiViolation && e.message === message;
}

describe('ServiceDiscovery', () => {
  it('numbers names in request order across requests and lists all states', () => {
    const d = new ServiceDiscovery(available);
    const r1 = d.handleRequest(discoveryRequest(['origin', 'test']));
    assert.deepEqual(parseStates(r1.response), { domain: Domain.Call, count: 2, states: [1, 0], size: 12 });
    assert.deepEqual(r1.bound, [
      { code: 0, name: 'origin', available: true },
      { code: 1, name: 'test', available: false },
    ]);
    const r2 = d.handleRequest(discoveryRequest(['_nonexistent', 'random']));
    assert.deepEqual(parseStates(r2.response).states, [1, 0, 0, 1]);
    assert.deepEqual(r2.bound.map((b) => b.code), [2, 3]);
    assert.equal(d.count, 4);
    assert.deepEqual(d.names(), ['origin', 'test', '_nonexistent', 'random']);
    assert.equal(d.isAvailable(0), true);
    assert.equal(d.isAvailable(1), false);
    assert.equal(d.isAvailable(3), true);
    assert.equal(d.isAvailable(4), false);
    assert.equal(d.isAvailable(-1), false);
  });

  it('answers an unknown name with an 11-byte response (abi.cpp fd_write_and_read_gate)', () => {
    const d = new ServiceDiscovery(available);
    const { response } = d.handleRequest(discoveryRequest(['bogus']));
    assert.equal(response.length, 11);
    assert.deepEqual([...response], [11, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0]);
  });

  it('an empty request reports the current states', () => {
    const d = new ServiceDiscovery(available);
    d.handleRequest(discoveryRequest(['origin']));
    const r = d.handleRequest(discoveryRequest([]));
    assert.deepEqual(parseStates(r.response).states, [1]);
    assert.deepEqual(r.bound, []);
  });

  it('allows repeating unavailable names, each getting a new code', () => {
    const d = new ServiceDiscovery(available);
    const r = d.handleRequest(discoveryRequest(['nope', 'nope']));
    assert.deepEqual(r.bound.map((b) => [b.code, b.available]), [[0, false], [1, false]]);
    const r2 = d.handleRequest(discoveryRequest(['nope']));
    assert.deepEqual(parseStates(r2.response).states, [0, 0, 0]);
  });

  it('rejects an available name discovered again, or twice in one request', () => {
    const d = new ServiceDiscovery(available);
    d.handleRequest(discoveryRequest(['origin']));
    assert.throws(() => d.handleRequest(discoveryRequest(['catalog', 'origin'])), violation('duplicate service'));
    assert.equal(d.count, 1, 'a violating request allocates nothing');
    const d2 = new ServiceDiscovery(available);
    assert.throws(() => d2.handleRequest(discoveryRequest(['random', 'x', 'random'])), violation('duplicate service'));
    assert.equal(d2.count, 0);
  });

  it('stops at 256 services and does not parse the names beyond', () => {
    const d = new ServiceDiscovery(available);
    const names = Array.from({ length: 250 }, (_, i) => `s${i}`);
    d.handleRequest(discoveryRequest(names));
    const tail = ['origin', 'a', 'b', 'c', 'd', 'e', 'f', 'g'];
    const req = discoveryRequest(tail);
    // Cut off the last name: it lies beyond the limit and must not even be parsed.
    const r = d.handleRequest(req.subarray(0, req.length - 2) as Uint8Array);
    const parsed = parseStates(r.response);
    assert.equal(parsed.count, 256);
    assert.equal(parsed.size, 266);
    assert.equal(r.bound.length, 6);
    assert.equal(parsed.states[250], 1);
    const full = d.handleRequest(discoveryRequest(['random']));
    assert.equal(parseStates(full.response).count, 256);
    assert.deepEqual(full.bound, []);
    assert.equal(d.isAvailable(256), false);
  });

  it('reports malformed requests with the runtime messages', () => {
    const d = new ServiceDiscovery(available);
    assert.throws(() => d.handleRequest(discoveryRequest(['origin'], 1, Domain.Info)), violation('service discovery packet has wrong domain: 1'));
    assert.throws(() => d.handleRequest(discoveryRequest(['origin'], 1, 0x13)), violation('service discovery packet has wrong domain: 3'));
    // High bits of the domain byte are ignored.
    assert.doesNotThrow(() => d.handleRequest(discoveryRequest(['x'], 1, 0xf0)));
    assert.throws(() => d.handleRequest(makePacket(9, -1, Domain.Call)), violation('service discovery packet is too short: 9 bytes'));
    assert.throws(() => d.handleRequest(makePacket(8, -1, Domain.Call)), violation('service discovery packet is too short: 8 bytes'));
    assert.throws(() => d.handleRequest(discoveryRequest([], 1)), violation('name data is truncated in service discovery packet'));
    assert.throws(() => d.handleRequest(discoveryRequest([new Uint8Array(0)])), violation('service name length in discovery packet is out of bounds'));
    assert.throws(() => d.handleRequest(discoveryRequest([new Uint8Array(128).fill(97)])), violation('service name length in discovery packet is out of bounds'));
    const truncated = discoveryRequest(['origin']);
    assert.throws(() => d.handleRequest(truncated.subarray(0, truncated.length - 1) as Uint8Array), (e: unknown) => e instanceof AbiViolation);
    const t2 = discoveryRequest(['origin']);
    new DataView(t2.buffer).setUint32(0, t2.length - 1, true);
    assert.throws(() => d.handleRequest(t2), violation('name data is truncated in service discovery packet'));
    assert.doesNotThrow(() => d.handleRequest(discoveryRequest([new Uint8Array(127).fill(97)])));
  });

  it('never makes invalid UTF-8 or BOM-prefixed names available', () => {
    const d = new ServiceDiscovery(new Set(['origin', '\uFFFD']));
    const r = d.handleRequest(
      discoveryRequest([Uint8Array.of(0xff), Uint8Array.of(0xef, 0xbb, 0xbf, ...new TextEncoder().encode('origin')), 'origin']),
    );
    assert.deepEqual(r.bound.map((b) => b.available), [false, false, true]);
  });

  it('restores bindings and reports them in an INFO state packet', () => {
    assert.equal(new ServiceDiscovery(available).stateInfoPacket(), undefined);
    const d = new ServiceDiscovery(available, ['origin', 'gone', 'random', 'origin']);
    assert.equal(d.count, 4);
    const info = d.stateInfoPacket()!;
    // The second 'origin' cannot be available: one service serves one code.
    assert.deepEqual(parseStates(info), { domain: Domain.Info, count: 4, states: [1, 0, 1, 0], size: 14 });
    assert.throws(() => d.handleRequest(discoveryRequest(['origin'])), violation('duplicate service'));
    const r = d.handleRequest(discoveryRequest(['catalog']));
    assert.deepEqual(r.bound, [{ code: 4, name: 'catalog', available: true }]);
    assert.throws(() => new ServiceDiscovery(available, Array(257).fill('x')), /at most 256/);
  });
});
