import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { callPacket, infoPacket } from '../../src/abi/packet.js';
import { ServiceRegistry } from '../../src/service/registry.js';
import {
  decodeScopeList,
  encodeScopeList,
  isValidScope,
  PROGRAM_SYSTEM_SCOPE,
  ProgramScope,
  ScopeError,
  scopeContains,
  scopeService,
} from '../../src/service/scope.js';
import { ServiceInternalError } from '../../src/service/session.js';
import { makeContext, startSession } from './harness.js';

function restrictCall(scopes: string[]): Uint8Array {
  return callPacket(0, Uint8Array.of(0, ...encodeScopeList(scopes)));
}

function setup() {
  const program = new ProgramScope();
  const r = new ServiceRegistry();
  r.register(scopeService(program));
  const h = startSession(r);
  h.bind('scope');
  return { h, program, r };
}

describe('scope strings (services.md §7)', () => {
  it('validates syntax', () => {
    for (const s of ['program:system', 'a', 'x'.repeat(255), 'a.b/c-d_e:f', '0']) assert.ok(isValidScope(s), s);
    for (const s of ['', 'x'.repeat(256), ':a', 'a:', 'a::b', 'a b', 'ä', 'a,b', 'a\n']) assert.ok(!isValidScope(s), JSON.stringify(s));
  });

  it('encodes and decodes lists', () => {
    const list = ['program:system', 'a'];
    assert.deepEqual([...encodeScopeList(list)], [2, 14, ...new TextEncoder().encode('program:system'), 1, 97]);
    assert.deepEqual(decodeScopeList(encodeScopeList(list)), list);
    assert.deepEqual(decodeScopeList(Uint8Array.of(0)), []);
    assert.deepEqual(decodeScopeList(Uint8Array.of(1, 1, 97, 99, 99)), ['a'], 'trailing bytes ignored');
    for (const bad of [[], [1], [1, 2, 97], [2, 1, 97]]) assert.throws(() => decodeScopeList(Uint8Array.from(bad)), ScopeError);
    assert.throws(() => decodeScopeList(Uint8Array.of(1, 2, 58, 97)), /invalid scope string/);
  });
});

describe('ProgramScope and scopeContains', () => {
  it('narrows by intersection and never widens', () => {
    const p = new ProgramScope();
    assert.equal(p.restricted, false);
    assert.equal(p.allows('anything'), true);
    p.restrict(['a', 'b', 'a']);
    assert.deepEqual(p.current(), ['a', 'b']);
    p.restrict(['b', 'c']);
    assert.deepEqual(p.current(), ['b']);
    assert.equal(p.allows('c'), false);
    p.restrict([]);
    assert.deepEqual(p.current(), []);
    assert.equal(p.restricted, true);
  });

  it('requires both the request scope and the program scope', () => {
    const p = new ProgramScope();
    const withSystem = makeContext({ scope: [PROGRAM_SYSTEM_SCOPE] });
    assert.equal(scopeContains(withSystem, p, PROGRAM_SYSTEM_SCOPE), true);
    assert.equal(scopeContains(makeContext({ scope: [] }), p, PROGRAM_SYSTEM_SCOPE), false);
    assert.equal(scopeContains(makeContext({ scope: undefined }), p, PROGRAM_SYSTEM_SCOPE), true, 'undefined request scope = unrestricted (api.ts)');
    p.restrict(['other']);
    assert.equal(scopeContains(withSystem, p, PROGRAM_SYSTEM_SCOPE), false);
  });
});

describe('scope service', () => {
  it('restricts and replies with a zero i16 error; other calls get an empty reply', async () => {
    const { h, program } = setup();
    h.session.handle(restrictCall([PROGRAM_SYSTEM_SCOPE]));
    h.session.handle(restrictCall([PROGRAM_SYSTEM_SCOPE]));
    h.session.handle(restrictCall(['ignored']));
    h.session.handle(callPacket(0));
    h.session.handle(callPacket(0, Uint8Array.of(1)));
    h.session.handle(infoPacket(0, Uint8Array.of(0, 0)));
    await h.session.idle();
    assert.deepEqual(h.sent, [callPacket(0, new Uint8Array(2)), callPacket(0, new Uint8Array(2)), callPacket(0, new Uint8Array(2)), callPacket(0), callPacket(0)]);
    assert.deepEqual(program.current(), []);
    assert.equal(h.errors.length, 0);
  });

  it('kills the program with INTERNAL for malformed lists or invalid scopes', async () => {
    for (const content of [[0], [0, 1], [0, 1, 3, 97], [0, 1, 2, 58, 58], [0, 1, 1, 32]]) {
      const { h, program } = setup();
      h.session.handle(callPacket(0, Uint8Array.from(content)));
      await h.session.idle();
      assert.equal(h.errors.length, 1, JSON.stringify(content));
      assert.ok(h.errors[0] instanceof ServiceInternalError);
      assert.equal(program.restricted, false);
    }
  });

  it('saves the restriction and restores it by re-applying it', async () => {
    const { h } = setup();
    h.session.handle(callPacket(0)); // creates the instance, no restriction
    assert.deepEqual(await h.session.shutdown(true), [{ name: 'scope', buffer: new Uint8Array(0) }]);

    const s = setup();
    s.h.session.handle(restrictCall(['program:system', 'x']));
    const saved = await s.h.session.shutdown(true);
    assert.deepEqual(saved[0]!.buffer, encodeScopeList(['program:system', 'x']));
    assert.deepEqual(await setupAndRestore(saved), ['program:system', 'x']);

    const e = setup();
    e.h.session.handle(restrictCall([]));
    const savedEmpty = await e.h.session.shutdown(true);
    assert.deepEqual([...savedEmpty[0]!.buffer], [0], 'restricted to nothing is not unrestricted');
    assert.deepEqual(await setupAndRestore(savedEmpty), []);
  });
});

async function setupAndRestore(saved: Array<{ name: string; buffer: Uint8Array }>): Promise<readonly string[] | undefined> {
  const program = new ProgramScope();
  const r = new ServiceRegistry();
  r.register(scopeService(program));
  startSession(r).session.restore(saved);
  return program.current();
}
