/**
 * The endpoint service through a real ServiceSession: the response head
 * read as the program sends it (split across packets), malformed heads as
 * the program's ABI violations, and an instance id already served by
 * another principal.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { callPacket, dataPacket, flowPacket } from '../../src/abi/packet.js';
import { TrapId } from '../../src/abi/trap.js';
import type { ResponseHead } from '../../src/service/endpoint-head.js';
import { EndpointHub, endpointService, type EndpointExchange, type EndpointListener } from '../../src/service/endpoint.js';
import { ServiceRegistry } from '../../src/service/registry.js';
import { describe as seen, INSTANCE_ID, makeContext, settle, startSession, until } from './harness.js';

function responseHead(status: number, headers: Array<[string, string]>, size?: number): Uint8Array {
  const enc = new TextEncoder();
  const parts = headers.map(([n, v]) => [enc.encode(n), enc.encode(v)] as const);
  const total = 8 + parts.reduce((a, [n, v]) => a + 4 + n.length + v.length, 0);
  const out = new Uint8Array(Math.max(size ?? total, total, 8));
  const view = new DataView(out.buffer);
  view.setUint32(0, size ?? total, true);
  view.setUint16(4, status, true);
  view.setUint16(6, headers.length, true);
  let at = 8;
  for (const [n, v] of parts) {
    view.setUint16(at, n.length, true);
    view.setUint16(at + 2, v.length, true);
    out.set(n, at + 4);
    out.set(v, at + 4 + n.length);
    at += 4 + n.length + v.length;
  }
  return out;
}

/** A session whose program listens and has accepted one exchange (stream 0, with read credit). */
async function accepted(principal = 'local'): Promise<{ h: ReturnType<typeof startSession>; heads: ResponseHead[]; body: string[]; done: Promise<void> }> {
  const hub = new EndpointHub();
  const registry = new ServiceRegistry();
  registry.register(endpointService({ hub }));
  const h = startSession(registry, makeContext({ principalId: principal }));
  h.bind('endpoint');
  h.session.handle(callPacket(0));
  await h.session.idle();
  const found = hub.find(INSTANCE_ID);
  assert.ok(found && 'listener' in found);
  const heads: ResponseHead[] = [];
  const body: string[] = [];
  const exchange: EndpointExchange = {
    input: (async function* () {
      yield new Uint8Array([1, 2, 3]);
    })(),
    head: (r) => heads.push(r),
    body: { write: (c) => void body.push(new TextDecoder().decode(c)), end: () => void body.push('<end>') },
  };
  const done = (found.listener as EndpointListener).serve(exchange, new AbortController().signal);
  await until(() => h.sent.length >= 2, 2000, 'the accept reply and credit');
  assert.deepEqual(seen(h.sent[0]!), { code: 0, call: [0, 0, 0, 0, 0, 0, 0, 0] });
  assert.deepEqual(seen(h.sent[1]!), { code: 0, flow: [[0, 32767]] });
  return { h, heads, body, done };
}

describe('endpoint service', () => {
  it('reads a response head split across DATA packets, then passes the body on', async () => {
    const { h, heads, body, done } = await accepted();
    const head = responseHead(201, [['Content-Type', 'text/plain'], ['X-A', 'b c']]);
    h.session.handle(dataPacket(0, 0, head.subarray(0, 3)));
    h.session.handle(dataPacket(0, 0, new Uint8Array([...head.subarray(3), ...new TextEncoder().encode('hel')])));
    h.session.handle(dataPacket(0, 0, new TextEncoder().encode('lo')));
    h.session.handle(dataPacket(0, 0));
    h.session.handle(flowPacket(0, [{ id: 0, value: 16 }]));
    await h.session.idle();
    await settle();
    h.session.handle(flowPacket(0, [{ id: 0, value: 0 }]));
    await done;
    assert.deepEqual(h.errors, []);
    assert.deepEqual(heads, [{ status: 201, headers: [['Content-Type', 'text/plain'], ['X-A', 'b c']] }]);
    assert.equal(body.join(''), 'hello<end>');
  });

  const violations: Array<[string, Uint8Array[], string]> = [
    ['head size below 8', [responseHead(200, [], 4)], 'endpoint response head size 4 is not within 8-16384'],
    ['head size over 16384', [responseHead(200, [], 16385)], 'endpoint response head size 16385 is not within 8-16384'],
    ['status 700', [responseHead(700, [])], 'endpoint response status 700 is not within 200-599'],
    ['a framing header', [responseHead(200, [['Content-Length', '5']])], "endpoint response header Content-Length is the server's to set"],
    ['a gate- header', [responseHead(200, [['Gate-Status', '{}']])], "endpoint response header Gate-Status is the server's to set"],
    ['CR LF in a value', [responseHead(200, [['X-A', 'a\r\nSet-Cookie: x=1']])], 'endpoint response header X-A has a value with control characters'],
    ['a name that is not a token', [responseHead(200, [['X A', 'b']])], 'endpoint response header name "X A" is not an HTTP token'],
    ['bytes after the headers', [responseHead(200, [['X-A', 'b']], 20)], 'endpoint response head has 4 bytes after its headers'],
    ['end of stream inside the head', [responseHead(200, []).subarray(0, 6), new Uint8Array(0)], 'endpoint response stream ended before its head was complete'],
  ];
  for (const [what, payloads, message] of violations) {
    it(`${what} is an ABI violation`, async () => {
      const { h, heads, done } = await accepted();
      for (const p of payloads) h.session.handle(dataPacket(0, 0, p));
      await until(() => h.errors.length > 0, 2000, 'the violation');
      assert.equal(h.errors[0]!.trap, TrapId.AbiViolation);
      assert.equal(h.errors[0]!.message, message);
      assert.deepEqual(heads, []);
      await h.session.shutdown(false);
      await done;
    });
  }

  it('DATA for a stream it never opened is an ABI violation', async () => {
    const { h, done } = await accepted();
    h.session.handle(dataPacket(0, 7, new Uint8Array([1])));
    await until(() => h.errors.length > 0, 2000, 'the violation');
    assert.equal(h.errors[0]!.message, 'data packet for unknown endpoint stream: 7');
    await h.session.shutdown(false);
    await done;
  });

  it('refuses to listen under an id another principal listens under', async () => {
    const hub = new EndpointHub();
    const registry = new ServiceRegistry();
    registry.register(endpointService({ hub }));
    const a = startSession(registry, makeContext({ principalId: 'ed25519:a' }));
    const b = startSession(registry, makeContext({ principalId: 'ed25519:b' }));
    for (const h of [a, b]) {
      h.bind('endpoint');
      h.session.handle(callPacket(0));
      await h.session.idle();
    }
    assert.deepEqual(a.sent.map(seen), []);
    // i32 -1, i32 1 (GATE_ENDPOINT_ERROR_ID_TAKEN)
    assert.deepEqual(b.sent.map(seen), [{ code: 0, call: [255, 255, 255, 255, 1, 0, 0, 0] }]);
    const found = hub.find(INSTANCE_ID);
    assert.ok(found && 'listener' in found && found.listener.principal === 'ed25519:a');
    // Anonymous programs do not see the service.
    assert.equal(endpointService({ hub }).discoverable(makeContext({ principalId: undefined })), false);
  });
});
