import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { callPacket } from '../../src/abi/packet.js';
import type { ServiceContext } from '../../src/service/api.js';
import { defineService } from '../../src/service/extension.js';
import { checkServiceName, checkServiceRevision, compareCodePoints } from '../../src/service/naming.js';
import { ServiceRegistrationError, ServiceRegistry } from '../../src/service/registry.js';
import { makeContext } from './harness.js';

function service(name: string, revision = '0', discoverable?: (c: ServiceContext) => boolean) {
  return defineService({ name, revision, discoverable, create: () => ({ handle() {} }) });
}

const isRegistrationError = (e: unknown) => e instanceof ServiceRegistrationError && e.code === 'GATE_SERVICE_REGISTRATION';

describe('service names and revisions (services.md §2)', () => {
  it('accepts letters, numbers and punctuation in names', () => {
    for (const name of ['origin', 'gate.computer/localhost', 'net.example.Service', 'internal/test', 'a', 'ä_1-2:3', '名前', '\u{1D400}', 'x'.repeat(127), 'é'.repeat(63)]) {
      assert.doesNotThrow(() => checkServiceName(name), name);
    }
  });

  it('rejects empty, too long, and names with other characters', () => {
    for (const name of ['', 'x'.repeat(128), 'é'.repeat(64), 'a b', 'a+b', 'a$', 'a\u0301', 'a\n', 'a\u0000', 'a\uD800', '\uFEFFa', 'a<b']) {
      assert.throws(() => checkServiceName(name), isRegistrationError, JSON.stringify(name));
    }
    assert.throws(() => checkServiceName(42), isRegistrationError);
  });

  it('accepts marks and symbols in revisions', () => {
    for (const rev of ['0', '123-acme', '2346~nextgen/345', '10.23.456-7', 'a\u0301', '+$<>', 'x'.repeat(127)]) {
      assert.doesNotThrow(() => checkServiceRevision(rev), rev);
    }
    for (const rev of ['', 'x'.repeat(128), 'a b', 'a\t', '\uDC00']) {
      assert.throws(() => checkServiceRevision(rev), isRegistrationError, JSON.stringify(rev));
    }
  });

  it('orders by code point like UTF-8 bytes', () => {
    const names = ['b', '\uFF21', 'a', '\u{1F600}', 'B', 'ab'];
    assert.deepEqual(names.sort(compareCodePoints), ['B', 'a', 'ab', 'b', '\uFF21', '\u{1F600}']);
  });
});

describe('ServiceRegistry', () => {
  it('registers, looks up and refuses duplicates unless replaced', () => {
    const r = new ServiceRegistry();
    const a = service('alpha');
    r.register(a);
    assert.equal(r.lookup('alpha'), a);
    assert.equal(r.lookup('beta'), undefined);
    assert.throws(() => r.register(service('alpha', '1')), (e: unknown) => isRegistrationError(e) && /already registered/.test((e as Error).message));
    const a2 = service('alpha', '2');
    r.register(a2, { replace: true });
    assert.equal(r.lookup('alpha'), a2);
  });

  it('checks factories that did not come from defineService', () => {
    const r = new ServiceRegistry();
    const base = { revision: '0', streams: false, discoverable: () => true, createInstance: () => ({ handle() {}, shutdown() {} }) };
    assert.throws(() => r.register({ ...base, name: 'bad name' }), isRegistrationError);
    assert.throws(() => r.register({ ...base, name: 'ok', revision: '' }), isRegistrationError);
    assert.throws(() => r.register({ ...base, name: 'ok', createInstance: undefined } as never), isRegistrationError);
  });

  it('falls through to parents; children shadow only when replacing', () => {
    const parent = new ServiceRegistry();
    const ext = service('ext');
    parent.register(ext);
    const child = parent.clone();
    assert.equal(child.parent, parent);
    assert.equal(child.lookup('ext'), ext);
    child.register(service('local'));
    assert.equal(parent.lookup('local'), undefined, 'the parent is not changed');
    assert.throws(() => child.register(service('ext', '9')), isRegistrationError);
    const shadow = service('ext', '9');
    child.register(shadow, { replace: true });
    assert.equal(child.lookup('ext'), shadow);
    assert.equal(parent.lookup('ext'), ext);
    assert.deepEqual(child.catalog(makeContext()), [
      { name: 'ext', revision: '9' },
      { name: 'local', revision: '0' },
    ]);
  });

  it('lists discoverable names and a sorted catalog for a context', () => {
    const r = new ServiceRegistry();
    r.register(service('zeta'));
    r.register(service('alpha', '1.0'));
    r.register(service('secret', '0', (c) => c.principalId !== undefined));
    const anon = makeContext({ principalId: undefined });
    assert.deepEqual([...r.discoverableNames(anon)].sort(), ['alpha', 'zeta']);
    assert.deepEqual([...r.discoverableNames(makeContext())].sort(), ['alpha', 'secret', 'zeta']);
    assert.deepEqual(r.catalog(makeContext()).map((e) => e.name), ['alpha', 'secret', 'zeta']);
    assert.deepEqual(r.catalog(anon), [
      { name: 'alpha', revision: '1.0' },
      { name: 'zeta', revision: '0' },
    ]);
  });
});

describe('defineService', () => {
  it('checks the definition and fills in defaults', () => {
    assert.throws(() => service('no spaces'), isRegistrationError);
    assert.throws(() => service('ok', ''), isRegistrationError);
    assert.throws(() => defineService({ name: 'x', revision: '0' } as never), isRegistrationError);
    const f = service('echo');
    assert.equal(f.streams, false);
    assert.equal(f.discoverable(makeContext()), true);
    assert.equal(defineService({ name: 's', revision: '0', streams: true, create: () => ({ handle() {} }) }).streams, true);
  });

  it('passes config and snapshot to create and wraps the instance', async () => {
    const sent: Uint8Array[] = [];
    let seenSnapshot: Uint8Array | undefined;
    const f = defineService({
      name: 'echo',
      revision: '0',
      create(config, snapshot) {
        seenSnapshot = snapshot;
        return { handle: (p) => config.send(callPacket(config.code, p.subarray(8))) };
      },
    });
    const inst = f.createInstance({ code: 3, maxSendSize: 65536, context: makeContext(), send: (p) => sent.push(p) }, Uint8Array.of(7));
    assert.deepEqual(seenSnapshot, Uint8Array.of(7));
    await inst.handle(callPacket(3, Uint8Array.of(1, 2)));
    assert.deepEqual(sent, [callPacket(3, Uint8Array.of(1, 2))]);
    assert.equal(await inst.shutdown(true), undefined);
    assert.throws(
      () => defineService({ name: 'bad', revision: '0', create: () => ({}) as never }).createInstance({ code: 0, maxSendSize: 65536, context: makeContext(), send() {} }),
      TypeError,
    );
  });
});
