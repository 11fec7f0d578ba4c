// `gate call -d`: the program's debug log reaches the caller's stderr (locally and remotely, over the call websocket).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { PROGRAMS, gate, TABLES, useClientServers } from './client-env.js';

describe('gate call debug log', () => {
  const servers = useClientServers();

  for (const { name, prefix: tablePrefix } of TABLES) {
    const prefix = (): string[] => tablePrefix(servers.remote);
    it(`${name}: -d writes it to stderr, debuglog to a file`, async () => {
      const program = join(PROGRAMS, 'hello-debug.wasm');
      const r = await gate(servers.env, [...prefix(), 'call', '-d', program, 'debug']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, 'hello, world\n');
      const file = join(servers.env.home, `debug-${name}.log`);
      const f = await gate(servers.env, [...prefix(), '-o', `debuglog=${JSON.stringify(file)}`, 'call', program, 'debug']);
      assert.equal(f.code, 0, f.stderr);
      assert.equal(readFileSync(file, 'utf8'), 'hello, world\n');
      const quiet = await gate(servers.env, [...prefix(), 'call', program, 'debug']);
      assert.equal(quiet.stderr, '');
    });
  }
});
