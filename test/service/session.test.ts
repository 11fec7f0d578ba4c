import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { callPacket, dataPacket, Domain, flowPacket, infoPacket, makePacket, packetCode, packetContent } from '../../src/abi/packet.js';
import { AbiViolation, TrapId } from '../../src/abi/trap.js';
import type { ServiceInstanceConfig } from '../../src/service/api.js';
import { defineService } from '../../src/service/extension.js';
import { ServiceRegistry } from '../../src/service/registry.js';
import { ServiceInternalError, ServiceRestoreError } from '../../src/service/session.js';
import { makeContext, settle, startSession } from './harness.js';

/** A recording echo service: replies to calls with their content; state = number of packets handled. */
function recorder(name: string, opts: { streams?: boolean; async?: boolean; discoverable?: boolean } = {}) {
  const log = { created: [] as Array<{ code: number; snapshot: number[] | undefined }>, handled: [] as number[][], shutdowns: [] as boolean[], configs: [] as ServiceInstanceConfig[] };
  const factory = defineService({
    name,
    revision: '1',
    streams: opts.streams,
    discoverable: () => opts.discoverable ?? true,
    create(config, snapshot) {
      log.created.push({ code: config.code, snapshot: snapshot && [...snapshot] });
      log.configs.push(config);
      let count = snapshot?.[0] ?? 0;
      return {
        async handle(p) {
          if (opts.async) await new Promise((r) => setTimeout(r, 1));
          count++;
          log.handled.push([...packetContent(p)]);
          if (p[6] === Domain.Call) config.send(callPacket(0, packetContent(p)));
        },
        shutdown(suspend) {
          log.shutdowns.push(suspend);
          return suspend ? Uint8Array.of(count) : undefined;
        },
      };
    },
  });
  return { factory, log };
}

function failing(name: string, error: () => Error, when: 'create' | 'handle' | 'async' | 'shutdown') {
  return defineService({
    name,
    revision: '0',
    create() {
      if (when === 'create') throw error();
      return {
        handle: when === 'handle' ? () => { throw error(); } : when === 'async' ? async () => { throw error(); } : () => {},
        shutdown: when === 'shutdown' ? () => { throw error(); } : undefined,
      };
    },
  });
}

