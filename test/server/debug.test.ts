/**
 * The debug action of the API (docs/debugging.md) against real gate-servers
 * and a real C program built with -g (test/programs/debuggee.c): the
 * breakpoint configuration, reads of globals, memory and the stack of a
 * suspended instance, breakpoints travelling in snapshots, and bad input.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { memoryImage, readSnapshot } from '../../src/snapshot/format.js';
import { parseModule } from '../../src/wasm/module.js';
import { lineOffsets, readLineTable } from '../../src/wasm/dwarf-line.js';
import { programBytes } from '../helpers/runtime.js';
import { wat } from '../helpers/wat.js';
import { uleb } from '../wasm/wasm-builder.js';
import { newKey, request, startTestServer, type TestServer } from '../helpers/server.js';

const K = '/gate-0/module/sha256/';
const I = '/gate-0/instance/';
const wasm = { 'Content-Type': 'application/wasm' };
const json = { 'Content-Type': 'application/json' };
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const debuggee = programBytes('debuggee');
const D = sha256(debuggee);
const key = newKey();

// Where things are in the module: function bodies by name, data addresses from the exported globals.
const mod = parseModule(debuggee);

/** `bytes` with a name section that names function `index` `name` (UTF-8). */
function withFunctionName(bytes: Uint8Array, index: number, name: string): Uint8Array {
  const utf8 = [...new TextEncoder().encode(name)];
  const names = [...uleb(1), ...uleb(index), ...uleb(utf8.length), ...utf8];
  const sub = [1, ...uleb(names.length), ...names];
  const id = [...new TextEncoder().encode('name')];
  const payload = [...uleb(id.length), ...id, ...sub];
  return new Uint8Array([...bytes, 0, ...uleb(payload.length), ...payload]);
}
const codeBase = mod.sections.find((s) => s.id === 10)!.payloadStart;
const DESCEND = 2; // function index (import __gate_io_65536 is 0, run is 1)
const descendBody = mod.bodies[DESCEND - mod.importedFunctionCount]!;
/** The first instruction of descend, relative to the code section's contents. */
const descendStart = descendBody.codeStart - codeBase;
/** Inside descend's local declarations: not an instruction. */
const notAnInstruction = descendBody.bodyStart - codeBase;
const COUNTER_ADDR = 1056;
const MESSAGE_ADDR = 1024;

interface DebugReply {
  status: number;
  text: string;
  body: Record<string, unknown>;
}

async function debug(server: TestServer, id: string, req: unknown, who = key): Promise<DebugReply> {
  const r = await request(server, 'POST', `${I}${id}?action=debug`, { key: who, headers: json, body: JSON.stringify(req) });
  return { status: r.status, text: r.text, body: r.status === 200 ? (JSON.parse(r.text) as Record<string, unknown>) : {} };
}

async function info(server: TestServer, id: string): Promise<Record<string, unknown>> {
  const r = await request(server, 'POST', `${I}${id}`, { key });
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text) as Record<string, unknown>;
}

/** Launches debuggee's run, which blocks 6 frames deep in io, and suspends it there. */
async function launchSuspended(server: TestServer): Promise<string> {
  const r = await request(server, 'POST', `${K}${D}?action=pin&action=launch&function=run`, { key, headers: wasm, body: debuggee });
  assert.equal(r.status, 201, r.text);
  const id = String(r.headers['gate-instance']);
  await suspendInIo(server, id);
  return id;
}

/**
 * Suspends a running debuggee where it blocks in io. A suspend can arrive
 * before the program has got there (a loaded machine may not have run it
 * yet): then it is resumed and suspended again until it is there.
 */
