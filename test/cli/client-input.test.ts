// `gate` forwarding input to programs, against real servers: a gate-server on loopback (remote table,
// requests signed with a key made by ssh-keygen) and a daemon on the Unix
// socket where the CLI looks for it (local table).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { EXAMPLES, PROGRAMS, gate, ok, TABLES, useClientServers } from './client-env.js';

const HELLO = join(PROGRAMS, 'hello.wasm');
const ECHO = join(EXAMPLES, 'echo.wasm');

// The end of input reaches the program: over HTTP as the end of the request
// body, over websockets as an empty binary message. A test that fails here
// would otherwise wait for the end of input forever, hence the timeouts.
const TIMEOUT = { timeout: 120_000 };

describe('gate client input', () => {
  const servers = useClientServers();

  for (const t of TABLES) {
    describe(t.name, () => {
      const g = (args: string[], opts?: Parameters<typeof gate>[2]) => gate(servers.env, [...t.prefix(servers.remote), ...args], opts);
      const run = (args: string[], opts?: Parameters<typeof gate>[2]) => ok(servers.env, [...t.prefix(servers.remote), ...args], opts);

      it('call forwards stdin to the program, up to its end', TIMEOUT, async () => {
        const r = await g(['call', ECHO], { input: 'one\ntwo\n' });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, 'ONE\nTWO\n');
        // A pinned module by id (remotely: an HTTP call with stdin as the body).
        const id = (await run(['import', ECHO])).trim();
        const echo = await g(['call', id], { input: 'hello\n' });
        assert.equal(echo.code, 0, echo.stderr);
        assert.equal(echo.stdout, 'HELLO\n');
      });

      it('repl sends lines and prints the output', TIMEOUT, async () => {
        const id = (await run(['launch', HELLO, 'repl'])).trim();
        const r = await g(['repl', id], { input: 'first\nsecond\n' });
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /hello, world\n/);
        await run(['wait', id]);
        await run(['delete', id]);
        const gone = await g(['repl', id]);
        assert.equal(gone.code, 1);
      });

    });
  }
});
