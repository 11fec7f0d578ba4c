/**
 * `gate debug` commands (src/cli/debug-command.ts) through the real client
 * against a real gate-server, on debuggee.wasm (C, built with -g):
 * breakpoints by function name and by file:line, a backtrace with source
 * lines, globals, memory, delete and detach, and bad arguments.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { GateClient } from '../../src/client/client.js';
import { DebugCommandError, debugCommand } from '../../src/cli/debug-command.js';
import { programBytes } from '../helpers/runtime.js';
import { newKey, startTestServer, type TestServer } from '../helpers/server.js';

const debuggee = programBytes('debuggee');
const D = createHash('sha256').update(debuggee).digest('hex');

describe('gate debug commands', () => {
  let server: TestServer;
  let client: GateClient;
  before(async () => {
    server = await startTestServer();
    client = new GateClient({ address: server.url, auth: { kind: 'identity', identity: newKey() } });
  });
  after(() => server.stop());

  const run = async (id: string, command: string | undefined, ...args: string[]): Promise<string[]> => {
    const lines: string[] = [];
    await debugCommand(client, id, command, args, (l) => lines.push(l));
    return lines;
  };

  it('breaks at a function and at a source line, prints a backtrace with lines, globals and memory, deletes and detaches', async () => {
    await client.uploadModule(D, { body: debuggee, length: debuggee.length });
    const { instance: id } = await client.launch({ id: D }, { suspend: true });
    assert.deepEqual(await run(id, 'break', 'descend'), ['breakpoint 0x14 (20)']);
    assert.deepEqual(await run(id, 'break', 'debuggee.c:41'), ['breakpoint 0x7 (7)', 'breakpoint 0x14 (20)']);
    assert.deepEqual(await run(id, 'delete', '0x7'), ['breakpoint 0x14 (20)']);
    assert.deepEqual(await run(id, undefined), ['breakpoint 0x14 (20)']);
    assert.equal((await client.instanceInfo(id)).debugging, true);
    await client.resume(id, { function: 'run' });
    assert.deepEqual(await client.wait(id), { state: 'SUSPENDED', cause: 'BREAKPOINT' });
    const bt = await run(id, 'bt');
    assert.equal(bt[0], 'status: SUSPENDED BREAKPOINT');
    assert.match(bt[1]!, /^#0 {2}descend \(.*debuggee\.c:29:10\) at 0x14 \[breakpoint\] locals: i32 5$/);
    assert.match(bt[2]!, /^#1 {2}run \(.*debuggee\.c:41:3\) at 0x[0-9a-f]+ \[call\]$/);
    assert.equal(bt.length, 3);
    const globals = await run(id, 'globals');
    assert.deepEqual(globals.slice(1), ['global 1: i32 1056 (0x420)', 'global 2: i32 1024 (0x400)']);
    const mem = await run(id, 'mem', '0x400', '18');
    assert.deepEqual(mem, ['00000400  67 61 74 65 20 64 65 62 75 67 67 65 72 20 74 65  gate debugger te', '00000410  73 74                                            st']);
    assert.deepEqual(await run(id, 'detach'), []);
    assert.equal((await client.instanceInfo(id)).debugging, false);
  });

  it('refuses bad arguments with an error that says what is wrong', async () => {
    const { instance: id } = await client.launch({ id: D }, { suspend: true });
    const cases: Array<[string, string[], RegExp]> = [
      ['break', ['no_such_function'], /neither an offset, a function name/],
      ['break', ['debuggee.c:1'], /no code begins at that line/],
      ['break', [], /needs at least one/],
      ['mem', ['x', '1'], /ADDR and SIZE/],
      ['bt', ['1'], /takes no arguments/],
      ['frobnicate', [], /unknown debug command/],
    ];
    for (const [command, args, message] of cases) await assert.rejects(run(id, command, ...args), (e: unknown) => e instanceof DebugCommandError && message.test(e.message));
    // An offset that is not an instruction is the server's 400.
    await assert.rejects(run(id, 'break', '21'), /not the offset of an instruction/);
    assert.deepEqual(await run(id, undefined), []);
  });
});
