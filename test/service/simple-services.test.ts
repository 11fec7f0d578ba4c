import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { callPacket, dataPacket, Domain, infoPacket, packetContent, packetDomain } from '../../src/abi/packet.js';
import { builtinServices, BUILTIN_SERVICE_NAMES } from '../../src/service/builtin.js';
import { catalogJson, catalogService } from '../../src/service/catalog.js';
import { defineService } from '../../src/service/extension.js';
import { identityService } from '../../src/service/identity.js';
import { ServiceRegistrationError, ServiceRegistry } from '../../src/service/registry.js';
import { INSTANCE_ID, makeContext, startSession } from './harness.js';

const text = (p: Uint8Array) => new TextDecoder().decode(packetContent(p));
const enc = (s: string) => new TextEncoder().encode(s);

describe('catalog (services.md §4)', () => {
  it('answers "json" with the exact tab-indented document', async () => {
    const r = new ServiceRegistry();
    r.register(catalogService(r));
    r.register(identityService());
    const h = startSession(r);
    h.bind('catalog');
    h.session.handle(callPacket(0, enc('json')));
    await h.session.idle();
    assert.equal(
      text(h.sent[0]!),
      '{\n\t"services": [\n\t\t{\n\t\t\t"name": "catalog",\n\t\t\t"revision": "0"\n\t\t},\n\t\t{\n\t\t\t"name": "identity",\n\t\t\t"revision": "0"\n\t\t}\n\t]\n}\n',
    );
    assert.equal(packetDomain(h.sent[0]!), Domain.Call);
  });

  it('lists parents, only discoverable services, sorted, with Go-style escaping', () => {
    const parent = new ServiceRegistry();
    parent.register(defineService({ name: 'z&z', revision: '<1>', create: () => ({ handle() {} }) }));
    parent.register(defineService({ name: 'private', revision: '0', discoverable: (c) => c.principalId !== undefined, create: () => ({ handle() {} }) }));
    const r = parent.clone();
    r.register(catalogService(r));
    assert.equal(
      catalogJson(r, makeContext({ principalId: undefined })),
      '{\n\t"services": [\n\t\t{\n\t\t\t"name": "catalog",\n\t\t\t"revision": "0"\n\t\t},\n\t\t{\n\t\t\t"name": "z\\u0026z",\n\t\t\t"revision": "\\u003c1\\u003e"\n\t\t}\n\t]\n}\n',
    );
    assert.deepEqual(JSON.parse(catalogJson(r, makeContext())).services.map((s: { name: string }) => s.name), ['catalog', 'private', 'z&z']);
    assert.equal(catalogJson(new ServiceRegistry(), makeContext()), '{\n\t"services": []\n}\n');
  });

  it('answers other calls with an empty reply and ignores other packets', async () => {
    const r = new ServiceRegistry();
    r.register(catalogService(r));
    const h = startSession(r);
    h.bind('catalog');
    for (const content of ['', 'JSON', 'json ', 'jso']) h.session.handle(callPacket(0, enc(content)));
    h.session.handle(infoPacket(0, enc('json')));
    await h.session.idle();
    assert.deepEqual(h.sent, Array(4).fill(callPacket(0)));
    assert.equal(catalogService(r).streams, false);
    assert.equal(catalogService(r).discoverable(makeContext({ principalId: undefined })), true);
  });
});

describe('identity (services.md §5)', () => {
  it('replies with the principal id, the instance id, or nothing', async () => {
    const r = new ServiceRegistry();
    r.register(identityService());
    const h = startSession(r, makeContext({ principalId: 'ed25519:' + 'A'.repeat(43) }));
    h.bind('identity');
    for (const content of [[0], [1], [], [2], [0, 1]]) h.session.handle(callPacket(0, Uint8Array.from(content)));
    h.session.handle(infoPacket(0, Uint8Array.of(0)));
    await h.session.idle();
    assert.deepEqual(h.sent.map(text), ['ed25519:' + 'A'.repeat(43), INSTANCE_ID, '', '', 'ed25519:' + 'A'.repeat(43)]);
  });

  it('answers anonymous programs with an empty principal', async () => {
    const r = new ServiceRegistry();
    r.register(identityService());
    const h = startSession(r, makeContext({ principalId: undefined }));
    h.bind('identity');
    h.session.handle(callPacket(0, Uint8Array.of(0)));
    await h.session.idle();
    assert.deepEqual(h.sent, [callPacket(0)]);
    assert.equal(identityService().streams, false);
  });

  it('is not a stream service', async () => {
    const r = new ServiceRegistry();
    r.register(identityService());
    const h = startSession(r);
    h.bind('identity');
    h.session.handle(dataPacket(0, 0));
    assert.equal(h.errors.length, 1);
  });
});

describe('builtinServices', () => {
  it('registers the default per-instance set in a child of the deployment registry', async () => {
    const global = new ServiceRegistry();
    global.register(defineService({ name: 'internal/test', revision: '10.23.456-7', create: () => ({ handle() {} }) }));
    const a = builtinServices({ parent: global });
    const b = builtinServices({ parent: global });
    assert.notEqual(a.origin, b.origin, 'origin is per instance');
    assert.equal(global.lookup('origin'), undefined);
    assert.deepEqual(a.registry.catalog(makeContext()).map((e) => `${e.name} ${e.revision}`), [
      'catalog 0',
      'identity 0',
      'internal/test 10.23.456-7',
      'origin 0',
      'random 0',
      'scope 0',
    ]);
    assert.deepEqual([...BUILTIN_SERVICE_NAMES].sort(), ['catalog', 'identity', 'origin', 'random', 'scope']);
    const noRandom = builtinServices({ random: { bitsPerMinute: 0 } });
    assert.equal(noRandom.registry.discoverableNames(makeContext()).has('random'), false);
    const h = startSession(a.registry);
    h.bind('catalog');
    h.session.handle(callPacket(0, enc('json')));
    await h.session.idle();
    assert.match(text(h.sent[0]!), /internal\/test/);
  });

  it('refuses an extension that takes a built-in name', () => {
    const global = new ServiceRegistry();
    global.register(defineService({ name: 'random', revision: 'x', create: () => ({ handle() {} }) }));
    assert.throws(() => builtinServices({ parent: global }), ServiceRegistrationError);
  });
});
