/**
 * `gate debug` as users run it: the gate binary against a real gate-server
 * (remote table) and a real daemon (local table), on debuggee.wasm (C, -g).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { PROGRAMS, gate, ok, TABLES, useClientServers } from './client-env.js';

const DEBUGGEE = join(PROGRAMS, 'debuggee.wasm');

describe('gate debug', () => {
  const servers = useClientServers();

  for (const t of TABLES) {
    describe(t.name, () => {
      const g = (args: string[]) => gate(servers.env, [...t.prefix(servers.remote), ...args]);
      const run = (args: string[]) => ok(servers.env, [...t.prefix(servers.remote), ...args]);

      it('break at a line, resume to it, backtrace, memory, detach', async () => {
        const module = (await run(['import', DEBUGGEE])).trim();
        const id = (await run(['launch', module, 'run'])).trim();
        // run blocks in io: suspended there, it takes breakpoints; resumed, io returns and run calls descend(5).
        assert.equal(await run(['suspend', id]), 'SUSPENDED\n');
        assert.equal(await run(['debug', id, 'break', 'debuggee.c:29']), 'breakpoint 0x14 (20)\n');
        await run(['resume', id]);
        assert.match(await run(['wait', id]), /SUSPENDED.*BREAKPOINT/);
        const bt = (await run(['debug', id, 'bt'])).split('\n');
        assert.equal(bt[0], 'status: SUSPENDED BREAKPOINT');
        assert.match(bt[1]!, /^#0 {2}descend \(.*debuggee\.c:29:10\) at 0x14 \[breakpoint\] locals: i32 5$/);
        assert.match(bt[2]!, /^#1 {2}run \(.*debuggee\.c:41:3\)/);
        assert.match(await run(['debug', id, 'mem', '1024', '4']), /^00000400  67 61 74 65 .* gate\n$/);
        assert.equal(await run(['debug', id, 'detach']), '');
        assert.equal(await run(['debug', id]), '');
        const bad = await g(['debug', id, 'break', 'nowhere']);
        assert.equal(bad.code, 2);
        assert.match(bad.stderr, /^gate: nowhere: neither an offset, a function name of the module nor FILE:LINE\n$/);
        const notInstruction = await g(['debug', id, 'break', '21']);
        assert.equal(notInstruction.code, 1);
        assert.match(notInstruction.stderr, /breakpoint 21 is not the offset of an instruction/);
      });
    });
  }
});
