/**
 * Extensions by configuration (`service.extensions`): real gate-server
 * processes load examples/hello-extension.mjs (by a path relative to their
 * configuration file, or as a package) and run examples/hello-service.wasm,
 * which uses its service; a broken extension or setting stops the server with
 * a clear error naming it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { request, spawnServerWithArgs, type ServerProcess } from '../helpers/server.js';
import { gate, makeClientEnv } from './client-env.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const EXTENSION = join(ROOT, 'examples/hello-extension.mjs');
const PROGRAM = readFileSync(join(ROOT, 'examples/hello-service.wasm'));
const HASH = createHash('sha256').update(PROGRAM).digest('hex');
const GATE_SERVER = join(ROOT, 'bin/gate-server');

function baseArgs(dir: string, config: string): string[] {
  return ['-F', config, '-o', 'access.policy="public"', '-o', 'http.addr="127.0.0.1:0"', '-o', `state.dir=${JSON.stringify(join(dir, 'state'))}`, '-o', 'runtime.sandbox="none"'];
}

/** Runs gate-server to its exit (for configurations it refuses). */
function refuse(args: string[]): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [GATE_SERVER, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, stdout });
    });
  });
}

async function callHello(server: ServerProcess): Promise<string> {
  const r = await request(server, 'POST', `/gate-0/module/sha256/${HASH}?action=call`, { headers: { 'Content-Type': 'application/wasm' }, body: PROGRAM });
  assert.equal(r.status, 200, r.text);
  return r.text;
}

async function stop(server: ServerProcess): Promise<void> {
  server.proc.kill('SIGTERM');
  await server.exited;
}

