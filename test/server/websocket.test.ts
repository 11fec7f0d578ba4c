/**
 * The websocket protocols of the API (spec web-api.md §11) against a real
 * gate-server on loopback, with the `ws` package as the client: call (with
 * an uploaded, a known or a source module) and io to a running instance.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { WebSocket, type RawData } from 'ws';
import type { ClientIdentity } from '../../src/client/identity.js';
import { programBytes } from '../helpers/runtime.js';
import { ModuleBuilder } from '../wasm/wasm-builder.js';
import { newKey, request, startServerWithSource, UUID, type TestServer } from '../helpers/server.js';

const hello = programBytes('hello');
const H = createHash('sha256').update(hello).digest('hex');
const K = '/gate-0/module/sha256/';
const I = '/gate-0/instance/';
const S = '/gate-0/module/test/hello';
const wasm = { 'Content-Type': 'application/wasm' };
const HELLO = 'hello, world\n';

let server: TestServer;
const key = newKey();

before(async () => {
  server = await startServerWithSource();
});
after(() => server.stop());

type Event = { kind: 'text'; text: string } | { kind: 'binary'; data: Buffer } | { kind: 'close'; code: number; reason: string };

/** A websocket client whose messages and close are pulled in order. */
class Client {
  private readonly events: Event[] = [];
  private waiter: (() => void) | undefined;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: RawData, binary: boolean) => {
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      this.push(binary ? { kind: 'binary', data: buf } : { kind: 'text', text: buf.toString('utf8') });
    });
    ws.on('close', (code: number, reason: Buffer) => this.push({ kind: 'close', code, reason: reason.toString('utf8') }));
    ws.on('error', () => {}); // reported by 'close'
  }

  /** Opens a websocket to `path`; rejects with the HTTP status if the upgrade is refused. */
  static open(path: string, headers: Record<string, string> = {}): Promise<Client> {
    const ws = new WebSocket(`${server.url.replace(/^http/, 'ws')}${path}`, { headers });
    const client = new Client(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(client));
      ws.once('unexpected-response', (_req, res) => {
        res.resume();
        reject(new HttpRefusal(res.statusCode ?? 0));
        ws.terminate();
      });
      ws.once('error', reject);
    });
  }

  send(value: unknown): void {
    this.ws.send(typeof value === 'string' ? value : JSON.stringify(value));
  }

  sendBinary(data: Uint8Array): void {
    this.ws.send(data, { binary: true });
  }

  async next(): Promise<Event> {
    while (this.events.length === 0) await new Promise<void>((r) => (this.waiter = r));
    const e = this.events.shift()!;
    return e;
  }

  async text(): Promise<string> {
    const e = await this.next();
    assert.equal(e.kind, 'text', `expected a text message, got ${JSON.stringify(e)}`);
    return (e as { text: string }).text;
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }

  /** Reads binary messages until `n` bytes have arrived. */
  async output(n: number): Promise<string> {
    const chunks: Buffer[] = [];
    let size = 0;
    while (size < n) {
      const e = await this.next();
      assert.equal(e.kind, 'binary', `expected output, got ${JSON.stringify(e)}`);
      const data = (e as { data: Buffer }).data;
      chunks.push(data);
      size += data.length;
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  async closed(): Promise<{ code: number; reason: string }> {
    const e = await this.next();
    assert.equal(e.kind, 'close', `expected close, got ${JSON.stringify(e)}`);
    const { code, reason } = e as { code: number; reason: string };
    return { code, reason };
  }

  /** The final status message (tab-indented JSON with a trailing newline, §11.3), then a normal close. */
  async end(): Promise<unknown> {
    const text = await this.text();
    assert.ok(text.endsWith('\n'), JSON.stringify(text));
    const msg = JSON.parse(text) as { status: unknown };
    assert.deepEqual(Object.keys(msg), ['status']);
    assert.equal((await this.closed()).code, 1000);
    return msg.status;
  }

  private push(e: Event): void {
    this.events.push(e);
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }
}

class HttpRefusal extends Error {
  constructor(readonly status: number) {
    super(`upgrade refused with ${status}`);
  }
}

const bearer = (k: ClientIdentity): string => `Bearer ${server.token(k)}`;
const upload = { content_type: 'application/wasm', content_length: hello.length };

async function instanceIds(k: ClientIdentity): Promise<string[]> {
  const r = await request(server, 'POST', I, { key: k });
  assert.equal(r.status, 200);
  const list = JSON.parse(r.text) as { instances?: Array<{ instance: string }> };
  return (list.instances ?? []).map((i) => i.instance);
}

/** Liveness, not timing: waits (bounded) until `check` holds. */
async function eventually(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`never happened: ${what}`);
}

