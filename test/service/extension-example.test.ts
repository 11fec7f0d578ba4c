/** The example service of docs/services.md, tested as the page suggests. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { callPacket, Domain, infoPacket, packetContent, packetDomain } from '../../src/abi/packet.js';
import { builtinServices } from '../../src/service/builtin.js';
import { defineService } from '../../src/service/extension.js';
import { ServiceRegistry } from '../../src/service/registry.js';
import { startSession } from './harness.js';

/** Answers every call with the number of calls so far (u32, little-endian). */
export const counterService = defineService({
  name: 'example.net/counter', // 1–127 bytes: letters, numbers, punctuation
  revision: '1.0', // shown by the catalog service
  create(config, snapshot) {
    // `snapshot` is what shutdown(true) returned when the instance was suspended.
    let count = snapshot?.length === 4 ? new DataView(snapshot.buffer, snapshot.byteOffset).getUint32(0, true) : 0;
    const encode = (n: number): Uint8Array => {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, n, true);
      return b;
    };
    return {
      handle(packet) {
        if (packetDomain(packet) !== Domain.Call) return; // INFO: ignored
        count++;
        config.send(callPacket(config.code, encode(count)));
      },
      shutdown(suspend) {
        return suspend ? encode(count) : undefined;
      },
    };
  },
});

const countOf = (p: Uint8Array) => new DataView(packetContent(p).slice().buffer).getUint32(0, true);

describe('docs/services.md example', () => {
  it('counts calls, survives suspension, and shows up in the catalog', async () => {
    const extensions = new ServiceRegistry();
    extensions.register(counterService);
    const run1 = builtinServices({ parent: extensions });
    const h = startSession(run1.registry);
    h.bind('origin', 'example.net/counter');
    h.session.handle(callPacket(1));
    h.session.handle(infoPacket(1));
    h.session.handle(callPacket(1));
    await h.session.idle();
    assert.deepEqual(h.sent.map(countOf), [1, 2]);
    const saved = await h.session.shutdown(true);
    run1.origin.close();

    const run2 = builtinServices({ parent: extensions });
    const h2 = startSession(run2.registry);
    h2.session.restore(saved);
    h2.bind('catalog');
    h2.session.handle(callPacket(1));
    h2.session.handle(callPacket(2, new TextEncoder().encode('json')));
    await h2.session.idle();
    assert.equal(countOf(h2.sent[0]!), 3);
    assert.match(new TextDecoder().decode(packetContent(h2.sent[1]!)), /"name": "example.net\/counter",\n\t\t\t"revision": "1.0"/);
  });
});
