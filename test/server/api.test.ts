/**
 * The HTTP API against a real gate-server on loopback: the behaviours of the
 * original's web tests (spec tests.md §3) plus authentication and isolation.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { programBytes } from '../helpers/runtime.js';
import { newKey, request, startServerWithSource, UUID, type TestServer } from '../helpers/server.js';

const hello = programBytes('hello');
const H = createHash('sha256').update(hello).digest('hex');
const K = '/gate-0/module/sha256/';
const I = '/gate-0/instance/';
const wasm = { 'Content-Type': 'application/wasm' };
const OUTPUT: Record<string, string> = { '': '', greet: 'hello, world\n', twice: 'hello, world\nhello, world\n' };

let server: TestServer;
const key = newKey();

before(async () => {
  server = await startServerWithSource();
});
after(() => server.stop());

async function listModules(k = key): Promise<unknown> {
  const r = await request(server, 'POST', K, { key: k });
  assert.equal(r.status, 200);
  return JSON.parse(r.text);
}

describe('routing', () => {
  it('checks the Origin header', async () => {
    assert.equal((await request(server, 'GET', '/gate-0/')).status, 200);
    assert.equal((await request(server, 'GET', '/gate-0/', { headers: { Origin: 'https://example.net' } })).status, 403);
    const ok = await request(server, 'GET', '/gate-0/', { headers: { Origin: 'null' } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['access-control-allow-origin'], 'null');
  });

  it('redirects directory paths without a slash', async () => {
    for (const method of ['GET', 'HEAD']) {
      for (const path of ['/gate-0/module', '/gate-0/module/sha256', '/gate-0/module/test', '/gate-0/instance']) {
        const r = await request(server, method, path);
        assert.equal(r.status, 301, `${method} ${path}`);
        assert.equal(r.headers.location, `${path}/`);
      }
    }
  });

  it('answers 405 with Allow for unregistered methods', async () => {
    for (const [method, path] of [
      ['POST', '/gate-0/'],
      ['PUT', '/gate-0/'],
      ['POST', '/gate-0/module/'],
      ['PUT', '/gate-0/module/'],
      ['PUT', I],
      ['PUT', `${I}id`],
      ['PUT', K],
    ] as const) {
      const r = await request(server, method, path);
      assert.equal(r.status, 405, `${method} ${path}`);
      assert.ok(r.headers.allow);
    }
  });

  it('answers OPTIONS with the methods and unknown paths with 404', async () => {
    const r = await request(server, 'OPTIONS', `${K}${H}`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.allow, 'GET, HEAD, OPTIONS, POST, PUT');
    assert.equal((await request(server, 'GET', '/gate-0/nothing')).status, 404);
    assert.equal((await request(server, 'GET', '/gate-0/module/other/x')).status, 404);
  });

  it('detects features', async () => {
    const plain = await request(server, 'GET', '/gate-0/');
    const info = JSON.parse(plain.text);
    assert.equal(info.features, undefined);
    assert.match(info.uuid, UUID);
    for (const q of ['feature=scope', 'feature=*', 'feature=*&feature=scope']) {
      const r = await request(server, 'GET', `/gate-0/?${q}`);
      assert.deepEqual(JSON.parse(r.text).features.scope, ['program:system']);
    }
    assert.equal((await request(server, 'GET', '/gate-0/?foo=bar')).status, 400);
    assert.equal((await request(server, 'GET', '/gate-0/?feature=baz')).status, 501);
  });

  it('lists module sources', async () => {
    const r = await request(server, 'GET', '/gate-0/module/');
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
    assert.deepEqual(JSON.parse(r.text), ['sha256', 'test']);
  });

  it('refuses bad query strings and unknown actions with the spec statuses', async () => {
    assert.equal((await request(server, 'POST', `${K}${H}?action=call&function=a%zz`, { key })).status, 400);
    const dup = await request(server, 'POST', `${K}${H}?action=call&function=a&function=b`, { key });
    assert.equal(dup.status, 400);
    assert.equal(dup.text, 'duplicate query parameter\n');
    const fn = await request(server, 'POST', `${K}${H}?action=call&function=no/slash`, { key });
    assert.equal(fn.status, 400);
    assert.equal(fn.text, 'invalid function name: "no/slash"\n');
    const log = await request(server, 'POST', `${K}${H}?action=call&log=x`, { key });
    assert.equal(log.status, 501);
    const bad = await request(server, 'POST', `${K}${H}?action=bad`, { key });
    assert.equal(bad.status, 501);
    assert.equal(bad.headers['cache-control'], 'public, max-age=3600');
  });
});

describe('known modules', () => {
  it('lists nothing at first', async () => {
    assert.deepEqual(await listModules(), {});
  });

  it('uploads and pins with PUT', async () => {
    assert.equal((await request(server, 'PUT', `${K}${H}`, { key, headers: wasm, body: hello })).status, 501);
    const r = await request(server, 'PUT', `${K}${H}?action=pin`, { key, headers: wasm, body: hello });
    assert.equal(r.status, 201);
    assert.equal(r.headers['content-type'], undefined);
    assert.equal(r.text, '');
    assert.deepEqual(await listModules(), { modules: [{ module: H }] });
  });

  it('refuses content that does not match the key', async () => {
    const wrong = createHash('sha256').update('asdf').digest('hex');
    const r = await request(server, 'PUT', `${K}${wrong}?action=pin`, { key, headers: wasm, body: hello });
    assert.equal(r.status, 400);
    assert.equal(r.text, 'module hash does not match content\n');
    assert.deepEqual(await listModules(), { modules: [{ module: H }] });
    // Under the key of a stored module: a different length says so, the same length fails the hash.
    const longer = await request(server, 'PUT', `${K}${H}?action=pin`, { key, headers: wasm, body: new Uint8Array([...hello, 0]) });
    assert.equal(longer.status, 400);
    assert.equal(longer.text, 'invalid module content\n');
    const changed = hello.slice();
    changed[changed.length - 1] ^= 1;
    const same = await request(server, 'POST', `${K}${H}?action=call&function=greet`, { headers: wasm, body: changed });
    assert.equal(same.status, 400);
    assert.equal(same.text, 'module hash does not match content\n');
    // The right bytes are accepted anonymously under a stored module's key.
    const anon = await request(server, 'POST', `${K}${H}?action=call&function=greet`, { headers: wasm, body: hello });
    assert.equal(anon.status, 200);
    assert.equal(anon.text, 'hello, world\n');
  });

  it('downloads a pinned module', async () => {
    const r = await request(server, 'GET', `${K}${H}`, { key });
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'application/wasm');
    assert.deepEqual(new Uint8Array(r.body), hello);
    const head = await request(server, 'HEAD', `${K}${H}`, { key });
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
  });

  it('refuses upper-case keys', async () => {
    const r = await request(server, 'GET', `${K}${H.toUpperCase()}`, { key });
    assert.equal(r.status, 404);
    assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(r.text, 'module hash must use lower-case hex encoding\n');
  });

  for (const fn of ['', 'greet', 'twice']) {
    it(`calls the known module with function "${fn}"`, async () => {
      const r = await request(server, 'POST', `${K}${H}?action=call&function=${fn}`, { key, headers: { TE: 'trailers' } });
      assert.equal(r.status, 200);
      assert.equal(r.headers['content-type'], undefined);
      assert.match(String(r.headers['gate-instance']), UUID);
      assert.equal(r.text, OUTPUT[fn]);
      assert.deepEqual(Object.keys(r.trailers), ['gate-status']);
      // Our hello.wasm has no _start: without a function, or when the function returns, a call (transient) terminates.
      assert.equal(r.trailers['gate-status'], '{"state":"TERMINATED"}');
    });
  }

  for (const fn of ['', 'greet', 'twice']) {
    it(`launches the known module with function "${fn}"`, async () => {
      const r = await request(server, 'POST', `${K}${H}?action=launch&function=${fn}`, { key });
      assert.equal(r.status, 200);
      assert.match(String(r.headers['gate-instance']), UUID);
      assert.equal(r.text, '');
    });
  }

  it('unpins', async () => {
    assert.equal((await request(server, 'POST', `${K}${H}?action=unpin`, { key })).status, 200);
    assert.deepEqual(await listModules(), {});
    assert.equal((await request(server, 'POST', `${K}${H}?action=unpin`, { key })).status, 404);
  });

  it('calls an uploaded module without pinning it, then with pinning', async () => {
    const r = await request(server, 'POST', `${K}${H}?action=call`, { key, headers: { ...wasm, TE: 'trailers' }, body: hello });
    assert.equal(r.status, 200);
    assert.match(String(r.headers['gate-instance']), UUID);
    assert.equal(r.text, '');
    assert.equal(r.trailers['gate-status'], '{"state":"TERMINATED"}');
    assert.deepEqual(await listModules(), {});
    const p = await request(server, 'POST', `${K}${H}?action=pin&action=call`, { key, headers: { ...wasm, TE: 'trailers' }, body: hello });
    assert.equal(p.status, 201);
    assert.equal(p.headers.location, `${K}${H}`);
    assert.equal(p.trailers['gate-status'], '{"state":"TERMINATED"}');
    assert.deepEqual(await listModules(), { modules: [{ module: H }] });
    assert.equal((await request(server, 'POST', `${K}${H}?action=unpin`, { key })).status, 200);
  });

  it('launches an uploaded module with and without pinning', async () => {
    const r = await request(server, 'POST', `${K}${H}?action=launch`, { key, headers: wasm, body: hello });
    assert.equal(r.status, 200);
    assert.equal(r.headers.location, undefined);
    assert.deepEqual(await listModules(), {});
    const p = await request(server, 'POST', `${K}${H}?action=launch&action=pin`, { key, headers: wasm, body: hello });
    assert.equal(p.status, 201);
    assert.equal(p.headers.location, `${K}${H}`);
    assert.deepEqual(await listModules(), { modules: [{ module: H }] });
  });

  it('answers 501 to unknown actions, signed or not', async () => {
    assert.equal((await request(server, 'PUT', `${K}${H}?action=bad`, { headers: wasm, body: hello })).status, 501);
    assert.equal((await request(server, 'POST', `${K}${H}?action=bad`, { headers: wasm, body: hello })).status, 501);
    assert.equal((await request(server, 'PUT', `${K}${H}?action=bad`, { key, headers: wasm, body: hello })).status, 501);
    assert.equal((await request(server, 'POST', `${K}${H}?action=bad`, { key })).status, 501);
  });

  it('lets anonymous clients call uploaded modules but nothing else', async () => {
    const r = await request(server, 'POST', `${K}${H}?action=call&function=greet`, { headers: { ...wasm, TE: 'trailers' }, body: hello });
    assert.equal(r.status, 200);
    assert.equal(r.headers['gate-instance'], undefined);
    assert.equal(r.trailers['gate-status'], '{"state":"TERMINATED"}');
    const list = await request(server, 'POST', K);
    assert.equal(list.status, 401);
    assert.match(String(list.headers['www-authenticate']), /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/gate-0\/"$/);
    assert.equal(list.text, 'missing authentication credentials\n');
  });
});

describe('module source', () => {
  const S = '/gate-0/module/test/hello';

  it('refuses a POST without action', async () => {
    assert.equal((await request(server, 'POST', S)).status, 501);
  });

  it('pins from the source', async () => {
    const r = await request(server, 'POST', `${S}?action=pin`, { key });
    assert.equal(r.status, 201);
    assert.equal(r.headers['content-type'], undefined);
    assert.equal(r.headers.location, `${K}${H}`);
    assert.equal(r.headers['gate-instance'], undefined);
    assert.ok(JSON.stringify(await listModules()).includes(H));
    assert.equal((await request(server, 'GET', `${K}${H}`, { key })).status, 200);
    assert.equal((await request(server, 'POST', `${K}${H}?action=unpin`, { key })).status, 200);
  });

  for (const fn of ['', 'greet', 'twice']) {
    it(`calls from the source with function "${fn}"`, async () => {
      const anon = await request(server, 'POST', `${S}?action=call&function=${fn}`, { headers: { TE: 'trailers' } });
      assert.equal(anon.status, 200);
      assert.equal(anon.headers['gate-instance'], undefined);
      assert.equal(anon.headers.location, undefined);
      assert.equal(anon.text, OUTPUT[fn]);
      assert.equal((await request(server, 'POST', `${S}?action=pin&action=call&function=${fn}`)).status, 401);
      const signed = await request(server, 'POST', `${S}?action=call&function=${fn}`, { key, headers: { TE: 'trailers' } });
      assert.equal(signed.status, 200);
      assert.match(String(signed.headers['gate-instance']), UUID);
      assert.equal(signed.text, OUTPUT[fn]);
      assert.equal((await request(server, 'POST', `${K}${H}?action=unpin`, { key })).status, 404);
      const pinned = await request(server, 'POST', `${S}?action=pin&action=call&function=${fn}`, { key, headers: { TE: 'trailers' } });
      assert.equal(pinned.status, 201);
      assert.equal(pinned.headers.location, `${K}${H}`);
      assert.equal(pinned.text, OUTPUT[fn]);
      assert.equal((await request(server, 'POST', `${K}${H}?action=unpin`, { key })).status, 200);
      const launch = await request(server, 'POST', `${S}?action=launch&function=${fn}`, { key });
      assert.equal(launch.status, 200);
      assert.equal(launch.headers.location, undefined);
      const pinLaunch = await request(server, 'POST', `${S}?action=launch&action=pin&function=${fn}`, { key });
      assert.equal(pinLaunch.status, 201);
      assert.equal((await request(server, 'POST', `${K}${H}?action=unpin`, { key })).status, 200);
    });
  }

  it('answers 404 for what the source does not have, 501 for bad actions', async () => {
    assert.equal((await request(server, 'POST', '/gate-0/module/test/nothing?action=call')).status, 404);
    assert.equal((await request(server, 'POST', `${S}?action=bad`)).status, 501);
    assert.equal((await request(server, 'POST', `${S}?action=bad`, { key })).status, 501);
  });
});

describe('instances', () => {
  it('runs, lists, streams, waits and deletes an instance', async () => {
    assert.deepEqual(JSON.parse((await request(server, 'POST', I, { key: newKey() })).text), {});
    const launch = await request(server, 'POST', `${K}${H}?action=pin&action=launch&function=greet`, { key, headers: wasm, body: hello });
    assert.equal(launch.status, 201);
    const id = String(launch.headers['gate-instance']);
    const info = JSON.parse((await request(server, 'POST', `${I}${id}`, { key })).text);
    assert.deepEqual(info, { instance: id, module: H, status: { state: 'RUNNING' } });
    assert.equal((await request(server, 'POST', `${I}${id}?action=delete`, { key })).status, 409);
    const io = await request(server, 'POST', `${I}${id}?action=io`, { key, headers: { TE: 'trailers' } });
    assert.equal(io.status, 200);
    assert.equal(io.headers['content-type'], undefined);
    assert.equal(io.text, 'hello, world\n');
    assert.ok(['{"state":"RUNNING"}', '{"state":"HALTED"}'].includes(String(io.trailers['gate-status'])));
    const wait = await request(server, 'POST', `${I}${id}?action=wait`, { key });
    assert.equal(wait.headers['gate-status'], '{"state":"HALTED"}');
    assert.deepEqual(JSON.parse((await request(server, 'POST', `${I}${id}`, { key })).text).status, { state: 'HALTED' });
    assert.equal((await request(server, 'POST', `${I}${id}?action=bad`, { key })).status, 501);
    assert.equal((await request(server, 'POST', `${I}${id}?action=delete`, { key })).status, 200);
    assert.equal((await request(server, 'POST', `${I}${id}`, { key })).status, 404);
  });

  it('serves concurrent io clients', async () => {
    const launch = await request(server, 'POST', `${K}${H}?action=launch&function=multi`, { key });
    const id = String(launch.headers['gate-instance']);
    const replies = await Promise.all(Array.from({ length: 10 }, () => request(server, 'POST', `${I}${id}?action=io`, { key, headers: { TE: 'trailers' } })));
    for (const r of replies) {
      assert.equal(r.status, 200);
      assert.equal(r.text, 'hello, world\n');
      assert.equal(r.trailers['gate-status'], '{"state":"RUNNING"}');
    }
    const kill = await request(server, 'POST', `${I}${id}?action=kill&action=wait`, { key });
    assert.equal(kill.headers['gate-status'], '{"state":"KILLED"}');
    assert.deepEqual(JSON.parse((await request(server, 'POST', `${I}${id}`, { key })).text).status, { state: 'KILLED' });
  });

  it('reports a failing program as TERMINATED with result 1, and snapshots it as final', async () => {
    const launch = await request(server, 'POST', `${K}${H}?action=launch&function=fail`, { key });
    const id = String(launch.headers['gate-instance']);
    const wait = await request(server, 'POST', `${I}${id}?action=wait`, { key });
    assert.equal(wait.headers['gate-status'], '{"state":"TERMINATED","result":1}');
    const snap = await request(server, 'POST', `${I}${id}?action=snapshot`, { key });
    assert.equal(snap.status, 201);
    const module = await request(server, 'GET', String(snap.headers.location), { key });
    assert.equal(module.status, 200);
    assert.ok(WebAssembly.validate(new Uint8Array(module.body)));
  });

  it('checks instance ids', async () => {
    const cases: Array<[string, string]> = [
      ['not-a-uuid', 'instance id must be a UUID'],
      ['{3f1d2c5e-8a0b-4c1d-9e2f-1a2b3c4d5e6f}', 'instance UUID must not be surrounded by brackets'],
      ['3F1D2C5E-8A0B-4C1D-9E2F-1A2B3C4D5E6F', 'instance UUID must use lower-case hex encoding'],
      ['3f1d2c5e-8a0b-1c1d-9e2f-1a2b3c4d5e6f', 'instance UUID version must be 4'],
      ['3f1d2c5e-8a0b-4c1d-1e2f-1a2b3c4d5e6f', 'instance UUID variant must be RFC 4122'],
    ];
    for (const [id, message] of cases) {
      const r = await request(server, 'POST', `${I}${encodeURIComponent(id)}`, { key });
      assert.equal(r.status, 404, id);
      assert.equal(r.text, `${message}\n`);
      const launch = await request(server, 'POST', `${K}${H}?action=launch&instance=${encodeURIComponent(id)}`, { key, headers: wasm, body: hello });
      assert.equal(launch.status, 400, id);
    }
  });

  it('lets a client choose the instance id, once', async () => {
    const id = globalThis.crypto.randomUUID();
    const first = await request(server, 'POST', `${K}${H}?action=launch&function=multi&instance=${id}`, { key, headers: wasm, body: hello });
    assert.equal(first.status, 200);
    assert.equal(first.headers['gate-instance'], id);
    const second = await request(server, 'POST', `${K}${H}?action=launch&function=multi&instance=${id}`, { key, headers: wasm, body: hello });
    assert.equal(second.status, 409);
    assert.equal(second.text, 'duplicate instance id\n');
    await request(server, 'POST', `${I}${id}?action=kill&action=wait`, { key });
  });

  it('updates tags and persistence', async () => {
    const launch = await request(server, 'POST', `${K}${H}?action=launch&function=multi&instance-tag=a`, { key, headers: wasm, body: hello });
    const id = String(launch.headers['gate-instance']);
    const bad = await request(server, 'POST', `${I}${id}?action=update`, { key, headers: { 'Content-Type': 'application/json' }, body: '{"persist":' });
    assert.equal(bad.status, 400);
    assert.equal(bad.text, 'content parse error\n');
    assert.equal((await request(server, 'POST', `${I}${id}?action=update`, { key, body: '{}' })).status, 415);
    const r = await request(server, 'POST', `${I}${id}?action=update`, { key, headers: { 'Content-Type': 'application/json', Accept: 'application/json' }, body: '{"tags":["b","c"]}' });
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.text).tags, ['b', 'c']);
    await request(server, 'POST', `${I}${id}?action=kill&action=wait`, { key });
  });
});

describe('isolation between principals', () => {
  it('hides modules and instances of others', async () => {
    const other = newKey();
    await request(server, 'PUT', `${K}${H}?action=pin`, { key, headers: wasm, body: hello });
    const launch = await request(server, 'POST', `${K}${H}?action=launch&function=multi`, { key });
    const id = String(launch.headers['gate-instance']);
    assert.deepEqual(await listModules(other), {});
    assert.equal((await request(server, 'GET', `${K}${H}`, { key: other })).status, 404);
    assert.equal((await request(server, 'POST', `${K}${H}?action=call`, { key: other })).status, 404);
    assert.equal((await request(server, 'POST', `${K}${H}?action=unpin`, { key: other })).status, 404);
    assert.equal((await request(server, 'POST', `${I}${id}`, { key: other })).status, 404);
    assert.equal((await request(server, 'POST', `${I}${id}?action=kill`, { key: other })).status, 404);
    assert.equal((await request(server, 'POST', `${I}${id}?action=io`, { key: other })).status, 404);
    assert.deepEqual(JSON.parse((await request(server, 'POST', I, { key: other })).text), {});
    const status = await request(server, 'POST', `${I}${id}`, { key });
    assert.equal(JSON.parse(status.text).status.state, 'RUNNING');
    await request(server, 'POST', `${I}${id}?action=kill&action=wait`, { key });
  });

  it('refuses bad tokens with 401 and a reason', async () => {
    const r = await request(server, 'POST', K, { headers: { Authorization: 'Bearer not.a.token' } });
    assert.equal(r.status, 401);
    assert.match(String(r.headers['www-authenticate']), /error="invalid_token"/);
    const basic = await request(server, 'POST', K, { headers: { Authorization: 'Basic abc' } });
    assert.equal(basic.status, 401);
  });
});