describe('ServiceSession', () => {
  it('lists available names and creates instances lazily on the first packet', async () => {
    const a = recorder('alpha');
    const b = recorder('beta');
    const hidden = recorder('hidden', { discoverable: false });
    const r = new ServiceRegistry();
    r.register(a.factory);
    r.register(b.factory);
    r.register(hidden.factory);
    const h = startSession(r);
    assert.deepEqual(h.session.availableNames(), ['alpha', 'beta']);
    h.bind('missing', 'beta', 'alpha', 'hidden');
    assert.equal(a.log.created.length + b.log.created.length, 0, 'nothing before the first packet');
    h.session.handle(callPacket(2, Uint8Array.of(9)));
    await h.session.idle();
    assert.deepEqual(a.log.created, [{ code: 2, snapshot: undefined }]);
    assert.equal(a.log.configs[0]!.maxSendSize, 65536);
    assert.equal(a.log.configs[0]!.context.instanceId, makeContext().instanceId);
    assert.equal(b.log.created.length, 0);
    // Replies get the service's code whatever the service put there.
    assert.deepEqual(h.sent, [callPacket(2, Uint8Array.of(9))]);
    h.session.handle(callPacket(2, Uint8Array.of(10)));
    await h.session.idle();
    assert.equal(a.log.created.length, 1, 'created once');
    // Unavailable codes (unknown, undiscoverable) are dropped.
    h.session.handle(callPacket(0));
    h.session.handle(callPacket(3));
    await h.session.idle();
    assert.equal(hidden.log.created.length, 0);
    assert.equal(h.sent.length, 2);
    assert.deepEqual(h.errors, []);
  });

  it('keeps packet order for services that handle asynchronously', async () => {
    const a = recorder('alpha', { async: true });
    const r = new ServiceRegistry();
    r.register(a.factory);
    const h = startSession(r);
    h.bind('alpha');
    for (let i = 0; i < 20; i++) h.session.handle(callPacket(0, Uint8Array.of(i)));
    await h.session.idle();
    assert.deepEqual(a.log.handled.map((c) => c[0]), Array.from({ length: 20 }, (_, i) => i));
    assert.deepEqual(h.sent.map((p) => packetContent(p)[0]), Array.from({ length: 20 }, (_, i) => i));
  });

  it('routes FLOW and DATA only to services that support streams', async () => {
    const s = recorder('streamy', { streams: true });
    const plain = recorder('plain');
    const r = new ServiceRegistry();
    r.register(s.factory);
    r.register(plain.factory);
    const h = startSession(r);
    h.bind('streamy', 'plain');
    h.session.handle(flowPacket(0, [{ id: 1, value: 5 }]));
    h.session.handle(dataPacket(0, 1, Uint8Array.of(1)));
    h.session.handle(infoPacket(1));
    await h.session.idle();
    assert.equal(s.log.handled.length, 2);
    assert.equal(plain.log.handled.length, 1);
    assert.equal(h.errors.length, 0);
    h.session.handle(dataPacket(1, 0, Uint8Array.of(1)));
    assert.equal(h.errors.length, 1);
    assert.ok(h.errors[0] instanceof AbiViolation);
    assert.equal(h.errors[0]!.trap, TrapId.AbiViolation);
    assert.match(h.errors[0]!.message, /does not support streams/);
    assert.equal(plain.log.handled.length, 1, 'not delivered');
    // Failed sessions ignore everything afterwards.
    h.session.handle(callPacket(0));
    await h.session.idle();
    assert.equal(s.log.handled.length, 2);
    assert.equal(h.errors.length, 1);
  });

  it('reports an AbiViolation from a service as such, other errors as INTERNAL, once', async () => {
    for (const when of ['create', 'handle', 'async'] as const) {
      const r = new ServiceRegistry();
      r.register(failing('bad', () => new AbiViolation('write stream buffer overflow'), when));
      const h = startSession(r);
      h.bind('bad');
      h.session.handle(callPacket(0));
      h.session.handle(callPacket(0));
      await h.session.idle();
      assert.equal(h.errors.length, 1, when);
      assert.ok(h.errors[0] instanceof AbiViolation);
      assert.equal(h.errors[0]!.message, 'write stream buffer overflow');
    }
    for (const when of ['create', 'handle', 'async'] as const) {
      const r = new ServiceRegistry();
      const cause = new Error('disk on fire');
      r.register(failing('bad', () => cause, when));
      const h = startSession(r);
      h.bind('bad');
      h.session.handle(callPacket(0));
      await h.session.idle();
      assert.equal(h.errors.length, 1, when);
      const e = h.errors[0]!;
      assert.ok(e instanceof ServiceInternalError);
      assert.equal(e.trap, TrapId.InternalError);
      assert.equal(e.service, 'bad');
      assert.equal(e.cause, cause);
      assert.equal(e.message, 'service "bad" failed: disk on fire');
    }
  });

  it('checks what services send', async () => {
    const cases: Array<[string, (c: ServiceInstanceConfig) => void, boolean]> = [
      ['too short', (c) => c.send(new Uint8Array(4)), false],
      ['too long', (c) => c.send(makePacket(65537, 0, 0)), false],
      ['bad domain', (c) => c.send(makePacket(8, 0, 4)), false],
      ['flow without streams', (c) => c.send(flowPacket(0, [])), false],
      ['short data', (c) => c.send(makePacket(12, 0, Domain.Data)), true],
      ['ok, size fixed', (c) => c.send(makePacket(8, 0, Domain.Info).subarray(0, 8)), false],
    ];
    for (const [what, act, streams] of cases) {
      const r = new ServiceRegistry();
      r.register(defineService({ name: 's', revision: '0', streams, create: (config) => ({ handle: () => act(config) }) }));
      const h = startSession(r);
      h.bind('s');
      h.session.handle(callPacket(0));
      await h.session.idle();
      if (what.startsWith('ok')) {
        assert.equal(h.errors.length, 0, what);
        assert.equal(h.sent.length, 1);
      } else {
        assert.equal(h.errors.length, 1, what);
        assert.ok(h.errors[0] instanceof ServiceInternalError, what);
        assert.equal(h.sent.length, 0);
      }
    }
    const r = new ServiceRegistry();
    r.register(defineService({ name: 's', revision: '0', create: (config) => ({ handle: () => { const p = callPacket(0, Uint8Array.of(1)); new DataView(p.buffer).setUint32(0, 99, true); config.send(p); } }) }));
    const h = startSession(r);
    h.bind('s');
    h.session.handle(callPacket(0));
    assert.deepEqual(h.sent, [callPacket(0, Uint8Array.of(1))], 'size field corrected');
  });

  it('treats what the executor gets wrong as INTERNAL', () => {
    const a = recorder('alpha');
    const r = new ServiceRegistry();
    r.register(a.factory);
    const bad: Array<[string, (h: ReturnType<typeof startSession>) => void]> = [
      ['code out of order', (h) => h.session.bind(1, 'alpha')],
      ['unbound code', (h) => h.session.handle(callPacket(5))],
      ['negative code', (h) => h.session.handle(callPacket(-1))],
      ['size mismatch', (h) => h.session.handle(Uint8Array.of(...callPacket(0), 0))],
      ['bad domain', (h) => h.session.handle(makePacket(8, 0, 5))],
      ['short data', (h) => h.session.handle(makePacket(8, 0, Domain.Data))],
      ['short packet', (h) => h.session.handle(new Uint8Array(4))],
    ];
    for (const [what, act] of bad) {
      const h = startSession(r);
      if (what !== 'code out of order') h.bind('alpha');
      act(h);
      assert.equal(h.errors.length, 1, what);
      assert.ok(h.errors[0] instanceof ServiceInternalError, what);
      assert.equal(h.errors[0]!.trap, TrapId.InternalError);
    }
  });

  it('binds a name available twice only once (as the executor does)', async () => {
    const a = recorder('alpha');
    const r = new ServiceRegistry();
    r.register(a.factory);
    const h = startSession(r);
    h.bind('alpha', 'alpha');
    h.session.handle(callPacket(1));
    await h.session.idle();
    assert.equal(a.log.created.length, 0);
  });

  it('shuts down every instance and returns buffers in code order', async () => {
    const a = recorder('alpha');
    const b = recorder('beta');
    const c = recorder('gamma');
    const r = new ServiceRegistry();
    for (const x of [a, b, c]) r.register(x.factory);
    const h = startSession(r);
    h.bind('beta', 'nope', 'alpha', 'gamma');
    h.session.handle(callPacket(2));
    h.session.handle(callPacket(2));
    h.session.handle(callPacket(0));
    const buffers = await h.session.shutdown(true);
    assert.deepEqual(buffers, [
      { name: 'beta', buffer: Uint8Array.of(1) },
      { name: 'nope', buffer: new Uint8Array(0) },
      { name: 'alpha', buffer: Uint8Array.of(2) },
      { name: 'gamma', buffer: new Uint8Array(0) },
    ]);
    assert.deepEqual(a.log.shutdowns, [true]);
    assert.deepEqual(c.log.shutdowns, [], 'never created');
    assert.equal(h.session.shutdown(false), h.session.shutdown(true), 'same result');
    // After shutdown nothing is handled or sent.
    const sent = h.sent.length;
    h.session.handle(callPacket(2));
    a.log.configs[0]!.send(callPacket(0));
    await settle();
    assert.equal(h.sent.length, sent);
  });

  it('returns empty buffers when not suspending and waits for pending packets first', async () => {
    const a = recorder('alpha', { async: true });
    const r = new ServiceRegistry();
    r.register(a.factory);
    const h = startSession(r);
    h.bind('alpha');
    for (let i = 0; i < 5; i++) h.session.handle(callPacket(0, Uint8Array.of(i)));
    const buffers = await h.session.shutdown(false);
    assert.equal(a.log.handled.length, 5);
    assert.deepEqual(buffers, [{ name: 'alpha', buffer: new Uint8Array(0) }]);
    assert.deepEqual(a.log.shutdowns, [false]);
  });

  it('reports a failing shutdown and still returns the other buffers', async () => {
    const a = recorder('alpha');
    const r = new ServiceRegistry();
    r.register(a.factory);
    r.register(failing('bad', () => new Error('nope'), 'shutdown'));
    const h = startSession(r);
    h.bind('bad', 'alpha');
    h.session.handle(callPacket(0));
    h.session.handle(callPacket(1));
    const buffers = await h.session.shutdown(true);
    assert.deepEqual(buffers.map((b) => [...b.buffer]), [[], [1]]);
    assert.equal(h.errors.length, 1);
    assert.ok(h.errors[0] instanceof ServiceInternalError);
  });

  it('restores services with their buffers and keeps the restored instances', async () => {
    const a = recorder('alpha');
    const b = recorder('beta');
    const r = new ServiceRegistry();
    r.register(a.factory);
    r.register(b.factory);
    const h = startSession(r);
    h.session.restore([
      { name: 'alpha', buffer: Uint8Array.of(5) },
      { name: 'gone', buffer: Uint8Array.of(1, 2, 3) },
      { name: 'beta', buffer: new Uint8Array(0) },
      { name: 'alpha', buffer: Uint8Array.of(9) },
    ]);
    assert.equal(h.session.count, 4);
    assert.deepEqual(a.log.created, [{ code: 0, snapshot: [5] }], 'created immediately; duplicate name unavailable');
    assert.deepEqual(b.log.created, [{ code: 2, snapshot: [] }]);
    h.session.handle(callPacket(0));
    h.session.handle(callPacket(3));
    await h.session.idle();
    assert.equal(a.log.created.length, 1, 'the restored instance is used (not re-created)');
    h.bind('beta2');
    assert.equal(h.session.count, 5);
    const buffers = await h.session.shutdown(true);
    assert.deepEqual(buffers.map((x) => [x.name, [...x.buffer]]), [
      ['alpha', [6]],
      ['gone', []],
      ['beta', [0]],
      ['alpha', []],
      ['beta2', []],
    ]);
  });

  it('fails restore with a typed error naming the service', () => {
    const r = new ServiceRegistry();
    r.register(failing('bad', () => new Error('corrupt state'), 'create'));
    const h = startSession(r);
    assert.throws(
      () => h.session.restore([{ name: 'bad', buffer: Uint8Array.of(1) }]),
      (e: unknown) => e instanceof ServiceRestoreError && e.code === 'GATE_SERVICE_RESTORE' && e.service === 'bad' && /corrupt state/.test(e.message),
    );
    const h2 = startSession(r);
    h2.bind('x');
    assert.throws(() => h2.session.restore([]), /before any is bound/);
  });

  it('uses packetCode from the binding, not from the service', async () => {
    const r = new ServiceRegistry();
    r.register(defineService({ name: 's', revision: '0', create: (c) => ({ handle: () => c.send(callPacket(77)) }) }));
    const h = startSession(r);
    h.bind('x', 'y', 's');
    h.session.handle(callPacket(2));
    assert.equal(packetCode(h.sent[0]!), 2);
  });
});
