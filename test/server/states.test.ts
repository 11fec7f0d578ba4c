/**
 * Where we had drifted from the original (hardening issue #12):
 * - an entry function that returns leaves a transient instance (every call
 *   that does not persist) TERMINATED, a persistent one HALTED (abi.md §7.3);
 * - the 31-character limit on function names is the web API's only; the
 *   local daemon takes what the original's daemon took (its ABI test program
 *   has longer exports).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { programBytes } from '../helpers/runtime.js';
import { newKey, request, startTestServer, type TestServer } from '../helpers/server.js';
import { gate, makeClientEnv, PROGRAMS, startDaemon, type ClientEnv } from '../cli/client-env.js';

const hello = programBytes('hello');
const abi = programBytes('abi');
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const K = '/gate-0/module/sha256/';
const I = '/gate-0/instance/';
const wasm = { 'Content-Type': 'application/wasm' };

describe('the state after an entry function returns', () => {
  let server: TestServer;
  before(async () => (server = await startTestServer()));
  after(() => server.stop());

  it('is TERMINATED for a call of hello.wasm greet, anonymous or signed', async () => {
    const anon = await request(server, 'POST', `${K}${sha256(hello)}?action=call&function=greet`, { headers: { ...wasm, TE: 'trailers' }, body: hello });
    assert.equal(anon.text, 'hello, world\n');
    assert.equal(anon.trailers['gate-status'], '{"state":"TERMINATED"}');
    const key = newKey();
    const signed = await request(server, 'POST', `${K}${sha256(hello)}?action=call&function=greet`, { key, headers: { ...wasm, TE: 'trailers' }, body: hello });
    assert.equal(signed.trailers['gate-status'], '{"state":"TERMINATED"}');
  });

  it('is HALTED for a launched instance', async () => {
    const key = newKey();
    const launched = await request(server, 'POST', `${K}${sha256(hello)}?action=launch&function=fail`, { key, headers: wasm, body: hello });
    assert.equal(launched.status, 200);
    const id = String(launched.headers['gate-instance']);
    // fail exits with 1 (proc_exit): TERMINATED whatever the instance.
    assert.equal((await request(server, 'POST', `${I}${id}?action=wait`, { key })).headers['gate-status'], '{"state":"TERMINATED","result":1}');
    const nop = programBytes('nop');
    const halted = await request(server, 'POST', `${K}${sha256(nop)}?action=launch`, { key, headers: wasm, body: nop });
    const hid = String(halted.headers['gate-instance']);
    assert.equal((await request(server, 'POST', `${I}${hid}?action=wait`, { key })).headers['gate-status'], '{"state":"HALTED"}');
  });

  it('is HALTED for a call made persistent before its function returned', async () => {
    const key = newKey();
    assert.equal((await request(server, 'PUT', `${K}${sha256(hello)}?action=pin`, { key, headers: wasm, body: hello })).status, 201);
    const result = await new Promise<{ output: string; trailer: string | undefined; id: string }>((resolve, reject) => {
      const req = httpRequest(`${server.url}${K}${sha256(hello)}?action=call&function=repl`, { method: 'POST', headers: { Authorization: `Bearer ${server.token(key)}`, TE: 'trailers' } }, (res) => {
        const id = String(res.headers['gate-instance']);
        let output = '';
        res.on('data', (c: Buffer) => {
          output += c.toString();
          if (output === 'hello, world\n') {
            // The program has answered the first input: make the call persistent, then end its input.
            request(server, 'POST', `${I}${id}?action=update`, { key, headers: { 'Content-Type': 'application/json' }, body: '{"persist":true}' }).then((u) => {
              if (u.status !== 200) reject(new Error(`update answered ${u.status} ${u.text}`));
              req.end();
            }, reject);
          }
        });
        res.on('end', () => resolve({ output, trailer: res.trailers['gate-status'], id }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.write('x');
    });
    assert.equal(result.output, 'hello, world\n');
    assert.equal(result.trailer, '{"state":"HALTED"}');
    const info = JSON.parse((await request(server, 'POST', `${I}${result.id}`, { key })).text) as { status: unknown };
    assert.deepEqual(info.status, { state: 'HALTED' });
  });
});

describe('function names longer than 31 characters', () => {
  const LONG = 'testtrap_fd_fdstat_set_rights_stdout_drop';
  let env: ClientEnv;
  let daemon: TestServer;
  before(async () => {
    env = makeClientEnv();
    daemon = await startDaemon(env);
  });
  after(async () => {
    await daemon.stop();
    rmSync(env.home, { recursive: true, force: true });
  });

  it('are refused by the web API', async () => {
    const server = await startTestServer();
    try {
      const r = await request(server, 'POST', `${K}${sha256(abi)}?action=call&function=${LONG}`, { headers: wasm, body: abi });
      assert.equal(r.status, 400);
      assert.equal(r.text, `invalid function name: "${LONG}"\n`);
    } finally {
      await server.stop();
    }
  });

  it('are called by the local daemon (its API and `gate call` without an address)', async () => {
    assert.ok(LONG.length > 31);
    const status = await new Promise<string | undefined>((resolve, reject) => {
      const req = httpRequest({ socketPath: daemon.socketPath, path: `${K}${sha256(abi)}?action=call&function=${LONG}`, method: 'POST', headers: { ...wasm, TE: 'trailers' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode === 200 ? res.trailers['gate-status'] : `HTTP ${res.statusCode}`));
      });
      req.on('error', reject);
      req.end(abi);
    });
    // The ABI test's trap functions suspend the program with ABI_DEFICIENCY (tests.md §2.8).
    assert.equal(status, '{"state":"SUSPENDED","cause":"ABI_DEFICIENCY"}');

    const r = await gate(env, ['call', join(PROGRAMS, 'abi.wasm'), 'testtrap_poll_oneoff_thread_cputime']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^SUSPENDED abnormally: ABI_DEFICIENCY\n/);
    const missing = await gate(env, ['call', join(PROGRAMS, 'abi.wasm'), 'test_no_such_function_with_a_long_name']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /function not exported or it cannot be used as entry function/);
  });
});
