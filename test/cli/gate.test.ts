import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const GATE = join(ROOT, 'bin/gate');
const PROGRAMS = join(ROOT, 'test/programs/build');
const CACHE = mkdtempSync(join(tmpdir(), 'gate-cli-test-'));

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface SignalOptions {
  /** Send the signal once stderr matches this (the program is running), … */
  signalWhen?: RegExp;
  /** … and this long after that. */
  signalAfterMs?: number;
  signal?: NodeJS.Signals;
  /** Signal the whole process group, as a terminal's Ctrl-C and Ctrl-\ do. */
  group?: boolean;
}

function gate(args: string[], input = '', opts: SignalOptions = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(GATE, args, { env: { ...process.env, XDG_CACHE_HOME: CACHE }, detached: opts.group === true });
    const kill = (signal: NodeJS.Signals): void => {
      if (opts.group) process.kill(-child.pid!, signal);
      else child.kill(signal);
    };
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    let signalled = false;
    child.stderr.on('data', (c: Buffer) => {
      err.push(c);
      if (opts.signalWhen && !signalled && opts.signalWhen.test(Buffer.concat(err).toString())) {
        signalled = true;
        setTimeout(() => kill(opts.signal ?? 'SIGINT'), opts.signalAfterMs ?? 0);
      }
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }));
    child.stdin.end(input);
    if (opts.signalAfterMs && !opts.signalWhen) setTimeout(() => kill(opts.signal ?? 'SIGINT'), opts.signalAfterMs);
  });
}