async function refusal(path: string, headers: Record<string, string> = {}): Promise<number> {
  try {
    const c = await Client.open(path, headers);
    c.ws.terminate();
    return 101;
  } catch (e) {
    assert.ok(e instanceof HttpRefusal, String(e));
    return e.status;
  }
}

describe('websocket call', () => {
  it('calls an uploaded module anonymously', async () => {
    const c = await Client.open(`${K}${H}?action=call&function=greet`);
    c.send(upload);
    c.sendBinary(hello);
    assert.deepEqual(await c.json(), {});
    assert.equal(await c.output(HELLO.length), HELLO);
    assert.deepEqual(await c.end(), { state: 'TERMINATED' });
    assert.equal(server.instances.runningCount, 0);
  });

  it('calls an uploaded module signed, with and without pinning', async () => {
    const k = newKey();
    const c = await Client.open(`${K}${H}?action=call&function=twice`);
    c.send({ authorization: bearer(k), ...upload });
    c.sendBinary(hello);
    const reply = (await c.json()) as Record<string, string>;
    assert.deepEqual(Object.keys(reply), ['instance']);
    assert.match(reply.instance!, UUID);
    assert.equal(await c.output(2 * HELLO.length), HELLO + HELLO);
    assert.deepEqual(await c.end(), { state: 'TERMINATED' });
    assert.equal((await request(server, 'GET', `${K}${H}`, { key: k })).status, 404);

    const p = await Client.open(`${K}${H}?action=call&action=pin&function=greet&module-tag=ws`);
    p.send({ authorization: bearer(k), ...upload });
    p.sendBinary(hello);
    const pinned = (await p.json()) as Record<string, string>;
    assert.deepEqual(Object.keys(pinned).sort(), ['instance', 'location']);
    assert.equal(pinned.location, `${K}${H}`);
    assert.match(pinned.instance!, UUID);
    assert.equal(await p.output(HELLO.length), HELLO);
    assert.deepEqual(await p.end(), { state: 'TERMINATED' });
    const list = await request(server, 'POST', K, { key: k });
    assert.deepEqual(JSON.parse(list.text), { modules: [{ module: H, tags: ['ws'] }] });
  });

  it('needs credentials for pinning', async () => {
    const c = await Client.open(`${K}${H}?action=call&action=pin`);
    c.send(upload);
    const close = await c.closed();
    assert.equal(close.code, 1008);
    assert.equal(close.reason, 'missing authentication credentials');
  });

  it('calls a known module signed, and refuses it anonymously', async () => {
    const k = newKey();
    assert.equal((await request(server, 'PUT', `${K}${H}?action=pin`, { key: k, headers: wasm, body: hello })).status, 201);
    const c = await Client.open(`${K}${H}?action=call&function=greet`);
    c.send({ authorization: bearer(k) });
    const reply = (await c.json()) as Record<string, string>;
    assert.deepEqual(Object.keys(reply), ['instance']);
    assert.equal(await c.output(HELLO.length), HELLO);
    assert.deepEqual(await c.end(), { state: 'TERMINATED' });

    const anon = await Client.open(`${K}${H}?action=call&function=greet`);
    anon.send({});
    assert.deepEqual(await anon.closed(), { code: 1008, reason: 'anonymous access not supported' });

    const other = await Client.open(`${K}${H}?action=call&function=greet`);
    other.send({ authorization: bearer(newKey()), content_type: '' });
    assert.deepEqual(await other.closed(), { code: 1008, reason: 'module not found' });
  });

  it('cuts a refusal too long for a close frame, and says so', async () => {
    // An import name long enough that the module error cannot fit in a close reason (123 bytes).
    const b = new ModuleBuilder();
    b.importFunc('env', 'x'.repeat(200), []);
    const bytes = b.build();
    const c = await Client.open(`${K}${createHash('sha256').update(bytes).digest('hex')}?action=call`);
    c.send({ content_type: 'application/wasm', content_length: bytes.length });
    c.sendBinary(bytes);
    const close = await c.closed();
    assert.equal(close.code, 1008);
    assert.ok(Buffer.byteLength(close.reason) <= 123, close.reason);
    assert.match(close.reason, /^import .*"env" "x{20,}…$/);
  });

  it('refuses other content types with 1008', async () => {
    const c = await Client.open(`${K}${H}?action=call`);
    c.send({ content_type: 'text/plain', content_length: 5 });
    assert.deepEqual(await c.closed(), { code: 1008, reason: 'unsupported content type' });
  });

  it('refuses a text message as module content with 1003', async () => {
    const c = await Client.open(`${K}${H}?action=call`);
    c.send(upload);
    c.send('not a module');
    assert.equal((await c.closed()).code, 1003);
  });

  it('refuses content that does not hash to the key', async () => {
    const wrong = createHash('sha256').update('asdf').digest('hex');
    const c = await Client.open(`${K}${wrong}?action=call`);
    c.send(upload);
    c.sendBinary(hello);
    assert.deepEqual(await c.closed(), { code: 1008, reason: 'module hash does not match content' });
    const short = await Client.open(`${K}${H}?action=call`);
    short.send({ ...upload, content_length: hello.length - 1 });
    short.sendBinary(hello);
    assert.equal((await short.closed()).code, 1008);
  });

  it('refuses bad setup messages', async () => {
    for (const msg of ['not json', '[]', 'null', `{"x":"${'y'.repeat(5000)}"}`]) {
      const c = await Client.open(`${K}${H}?action=call`);
      c.send(msg);
      assert.equal((await c.closed()).code, 1008, msg.slice(0, 20));
    }
    const binary = await Client.open(`${K}${H}?action=call`);
    binary.sendBinary(Buffer.from('{}'));
    assert.equal((await binary.closed()).code, 1003);
    const token = await Client.open(`${K}${H}?action=call`);
    token.send({ authorization: 'Bearer not.a.token', ...upload });
    const close = await token.closed();
    assert.equal(close.code, 1008);
    assert.ok(close.reason.length > 0);
  });

  it('streams input and output (repl), announcing input once', async () => {
    const c = await Client.open(`${K}${H}?action=call&function=repl`);
    c.send({ authorization: bearer(key), ...upload });
    c.sendBinary(hello);
    const reply = (await c.json()) as { instance: string };
    // The program asks for input before it writes anything.
    assert.deepEqual(await c.json(), { status: { state: 'RUNNING' }, input: true });
    for (const chunk of ['a', 'bc', 'def']) {
      c.sendBinary(Buffer.from(chunk));
      assert.equal(await c.output(HELLO.length), HELLO, chunk);
    }
    // Text messages in the data phase are not input.
    c.send('ignored');
    c.sendBinary(Buffer.from('g'));
    assert.equal(await c.output(HELLO.length), HELLO);
    assert.deepEqual(await instanceIds(key), [reply.instance]);
    // The client cannot signal end of input but by leaving: the transient instance goes.
    c.ws.close(1000);
    assert.equal((await c.closed()).code, 1000);
    await eventually('instance is gone', async () => (await instanceIds(key)).length === 0);
  });

  it('calls a module from a source, anonymously and signed, without content', async () => {
    const anon = await Client.open(`${S}?action=call&function=greet`);
    anon.send({});
    assert.deepEqual(await anon.json(), {});
    assert.equal(await anon.output(HELLO.length), HELLO);
    assert.deepEqual(await anon.end(), { state: 'TERMINATED' });

    const k = newKey();
    const pinned = await Client.open(`${S}?action=call&action=pin&function=greet`);
    pinned.send({ authorization: bearer(k) });
    assert.deepEqual(Object.keys((await pinned.json()) as object).sort(), ['instance', 'location']);
    assert.equal(await pinned.output(HELLO.length), HELLO);
    assert.deepEqual(await pinned.end(), { state: 'TERMINATED' });
    assert.equal((await request(server, 'GET', `${K}${H}`, { key: k })).status, 200);

    const content = await Client.open(`${S}?action=call&function=greet`);
    content.send(upload);
    assert.deepEqual(await content.closed(), { code: 1008, reason: 'content not supported by action' });

    const missing = await Client.open('/gate-0/module/test/nothing?action=call');
    missing.send({});
    assert.deepEqual(await missing.closed(), { code: 1008, reason: 'module not found' });
  });

  it('reports a failing program in the final status', async () => {
    const c = await Client.open(`${K}${H}?action=call&function=fail`);
    c.send(upload);
    c.sendBinary(hello);
    assert.deepEqual(await c.json(), {});
    assert.deepEqual(await c.end(), { state: 'TERMINATED', result: 1 });
  });

  it('refuses entry problems with 1008', async () => {
    const c = await Client.open(`${K}${H}?action=call&function=nonexistent`);
    c.send(upload);
    c.sendBinary(hello);
    const close = await c.closed();
    assert.equal(close.code, 1008);
    assert.match(close.reason, /function/);
  });

  it('kills the transient instance when the client disconnects', async () => {
    const k = newKey();
    const c = await Client.open(`${K}${H}?action=call&function=multi`);
    c.send({ authorization: bearer(k), ...upload });
    c.sendBinary(hello);
    const { instance } = (await c.json()) as { instance: string };
    assert.equal(await c.output(HELLO.length), HELLO);
    const info = await request(server, 'POST', `${I}${instance}`, { key: k });
    assert.equal(JSON.parse(info.text).status.state, 'RUNNING');
    c.ws.terminate();
    await eventually('instance is gone', async () => (await instanceIds(k)).length === 0);
    assert.equal((await request(server, 'POST', `${I}${instance}`, { key: k })).status, 404);
  });

  it('kills the instance when the client leaves before the reply', async () => {
    const k = newKey();
    assert.equal((await request(server, 'PUT', `${K}${H}?action=pin`, { key: k, headers: wasm, body: hello })).status, 201);
    for (let i = 0; i < 5; i++) {
      const c = await Client.open(`${K}${H}?action=call&function=multi`);
      c.send({ authorization: bearer(k) });
      c.ws.terminate();
    }
    const anon = await Client.open(`${K}${H}?action=call&function=multi`);
    anon.send(upload);
    anon.sendBinary(hello);
    anon.ws.terminate();
    await eventually('nothing is left running', async () => (await instanceIds(k)).length === 0 && server.instances.runningCount === 0);
  });

  it('answers upgrade requests it cannot serve with HTTP errors', async () => {
    assert.equal(await refusal(`${K}${H}?action=launch`), 501);
    assert.equal(await refusal(`${K}${H}?action=call&action=launch`), 501);
    assert.equal(await refusal(`${K}${H}?action=call&foo=bar`), 400);
    assert.equal(await refusal(`${K}${H}?action=call&function=a/b`), 400);
    assert.equal(await refusal(`${K}${H.toUpperCase()}?action=call`), 404);
    assert.equal(await refusal(`${K}xyz?action=call`), 404);
    assert.equal(await refusal(`/gate-0/module/other/x?action=call`), 404);
    assert.equal(await refusal(`${K}${H}?action=call`, { Origin: 'https://example.net' }), 403);
    assert.equal(await refusal(`${K}${H}?action=call`, { Origin: 'null' }), 101);
    assert.equal(await refusal(`${K}${H}?action=call&function=a%zz`), 400);
    assert.equal(await refusal(`${K}%zz?action=call`), 400);
    assert.equal(await refusal(`${I}not-a-uuid?action=io`), 404);
    assert.equal(await refusal(`${I}${globalThis.crypto.randomUUID()}?action=kill`), 501);
  });

  it('survives websocket protocol errors', async () => {
    // Invalid UTF-8 in a text message, in setup and in the data phase.
    const c = await Client.open(`${K}${H}?action=call`);
    c.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    assert.equal((await c.closed()).code, 1007);
    const d = await Client.open(`${K}${H}?action=call&function=repl`);
    d.send(upload);
    d.sendBinary(hello);
    assert.deepEqual(await d.json(), {});
    d.ws.send(Buffer.from([0xff]), { binary: false });
    const events: string[] = [];
    for (;;) {
      const e = await d.next();
      events.push(e.kind);
      if (e.kind === 'close') {
        assert.equal(e.code, 1007);
        break;
      }
    }
    // A raw unmasked frame (forbidden from clients), then a connection reset.
    await new Promise<void>((resolve, reject) => {
      const port = Number(new URL(server.url).port);
      const sock = netConnect(port, '127.0.0.1', () => {
        sock.write(
          `GET ${K}${H}?action=call HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
        );
      });
      let upgraded = false;
      sock.on('data', (d: Buffer) => {
        if (!upgraded && d.toString('latin1').startsWith('HTTP/1.1 101')) {
          upgraded = true;
          sock.write(Buffer.from([0x81, 0x02, 0x7b, 0x7d])); // unmasked text "{}"
        }
      });
      sock.on('error', () => {});
      sock.on('close', () => (upgraded ? resolve() : reject(new Error('not upgraded'))));
    });
    await new Promise<void>((resolve) => {
      const port = Number(new URL(server.url).port);
      const sock = netConnect(port, '127.0.0.1', () => {
        sock.write(`GET ${K}%zz?action=call HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`);
        sock.resetAndDestroy();
        resolve();
      });
      sock.on('error', () => {});
    });
    // Still serving.
    const ok = await Client.open(`${K}${H}?action=call&function=greet`);
    ok.send(upload);
    ok.sendBinary(hello);
    assert.deepEqual(await ok.json(), {});
    assert.equal(await ok.output(HELLO.length), HELLO);
    assert.deepEqual(await ok.end(), { state: 'TERMINATED' });
  });
});

describe('websocket io', () => {
  it('connects to a running instance', async () => {
    const launch = await request(server, 'POST', `${K}${H}?action=launch&function=multi`, { key, headers: wasm, body: hello });
    assert.equal(launch.status, 200);
    const id = String(launch.headers['gate-instance']);
    for (let i = 0; i < 3; i++) {
      const c = await Client.open(`${I}${id}?action=io`);
      c.send({ authorization: bearer(key) });
      assert.deepEqual(await c.json(), { connected: true });
      assert.equal(await c.output(HELLO.length), HELLO);
      assert.deepEqual(await c.end(), { state: 'RUNNING' });
    }
    // Only the owner may connect.
    const other = await Client.open(`${I}${id}?action=io`);
    other.send({ authorization: bearer(newKey()) });
    assert.deepEqual(await other.closed(), { code: 1008, reason: 'instance not found' });
    const anon = await Client.open(`${I}${id}?action=io`);
    anon.send({});
    assert.deepEqual(await anon.closed(), { code: 1008, reason: 'missing authentication credentials' });
    const kill = await request(server, 'POST', `${I}${id}?action=kill&action=wait`, { key });
    assert.equal(kill.headers['gate-status'], '{"state":"KILLED"}');

    const stopped = await Client.open(`${I}${id}?action=io`);
    stopped.send({ authorization: bearer(key) });
    assert.deepEqual(await stopped.json(), { connected: false });
    assert.deepEqual(await stopped.closed(), { code: 1008, reason: 'not connected' });
    assert.equal((await request(server, 'POST', `${I}${id}?action=delete`, { key })).status, 200);
  });

  it('refuses io to an instance that was never started', async () => {
    const launch = await request(server, 'POST', `${K}${H}?action=launch&action=suspend`, { key, headers: wasm, body: hello });
    assert.equal(launch.status, 200);
    const id = String(launch.headers['gate-instance']);
    const c = await Client.open(`${I}${id}?action=io`);
    c.send({ authorization: bearer(key) });
    assert.deepEqual(await c.json(), { connected: false });
    assert.deepEqual(await c.closed(), { code: 1008, reason: 'not connected' });
    assert.equal((await request(server, 'POST', `${I}${id}?action=delete`, { key })).status, 200);
  });

  it('answers io for an unknown instance with 1008', async () => {
    const c = await Client.open(`${I}${globalThis.crypto.randomUUID()}?action=io`);
    c.send({ authorization: bearer(key) });
    assert.deepEqual(await c.closed(), { code: 1008, reason: 'instance not found' });
  });
});
