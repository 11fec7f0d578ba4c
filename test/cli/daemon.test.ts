// The CLI starts bin/gate-daemon when nobody listens on the daemon socket
// (like D-Bus activation), and copies modules between it and a server.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TestServer } from '../helpers/server.js';
import { PROGRAMS, gate, makeClientEnv, ok, startRemote, type ClientEnv } from './client-env.js';

const HELLO = join(PROGRAMS, 'hello.wasm');
const COUNTER = join(PROGRAMS, 'counter.wasm');

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stops the daemon the CLI started (its pid is in the runtime directory) and waits for it to go. */
async function stopDaemon(env: ClientEnv): Promise<void> {
  const file = join(env.runtimeDir, 'gate', 'daemon.pid');
  if (!existsSync(file)) return;
  const pid = Number(readFileSync(file, 'utf8'));
  if (!alive(pid)) return;
  process.kill(pid, 'SIGTERM');
  while (alive(pid)) await new Promise((r) => setTimeout(r, 50));
}

describe('gate with the daemon it starts', () => {
  let env: ClientEnv;
  let remote: TestServer;

  before(async () => {
    env = makeClientEnv();
    remote = await startRemote();
  });
  after(async () => {
    await stopDaemon(env);
    await remote.stop();
  });

  it('starts the daemon on first use and reuses it', async () => {
    assert.ok(!existsSync(env.socketPath));
    const id = (await ok(env, ['import', HELLO, 'mine'])).trim();
    assert.equal(id, sha256(HELLO));
    assert.ok(existsSync(env.socketPath), 'the daemon listens on the socket');
    const pid = readFileSync(join(env.runtimeDir, 'gate', 'daemon.pid'), 'utf8');
    assert.equal(await ok(env, ['show', id]), '[mine]\n');
    assert.equal(readFileSync(join(env.runtimeDir, 'gate', 'daemon.pid'), 'utf8'), pid, 'no second daemon');
    const r = await gate(env, ['call', id, 'greet']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello, world\n');
  });

  it('push copies a module from the daemon to a server; pull the other way', async () => {
    const id = sha256(HELLO);
    await ok(env, ['push', remote.url, id]);
    assert.match(await ok(env, [remote.url, 'modules']), new RegExp(`^${id} \\[\\]$`, 'm'));

    const counter = (await ok(env, [remote.url, 'import', COUNTER, 'remote'])).trim();
    assert.doesNotMatch(await ok(env, ['modules']), new RegExp(counter));
    await ok(env, ['-o', 'moduletags=["pulled"]', 'pull', remote.url, counter]);
    assert.equal(await ok(env, ['show', counter]), '[pulled]\n');
    const file = join(env.home, 'pulled.wasm');
    await ok(env, ['export', counter, file]);
    assert.deepEqual(readFileSync(file), readFileSync(COUNTER));

    const missing = await gate(env, ['pull', remote.url, 'b'.repeat(64)]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^gate: module not found\n$/);
  });

  it('says why when the daemon does not come up', async () => {
    const broken = makeClientEnv();
    mkdirSync(broken.configDir, { recursive: true });
    writeFileSync(join(broken.configDir, 'daemon.toml'), 'this is not = = toml\n');
    const r = await gate(broken, ['modules']);
    await stopDaemon(broken);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^gate: gate-daemon exited \(status 2\) before listening at .*daemon\.sock; see .*daemon\.log\n$/);
    assert.match(readFileSync(join(broken.home, '.local/state/gate/daemon.log'), 'utf8'), /daemon\.toml/);
  });
});
