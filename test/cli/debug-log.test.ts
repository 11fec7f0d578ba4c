// `gate call -d`: the program's debug log reaches the caller's stderr (locally and remotely, over the call websocket).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TestServer } from '../helpers/server.js';
import { PROGRAMS, gate, makeClientEnv, startDaemon, startRemote, type ClientEnv } from './client-env.js';

describe('gate call debug log', () => {
  let env: ClientEnv;
  let remote: TestServer;
  let daemon: TestServer;

  before(async () => {
    env = makeClientEnv();
    remote = await startRemote();
    daemon = await startDaemon(env);
  });
  after(async () => {
    await remote.stop();
    await daemon.stop();
  });

  for (const [name, prefix] of [['local', () => []], ['remote', () => [remote.url]]] as const) {
    it(`${name}: -d writes it to stderr, debuglog to a file`, async () => {
      const program = join(PROGRAMS, 'hello-debug.wasm');
      const r = await gate(env, [...prefix(), 'call', '-d', program, 'debug']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, 'hello, world\n');
      const file = join(env.home, `debug-${name}.log`);
      const f = await gate(env, [...prefix(), '-o', `debuglog=${JSON.stringify(file)}`, 'call', program, 'debug']);
      assert.equal(f.code, 0, f.stderr);
      assert.equal(readFileSync(file, 'utf8'), 'hello, world\n');
      const quiet = await gate(env, [...prefix(), 'call', program, 'debug']);
      assert.equal(quiet.stderr, '');
    });
  }
});
