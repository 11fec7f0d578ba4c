// `gate` against real servers: a gate-server on loopback (remote table,
// requests signed with a key made by ssh-keygen) and a daemon on the Unix
// socket where the CLI looks for it (local table).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { PROGRAMS, gate, ok, TABLES, useClientServers } from './client-env.js';

const HELLO = join(PROGRAMS, 'hello.wasm');
const SUSPEND = join(PROGRAMS, 'suspend.wasm');
const TRAPS = join(PROGRAMS, 'traps.wasm');
const DEBUGGEE = join(PROGRAMS, 'debuggee.wasm');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

describe('gate client commands', () => {
  const servers = useClientServers();

  for (const t of TABLES) {
    describe(t.name, () => {
      const g = (args: string[], opts?: Parameters<typeof gate>[2]) => gate(servers.env, [...t.prefix(servers.remote), ...args], opts);
      const run = (args: string[], opts?: Parameters<typeof gate>[2]) => ok(servers.env, [...t.prefix(servers.remote), ...args], opts);

      it('import, modules, show, pin, export, unpin', async () => {
        const id = (await run(['import', HELLO, 'first'])).trim();
        assert.equal(id, sha256(HELLO));
        assert.match(await run(['modules']), new RegExp(`^${id} \\[first\\]$`, 'm'));
        assert.equal(await run(['show', id]), '[first]\n');
        await run(['pin', id, 'second', 'third']);
        assert.equal(await run(['show', id]), '[second third]\n');
        assert.deepEqual(JSON.parse(await run(['show', '--json', id])), { module: id, tags: ['second', 'third'] });
        const listed = JSON.parse(await run(['modules', '--json'])) as Array<{ module: string }>;
        assert.ok(listed.some((m) => m.module === id));

        const file = join(servers.env.home, `exported-${t.name}.wasm`);
        await run(['export', id, file]);
        assert.deepEqual(readFileSync(file), readFileSync(HELLO));
        const toStdout = await gate(servers.env, [...t.prefix(servers.remote), 'export', id]);
        assert.equal(toStdout.code, 0, toStdout.stderr);
        assert.equal(createHash('sha256').update(toStdout.stdoutBytes).digest('hex'), id);

        await run(['unpin', id]);
        assert.doesNotMatch(await run(['modules']), new RegExp(id));
        const gone = await g(['show', id]);
        assert.equal(gone.code, 1);
        assert.match(gone.stderr, /^gate: module not found\n$/);
      });

      it('call: stdin and stdout are the stream; exit status from the result', async () => {
        const greet = await g(['call', HELLO, 'greet']);
        assert.equal(greet.code, 0, greet.stderr);
        assert.equal(greet.stdout, 'hello, world\n');
        assert.equal(greet.stderr, '');

        const fail = await g(['call', HELLO, 'fail']);
        assert.equal(fail.code, 1);
        const trap = await g(['call', TRAPS, 'div_zero']);
        assert.equal(trap.code, 1);
        assert.match(trap.stderr, /^KILLED abnormally: INTEGER_DIVIDE_BY_ZERO; error: trapped in div_zero at 0x[0-9a-f]+\n$/);

        // -D keeps the instance and prints where it stopped: here the trap's backtrace, with DWARF source lines.
        const dumped = await g(['call', '-D', DEBUGGEE, 'crash']);
        assert.equal(dumped.code, 1);
        const lines = dumped.stderr.split('\n');
        assert.match(lines[0]!, UUID);
        assert.equal(lines[1], 'KILLED abnormally: UNREACHABLE; error: trapped in explode (test/programs/debuggee.c:47:2)');
        assert.equal(lines[2], 'Call stack:');
        assert.match(lines[3]!, /^#0 {2}explode \(test\/programs\/debuggee\.c:47:2\) at 0x[0-9a-f]+ \[trap\]$/);
        assert.match(lines[4]!, /^#1 {2}fall \(test\/programs\/debuggee\.c:53:3\) at 0x[0-9a-f]+ \[trap\]$/);
        assert.match(lines[10]!, /^#7 {2}crash \(test\/programs\/debuggee\.c:62:2\) at 0x[0-9a-f]+ \[trap\]$/);
        assert.equal(lines.length, 12, dumped.stderr);

        const nosuch = await g(['call', HELLO, 'nosuch']);
        assert.equal(nosuch.code, 1);
        assert.match(nosuch.stderr, /function not exported or it cannot be used as entry function/);
      });

      it('launch, status, suspend, resume, kill, snapshot, export, delete', async () => {
        const id = (await run(['launch', SUSPEND, 'loop', 'looping'])).trim();
        assert.match(id, UUID);
        assert.equal(await run(['status', id]), 'RUNNING [looping]\n');
        assert.match(await run(['instances']), new RegExp(`^${id} RUNNING \\[looping\\]$`, 'm'));
        assert.equal(await run(['suspend', id]), 'SUSPENDED\n');
        assert.equal(await run(['status', id]), 'SUSPENDED [looping]\n');
        const info = JSON.parse(await run(['status', '--json', id])) as { instance: string; status: { state: string }; tags: string[] };
        assert.deepEqual([info.instance, info.status.state, info.tags], [id, 'SUSPENDED', ['looping']]);

        const snap = (await run(['snapshot', id, 'snap'])).trim();
        assert.match(snap, /^[0-9a-f]{64}$/);
        assert.equal(await run(['show', snap]), '[snap]\n');
        const file = join(servers.env.home, `snapshot-${t.name}.wasm`);
        await run(['export', snap, file]);
        assert.equal(sha256(file), snap);

        await run(['resume', id]);
        assert.equal(await run(['status', id]), 'RUNNING [looping]\n');
        const busy = await g(['delete', id]);
        assert.equal(busy.code, 1);
        assert.match(busy.stderr, /instance must not be running/);
        assert.equal(await run(['kill', id]), 'KILLED\n');
        assert.equal(await run(['wait', id]), 'KILLED\n');
        await run(['delete', id]);
        assert.doesNotMatch(await run(['instances']), new RegExp(id));
        const gone = await g(['status', id]);
        assert.equal(gone.code, 1);
        assert.match(gone.stderr, /instance not found/);

        // The snapshot continues where it stopped.
        const again = (await run(['launch', snap])).trim();
        assert.equal(await run(['kill', again]), 'KILLED\n');
        await run(['delete', again]);
      });

      it('wait prints the final status; update replaces tags', async () => {
        const id = (await run(['launch', HELLO, 'fail', 'a'])).trim();
        assert.equal(await run(['wait', id]), 'TERMINATED with result 1\n');
        assert.deepEqual(JSON.parse(await run(['wait', '--json', id])), { state: 'TERMINATED', result: 1 });
        await run(['update', id, 'b', 'c']);
        assert.equal(await run(['status', id]), 'TERMINATED with result 1 [b c]\n');
        const none = await g(['update', id]);
        assert.equal(none.code, 2);
        assert.equal(none.stderr, 'gate: no tags\n');
        await run(['delete', id]);
      });

      it('io connects stdin and stdout to a running instance', async () => {
        const id = (await run(['launch', HELLO, 'repl'])).trim();
        const r = await g(['io', id], { input: 'one' });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, 'hello, world\n');
        assert.match(await run(['wait', id]), /^HALTED|^TERMINATED/);
        await run(['delete', id]);
        const stopped = await g(['io', id]);
        assert.equal(stopped.code, 1);
      });

      it('Ctrl-C kills a call; Ctrl-\\ suspends it', async () => {
        /** The instances running now; the call's instance is the one that appears. */
        const runningIds = async (): Promise<string[]> =>
          (JSON.parse(await run(['instances', '--json'])) as Array<{ instance: string; status: { state: string } }>)
            .filter((i) => i.status.state === 'RUNNING')
            .map((i) => i.instance);
        const signalOnceRunning = async (signal: NodeJS.Signals): Promise<{ r: Awaited<ReturnType<typeof gate>>; id: string }> => {
          let child: ChildProcess | undefined;
          const before = new Set(await runningIds());
          const result = gate(servers.env, [...t.prefix(servers.remote), 'call', SUSPEND, 'loop'], { holdInput: true, onSpawn: (c) => (child = c) });
          let id: string | undefined;
          while (id === undefined) {
            id = (await runningIds()).find((x) => !before.has(x));
            if (id === undefined) await new Promise((r) => setTimeout(r, 50));
          }
          child!.kill(signal);
          return { r: await result, id };
        };

        const killed = await signalOnceRunning('SIGINT');
        assert.equal(killed.r.code, 1);
        assert.match(killed.r.stderr, /^KILLED\n$/);

        const suspended = await signalOnceRunning('SIGQUIT');
        // Locally SUSPENDED is success (the instance is kept to be resumed); remotely only TERMINATED is.
        assert.equal(suspended.r.code, t.name === 'local' ? 0 : 1, suspended.r.stderr);
        assert.match(suspended.r.stderr, /^SUSPENDED\n/);
        assert.equal(await run(['status', suspended.id]), 'SUSPENDED []\n');
        await run(['delete', suspended.id]);
      });
    });
  }
});
