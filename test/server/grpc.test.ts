/**
 * gRPC services in a real gate-server process (docs/grpc.md): the Python
 * echo service (examples/grpc/echo_service.py) started through
 * service.grpc.commands, used by a real wasm program (test/programs/grpcecho.c).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { programBytes } from '../helpers/runtime.js';
import { newKey, request, spawnServer, type ServerProcess } from '../helpers/server.js';

const PYTHON = '/usr/bin/python3';
const ECHO_SERVICE = fileURLToPath(new URL('../../../examples/grpc/echo_service.py', import.meta.url));
const K = '/gate-0/module/sha256/';
const I = '/gate-0/instance/';
const wasm = { 'Content-Type': 'application/wasm' };
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const program = programBytes('grpcecho');
const P = sha256(program);
const key = newKey();

const count = (log: string, line: string): number => log.split('\n').filter((l) => l.includes('"msg":"program debug output"') && l.includes(line)).length;

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('gRPC service run by gate-server through service.grpc.commands', () => {
  let dir: string;
  let server: ServerProcess;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gate-grpc-server-'));
    server = await spawnServer(dir, [`service.grpc.commands=${JSON.stringify([`${PYTHON} ${ECHO_SERVICE}`])}`]);
    assert.equal((await request(server, 'PUT', `${K}${P}?action=pin`, { key, headers: wasm, body: program })).status, 201);
  });
  after(async () => {
    server.proc.kill('SIGTERM');
    await server.exited;
    rmSync(dir, { recursive: true, force: true });
  });

  const waitStatus = async (id: string): Promise<string> => {
    const r = await request(server, 'POST', `${I}${id}?action=wait`, { key });
    return String(r.headers['gate-status']);
  };

  it('echoes 100 CALLs of a wasm program in order', async () => {
    const r = await request(server, 'POST', `${K}${P}?action=call&function=echo100&log=*`, { key });
    assert.equal(r.status, 200, r.text);
    await until('the echo', () => count(server.log(), 'grpcecho: echoed 100') === 1);
  });

  it('keeps queued replies in the snapshot: resumed, and launched from the snapshot elsewhere, the program gets them', async () => {
    const launched = await request(server, 'POST', `${K}${P}?action=launch&function=queued&log=*`, { key });
    assert.equal(launched.status, 200, launched.text);
    const id = String(launched.headers['gate-instance']);
    await until('the calls', () => count(server.log(), 'grpcecho: sent 50') === 1);
    assert.equal((await request(server, 'POST', `${I}${id}?action=suspend`, { key })).status, 200);
    assert.equal(await waitStatus(id), '{"state":"SUSPENDED"}');
    assert.equal(count(server.log(), 'grpcecho: echoed 50'), 0);

    // The snapshot as a module of its own (what migration carries), launched as a new instance.
    const snap = await request(server, 'POST', `${I}${id}?action=snapshot`, { key });
    assert.equal(snap.status, 201, snap.text);
    const copy = await request(server, 'POST', `${String(snap.headers.location)}?action=launch&log=*`, { key });
    assert.equal(copy.status, 200, copy.text);
    assert.equal(await waitStatus(String(copy.headers['gate-instance'])), '{"state":"HALTED"}');
    assert.equal(count(server.log(), 'grpcecho: echoed 50'), 1);

    assert.equal((await request(server, 'POST', `${I}${id}?action=resume&log=*`, { key })).status, 200);
    assert.equal(await waitStatus(id), '{"state":"HALTED"}');
    assert.equal(count(server.log(), 'grpcecho: echoed 50'), 2);
  });

  it('kills a program whose service process dies mid-call with a clear error; the server keeps serving, and the restarted service works', async () => {
    const launched = await request(server, 'POST', `${K}${P}?action=launch&function=die&log=*`, { key });
    assert.equal(launched.status, 200, launched.text);
    const status = JSON.parse(await waitStatus(String(launched.headers['gate-instance']))) as Record<string, unknown>;
    assert.deepEqual(status, { state: 'KILLED', cause: 'INTERNAL', error: 'gRPC service "echo": the service went away: the process exited with code 3' });
    assert.match(server.log(), /echo service: exiting as asked/);

    const hello = programBytes('hello');
    const h = await request(server, 'POST', `${K}${sha256(hello)}?action=call`, { key, headers: wasm, body: hello });
    assert.equal(h.status, 200, h.text);

    // Until the restart (after 1 s) the program finds the service unavailable and fails.
    await until('the restarted service', async () => {
      await request(server, 'POST', `${K}${P}?action=call&function=echo100&log=*`, { key });
      return count(server.log(), 'grpcecho: echoed 100') === 2;
    }).catch((e: Error) => {
      throw new Error(`${e.message}; the server's log:\n${server.log().split('\n').slice(-40).join('\n')}`);
    });
    assert.match(server.log(), /"msg":"gRPC command \\".*echo_service.py\\": restarted"/);
  });
});

describe('gRPC configuration errors', () => {
  it('stop gate-server with a message naming the key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gate-grpc-server-'));
    try {
      await assert.rejects(spawnServer(dir, ['service.grpc.targets=["localhost:1 secure"]']), /service\.grpc\.targets\[0\]: unknown dial option "secure"/);
      await assert.rejects(spawnServer(dir, ['service.grpc.commands=["/nonexistent/echo"]']), /service\.grpc\.commands\[0\]: command "\/nonexistent\/echo": Root\.Init failed/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