async function suspendInIo(server: TestServer, id: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    await suspend(server, id);
    const frames = (await debug(server, id, { op: 'READ_STACK' })).body.frames as Array<{ name?: string }>;
    if (frames[0]?.name === 'wait_for_input') return;
    assert.ok(attempt < 100, 'the program never got to its io');
    assert.equal((await request(server, 'POST', `${I}${id}?action=resume`, { key })).status, 200);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function suspend(server: TestServer, id: string): Promise<void> {
  const r = await request(server, 'POST', `${I}${id}?action=suspend&action=wait`, { key });
  assert.equal(r.headers['gate-status'], '{"state":"SUSPENDED"}');
}

const u32 = (b64: unknown): number => Buffer.from(String(b64), 'base64').readUInt32LE(0);

describe('the debug action', () => {
  let server: TestServer;
  let other: TestServer;
  before(async () => {
    server = await startTestServer();
    other = await startTestServer();
  });
  after(async () => {
    await server.stop();
    await other.stop();
  });

  it('reads the stack of a suspended instance: functions by name, code offsets, locals', async () => {
    const id = await launchSuspended(server);
    const r = await debug(server, id, { op: 'READ_STACK' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.module, `sha256/${D}`);
    assert.deepEqual(r.body.status, { state: 'SUSPENDED' });
    assert.ok(typeof r.body.data === 'string' && Buffer.from(r.body.data, 'base64').subarray(0, 4).toString() === 'GTS2');
    const frames = r.body.frames as Array<{ function: number; name?: string; kind: string; offset: number; locals: Array<{ type: string; value: unknown }> }>;
    // Innermost first: the io call in wait_for_input, descend(0) … descend(5), run.
    assert.deepEqual(frames.map((f) => f.name), ['wait_for_input', 'descend', 'descend', 'descend', 'descend', 'descend', 'descend', 'run']);
    assert.deepEqual(frames.slice(1, 7).map((f) => f.locals[0]), [0, 1, 2, 3, 4, 5].map((v) => ({ type: 'i32', bits: `0x${v}`, value: v })));
    // Source lines from the module's DWARF: the call of wait_for_input (line 31), the recursive calls (34), run's call (41).
    const lines = (frames as Array<{ source?: { file: string; line: number } }>).map((f) => f.source?.line);
    assert.deepEqual(lines.slice(1), [31, 34, 34, 34, 34, 34, 41]);
    assert.match((frames[1] as unknown as { source: { file: string } }).source.file, /debuggee\.c$/);
    for (const f of frames) {
      assert.equal(f.kind, 'call');
      const body = mod.bodies[f.function - mod.importedFunctionCount]!;
      assert.ok(codeBase + f.offset >= body.codeStart && codeBase + f.offset < body.end, `offset ${f.offset} is in function ${f.function}`);
    }
  });

  it('reads globals and memory of a suspended instance', async () => {
    const id = await launchSuspended(server);
    const g = await debug(server, id, { op: 'READ_GLOBALS' });
    assert.equal(g.status, 200, g.text);
    const globals = g.body.globals as Array<{ index: number; type: string; value: number }>;
    assert.deepEqual(globals.slice(1), [
      { index: 1, type: 'i32', bits: '0x420', value: COUNTER_ADDR },
      { index: 2, type: 'i32', bits: '0x400', value: MESSAGE_ADDR },
    ]);
    // The stack pointer moved below its initial value while the frames are live? (-O1 keeps these frames in locals: equal is fine.)
    assert.ok(globals[0]!.value <= 66608 && globals[0]!.value > 1088);
    assert.equal(Buffer.from(String(g.body.data), 'base64').length, 3 * 8);

    const counter = await debug(server, id, { op: 'READ_MEMORY', addr: COUNTER_ADDR, size: 4 });
    assert.equal(counter.status, 200, counter.text);
    assert.equal(u32(counter.body.data), 5 + 4 + 3 + 2 + 1 + 0);
    const message = await debug(server, id, { op: 'READ_MEMORY', addr: String(MESSAGE_ADDR), size: '18' });
    assert.equal(Buffer.from(String(message.body.data), 'base64').toString(), 'gate debugger test');
    // The whole memory, as the instance's snapshot holds it.
    const snap = await request(server, 'POST', `${I}${id}?action=snapshot`, { key });
    const image = memoryImage(parseModule(new Uint8Array((await request(server, 'GET', String(snap.headers.location), { key })).body)));
    const whole = await debug(server, id, { op: 'READ_MEMORY', addr: 0, size: image.length });
    assert.ok(image.length >= 65536);
    assert.ok(Buffer.from(String(whole.body.data), 'base64').equals(Buffer.from(image)));
    const tail = await debug(server, id, { op: 'READ_MEMORY', addr: image.length - 3, size: 3 });
    assert.equal(Buffer.from(String(tail.body.data), 'base64').length, 3);
  });

  it('sets, extends and removes breakpoints of a stopped instance; InstanceInfo.debugging follows them', async () => {
    const id = await launchSuspended(server);
    assert.equal((await info(server, id)).debugging, undefined);
    const get = await debug(server, id, {});
    assert.deepEqual(get.body.config, {});
    const set = await debug(server, id, { op: 'CONFIG_SET', config: { breakpoints: [descendStart, descendStart] } });
    assert.equal(set.status, 200, set.text);
    assert.deepEqual(set.body.config, { breakpoints: [String(descendStart)] });
    assert.equal((await info(server, id)).debugging, true);
    // Every instruction boundary of run is accepted: take the function's first one.
    const runStart = mod.bodies[1 - mod.importedFunctionCount]!.codeStart - codeBase;
    const union = await debug(server, id, { op: 'CONFIG_UNION', config: { breakpoints: [String(runStart)] } });
    assert.deepEqual(union.body.config, { breakpoints: [String(runStart), String(descendStart)].sort((a, b) => Number(a) - Number(b)) });
    const complement = await debug(server, id, { op: 'CONFIG_COMPLEMENT', config: { breakpoints: [descendStart, runStart] } });
    assert.deepEqual(complement.body.config, {});
    assert.equal((await info(server, id)).debugging, undefined);
  });

  it('keeps breakpoints in snapshots: through a resume, and into another server', async () => {
    const id = await launchSuspended(server);
    assert.equal((await debug(server, id, { op: 'CONFIG_SET', config: { breakpoints: [descendStart] } })).status, 200);
    // Resumed (io returns, run calls descend again) and stopped at the breakpoint: the next snapshot still has it.
    assert.equal((await request(server, 'POST', `${I}${id}?action=resume`, { key })).status, 200);
    assert.equal((await request(server, 'POST', `${I}${id}?action=wait`, { key })).headers['gate-status'], '{"state":"SUSPENDED","cause":"BREAKPOINT"}');
    assert.deepEqual((await debug(server, id, { op: 'CONFIG_GET' })).body.config, { breakpoints: [String(descendStart)] });
    const snap = await request(server, 'POST', `${I}${id}?action=snapshot`, { key });
    assert.equal(snap.status, 201, snap.text);
    const location = String(snap.headers.location);
    const bytes = (await request(server, 'GET', location, { key })).body;
    assert.deepEqual(readSnapshot(parseModule(new Uint8Array(bytes)))!.breakpoints, [BigInt(descendStart)]);

    const hash = location.split('/').pop()!;
    const launched = await request(other, 'POST', `${K}${hash}?action=launch`, { key, headers: wasm, body: bytes });
    assert.equal(launched.status, 200, launched.text);
    const id2 = String(launched.headers['gate-instance']);
    assert.equal((await info(other, id2)).debugging, true);
    assert.equal((await request(other, 'POST', `${I}${id2}?action=wait`, { key })).headers['gate-status'], '{"state":"SUSPENDED","cause":"BREAKPOINT"}');
    assert.deepEqual((await debug(other, id2, { op: 'CONFIG_GET' })).body.config, { breakpoints: [String(descendStart)] });
  });

  it('refuses bad input with 4xx and changes nothing', async () => {
    const id = await launchSuspended(server);
    assert.equal((await debug(server, id, { op: 'CONFIG_SET', config: { breakpoints: [descendStart] } })).status, 200);
    const expectConfig = { breakpoints: [String(descendStart)] };
    const bad: Array<[unknown, number, RegExp]> = [
      [{ op: 'CONFIG_SET', config: { breakpoints: [notAnInstruction] } }, 400, /not the offset of an instruction/],
      [{ op: 'CONFIG_UNION', config: { breakpoints: [descendStart + 1] } }, 400, /not the offset of an instruction/],
      [{ op: 'CONFIG_SET', config: { breakpoints: [10_000_000] } }, 400, /not the offset of an instruction/],
      [{ op: 'CONFIG_SET', config: { breakpoints: [-1] } }, 400, /unsigned 64-bit/],
      [{ op: 'CONFIG_SET', config: { breakpoints: Array.from({ length: 101 }, (_, i) => i) } }, 400, /at most 100/],
      [{ op: 'READ_MEMORY', addr: 65536 * 2, size: 1 }, 400, /outside the instance's memory/],
      [{ op: 'READ_MEMORY', addr: '18446744073709551615', size: 16 }, 400, /outside the instance's memory/],
      [{ op: 'READ_MEMORY', addr: 0, size: 1 << 30 }, 400, /at most 1048576 bytes/],
      [{ op: 'NO_SUCH_OP' }, 400, /op must be one of/],
      [{ op: 'READ_STACK', extra: 1 }, 400, /unknown field/],
    ];
    for (const [req, status, message] of bad) {
      const r = await debug(server, id, req);
      assert.equal(r.status, status, `${JSON.stringify(req)}: ${r.text}`);
      assert.match(r.text, message);
    }
    const notJson = await request(server, 'POST', `${I}${id}?action=debug`, { key, headers: json, body: '{' });
    assert.equal(notJson.status, 400);
    const wrongType = await request(server, 'POST', `${I}${id}?action=debug`, { key, headers: { 'Content-Type': 'text/plain' }, body: '{}' });
    assert.equal(wrongType.status, 415);
    // Another principal's instance does not exist for them.
    assert.equal((await debug(server, id, { op: 'CONFIG_SET', config: { breakpoints: [] } }, newKey())).status, 404);
    assert.equal((await debug(server, id, { op: 'READ_MEMORY', addr: 0, size: 4 }, newKey())).status, 404);
    assert.deepEqual((await debug(server, id, { op: 'CONFIG_GET' })).body.config, expectConfig);
    // The instance still resumes (and stops at its breakpoint).
    assert.equal((await request(server, 'POST', `${I}${id}?action=resume`, { key })).status, 200);
    assert.equal((await request(server, 'POST', `${I}${id}?action=wait`, { key })).headers['gate-status'], '{"state":"SUSPENDED","cause":"BREAKPOINT"}');
  });

  it('answers 409 to everything but CONFIG_GET while the instance runs', async () => {
    const r = await request(server, 'POST', `${K}${D}?action=pin&action=launch&function=run`, { key, headers: wasm, body: debuggee });
    const id = String(r.headers['gate-instance']);
    for (const op of ['CONFIG_SET', 'CONFIG_UNION', 'CONFIG_COMPLEMENT', 'READ_GLOBALS', 'READ_MEMORY', 'READ_STACK']) {
      assert.equal((await debug(server, id, { op, config: { breakpoints: [descendStart] } })).status, 409, op);
    }
    const get = await debug(server, id, { op: 'CONFIG_GET' });
    assert.equal(get.status, 200);
    assert.deepEqual(get.body.status, { state: 'RUNNING' });
    assert.deepEqual(get.body.config, {});
  });

  it('sets breakpoints of an instance launched suspended, before it ever ran', async () => {
    const r = await request(server, 'POST', `${K}${D}?action=pin&action=launch&action=suspend`, { key, headers: wasm, body: debuggee });
    assert.equal(r.status, 201, r.text);
    const id = String(r.headers['gate-instance']);
    assert.deepEqual((await info(server, id)).status, { state: 'HALTED' });
    assert.equal((await debug(server, id, { op: 'CONFIG_SET', config: { breakpoints: [descendStart] } })).status, 200);
    assert.equal((await info(server, id)).debugging, true);
    const counter = await debug(server, id, { op: 'READ_MEMORY', addr: COUNTER_ADDR, size: 4 });
    assert.equal(u32(counter.body.data), 0);
    assert.deepEqual((await debug(server, id, { op: 'READ_STACK' })).body.frames, []);
    assert.equal((await request(server, 'POST', `${I}${id}?action=resume&function=run`, { key })).status, 200);
    assert.equal((await request(server, 'POST', `${I}${id}?action=wait`, { key })).headers['gate-status'], '{"state":"SUSPENDED","cause":"BREAKPOINT"}');
    assert.deepEqual((await debug(server, id, { op: 'CONFIG_GET' })).body.config, { breakpoints: [String(descendStart)] });
    assert.equal(((await debug(server, id, { op: 'READ_STACK' })).body.frames as unknown[]).length, 2);
  });

  it('stops at a breakpoint with cause BREAKPOINT, shows the frame there, continues past it, and stops again in the loop', async () => {
    const r = await request(server, 'POST', `${K}${D}?action=pin&action=launch&action=suspend`, { key, headers: wasm, body: debuggee });
    const id = String(r.headers['gate-instance']);
    assert.equal((await debug(server, id, { op: 'CONFIG_SET', config: { breakpoints: [descendStart] } })).status, 200);
    assert.equal((await request(server, 'POST', `${I}${id}?action=resume&function=run`, { key })).status, 200);
    const depths: number[] = [];
    const counters: number[] = [];
    const hit = async (): Promise<void> => {
      const w = await request(server, 'POST', `${I}${id}?action=wait`, { key });
      assert.equal(w.headers['gate-status'], '{"state":"SUSPENDED","cause":"BREAKPOINT"}');
      const stack = await debug(server, id, { op: 'READ_STACK' });
      const frames = stack.body.frames as Array<{ name: string; kind: string; offset: number; locals: Array<{ value: number }> }>;
      assert.equal(frames[0]!.name, 'descend');
      assert.equal(frames[0]!.kind, 'breakpoint');
      assert.equal(frames[0]!.offset, descendStart);
      assert.equal(frames.at(-1)!.name, 'run');
      assert.equal(frames.length, (depths.length % 6) + 2);
      depths.push(frames[0]!.locals[0]!.value);
      const counter = await debug(server, id, { op: 'READ_MEMORY', addr: COUNTER_ADDR, size: 4 });
      counters.push(u32(counter.body.data));
      assert.equal((await request(server, 'POST', `${I}${id}?action=resume`, { key })).status, 200);
    };
    for (let i = 0; i < 6; i++) await hit();
    // descend(0) then blocks in io; suspended there and resumed, io returns and run's loop calls descend(5) again.
    await suspendInIo(server, id);
    assert.equal((await request(server, 'POST', `${I}${id}?action=resume`, { key })).status, 200);
    await hit();
    await hit();
    assert.deepEqual(depths, [5, 4, 3, 2, 1, 0, 5, 4]);
    // counter (in memory) holds the sum of the depths entered before each stop.
    assert.deepEqual(counters, [0, 5, 9, 12, 14, 15, 15, 20]);
    // Stopped at it once more; removed there, the instance continues past it and blocks in io.
    assert.equal((await request(server, 'POST', `${I}${id}?action=wait`, { key })).headers['gate-status'], '{"state":"SUSPENDED","cause":"BREAKPOINT"}');
    assert.deepEqual((await debug(server, id, { op: 'CONFIG_COMPLEMENT', config: { breakpoints: [descendStart] } })).body.config, {});
    assert.equal((await info(server, id)).debugging, undefined);
    assert.equal((await request(server, 'POST', `${I}${id}?action=resume`, { key })).status, 200);
    await suspendInIo(server, id);
    const frames = (await debug(server, id, { op: 'READ_STACK' })).body.frames as Array<{ name: string; kind: string }>;
    assert.deepEqual(frames.map((f) => f.name), ['wait_for_input', 'descend', 'descend', 'descend', 'descend', 'descend', 'descend', 'run']);
  });

  it('continues a snapshot stopped at a breakpoint on another server, where the breakpoint stops it again', async () => {
    const r = await request(server, 'POST', `${K}${D}?action=pin&action=launch&action=suspend`, { key, headers: wasm, body: debuggee });
    const id = String(r.headers['gate-instance']);
    assert.equal((await debug(server, id, { op: 'CONFIG_SET', config: { breakpoints: [descendStart] } })).status, 200);
    assert.equal((await request(server, 'POST', `${I}${id}?action=resume&function=run`, { key })).status, 200);
    assert.equal((await request(server, 'POST', `${I}${id}?action=wait`, { key })).headers['gate-status'], '{"state":"SUSPENDED","cause":"BREAKPOINT"}');
    const snap = await request(server, 'POST', `${I}${id}?action=snapshot`, { key });
    assert.equal(snap.status, 201, snap.text);
    const location = String(snap.headers.location);
    const bytes = (await request(server, 'GET', location, { key })).body;
    const launched = await request(other, 'POST', `${K}${location.split('/').pop()!}?action=launch`, { key, headers: wasm, body: bytes });
    assert.equal(launched.status, 200, launched.text);
    const id2 = String(launched.headers['gate-instance']);
    assert.equal((await request(other, 'POST', `${I}${id2}?action=wait`, { key })).headers['gate-status'], '{"state":"SUSPENDED","cause":"BREAKPOINT"}');
    const frames = (await debug(other, id2, { op: 'READ_STACK' })).body.frames as Array<{ name: string; locals: Array<{ value: number }> }>;
    assert.equal(frames[0]!.name, 'descend');
    assert.equal(frames[0]!.locals[0]!.value, 4);
  });

  it('stops at a breakpoint set by source line (DWARF)', async () => {
    const rows = readLineTable(mod);
    const offsets = lineOffsets(rows, 'debuggee.c', 29); // `counter += depth;`, descend's first statement
    assert.deepEqual(offsets, [descendStart]);
    const r = await request(server, 'POST', `${K}${D}?action=pin&action=launch&action=suspend`, { key, headers: wasm, body: debuggee });
    const id = String(r.headers['gate-instance']);
    assert.equal((await debug(server, id, { op: 'CONFIG_SET', config: { breakpoints: offsets } })).status, 200);
    assert.equal((await request(server, 'POST', `${I}${id}?action=resume&function=run`, { key })).status, 200);
    assert.equal((await request(server, 'POST', `${I}${id}?action=wait`, { key })).headers['gate-status'], '{"state":"SUSPENDED","cause":"BREAKPOINT"}');
    const frames = (await debug(server, id, { op: 'READ_STACK' })).body.frames as Array<{ name: string; source: { line: number; column: number } }>;
    assert.deepEqual(frames.map((f) => [f.name, f.source.line]), [['descend', 29], ['run', 41]]);
  });

  it('says where a program trapped: status, function, source line, and the whole backtrace', async () => {
    const r = await request(server, 'POST', `${K}${D}?action=pin&action=launch&function=crash`, { key, headers: wasm, body: debuggee });
    assert.equal(r.status, 201, r.text);
    const id = String(r.headers['gate-instance']);
    assert.equal(
      (await request(server, 'POST', `${I}${id}?action=wait`, { key })).headers['gate-status'],
      '{"state":"KILLED","cause":"UNREACHABLE","error":"trapped in explode (test/programs/debuggee.c:47:2)"}',
    );
    const get = await debug(server, id, { op: 'CONFIG_GET' });
    assert.equal(get.status, 200, get.text);
    const trap = get.body.trap as { function: number; name: string; offset: number; source: { file: string; line: number; column: number } };
    assert.deepEqual({ ...trap, offset: undefined }, { function: 6, name: 'explode', offset: undefined, source: { file: 'test/programs/debuggee.c', line: 47, column: 2 } });
    // The offset is the trapping `unreachable` of the original code section.
    assert.equal(mod.bytes[codeBase + trap.offset], 0x00);
    // READ_STACK of the trapped instance: every frame, innermost first (a trap's frames carry no values).
    const frames = (await debug(server, id, { op: 'READ_STACK' })).body.frames as Array<{ name: string; kind: string; source: { line: number } }>;
    assert.deepEqual(
      frames.map((f) => `${f.kind} ${f.name}:${f.source.line}`),
      ['trap explode:47', 'trap fall:53', 'trap fall:55', 'trap fall:55', 'trap fall:55', 'trap fall:55', 'trap fall:55', 'trap crash:62'],
    );
    // counter was set by explode(0) just before the trap.
    const counter = await debug(server, id, { op: 'READ_MEMORY', addr: COUNTER_ADDR, size: 4 });
    assert.equal(u32(counter.body.data), 0);
  });

  it('escapes what a program names its functions in the Gate-Status header', async () => {
    // explode's name in the name section: non-Latin-1 and control characters, which a header cannot carry as they are.
    const name = 'b\u00f8om\u20ac\r\nX-Injected: 1';
    const body = withFunctionName(wat('(module (func $explode unreachable) (func (export "crash") call $explode))'), 0, name);
    const r = await request(server, 'POST', `${K}${createHash('sha256').update(body).digest('hex')}?action=pin&action=launch&function=crash`, { key, headers: wasm, body });
    assert.equal(r.status, 201, r.text);
    const waited = await request(server, 'POST', `${I}${String(r.headers['gate-instance'])}?action=wait`, { key });
    assert.equal(waited.status, 200);
    assert.equal(waited.headers['x-injected'], undefined);
    const status = String(waited.headers['gate-status']);
    assert.match(status, /^[\x20-\x7e]+$/);
    const parsed = JSON.parse(status) as { state: string; cause: string; error: string };
    assert.deepEqual([parsed.state, parsed.cause], ['KILLED', 'UNREACHABLE']);
    assert.ok(parsed.error.startsWith(`trapped in ${name} at 0x`), parsed.error);
  });

  it('keeps breakpoints of a stopped instance across a server restart', async () => {
    const first = await startTestServer();
    let second: TestServer | undefined;
    try {
      const id = await launchSuspended(first);
      assert.equal((await debug(first, id, { op: 'CONFIG_SET', config: { breakpoints: [descendStart] } })).status, 200);
      await first.stop(true);
      second = await startTestServer({ stateDir: first.stateDir });
      assert.equal((await info(second, id)).debugging, true);
      assert.deepEqual((await debug(second, id, { op: 'CONFIG_GET' })).body.config, { breakpoints: [String(descendStart)] });
      assert.equal((await request(second, 'POST', `${I}${id}?action=resume`, { key })).status, 200);
      assert.equal((await request(second, 'POST', `${I}${id}?action=wait`, { key })).headers['gate-status'], '{"state":"SUSPENDED","cause":"BREAKPOINT"}');
    } finally {
      await second?.stop();
    }
  });
});
