/**
 * Anonymous callers' limits (per source address and per module, HTTP 429 and
 * websocket close 1013) and their spread over executor groups, against a
 * real server, with real endless loops (test/programs/attacks `spin`) and
 * clients on distinct loopback addresses (127.0.0.N).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request as httpRequest, type ClientRequest, type IncomingHttpHeaders } from 'node:http';
import WebSocket from 'ws';
import { addressKey, DEFAULT_ANONYMOUS_LIMITS } from '../../src/server/anonymous.js';
import { ExecutorPool } from '../../src/runtime/node/pool.js';
import { programBytes } from '../helpers/runtime.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const hello = programBytes('hello');
const attacks = programBytes('attacks/attacks');
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

/** An anonymous upload-and-call from `from` (a loopback address); `req` can be destroyed to hang up. */
function anonymousCall(server: TestServer, module: Uint8Array, fn: string, from: string): { req: ClientRequest; reply: Promise<Reply> } {
  let req!: ClientRequest;
  const reply = new Promise<Reply>((resolve, reject) => {
    req = httpRequest(
      `${server.url}/gate-0/module/sha256/${sha256(module)}?action=call&function=${fn}`,
      { method: 'POST', headers: { 'Content-Type': 'application/wasm' }, localAddress: from },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(module);
  });
  return { req, reply };
}

/**
 * Starts an endless loop as an anonymous call from `from`; returns how to
 * hang up (which kills it). Its response head comes only with output, which
 * a loop never writes, so callers observe admission through the limits.
 */
function spin(server: TestServer, from: string): () => void {
  const { req, reply } = anonymousCall(server, attacks, 'spin', from);
  reply.catch(() => undefined);
  return () => req.destroy();
}

/** Hangs up the loops' calls and waits until the server has no anonymous instance left. */
async function hangUp(server: TestServer, stops: Array<() => void>): Promise<void> {
  for (const s of stops) s();
  await eventually('the loops are gone', async () => server.instances.runningCount === 0);
  // Their places are given back right after (when the call's exchange returns).
  await new Promise((r) => setTimeout(r, 50));
}

async function eventually(what: string, f: () => Promise<boolean>): Promise<void> {
  // A liveness bound (15 s): launches are slow on a loaded 2-core machine.
  for (let i = 0; i < 600; i++) {
    if (await f()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`never: ${what}`);
}

describe('anonymous callers', () => {
  let server: TestServer;
  let pool: ExecutorPool;
  const groups: string[] = [];
  /** Called once, when the server next chooses an executor (an instance is being launched). */
  let onExecutorChosen: (() => void) | undefined;

  before(async () => {
    pool = await ExecutorPool.create({ sandbox: 'none' });
    server = await startTestServer({
      anonymous: { ...DEFAULT_ANONYMOUS_LIMITS, perAddress: 2, perModule: 3, executors: 4 },
      executors: {
        executorFor: (group) => {
          groups.push(group);
          onExecutorChosen?.();
          onExecutorChosen = undefined;
          return pool.executorFor(group);
        },
        close: () => pool.close(),
      },
    });
  });
  after(() => server.stop());

  it('groups IPv6 callers by /64 and IPv4-mapped ones as IPv4', () => {
    assert.equal(addressKey('2001:db8:1:2:aaaa::1'), addressKey('2001:db8:1:2:bbbb::7'));
    assert.notEqual(addressKey('2001:db8:1:2::1'), addressKey('2001:db8:1:3::1'));
    assert.equal(addressKey('::ffff:10.0.0.1'), '10.0.0.1');
    assert.equal(addressKey('10.0.0.1'), '10.0.0.1');
  });

  it('refuses a third program from one address with 429, serves other addresses, and admits again when one ends', async () => {
    const stops = [spin(server, '127.0.0.2'), spin(server, '127.0.0.2')];
    try {
      let refused: Reply | undefined;
      await eventually('both loops are admitted', async () => (refused = await anonymousCall(server, hello, 'greet', '127.0.0.2').reply).status === 429);
      assert.equal(refused!.status, 429);
      assert.equal(refused!.headers['retry-after'], '1');
      assert.match(refused!.text, /too many anonymous programs running from your address \(at most 2 at once\).*sign your requests/);
      const other = await anonymousCall(server, hello, 'greet', '127.0.0.3').reply;
      assert.equal(other.status, 200);
      assert.equal(other.text, 'hello, world\n');
      stops[0]!();
      await eventually('the address is admitted again once a loop is gone', async () => (await anonymousCall(server, hello, 'greet', '127.0.0.2').reply).status === 200);
    } finally {
      await hangUp(server, stops);
    }
  });

  it('refuses more instances of one module than its limit, from any address, but not other modules', async () => {
    const stops = [spin(server, '127.0.0.4'), spin(server, '127.0.0.5'), spin(server, '127.0.0.6')];
    try {
      let refused: Reply | undefined;
      // A fourth instance of the module (hello has its own count) from a fresh address.
      await eventually('the three loops are admitted', async () => (refused = await anonymousCall(server, attacks, 'nothing', '127.0.0.7').reply).status === 429);
      assert.match(refused!.text, /too many anonymous instances of this module are running \(at most 3 at once\)/);
      assert.equal((await anonymousCall(server, hello, 'greet', '127.0.0.7').reply).status, 200);
    } finally {
      await hangUp(server, stops);
    }
  });

  it('closes a websocket call over the limit with 1013 (try again later)', async () => {
    const stops = [spin(server, '127.0.0.8'), spin(server, '127.0.0.8')];
    try {
      await eventually('both loops are admitted', async () => (await anonymousCall(server, hello, 'greet', '127.0.0.8').reply).status === 429);
      const ws = new WebSocket(`${server.url.replace('http', 'ws')}/gate-0/module/sha256/${sha256(hello)}?action=call&function=greet`, { localAddress: '127.0.0.8' });
      await new Promise<void>((r) => ws.once('open', () => r()));
      ws.send(JSON.stringify({ content_type: 'application/wasm', content_length: hello.length }));
      ws.send(hello);
      const [code, reason] = await new Promise<[number, string]>((r) => ws.once('close', (c, why) => r([c, why.toString()])));
      assert.equal(code, 1013);
      assert.match(reason, /too many anonymous programs/);
    } finally {
      await hangUp(server, stops);
    }
  });

  it('kills a call whose client hung up while its instance was being launched', async () => {
    // Hang up as the executor is chosen: the instance is not running yet, and nothing listens for the hang-up yet.
    let stop: (() => void) | undefined;
    const chosen = new Promise<void>((r) => (onExecutorChosen = () => (stop!(), r())));
    stop = spin(server, '127.0.0.12');
    await chosen;
    await eventually('the loop is gone', async () => server.instances.runningCount === 0);
  });

  it('spreads concurrent anonymous programs over executor groups, fewest first', async () => {
    groups.length = 0;
    const stops = [spin(server, '127.0.0.9'), spin(server, '127.0.0.10'), spin(server, '127.0.0.11')];
    try {
      await eventually('three loops run', async () => groups.length >= 3);
      assert.equal(new Set(groups).size, 3, JSON.stringify(groups));
      for (const g of groups) assert.match(g, /^anonymous\/[0-3]$/);
    } finally {
      await hangUp(server, stops);
    }
  });
});