describe('extensions by configuration', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'gate-extensions-test-'));
    mkdirSync(join(dir, 'conf'));
    copyFileSync(EXTENSION, join(dir, 'conf', 'hello-extension.mjs'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('loads an extension named relative to the configuration file; its setting is used; a program calls its service', async () => {
    const config = join(dir, 'conf', 'server.toml');
    writeFileSync(config, 'service.extensions = ["./hello-extension.mjs"]\n\n[service.hello]\ngreeting = "Hi"\n');
    // Started from another directory: the path is relative to the file, not the working directory.
    const server = await spawnServerWithArgs(baseArgs(dir, config));
    try {
      assert.equal(await callHello(server), 'Hi, Gate (1)\n');
      assert.equal(await callHello(server), 'Hi, Gate (1)\n'); // a new instance each time
      assert.match(server.log(), /"extension":"hello","services":\["example.net\/hello"\]/);
    } finally {
      await stop(server);
    }
  });

  it('loads an extension by package name from node_modules next to the configuration', async () => {
    const pkg = join(dir, 'pkgconf', 'node_modules', 'gate-hello');
    mkdirSync(pkg, { recursive: true });
    copyFileSync(EXTENSION, join(pkg, 'index.mjs'));
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'gate-hello', type: 'module', exports: './index.mjs' }));
    const config = join(dir, 'pkgconf', 'server.toml');
    writeFileSync(config, 'service.extensions = ["gate-hello"]\n');
    const server = await spawnServerWithArgs(baseArgs(dir, config));
    try {
      assert.equal(await callHello(server), 'Hello, Gate (1)\n');
    } finally {
      await stop(server);
    }
  });

  it('refuses a setting of an extension that is not loaded, naming the key', async () => {
    const config = join(dir, 'none.toml');
    writeFileSync(config, '');
    const r = await refuse([...baseArgs(dir, config), '-o', 'service.hello.greeting="x"']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'gate-server: -o service.hello.greeting="x": unknown service "hello" in configuration key service.hello.greeting; services: catalog, identity, origin, random, scope, peer, grpc, localhost (extensions are loaded by service.extensions)\n');
  });

  it('stops with a clear error naming the extension or the key', async () => {
    const conf = join(dir, 'conf');
    writeFileSync(join(conf, 'broken.mjs'), 'throw new Error("broken on purpose");\n');
    writeFileSync(join(conf, 'empty.mjs'), 'export const x = 1;\n');
    writeFileSync(join(conf, 'builtin.mjs'), 'export default (gate) => gate.defineExtension({ name: "origin", services: () => undefined });\n');
    const cases: Array<{ toml: string; stderr: string | RegExp }> = [
      { toml: 'service.extensions = ["./missing.mjs"]', stderr: `gate-server: extension "./missing.mjs" cannot be loaded: not found (looked in ${conf})\n` },
      { toml: 'service.extensions = ["no-such-package-x"]', stderr: `gate-server: extension "no-such-package-x" cannot be loaded: not found (looked in ${conf})\n` },
      { toml: 'service.extensions = ["./broken.mjs"]', stderr: 'gate-server: extension "./broken.mjs" cannot be loaded: broken on purpose\n' },
      { toml: 'service.extensions = ["./empty.mjs"]', stderr: /^gate-server: extension "\.\/empty\.mjs" exports no Gate extension/ },
      { toml: 'service.extensions = ["./builtin.mjs"]', stderr: /^gate-server: extension "\.\/builtin\.mjs" is named "origin", which is a built-in service's configuration table\n$/ },
      { toml: 'service.extensions = ["./hello-extension.mjs", "./hello-extension.mjs"]', stderr: /^gate-server: extensions "\.\/hello-extension\.mjs" and "\.\/hello-extension\.mjs" are both named "hello"/ },
      { toml: 'service.extensions = ["./hello-extension.mjs"]\nservice.hello.greting = "x"', stderr: /: unknown configuration key service\.hello\.greting \(did you mean service\.hello\.greeting\?\); the hello extension reads service\.hello\.greeting\n$/ },
      { toml: 'service.extensions = ["./hello-extension.mjs"]\nservice.hello.greeting = 5', stderr: 'gate-server: configuration key service.hello.greeting must be a string, not number 5\n' },
      { toml: `service.extensions = ["./hello-extension.mjs"]\nservice.hello.greeting = "${'x'.repeat(101)}"`, stderr: 'gate-server: service.hello.greeting must be at most 100 characters\n' },
      { toml: 'service.extensions = [1]', stderr: 'gate-server: configuration key service.extensions must be a list of strings, not an array\n' },
    ];
    for (const [i, c] of cases.entries()) {
      const config = join(conf, `bad${i}.toml`);
      writeFileSync(config, `${c.toml}\n`);
      const r = await refuse(baseArgs(dir, config));
      assert.equal(r.code, 2, `${c.toml}: ${r.stderr}`);
      if (typeof c.stderr === 'string') assert.equal(r.stderr, c.stderr, c.toml);
      else assert.match(r.stderr, c.stderr, c.toml);
    }
  });

  it('-F forgets the extensions and settings read before it', async () => {
    const conf = join(dir, 'conf');
    const first = join(conf, 'first.toml');
    writeFileSync(first, 'service.extensions = ["./missing.mjs"]\nservice.hello.greeting = "x"\n');
    const second = join(conf, 'second.toml');
    writeFileSync(second, 'service.extensions = ["./hello-extension.mjs"]\n');
    const server = await spawnServerWithArgs(['-f', first, ...baseArgs(dir, second)]);
    try {
      assert.equal(await callHello(server), 'Hello, Gate (1)\n');
    } finally {
      await stop(server);
    }
  });

  it('--help lists the settings of the extensions the configuration names', async () => {
    const config = join(dir, 'conf', 'help.toml');
    writeFileSync(config, 'service.extensions = ["./hello-extension.mjs"]\n');
    const r = await refuse(['-F', config, '--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ {2}service\.extensions {9}/m);
    assert.match(r.stdout, /^ {2}service\.localhost\.addr {5}/m);
    assert.match(r.stdout, /Keys of the configured extensions \(\.\/hello-extension\.mjs\):\n {2}service\.hello\.greeting {5}example\.net\/hello: the greeting \(default "Hello"\)\n/);
  });

  it('gate-daemon loads them too: `gate call` of the program on the daemon it starts', async () => {
    const env = makeClientEnv();
    try {
      mkdirSync(env.configDir, { recursive: true });
      copyFileSync(EXTENSION, join(env.configDir, 'hello-extension.mjs'));
      writeFileSync(join(env.configDir, 'daemon.toml'), 'service.extensions = ["./hello-extension.mjs"]\nservice.hello.greeting = "Hej"\n');
      const r = await gate(env, ['call', join(ROOT, 'examples/hello-service.wasm')]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'Hej, Gate (1)\n');
    } finally {
      const pidFile = join(env.runtimeDir, 'gate', 'daemon.pid');
      if (existsSync(pidFile)) {
        const pid = Number(readFileSync(pidFile, 'utf8'));
        try {
          process.kill(pid, 'SIGTERM');
          for (let i = 0; i < 200; i++) {
            process.kill(pid, 0);
            await new Promise((res) => setTimeout(res, 50));
          }
        } catch {
          // gone
        }
      }
      rmSync(env.home, { recursive: true, force: true });
    }
  });
});
