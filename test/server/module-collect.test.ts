/**
 * A module's bytes are deleted once nothing refers to them, also when the
 * last reference goes while a call of it runs; and a call's end does not
 * delete what is still pinned (the end of a transient call asks the
 * inventory only when a collection was put off during the call).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { programBytes } from '../helpers/runtime.js';
import { newKey, request, startServerWithSource, startTestServer, within, type TestServer } from '../helpers/server.js';

const hello = programBytes('hello');
const H = createHash('sha256').update(hello).digest('hex');
const K = '/gate-0/module/sha256/';
const key = newKey();
let server: TestServer;

before(async () => {
  server = await startTestServer();
});
after(() => server.stop());

/** Whether the state directory holds the module's bytes (wherever the blob store puts them). */
function stored(hash: string, s: TestServer = server): boolean {
  const find = (dir: string): boolean =>
    existsSync(dir) && readdirSync(dir, { withFileTypes: true }).some((e) => e.name === hash || (e.isDirectory() && find(join(dir, e.name))));
  return find(join(s.stateDir));
}

async function waitUntil(what: string, test: () => boolean): Promise<void> {
  await within(5000, what, (async () => {
    while (!test()) await new Promise((r) => setTimeout(r, 20));
  })());
}

describe('module pins and bytes around calls', () => {
  it('keeps a pinned module after calls of it end', async () => {
    assert.equal((await request(server, 'PUT', `${K}${H}?action=pin`, { key, body: hello, headers: { 'Content-Type': 'application/wasm' } })).status, 201);
    for (let i = 0; i < 3; i++) {
      const r = await request(server, 'POST', `${K}${H}?action=call&function=greet`, { key });
      assert.equal(r.status, 200);
      assert.equal(r.text, 'hello, world\n');
    }
    // The stop path runs after the response; give it time to do anything it would.
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(stored(H));
    assert.equal((await request(server, 'POST', `${K}${H}?action=call&function=greet`, { key })).status, 200);
  });

  it('deletes a module unpinned during a call of it once the call ends', async () => {
    assert.ok(stored(H), 'pinned by the test before');
    // repl greets each chunk of input and returns at its end: the call runs until the body ends.
    const req = httpRequest(`${server.url}${K}${H}?action=call&function=repl`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${server.token(key)}` },
    });
    const response = new Promise<IncomingMessage>((res, rej) => req.on('response', res).on('error', rej));
    req.write('x');
    const res = await within(5000, 'the response', response);
    assert.equal(res.statusCode, 200);
    let text = '';
    const ended = new Promise<void>((r) => res.on('end', r));
    const firstGreeting = new Promise<void>((r) =>
      res.on('data', (d: Buffer) => {
        text += d.toString();
        if (text.length > 0) r();
      }),
    );
    await within(5000, 'the first greeting', firstGreeting);

    assert.equal((await request(server, 'POST', `${K}${H}?action=unpin`, { key })).status, 200);
    // The running call still uses the module.
    assert.ok(stored(H));

    // Unpinned: the owner can no longer call it by its hash (the server caches pins it looked up).
    assert.equal((await request(server, 'POST', `${K}${H}?action=call&function=greet`, { key })).status, 404);
    assert.equal((await request(server, 'GET', `${K}${H}`, { key })).status, 404);

    req.end();
    await within(5000, 'the end of the call', ended);
    assert.equal(text, 'hello, world\n');
    await waitUntil('the module bytes to be deleted', () => !stored(H));
  });

  it('sees a pin again, and its new tags, after the pin was looked up and changed', async () => {
    const other = newKey();
    const put = (k: typeof key, tags: string) => request(server, 'PUT', `${K}${H}?action=pin${tags}`, { key: k, body: hello, headers: { 'Content-Type': 'application/wasm' } });
    assert.equal((await put(key, '&module-tag=a')).status, 201);
    assert.equal((await request(server, 'POST', `${K}${H}?action=call&function=greet`, { key })).status, 200);
    assert.equal((await request(server, 'POST', `${K}${H}?action=call&function=greet`, { key: other })).status, 404);
    const tagsOf = async (): Promise<unknown> => JSON.parse((await request(server, 'POST', `${K}${H}`, { key })).text);
    assert.deepEqual(await tagsOf(), { module: H, tags: ['a'] });
    assert.equal((await request(server, 'POST', `${K}${H}?action=pin&module-tag=b`, { key })).status, 200);
    assert.deepEqual(await tagsOf(), { module: H, tags: ['b'] });
    assert.equal((await request(server, 'POST', `${K}${H}?action=unpin`, { key })).status, 200);
    assert.equal((await request(server, 'POST', `${K}${H}`, { key })).status, 404);
    assert.equal((await put(key, '')).status, 201);
    assert.equal((await request(server, 'POST', `${K}${H}?action=call&function=greet`, { key })).status, 200);
  });
});

describe('module bytes fetched from a source', () => {
  let withSource: TestServer;
  before(async () => {
    withSource = await startServerWithSource();
  });
  after(() => withSource.stop());

  it('are deleted when the call they were fetched for ends, unless pinned', async () => {
    const S = '/gate-0/module/test/hello';
    const r = await request(withSource, 'POST', `${S}?action=call&function=greet`);
    assert.equal(r.status, 200);
    assert.equal(r.text, 'hello, world\n');
    await waitUntil('the fetched module to be deleted', () => !stored(H, withSource));
    const pinned = await request(withSource, 'POST', `${S}?action=pin&action=call&function=greet`, { key });
    assert.equal(pinned.status, 201);
    await new Promise((res) => setTimeout(res, 200));
    assert.ok(stored(H, withSource), 'pinned while it was called: kept');
  });
});
