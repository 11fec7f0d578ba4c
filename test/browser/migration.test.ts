/**
 * Live migration between a real gate-server and the browser runtime in
 * Chromium: a counter runs on the server, moves into the page (snapshot
 * downloaded over the HTTP API and resumed in a Web Worker under the same
 * instance id), counts on there, and moves back (snapshot uploaded, launched
 * with `instance=<same id>`), its count continuing across all three places.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { openTestPage, type TestPage } from '../helpers/browser.js';
import { programBytes } from '../helpers/runtime.js';
import { newKey, readCount, request, startTestServer, type TestServer } from '../helpers/server.js';
import type { MigrateReport } from './harness.js';

const K = '/gate-0/module/sha256/';
const I = '/gate-0/instance/';
const counter = programBytes('counter');
const C = createHash('sha256').update(counter).digest('hex');
const key = newKey();

describe('migration between gate-server and the browser', () => {
  let tp!: TestPage;
  let server!: TestServer;
  before(async () => {
    // The page reaches the API through its own origin (see startStaticServer);
    // browsers send Origin with a same-origin POST too, so the server allows it.
    tp = await openTestPage(() => server?.url);
    server = await startTestServer({ origins: [new URL(tp.url).origin] });
    await tp.page.exposeFunction('gateToken', () => server.token(key));
  });
  after(async () => {
    await tp?.close();
    await server?.stop();
  });

  it('moves a running counter server → browser → server under the same instance id, its count going on', async () => {
    const launched = await request(server, 'POST', `${K}${C}?action=pin&action=launch&function=run`, {
      key,
      headers: { 'Content-Type': 'application/wasm' },
      body: counter,
    });
    assert.equal(launched.status, 201, launched.text);
    const id = String(launched.headers['gate-instance']);
    const onServer = await readCount(server, key, id, (n) => n >= 2);

    const r: MigrateReport = await tp.page.evaluate(
      (req) => (globalThis as any).gateHarness.migrate(req),
      { server: new URL(tp.url).origin, id, rounds: 3 },
    );
    assert.deepEqual(r.status, { state: 'SUSPENDED' }, r.debug);
    assert.doesNotMatch(r.debug, /MISMATCH/);
    assert.ok(r.counts.length >= 3, `the page got ${r.counts.length} counts`);
    // The state came along: the count continues from where the server was, in steps of one.
    assert.ok(r.counts[0]! > onServer, `browser started at ${r.counts[0]} after the server's ${onServer}`);
    r.counts.forEach((n, i) => i > 0 && assert.equal(n, r.counts[i - 1]! + 1));

    // Back on the server under the same id, running on from the browser's count.
    const st = await request(server, 'POST', `${I}${id}`, { key });
    assert.equal(JSON.parse(st.text).status.state, 'RUNNING');
    const back = await readCount(server, key, id, () => true);
    assert.ok(back > r.counts.at(-1)!, `server resumed at ${back} after the browser's ${r.counts.at(-1)}`);
    await request(server, 'POST', `${I}${id}?action=kill&action=wait`, { key });
    console.log(`migration (counter, ${r.snapshotBytes} byte snapshot), ms: ${JSON.stringify(r.ms, (_, v: unknown) => (typeof v === 'number' ? Math.round(v) : v))}`);
  });

  it('the page saw no errors', () => {
    assert.deepEqual(tp.errors, []);
  });
});
