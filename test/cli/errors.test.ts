// What `gate` says when something goes wrong (hardening issue #12): a
// message a user can act on, never a stack trace.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { EXAMPLES, GATE, PROGRAMS, gate, ok, TABLES, useClientServers, type ClientEnv } from './client-env.js';

const HELLO = join(PROGRAMS, 'hello.wasm');
const ECHO = join(EXAMPLES, 'echo.wasm');
const STACK_TRACE = /\n\s+at /;
const HELLO_ENTRIES = 'Entry functions: greet, twice, multi, repl, fail, test_ext';

/** Runs a shell command line with the client environment (gate on PATH), as a user types it. */
function shell(env: ClientEnv, line: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', line], { env: { ...env.env, PATH: `${join(GATE, '..')}:${env.env['PATH'] ?? ''}` } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A loopback port nobody listens on. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe('gate error messages', () => {
  const servers = useClientServers();

  it('stops quietly when the reading end of its output closes (| head)', async () => {
    // The program's output outgrows the pipe long before `yes` ends.
    const r = await shell(servers.env, `yes | gate call ${ECHO} | head -1; echo "status \${PIPESTATUS[1]}" >&2`);
    assert.equal(r.stdout, 'Y\n');
    assert.equal(r.stderr, 'status 141\n');
    const list = await shell(servers.env, `gate instances | head -1; echo "status \${PIPESTATUS[0]}" >&2`);
    assert.doesNotMatch(list.stderr, STACK_TRACE);
  });

  it('says what to check when the server cannot be reached', async () => {
    const port = await closedPort();
    const refused = await gate(servers.env, [`127.0.0.1:${port}`, 'modules']);
    assert.equal(refused.code, 1);
    assert.equal(refused.stderr, `gate: cannot reach https://127.0.0.1:${port}: connection refused (ECONNREFUSED); is gate-server running at 127.0.0.1:${port}?\n`);
    // The test server speaks plain HTTP; without a scheme the client tries TLS.
    const host = new URL(servers.remote.url).host;
    const tls = await gate(servers.env, [host, 'modules']);
    assert.equal(tls.code, 1);
    assert.equal(tls.stderr, `gate: cannot reach https://${host}: TLS handshake failed (EPROTO): the server may not speak TLS; for a plain HTTP server use http://${host}\n`);
  });

  for (const t of TABLES) {
    describe(t.name, () => {
      const g = (args: string[], opts?: Parameters<typeof gate>[2]) => gate(servers.env, [...t.prefix(servers.remote), ...args], opts);

      it('io and repl on an instance that has halted say so', async () => {
        const id = (await ok(servers.env, [...t.prefix(servers.remote), 'launch', HELLO, 'greet'])).trim();
        // greet writes its greeting once a client connects, then returns.
        assert.equal(await ok(servers.env, [...t.prefix(servers.remote), 'io', id]), 'hello, world\n');
        assert.equal(await ok(servers.env, [...t.prefix(servers.remote), 'wait', id]), 'HALTED with result 0\n');
        for (const command of ['io', 'repl']) {
          const r = await g([command, id]);
          assert.equal(r.code, 1, r.stderr);
          assert.equal(r.stderr, `gate: instance ${id} is HALTED with result 0: only a running instance accepts a connection\n`, command);
        }
      });

      it('call -p keeps the instance every time, even of a program that ends at once', async () => {
        const id = createHash('sha256').update(readFileSync(HELLO)).digest('hex');
        // The file (uploaded with the call) and the module id take different paths to the server.
        for (let i = 0; i < 12; i++) {
          const r = await g(['call', '-p', i % 2 === 0 ? HELLO : id, 'greet']);
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stdout, 'hello, world\n');
          const [instance, status, ...rest] = r.stderr.split('\n');
          assert.match(instance!, /^[0-9a-f-]{36}$/, r.stderr);
          assert.equal(status, 'HALTED with result 0');
          assert.deepEqual(rest, ['']);
          assert.equal(await ok(servers.env, [...t.prefix(servers.remote), 'status', instance!]), 'HALTED with result 0 []\n', `run ${i}`);
        }
      });

      it('a misspelt entry function is named, with the ones the module has', async () => {
        const call = await g(['call', HELLO, 'gret']);
        assert.equal(call.code, 1);
        assert.equal(call.stderr, `gate: function not exported or it cannot be used as entry function: "gret" in ${HELLO} (an entry function takes no parameters and returns nothing or an i32); did you mean greet? ${HELLO_ENTRIES}\n`);
        const id = createHash('sha256').update(readFileSync(HELLO)).digest('hex');
        const byId = await g(['call', id, 'nothing_like_it']);
        assert.equal(byId.code, 1);
        assert.equal(byId.stderr, `gate: function not exported or it cannot be used as entry function: "nothing_like_it" in ${id} (an entry function takes no parameters and returns nothing or an i32). ${HELLO_ENTRIES}\n`);
        const launch = await g(['launch', HELLO, 'twcie']);
        assert.equal(launch.code, 1);
        assert.match(launch.stderr, /entry function: "twcie" in .*; did you mean twice\?/);
      });
    });
  }

  it('gate run names a misspelt entry function too', async () => {
    const r = await gate(servers.env, ['run', HELLO, 'gret']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, `gate: function not exported or it cannot be used as entry function: "gret" in ${HELLO} (an entry function takes no parameters and returns nothing or an i32); did you mean greet? ${HELLO_ENTRIES}\n`);
  });
});
