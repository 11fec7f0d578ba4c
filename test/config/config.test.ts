import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Command } from 'commander';
import {
  ConfigError,
  configFlags,
  configSteps,
  daemonSocketPath,
  expandPath,
  getBool,
  getNumber,
  getPath,
  getString,
  getStringList,
  getTable,
  getTableList,
  readConfig,
  type ConfigStep,
} from '../../src/config/index.js';

function dir(): string {
  return mkdtempSync(join(tmpdir(), 'gate-config-test-'));
}

function file(d: string, name: string, text: string): string {
  const p = join(d, name);
  writeFileSync(p, text);
  return p;
}

/** Runs f with some environment variables set (undefined: unset), then restores them. */
function withEnv<T>(vars: Record<string, string | undefined>, f: () => T): T {
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(vars)) {
    saved[k] = process.env[k];
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    return f();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

function steps(argv: string[]): ConfigStep[] {
  const cmd = new Command('x').exitOverride();
  configFlags(cmd);
  cmd.parse(argv, { from: 'user' });
  return configSteps(cmd);
}

describe('configuration files and flags', () => {
  it('reads default files, then applies the flags in order (later wins)', () => {
    const d = dir();
    const def = file(d, 'default.toml', 'pin = true\nwait = true\n[http]\naddr = "127.0.0.1:6473"\norigins = ["null"]\n');
    const extra = file(d, 'extra.toml', '[http]\naddr = "0.0.0.0:80"\n');
    const t1 = readConfig([def], steps(['-f', extra, '-o', 'http.addr=127.0.0.1:0', '-o', 'pin=false']));
    assert.equal(getString(t1, 'http.addr'), '127.0.0.1:0');
    assert.deepEqual(getStringList(t1, 'http.origins'), ['null'], 'merging keeps keys the later file does not set');
    assert.equal(getBool(t1, 'pin'), false);
    assert.equal(getBool(t1, 'wait'), true);
    // The same flags in the other order: the file read last wins.
    const t2 = readConfig([def], steps(['-o', 'http.addr=127.0.0.1:0', '-f', extra]));
    assert.equal(getString(t2, 'http.addr'), '0.0.0.0:80');
  });

  it('-F discards the defaults and everything before it', () => {
    const d = dir();
    const def = file(d, 'default.toml', 'pin = false\nmoduletags = ["a"]\n');
    const only = file(d, 'only.toml', 'wait = false\n');
    const t = readConfig([def], steps(['-o', 'function=main', '-F', only, '-o', 'scope=["program:system"]']));
    assert.equal(getBool(t, 'pin', true), true, 'default file not read');
    assert.equal(getString(t, 'function'), undefined, 'earlier -o discarded');
    assert.equal(getBool(t, 'wait'), false);
    assert.deepEqual(getStringList(t, 'scope'), ['program:system']);
    // A broken default file does not matter when -F is given.
    const broken = file(d, 'broken.toml', 'this is = = not toml');
    assert.doesNotThrow(() => readConfig([broken], steps(['-F', only])));
  });

  it('-d reads *.toml of a directory in name order; default entries may name directories', () => {
    const d = dir();
    const conf = join(d, 'conf.d');
    mkdirSync(conf);
    file(conf, '20-b.toml', 'function = "b"\nmoduletags = ["b"]\n');
    file(conf, '10-a.toml', 'function = "a"\ninstance = "a"\n');
    file(conf, 'ignored.txt', 'function = "txt"\n');
    const t = readConfig([], steps(['-d', conf]));
    assert.equal(getString(t, 'function'), 'b');
    assert.equal(getString(t, 'instance'), 'a');
    const t2 = readConfig([join(conf, '*.toml'), join(d, 'missing.toml'), join(d, 'missing.d/*.toml')], []);
    assert.equal(getString(t2, 'function'), 'b', 'missing default files and directories are fine');
  });

  it('keys are case-insensitive and dotted', () => {
    const d = dir();
    const f = file(d, 'c.toml', '[Runtime.Container.Namespace]\nSingleUID = true\n[[Source.HTTP]]\nName = "test"\naddr = "http://x"\n');
    const t = readConfig([], steps(['-f', f, '-o', 'Principal.MaxMemorySize=1048576']));
    assert.equal(getBool(t, 'runtime.container.namespace.singleuid'), true);
    assert.equal(getBool(t, 'RUNTIME.container.NAMESPACE.singleUID'), true);
    assert.equal(getNumber(t, 'principal.maxmemorysize'), 1048576);
    const sources = getTableList(t, 'source.http');
    assert.equal(sources.length, 1);
    assert.equal(getString(sources[0]!, 'name'), 'test');
    assert.equal(getNumber(getTable(t, 'principal'), 'maxmemorysize'), 1048576);
  });

  it('-o values are TOML values when they parse, else strings', () => {
    const t = readConfig([], steps([
      '-o', 'a=42', '-o', 'b=true', '-o', 'c=["x", "y"]', '-o', 'd="quoted"', '-o', 'e=127.0.0.1:0', '-o', 'f=', '-o', 'g=hello world', '-o', 'h.i.j=1.5',
    ]));
    assert.equal(getNumber(t, 'a'), 42);
    assert.equal(getBool(t, 'b'), true);
    assert.deepEqual(getStringList(t, 'c'), ['x', 'y']);
    assert.equal(getString(t, 'd'), 'quoted');
    assert.equal(getString(t, 'e'), '127.0.0.1:0');
    assert.equal(getString(t, 'f'), '');
    assert.equal(getString(t, 'g'), 'hello world');
    assert.equal(getNumber(t, 'h.i.j'), 1.5);
  });

  it('expands ${VAR} in paths, with HOME-based XDG defaults', () => {
    withEnv({ HOME: '/home/u', XDG_CONFIG_HOME: undefined, XDG_CACHE_HOME: '', XDG_DATA_HOME: undefined, XDG_STATE_HOME: '/state', FOO: 'bar' }, () => {
      assert.equal(expandPath('${XDG_CONFIG_HOME}/gate/client.toml'), '/home/u/.config/gate/client.toml');
      assert.equal(expandPath('${XDG_CACHE_HOME}/x'), '/home/u/.cache/x');
      assert.equal(expandPath('${XDG_DATA_HOME}/x'), '/home/u/.local/share/x');
      assert.equal(expandPath('${XDG_STATE_HOME}/x'), '/state/x');
      assert.equal(expandPath('${HOME}/${FOO}/$FOO'), '/home/u/bar/$FOO');
      const t = readConfig([], steps(['-o', 'image.statedir=${XDG_STATE_HOME}/gate/image']));
      assert.equal(getPath(t, 'image.statedir'), '/state/gate/image');
      assert.equal(getString(t, 'image.statedir'), '${XDG_STATE_HOME}/gate/image', 'plain strings are not expanded');
    });
    const d = dir();
    file(d, 'client.toml', 'pin = false\n');
    withEnv({ XDG_CONFIG_HOME: d }, () => {
      assert.equal(getBool(readConfig(['${XDG_CONFIG_HOME}/client.toml'], []), 'pin'), false, 'default file paths are expanded');
    });
  });

  it('puts the daemon socket under XDG_RUNTIME_DIR, or a per-user directory under the temporary directory', () => {
    withEnv({ XDG_RUNTIME_DIR: '/run/user/1000' }, () => assert.equal(daemonSocketPath(), '/run/user/1000/gate/daemon.sock'));
    withEnv({ XDG_RUNTIME_DIR: undefined }, () => {
      assert.equal(daemonSocketPath(), join(tmpdir(), `gate-${process.getuid!()}`, 'gate', 'daemon.sock'));
    });
  });

  it('reports errors that name the file or key and what was expected', () => {
    const d = dir();
    const bad = file(d, 'bad.toml', 'pin = \n');
    assert.throws(() => readConfig([], steps(['-f', bad])), (e: unknown) => e instanceof ConfigError && e.code === 'GATE_CONFIG' && e.message.startsWith(bad));
    assert.throws(() => readConfig([], steps(['-f', join(d, 'nope.toml')])), /cannot read configuration file .*nope\.toml: ENOENT/);
    assert.throws(() => readConfig([], steps(['-d', join(d, 'nodir')])), /cannot read configuration directory/);
    assert.throws(() => readConfig([], steps(['-o', 'novalue'])), /option must be key=value/);
    assert.throws(() => readConfig([], steps(['-o', 'a..b=1'])), /invalid configuration key/);
    const t = readConfig([], steps(['-o', 'pin=yes', '-o', 'n="1"', '-o', 'tags=[1, 2]', '-o', 'x=1']));
    assert.throws(() => getBool(t, 'pin'), (e: unknown) => e instanceof ConfigError && e.message === 'configuration key pin must be true or false, not string "yes"');
    assert.throws(() => getNumber(t, 'n'), /key n must be a number/);
    assert.throws(() => getStringList(t, 'tags'), /key tags must be a list of strings/);
    assert.throws(() => getTableList(t, 'x'), /key x must be a list of tables/);
    assert.throws(() => readConfig([], steps(['-o', 'x=1', '-o', 'x.y=2'])), /cannot set x\.y: x is not a table/);
    assert.equal(getString(t, 'missing', 'default'), 'default');
  });

  it('configFlags keeps the relative order of the four flags', () => {
    assert.deepEqual(steps(['-o', 'a=1', '-f', 'one', '-d', 'dir', '-F', 'two', '-f', 'three', '-o', 'b=2']), [
      { kind: 'set', assignment: 'a=1' },
      { kind: 'file', path: 'one' },
      { kind: 'dir', path: 'dir' },
      { kind: 'reset', path: 'two' },
      { kind: 'file', path: 'three' },
      { kind: 'set', assignment: 'b=2' },
    ]);
  });
});
