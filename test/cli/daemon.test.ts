// The CLI starts bin/gate-daemon when nobody listens on the daemon socket
// (like D-Bus activation), and copies modules between it and a server.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
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

  it('refuses a runtime directory, socket or pid file another user could have put there', { skip: process.getuid?.() !== 0 && 'giving files to another user (chown) needs root' }, async () => {
    const e = makeClientEnv();
    const dir = join(e.runtimeDir, 'gate');
    const refused = async (pattern: RegExp): Promise<void> => {
      const r = await gate(e, ['modules']);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, pattern);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    };
    // XDG_RUNTIME_DIR is a file: no ENOTDIR trace.
    const file = join(e.home, 'not-a-dir');
    writeFileSync(file, '');
    const asFile = await gate({ ...e, env: { ...e.env, XDG_RUNTIME_DIR: file } }, ['modules']);
    assert.equal(asFile.code, 1);
    assert.equal(asFile.stderr, `gate: cannot create the directory ${file}/gate: a part of the path is not a directory (ENOTDIR); set XDG_RUNTIME_DIR to a directory only you can use\n`);

    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    await refused(new RegExp(`^gate: ${dir} may be used by other users \\(mode 0755\\): refusing to use it; run chmod 700 ${dir}\n$`));
    chmodSync(dir, 0o700);
    chownSync(dir, 12345, 12345);
    await refused(new RegExp(`^gate: ${dir} is owned by uid 12345, not by you`));
    rmSync(dir, { recursive: true });
    // A link to somebody's directory, in the place of ours.
    const elsewhere = join(e.home, 'elsewhere');
    mkdirSync(elsewhere, { mode: 0o700 });
    symlinkSync(elsewhere, dir);
    await refused(new RegExp(`^gate: ${dir} is a symbolic link: refusing to follow it`));
    rmSync(dir);
    // The runtime directory itself belongs to somebody else, who could swap ours.
    chownSync(e.runtimeDir, 12345, 12345);
    chmodSync(e.runtimeDir, 0o777);
    await refused(new RegExp(`^gate: ${e.runtimeDir} \\(above ${dir}\\) is owned by uid 12345, not by you or root`));
    chownSync(e.runtimeDir, process.getuid!(), process.getgid!());
    chmodSync(e.runtimeDir, 0o700);
    rmSync(dir, { recursive: true, force: true });

    // A socket there that is not ours: not even connected to.
    mkdirSync(dir, { mode: 0o700 });
    let connections = 0;
    const impostor = createServer(() => connections++);
    await new Promise<void>((r) => impostor.listen(e.socketPath, r));
    try {
      chownSync(e.socketPath, 12345, 12345);
      await refused(new RegExp(`^gate: ${e.socketPath} is owned by uid 12345, not by you \\(uid \\d+\\): refusing to talk to it`));
      assert.equal(connections, 0);
    } finally {
      await new Promise((r) => impostor.close(r));
    }
    writeFileSync(e.socketPath, 'precious');
    await refused(/is not a socket .*: refusing to use or remove it/);
    assert.equal(readFileSync(e.socketPath, 'utf8'), 'precious');
    rmSync(e.socketPath);

    // The pid file is a link: nothing is written through it, and no daemon starts.
    const target = join(e.home, 'target');
    writeFileSync(target, 'keep');
    symlinkSync(target, join(dir, 'daemon.pid'));
    await refused(new RegExp(`^gate: ${dir}/daemon.pid is a symbolic link: refusing to write through it`));
    assert.equal(readFileSync(target, 'utf8'), 'keep');
    assert.ok(!existsSync(e.socketPath), 'no daemon was started');
  });

  it('says why when the daemon does not come up', async () => {
    const broken = makeClientEnv();
    mkdirSync(broken.configDir, { recursive: true });
    writeFileSync(join(broken.configDir, 'daemon.toml'), 'this is not = = toml\n');
    const r = await gate(broken, ['modules']);
    await stopDaemon(broken);
    assert.equal(r.code, 1);
    // The daemon's reason is in the message, not only in its log.
    assert.match(r.stderr, /^gate: gate-daemon exited \(status 2\) before listening at .*daemon\.sock: .*daemon\.toml:1:\d+: [^\n]*; see .*daemon\.log\n$/);
    assert.match(readFileSync(join(broken.home, '.local/state/gate/daemon.log'), 'utf8'), /daemon\.toml/);
  });
});