describe('gate run', () => {
  it('runs a program with stdin and stdout as the origin stream', async () => {
    const r = await gate(['run', join(PROGRAMS, 'hello.wasm'), 'repl'], 'one');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello, world\n');
    assert.equal(r.stderr, '');
  });

  it('writes the debug log to stderr with -d', async () => {
    const r = await gate(['run', '-d', join(PROGRAMS, 'hello-debug.wasm'), 'debug']);
    assert.equal(r.code, 0);
    assert.equal(r.stderr, 'hello, world\n');
  });

  it('exits non-zero and prints the state when the program fails', async () => {
    const r = await gate(['run', join(PROGRAMS, 'hello.wasm'), 'fail']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /TERMINATED result 1/);
    const t = await gate(['run', join(PROGRAMS, 'traps.wasm'), 'div_zero']);
    assert.equal(t.code, 1);
    assert.match(t.stderr, /KILLED INTEGER_DIVIDE_BY_ZERO/);
  });

  it('runs under either profile', async () => {
    for (const profile of ['suspend-anywhere', 'io-suspend']) {
      const r = await gate(['run', '-f', profile, join(PROGRAMS, 'hello.wasm'), 'twice']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'hello, world\nhello, world\n');
    }
    const bad = await gate(['run', '-f', 'fastest', join(PROGRAMS, 'hello.wasm')]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /suspend-anywhere, io-suspend/);
  });

  it('refuses bad modules, unknown functions and missing files with exit status 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gate-bad-'));
    const junk = join(dir, 'junk.wasm');
    writeFileSync(junk, 'not wasm at all');
    const r1 = await gate(['run', junk]);
    assert.equal(r1.code, 2);
    assert.match(r1.stderr, /not a WebAssembly module/);
    const r2 = await gate(['run', join(PROGRAMS, 'hello.wasm'), 'nosuch']);
    assert.equal(r2.code, 2);
    assert.match(r2.stderr, /function not exported or it cannot be used as entry function/);
    const r3 = await gate(['run', join(dir, 'missing.wasm')]);
    assert.equal(r3.code, 2);
    assert.match(r3.stderr, /cannot read/);
  });

  it('Ctrl-C kills a running program; SIGQUIT suspends it', async () => {
    const running = /running: 0\n/;
    const killed = await gate(['run', '-d', join(PROGRAMS, 'suspend.wasm'), 'loop'], '', { signalWhen: running });
    assert.equal(killed.code, 1);
    assert.match(killed.stderr, /KILLED/);
    const suspended = await gate(['run', '-d', join(PROGRAMS, 'suspend.wasm'), 'loop'], '', { signalWhen: running, signal: 'SIGQUIT' });
    assert.equal(suspended.code, 1);
    assert.match(suspended.stderr, /SUSPENDED/);
  });

  it('writes a snapshot on suspension and continues it from the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gate-snap-'));
    const file = join(dir, 'loop.snapshot.wasm');
    // Signalled like a terminal does: the executor process gets Ctrl-\ too and must survive it.
    const first = await gate(['run', '-d', '--snapshot', file, join(PROGRAMS, 'suspend.wasm'), 'loop'], '', { signalWhen: /running: 1\n/, signal: 'SIGQUIT', group: true });
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /SUSPENDED; snapshot written to/);
    const counts = [...first.stderr.matchAll(/running: (\d+)/g)].map((m) => Number(m[1]));
    const second = await gate(['run', '-d', file], '', { signalWhen: /running: \d+\n/, group: true });
    assert.equal(second.code, 1);
    assert.match(second.stderr, /KILLED/);
    const next = Number(second.stderr.match(/running: (\d+)/)![1]);
    assert.equal(next, counts[counts.length - 1]! + 1, 'continues counting where it stopped');
  });

  it('Ctrl-Z stops the program with gate (its executor has its own process group), and fg continues it', async () => {
    const child = spawn(GATE, ['run', '-d', join(PROGRAMS, 'suspend.wasm'), 'loop'], { env: { ...process.env, XDG_CACHE_HOME: CACHE }, detached: true });
    let err = '';
    const closed = new Promise<number | null>((r) => child.on('close', r));
    const output = (re: RegExp, from = 0): Promise<void> =>
      new Promise((resolve) => {
        const check = (): void => {
          if (re.test(err.slice(from))) {
            child.stderr.off('data', check);
            resolve();
          }
        };
        child.stderr.on('data', check);
        check();
      });
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const state = (pid: number): string => readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0]!;
    const until = async (what: () => boolean): Promise<void> => {
      for (let i = 0; i < 200 && !what(); i++) await new Promise((r) => setTimeout(r, 25));
      assert.ok(what());
    };
    try {
      await output(/running: 1\n/);
      const executor = Number(execFileSync('pgrep', ['-P', String(child.pid)]).toString().trim().split('\n')[0]);
      process.kill(-child.pid!, 'SIGTSTP'); // what a terminal's Ctrl-Z does
      await until(() => state(child.pid!) === 'T' && state(executor) === 'T');
      const seen = err.length;
      process.kill(-child.pid!, 'SIGCONT'); // fg
      await until(() => state(executor) !== 'T');
      await output(/running: \d+\n/, seen); // it counts on
    } finally {
      process.kill(-child.pid!, 'SIGCONT'); // a stopped gate would not see the SIGINT
      process.kill(-child.pid!, 'SIGINT');
    }
    assert.equal(await closed, 1);
    assert.match(err, /KILLED/);
  });

  for (const [mode, executable] of [
    ['bwrap', 'bwrap'],
    ['none', 'node'],
  ] as const) {
    it(`runs the program's executor ${mode === 'bwrap' ? 'under bubblewrap by default' : 'as a plain child process with --sandbox none'}`, async () => {
      const args = ['run', '-d', join(PROGRAMS, 'suspend.wasm'), 'loop'];
      if (mode === 'none') args.splice(1, 0, '--sandbox', 'none');
      const child = spawn(GATE, args, { env: { ...process.env, XDG_CACHE_HOME: CACHE } });
      const closed = new Promise<number | null>((r) => child.on('close', r));
      try {
        await new Promise<void>((resolve) => {
          let err = '';
          child.stderr.on('data', (c: Buffer) => {
            err += c.toString();
            if (/running: 1\n/.test(err)) resolve();
          });
        });
        const executor = execFileSync('pgrep', ['-P', String(child.pid)]).toString().trim().split('\n')[0]!;
        assert.equal(readFileSync(`/proc/${executor}/comm`, 'utf8').trim(), executable);
      } finally {
        child.kill('SIGINT');
      }
      assert.equal(await closed, 1);
    });
  }

  it('explains every option in --help', async () => {
    const r = await gate(['run', '--help']);
    assert.equal(r.code, 0);
    for (const flag of ['--debug', '--profile', '--memory-limit', '--time-resolution', '--max-exports', '--sandbox', '--no-cache', '--snapshot']) {
      assert.ok(r.stdout.includes(flag), `help lacks ${flag}`);
    }
  });
});
