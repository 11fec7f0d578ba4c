/** Unknown configuration keys are errors with a hint (hardening issue #12), for gate, gate-server and gate-daemon. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { checkKnownKeys, ConfigError, readConfig, type ConfigTree } from '../../src/config/index.js';
import { CLIENT_KEYS } from '../../src/cli/client-commands.js';
import { COMMON_SERVER_KEYS, DAEMON_KEYS, SERVER_KEYS, serverKeys } from '../../src/cli/server-keys.js';

const BIN = new URL('../../../bin/', import.meta.url).pathname;

function run(program: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(BIN, program), args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function tree(toml: Record<string, unknown>): ConfigTree {
  return toml as ConfigTree;
}

function problem(t: ConfigTree, known = serverKeys(['http.addr', 'source.http[].name', 'source.http[].addr']), source?: string): string {
  try {
    checkKnownKeys(t, known, source);
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    return e.message;
  }
  assert.fail('expected a ConfigError');
}

describe('unknown configuration keys', () => {
  it('accepts every known key, and refuses others with the nearest known key', () => {
    checkKnownKeys(tree({ runtime: { sandbox: 'none', maxinstances: 3 }, http: { addr: 'x' }, source: { http: [{ name: 'a', addr: 'b' }] } }), serverKeys(['http.addr', 'source.http[].name', 'source.http[].addr']));
    assert.equal(problem(tree({ runtime: { sandboxx: 'none' } })), 'unknown configuration key runtime.sandboxx (did you mean runtime.sandbox?)');
    assert.equal(problem(tree({ bogus: { key: 1 } })), 'unknown configuration key bogus.key');
    assert.equal(problem(tree({ bogus: { a: 1, b: 2 } })), 'unknown configuration table bogus');
    // A key outside its table: the known key with the same last part.
    assert.equal(problem(tree({ sandbox: 'none' })), 'unknown configuration key sandbox (did you mean runtime.sandbox?)');
    assert.equal(problem(tree({ runtime: 1 })), 'configuration key runtime is a table, not a value (its keys: runtime.sandbox, runtime.bwrap, runtime.profile, runtime.isolateprincipals, runtime.maxinstances)');
    // Entries of a list of tables are checked too.
    assert.equal(problem(tree({ source: { http: [{ name: 'a', addr: 'b' }, { name: 'c', adr: 'd' }] } })), 'unknown configuration key source.http[1].adr (did you mean source.http[1].addr?)');
    // All problems are named at once, with where they came from.
    assert.equal(problem(tree({ htp: { addr: 'x' }, log: { levl: 'debug' } }), undefined, 'x.toml'), 'x.toml: 2 configuration problems:\n  unknown configuration key htp.addr (did you mean http?)\n  unknown configuration key log.levl (did you mean log.level?)');
  });

  it('checks service.<name> against the services there are', () => {
    assert.equal(problem(tree({ service: { orign: { maxconns: 3 } } })), 'unknown service "orign" in configuration key service.orign.maxconns (did you mean service.origin?); services: catalog, identity, origin, random, scope, peer, grpc, localhost (extensions are loaded by service.extensions)');
    assert.equal(problem(tree({ service: { origin: { maxconns: 3 } } })), 'configuration key service.origin.maxconns: the origin service has no settings in this implementation (remove the key)');
    assert.equal(problem(tree({ servce: { origin: { maxconns: 3 } } })), 'unknown configuration key servce.origin.maxconns (did you mean service?)');
    assert.match(problem(tree({ service: { myext: { a: 1 } } }), serverKeys([], { builtins: ['origin'], extensions: new Map() })), /unknown service "myext".*services: origin, peer, grpc \(extensions are loaded by service.extensions\)$/);
    // An extension's own keys: known ones pass, others are named with the nearest.
    const withExt = serverKeys([], { builtins: ['origin'], extensions: new Map([['myext', ['addr', 'limit']]]) });
    checkKnownKeys(tree({ service: { extensions: ['./x.js'], myext: { addr: 'a', limit: 2 } } }), withExt);
    assert.equal(problem(tree({ service: { myext: { adr: 'a' } } }), withExt), 'unknown configuration key service.myext.adr (did you mean service.myext.addr?); the myext extension reads service.myext.addr, service.myext.limit');
    assert.equal(problem(tree({ service: { myext: 'a' } }), withExt), 'configuration key service.myext must be a table of the myext extension\'s settings (service.myext.addr, service.myext.limit)');
  });

  it('accepts service.grpc.commands and service.grpc.targets, and names a typo there', () => {
    checkKnownKeys(tree({ service: { grpc: { commands: ['/bin/x'], targets: ['localhost:1 insecure'] } } }), serverKeys([]));
    assert.equal(problem(tree({ service: { grpc: { comands: ['/bin/x'] } } })), 'unknown configuration key service.grpc.comands (did you mean service.grpc.commands?); the gRPC services read service.grpc.commands, service.grpc.targets');
    assert.equal(problem(tree({ service: { grcp: { commands: ['/bin/x'] } } })), 'unknown service "grcp" in configuration key service.grcp.commands (did you mean service.grpc?); services: catalog, identity, origin, random, scope, peer, grpc, localhost (extensions are loaded by service.extensions)');
    assert.equal(problem(tree({ service: { grpc: { targets: [] }, origin: { x: 1 } } })), 'configuration key service.origin.x: the origin service has no settings in this implementation (remove the key)');
  });

  it('names the file (or -o flag) with the unknown key', () => {
    const d = mkdtempSync(join(tmpdir(), 'gate-keys-test-'));
    try {
      const good = join(d, 'a.toml');
      const bad = join(d, 'b.toml');
      writeFileSync(good, 'pin = false\n');
      writeFileSync(bad, '[repl]\nhistoryfle = "x"\n');
      const check = (piece: ConfigTree, source: string): void => checkKnownKeys(piece, CLIENT_KEYS, source);
      assert.throws(() => readConfig([good, bad], [], check), { message: `${bad}: unknown configuration key repl.historyfle (did you mean repl.historyfile?)` });
      assert.throws(() => readConfig([good], [{ kind: 'set', assignment: 'identityfle=x' }], check), {
        message: '-o identityfle=x: unknown configuration key identityfle (did you mean identityfile?)',
      });
      assert.equal(readConfig([good], [{ kind: 'set', assignment: 'repl.historylimit=5' }], check)['pin'], false);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('gives the line and column of a TOML syntax error', () => {
    const d = mkdtempSync(join(tmpdir(), 'gate-keys-test-'));
    try {
      const f = join(d, 'c.toml');
      writeFileSync(f, 'pin = true\nwait = = false\n');
      assert.throws(() => readConfig([], [{ kind: 'file', path: f }]), (e: Error) => {
        assert.ok(e instanceof ConfigError);
        assert.match(e.message, new RegExp(`^${f}:2:8: invalid value\\n  1:  pin = true\\n  2:  wait = = false\\n +\\^$`));
        return true;
      });
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('gate-server and gate-daemon refuse an unknown key before starting (exit 2)', async () => {
    const d = mkdtempSync(join(tmpdir(), 'gate-keys-test-'));
    try {
      const env = { ...process.env, XDG_RUNTIME_DIR: join(d, 'run'), XDG_STATE_HOME: join(d, 'state'), XDG_CONFIG_HOME: join(d, 'config') };
      const server = await run('gate-server', ['-o', 'state.dir=' + join(d, 's'), '-o', 'runtime.sandboxx=none', '-o', 'http.addr=127.0.0.1:0'], env);
      assert.equal(server.code, 2);
      assert.equal(server.stderr, 'gate-server: -o runtime.sandboxx=none: unknown configuration key runtime.sandboxx (did you mean runtime.sandbox?)\n');
      const bogus = await run('gate-server', ['-o', 'bogus.key=1'], env);
      assert.equal(bogus.code, 2);
      assert.equal(bogus.stderr, 'gate-server: -o bogus.key=1: unknown configuration key bogus.key\n');
      // A setting given as an option: the key it spells, as -o.
      const flag = await run('gate-server', ['--state-dir', join(d, 's')], env);
      assert.equal(flag.code, 2);
      assert.equal(flag.stderr, "error: unknown option '--state-dir'\ngate-server: settings are configuration keys: use -o state.dir=VALUE (see --help)\n");
      const last = await run('gate-server', ['--sandbox=none'], env);
      assert.equal(last.stderr, "error: unknown option '--sandbox=none'\ngate-server: settings are configuration keys: use -o runtime.sandbox=none (see --help)\n");
      const other = await run('gate-server', ['--nope'], env);
      assert.equal(other.stderr, "error: unknown option '--nope'\ngate-server: settings are configuration keys, given with -o KEY=VALUE (see --help)\n");
      mkdirSync(join(d, 'config', 'gate'), { recursive: true });
      const daemonToml = join(d, 'config', 'gate', 'daemon.toml');
      writeFileSync(daemonToml, '[unix]\nsocet = "/tmp/x"\n');
      const daemon = await run('gate-daemon', [], env);
      assert.equal(daemon.code, 2);
      assert.equal(daemon.stderr, `gate-daemon: ${daemonToml}: unknown configuration key unix.socet (did you mean unix.socket?)\n`);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('--help lists exactly the keys each program accepts', async () => {
    const helpKeys = (help: string): string[] =>
      [...help.slice(help.indexOf('Configuration keys:')).matchAll(/^ {2}([a-z][a-z.]*[a-z]) {2,}/gm)].map((m) => m[1]!).sort();
    const accepted = (program: 'gate-server' | 'gate-daemon'): string[] => {
      const keys = serverKeys(program === 'gate-server' ? SERVER_KEYS : DAEMON_KEYS).keys;
      return [...new Set(keys.map((k) => k.replace(/\[\]\..*$/, '')))].sort();
    };
    for (const program of ['gate-server', 'gate-daemon'] as const) {
      const help = await run(program, ['--help']);
      assert.equal(help.code, 0);
      assert.deepEqual(helpKeys(help.stdout), accepted(program), program);
    }
    assert.ok(COMMON_SERVER_KEYS.includes('runtime.sandbox'));
    const client = await run('gate', ['--help']);
    const listed = /keys\s+([a-z.,\s]+)\./.exec(client.stdout)![1]!.split(/,\s+/).sort();
    assert.deepEqual(listed, [...CLIENT_KEYS.keys].sort());
  });
});
