/** gate-daemon: the API for the local user over a Unix socket, no network listener. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

const DAEMON = new URL('../../../bin/gate-daemon', import.meta.url).pathname;
const echo = readFileSync(new URL('../../../examples/echo.wasm', import.meta.url));
const E = createHash('sha256').update(echo).digest('hex');

function unixRequest(socketPath: string, method: string, path: string, headers: Record<string, string> = {}, body?: Uint8Array | string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ socketPath, method, path, headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function runDaemon(env: NodeJS.ProcessEnv, args: string[] = []): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [DAEMON, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('exit', (code) => resolve({ code, stderr }));
  });
}

describe('gate-daemon', () => {
  it('refuses a socket directory others may use, and does not remove a file in the place of its socket', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gate-test-daemon-'));
    try {
      const env = { ...process.env, XDG_RUNTIME_DIR: join(dir, 'run'), XDG_STATE_HOME: join(dir, 'state'), XDG_CONFIG_HOME: join(dir, 'config') };
      const gateDir = join(dir, 'run', 'gate');
      mkdirSync(gateDir, { recursive: true });
      chmodSync(gateDir, 0o755);
      const open = await runDaemon(env);
      assert.equal(open.code, 2);
      assert.equal(open.stderr, `gate-daemon: ${gateDir} may be used by other users (mode 0755): refusing to use it; run chmod 700 ${gateDir}\n`);
      chmodSync(gateDir, 0o700);
      writeFileSync(join(gateDir, 'daemon.sock'), 'not a socket');
      const file = await runDaemon(env);
      assert.equal(file.code, 2);
      assert.match(file.stderr, /daemon\.sock is not a socket .*refusing to use or remove it\n$/);
      assert.equal(readFileSync(join(gateDir, 'daemon.sock'), 'utf8'), 'not a socket');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('serves the local user on a private Unix socket, and only one daemon at a time', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gate-test-daemon-'));
    const env = { ...process.env, XDG_RUNTIME_DIR: join(dir, 'run'), XDG_STATE_HOME: join(dir, 'state'), XDG_CONFIG_HOME: join(dir, 'config') };
    const socket = join(dir, 'run', 'gate', 'daemon.sock');
    const daemon = spawn(process.execPath, [DAEMON], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((r) => daemon.on('exit', (c) => r(c)));
    try {
      await new Promise<void>((resolve, reject) => {
        let out = '';
        daemon.stdout!.on('data', (c: Buffer) => {
          out += c.toString();
          if (out.includes('"msg":"listening"')) resolve();
        });
        void exited.then((c) => reject(new Error(`daemon exited ${c}`)));
      });
      assert.equal(statSync(socket).mode & 0o777, 0o600);
      assert.equal(statSync(join(dir, 'run', 'gate')).mode & 0o777, 0o700);
      // Requests without credentials act as the local user.
      const put = await unixRequest(socket, 'PUT', `/gate-0/module/sha256/${E}?action=pin`, { 'Content-Type': 'application/wasm', 'Content-Length': String(echo.length) }, echo);
      assert.equal(put.status, 201);
      assert.deepEqual(JSON.parse((await unixRequest(socket, 'POST', '/gate-0/module/sha256/')).text), { modules: [{ module: E }] });
      const call = await unixRequest(socket, 'POST', `/gate-0/module/sha256/${E}?action=call`, {}, 'hello\n');
      assert.equal(call.status, 200);
      assert.equal(call.text, 'HELLO\n');

      const second = spawn(process.execPath, [DAEMON], { env, stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      second.stderr!.on('data', (c: Buffer) => (err += c.toString()));
      const code = await new Promise<number | null>((r) => second.on('exit', (c) => r(c)));
      assert.notEqual(code, 0);
      assert.match(err, /already/);
    } finally {
      daemon.kill('SIGTERM');
      assert.equal(await exited, 0);
      assert.equal(existsSync(socket), false);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
