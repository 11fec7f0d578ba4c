// `gate` without a key against a public gate-server (the README's first example).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TestServer } from '../helpers/server.js';
import { EXAMPLES, gate, makeClientEnv, startRemote, type ClientEnv } from './client-env.js';

describe('gate without an identity', () => {
  let env: ClientEnv;
  let remote: TestServer;

  before(async () => {
    env = makeClientEnv();
    rmSync(env.keyFile);
    remote = await startRemote();
  });
  after(() => remote.stop());

  it('calls a module file anonymously (nothing pinned), and is refused what needs a principal', async () => {
    const r = await gate(env, [remote.url, 'call', join(EXAMPLES, 'echo.wasm')], { input: 'hello\n' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'HELLO\n');
    const pinned = await gate(env, [remote.url, '-o', 'pin=true', 'call', join(EXAMPLES, 'echo.wasm')], { input: 'x\n' });
    assert.equal(pinned.code, 1);
    assert.match(pinned.stderr, /missing authentication credentials/);
    const list = await gate(env, [remote.url, 'modules']);
    assert.equal(list.code, 1);
    assert.match(list.stderr, /missing authentication credentials/);
    assert.match(list.stderr, /this needs a key: create one with `ssh-keygen -t ed25519`/);
  });

  it('signs with a key given by -i', async () => {
    const key = join(env.home, 'other_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    const id = await gate(env, ['-i', key, remote.url, 'import', join(EXAMPLES, 'echo.wasm')]);
    assert.equal(id.code, 0, id.stderr);
    const list = await gate(env, ['-i', key, remote.url, 'modules']);
    assert.equal(list.code, 0, list.stderr);
    assert.equal(list.stdout, `${id.stdout.trim()} []\n`);
    const missing = await gate(env, ['-i', join(env.home, 'nothing'), remote.url, 'modules']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /nothing/);
  });
});
