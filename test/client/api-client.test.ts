// The typed API client against a real gate-server (TCP) and a daemon-mode
// server (Unix socket): errors, status parsing, calls over HTTP and websockets.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import {
  ApiError,
  GateClient,
  WebSocketCloseError,
  finishedNormally,
  formatStatus,
  moduleId,
  normaliseAddress,
  parseStatus,
} from '../../src/client/index.js';
import { newKey, startTestServer, type TestServer } from '../helpers/server.js';
import { programBytes } from '../helpers/runtime.js';

function sink(): { stream: PassThrough; text: () => string } {
  const chunks: Buffer[] = [];
  const stream = new PassThrough();
  stream.on('data', (c: Buffer) => chunks.push(c));
  return { stream, text: () => Buffer.concat(chunks).toString() };
}

describe('status helpers', () => {
  it('formats statuses in the human form of the CLI', () => {
    assert.equal(formatStatus({ state: 'RUNNING' }), 'RUNNING');
    assert.equal(formatStatus({ state: 'TERMINATED' }), 'TERMINATED with result 0');
    assert.equal(formatStatus({ state: 'HALTED', result: 1 }), 'HALTED with result 1');
    assert.equal(formatStatus({ state: 'KILLED', cause: 'ABI_VIOLATION', error: 'bad packet' }), 'KILLED abnormally: ABI_VIOLATION; error: bad packet');
    assert.equal(formatStatus({ state: 'SUSPENDED', cause: 'CALL_STACK_EXHAUSTED' }), 'SUSPENDED abnormally: CALL_STACK_EXHAUSTED');
    assert.equal(formatStatus({}), 'error');
    assert.equal(formatStatus({ error: 'out of memory' }), 'error: out of memory');
    assert.deepEqual(parseStatus('{"state":"TERMINATED","result":1}'), { state: 'TERMINATED', result: 1 });
    assert.ok(finishedNormally({ state: 'HALTED' }) && !finishedNormally({ state: 'KILLED' }) && !finishedNormally({ state: 'TERMINATED', cause: 'X' }));
    assert.equal(normaliseAddress('example.net/'), 'https://example.net');
    assert.equal(normaliseAddress('http://localhost:8080'), 'http://localhost:8080');
  });
});

describe('GateClient', () => {
  let server: TestServer;
  let daemon: TestServer;
  let client: GateClient;
  const hello = programBytes('hello');
  const helloId = moduleId(hello);

  before(async () => {
    server = await startTestServer();
    const dir = mkdtempSync(join(tmpdir(), 'gate-client-daemon-'));
    daemon = await startTestServer({ listen: { path: join(dir, 'daemon.sock') }, local: true });
    client = new GateClient({ address: server.url, auth: { kind: 'identity', identity: newKey() } });
  });
  after(async () => {
    await server.stop();
    await daemon.stop();
  });

  it('turns error responses into ApiError with the status and the server text', async () => {
    await assert.rejects(client.moduleInfo('0'.repeat(64)), (e: unknown) => e instanceof ApiError && e.status === 404 && e.code === 'GATE_API' && e.message === 'module not found');
    const anonymous = new GateClient({ address: server.url });
    await assert.rejects(anonymous.listModules(), (e: unknown) => e instanceof ApiError && e.status === 401 && e.message === 'missing authentication credentials');
    await assert.rejects(client.instanceInfo('not-a-uuid'), (e: unknown) => e instanceof ApiError && e.status === 404 && /instance id must be a UUID/.test(e.message));
  });

  it('uploads, lists, downloads and unpins modules', async () => {
    await client.uploadModule(helloId, { body: Readable.from([hello]), length: hello.length }, ['t']);
    assert.deepEqual(await client.listModules(), [{ module: helloId, tags: ['t'] }]);
    const { length, body } = await client.downloadModule(helloId);
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(c as Buffer);
    assert.equal(length, hello.length);
    assert.deepEqual(new Uint8Array(Buffer.concat(chunks)), hello);
    await client.unpinModule(helloId);
    assert.deepEqual(await client.listModules(), []);
  });

  it('calls over HTTP (status from the trailer) and over a websocket (instance id first)', async () => {
    const out = sink();
    const r = await client.call({ id: helloId }, { upload: { body: hello, length: hello.length }, function: 'greet', output: out.stream });
    assert.equal(out.text(), 'hello, world\n');
    assert.deepEqual(r.status, { state: 'TERMINATED' });

    const ws = sink();
    let announced: string | undefined;
    const w = await client.callWebSocket({ id: helloId }, { upload: hello, pin: true, moduleTags: ['ws'], function: 'fail', output: ws.stream, onInstance: (id) => (announced = id) });
    assert.deepEqual(w.status, { state: 'TERMINATED', result: 1 });
    assert.equal(w.instance, announced);
    assert.equal(w.module, helloId);
    assert.deepEqual(await client.moduleInfo(helloId), { module: helloId, tags: ['ws'] });

    // Anonymous callers get no instance id.
    const anon = await new GateClient({ address: server.url }).callWebSocket({ id: helloId }, { upload: hello, function: 'greet', output: sink().stream });
    assert.equal(anon.instance, undefined);
  });

  it('launches and drives instances; update sends persist and tags', async () => {
    const { instance } = await client.launch({ id: helloId }, { function: 'repl', instanceTags: ['a'] });
    const out = sink();
    const end = await client.io(instance, { input: Readable.from([Buffer.from('x')]), output: out.stream });
    assert.equal(out.text(), 'hello, world\n');
    assert.ok(end === undefined || typeof end.state === 'string');
    assert.ok(finishedNormally(await client.wait(instance)));
    const info = await client.update(instance, { persist: true, tags: ['b'] });
    assert.deepEqual(info?.tags, ['b']);
    await assert.rejects(client.ioWebSocket(instance, { output: sink().stream }), (e: unknown) => e instanceof WebSocketCloseError && e.closeCode === 1008);
    await client.deleteInstance(instance);
    assert.deepEqual(await client.listInstances(), []);
  });

  it('talks to a daemon over its Unix socket as the local principal', async () => {
    const local = new GateClient({ address: 'http://localhost', socketPath: daemon.socketPath!, auth: { kind: 'local' }, scope: ['program:system'] });
    await local.uploadModule(helloId, { body: hello, length: hello.length });
    assert.deepEqual(await local.listModules(), [{ module: helloId, tags: [] }]);
    const out = sink();
    const r = await local.callWebSocket({ id: helloId }, { function: 'greet', output: out.stream });
    assert.equal(out.text(), 'hello, world\n');
    assert.match(r.instance ?? '', /^[0-9a-f-]{36}$/);
    const bare = new GateClient({ address: 'http://localhost', socketPath: daemon.socketPath! });
    assert.equal((await bare.listModules()).length, 1, 'no Authorization is the local principal too');
  });
});
