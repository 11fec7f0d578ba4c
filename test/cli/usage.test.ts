// `gate` usage: tables, argument counts, configuration errors, help. None of
// these reach a server, so no server runs (and none may be contacted).
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { splitAddress, isAddress } from '../../src/cli/gate.js';
import { parseModuleArg, UsageError } from '../../src/cli/client-commands.js';
import { gate, makeClientEnv, ok, type ClientEnv } from './client-env.js';

// Nothing listens here: a command that tried to connect would fail differently.
const ADDRESS = 'http://127.0.0.1:9';
const ID = 'a'.repeat(64);

describe('gate usage', () => {
  let env: ClientEnv;
  before(() => {
    env = makeClientEnv();
  });

  it('finds the address among the leading arguments', () => {
    assert.deepEqual(splitAddress(['example.net', 'call', 'x']), { address: 'example.net', rest: ['call', 'x'] });
    assert.deepEqual(splitAddress(['-o', 'pin=false', '-f', 'a.toml', 'https://internal', 'modules']), {
      address: 'https://internal',
      rest: ['-o', 'pin=false', '-f', 'a.toml', 'modules'],
    });
    assert.deepEqual(splitAddress(['call', 'prog.wasm']), { address: undefined, rest: ['call', 'prog.wasm'] });
    assert.deepEqual(splitAddress(['--option=pin=false', 'modules']), { address: undefined, rest: ['--option=pin=false', 'modules'] });
    assert.ok(isAddress('localhost:8080') === false && isAddress('http://localhost:8080') && isAddress('example.net'));
  });

  it('tells module files, ids and sources apart', () => {
    assert.deepEqual(parseModuleArg('prog.wasm', false), { kind: 'file', path: 'prog.wasm' });
    assert.deepEqual(parseModuleArg('./prog', false), { kind: 'file', path: './prog' });
    assert.deepEqual(parseModuleArg(ID, true), { kind: 'id', id: ID });
    assert.deepEqual(parseModuleArg('/ipfs/QmX', true), { kind: 'source', source: '/ipfs/QmX' });
    assert.deepEqual(parseModuleArg('/ipfs/QmX', false), { kind: 'file', path: '/ipfs/QmX' });
    assert.throws(() => parseModuleArg('prog', false), (e: unknown) => e instanceof UsageError && /write \.\/prog/.test(e.message));
  });

  it('refuses commands of the other table with status 2', async () => {
    const pull = await gate(env, [ADDRESS, 'pull', ID]);
    assert.equal(pull.code, 2);
    assert.match(pull.stderr, /the address goes after the command: gate \[options\] pull address module/);
    const push = await gate(env, [ADDRESS, 'push', ADDRESS, ID]);
    assert.equal(push.code, 2);
    assert.match(push.stderr, /push address module/);
    for (const cmd of [['version'], ['run', 'x.wasm']]) {
      const r = await gate(env, [ADDRESS, ...cmd]);
      assert.equal(r.code, 2, cmd.join(' '));
      assert.equal(r.stderr, 'gate: Command not supported for specified address.\n');
    }
    const resume = await gate(env, [ADDRESS, 'resume', '00000000-0000-4000-8000-000000000000', 'main']);
    assert.equal(resume.code, 2);
    assert.match(resume.stderr, /resume takes no function argument with an address/);
  });

  it('prints usage and exits 2 for wrong arguments', async () => {
    for (const args of [['status'], ['call'], ['modules', 'extra'], ['pull', ADDRESS], ['nosuchcommand'], []]) {
      const r = await gate(env, args);
      assert.equal(r.code, 2, `gate ${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /Usage: gate/);
    }
    const noTags = await gate(env, [ADDRESS, 'update', '00000000-0000-4000-8000-000000000000']);
    assert.equal(noTags.code, 2);
    assert.equal(noTags.stderr, 'gate: no tags\n');
    const badId = await gate(env, [ADDRESS, 'show', 'nothex']);
    assert.equal(badId.code, 2);
    assert.match(badId.stderr, /nothex: not a module id/);
  });

  it('exits 2 with `gate: <error>` on configuration errors', async () => {
    const bad = await gate(env, ['-o', 'pin=yes', ADDRESS, 'call', 'x.wasm']);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr, 'gate: configuration key pin must be true or false, not string "yes"\n');
    mkdirSync(env.configDir, { recursive: true });
    writeFileSync(join(env.configDir, 'client.toml'), 'wait = \n');
    try {
      const broken = await gate(env, [ADDRESS, 'modules']);
      assert.equal(broken.code, 2);
      assert.match(broken.stderr, /^gate: .*client\.toml:1:8: invalid value\n/);
      // -F skips the default files.
      const f = join(env.home, 'other.toml');
      writeFileSync(f, 'wait = false\n');
      const skipped = await gate(env, ['-F', f, ADDRESS, 'update', 'x']);
      assert.equal(skipped.stderr, 'gate: no tags\n');
    } finally {
      writeFileSync(join(env.configDir, 'client.toml'), '');
    }
    const missing = await gate(env, ['-f', join(env.home, 'missing.toml'), 'modules']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /cannot read configuration file .*missing\.toml: ENOENT/);
  });

  it('refuses unknown configuration keys with a hint instead of ignoring them', async () => {
    const bogus = await gate(env, ['-o', 'bogus=1', ADDRESS, 'modules']);
    assert.equal(bogus.code, 2);
    assert.equal(bogus.stderr, 'gate: -o bogus=1: unknown configuration key bogus\n');
    // A typo in identityfile would otherwise fall back to the default key.
    mkdirSync(env.configDir, { recursive: true });
    const toml = join(env.configDir, 'client.toml');
    writeFileSync(toml, `identityfle = "${join(env.home, 'other-key')}"\n`);
    try {
      const typo = await gate(env, [ADDRESS, 'modules']);
      assert.equal(typo.code, 2);
      assert.equal(typo.stderr, `gate: ${toml}: unknown configuration key identityfle (did you mean identityfile?)\n`);
    } finally {
      writeFileSync(toml, '');
    }
  });

  it('refuses an empty identity file for remote non-loopback addresses', async () => {
    const empty = join(env.home, 'empty-key');
    writeFileSync(empty, '');
    const r = await gate(env, ['-o', `identityfile=${empty}`, 'https://example.invalid', 'modules']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /empty identity file .* may only be used with http addresses of this host/);
    const notKey = join(env.home, 'not-a-key');
    writeFileSync(notKey, 'hello');
    const r2 = await gate(env, ['-o', `identityfile=${notKey}`, ADDRESS, 'modules']);
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /not-a-key: not an Ed25519 private key/);
  });

  it('has help for every command, and version', async () => {
    const top = await ok(env, ['--help']);
    const commands = ['call', 'launch', 'debug', 'delete', 'export', 'import', 'instances', 'io', 'kill', 'modules', 'pin', 'repl', 'resume', 'show', 'snapshot', 'status', 'suspend', 'unpin', 'update', 'wait', 'pull', 'push', 'version', 'run'];
    for (const c of commands) {
      assert.match(top, new RegExp(`^  ${c}\\b`, 'm'), `top-level help lists ${c}`);
      const h = await ok(env, [c, '--help']);
      assert.match(h, new RegExp(`^Usage: gate ${c}\\b`, 'm'));
    }
    assert.match(await ok(env, ['call', '--help']), /-s, --scope[\s\S]*-d, --debug[\s\S]*-p, --persist/);
    assert.match(await ok(env, ['version']), /^Gate client version: \d+\.\d+\.\d+\nNode\.js version: v\d+/);
    const debug = await gate(env, [ADDRESS, 'debug', '00000000-0000-4000-8000-000000000000', 'frobnicate']);
    assert.equal(debug.code, 2);
    assert.match(debug.stderr, /unknown debug command "frobnicate"/);
  });
});
