/**
 * A lying executor: its process is taken over by the program and writes
 * arbitrary bytes on its pipe. The trusted side must refuse each bad message
 * with a clear reason before buffering it, give that executor up (its
 * instances end KILLED), and go on serving instances in other executors.
 *
 * The liar is a small node script speaking the framing protocol: it answers
 * `load` as a real executor does, and on `create` sends what the scenario says.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ChildProcessExecutor } from '../../src/runtime/node/child-executor.js';
import { ExecutorPool } from '../../src/runtime/node/pool.js';
import { parseModule } from '../../src/wasm/module.js';
import { program, Responder, run, type LaunchOpts } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'gate-liar-'));

/** The liar's main module; `scenario` is JavaScript run on `create`, with `id`, `frame(header, payload?)`, `raw(bytes)`. */
function liar(name: string, scenario: string): string {
  const file = join(dir, `${name}.mjs`);
  writeFileSync(
    file,
    `
const frame = (h, payload = Buffer.alloc(0)) => {
  const j = Buffer.from(JSON.stringify(h));
  const head = Buffer.alloc(8);
  head.writeUInt32LE(4 + j.length + payload.length, 0);
  head.writeUInt32LE(j.length, 4);
  return Buffer.concat([head, j, payload]);
};
const raw = (b, cb) => process.stdout.write(b, cb);
const send = (h, p) => raw(frame(h, p));
let buf = Buffer.alloc(0);
process.stdin.on('data', (chunk) => {
  buf = Buffer.concat([buf, chunk]);
  while (buf.length >= 8 && buf.length >= 4 + buf.readUInt32LE(0)) {
    const len = buf.readUInt32LE(0);
    const h = JSON.parse(buf.subarray(8, 8 + buf.readUInt32LE(4)).toString());
    buf = buf.subarray(4 + len);
    if (h.t === 'load') send({ t: 'loaded', key: h.key, seq: h.seq });
    if (h.t === 'create') {
      const id = h.spec.id;
      {
      ${scenario}
      }
    }
  }
});
process.stdin.on('end', () => process.exit(0));
send({ t: 'ready' });
`,
  );
  return file;
}

interface Outcome {
  status: { state: string; error?: string };
  /** Why the executor's end was logged, marked (!) when it was for breaking the protocol. */
  exits: string[];
}

/** Runs hello's greet in a lying executor: the instance's status and what the executor's end was logged as. */
async function lie(name: string, scenario: string, opts: LaunchOpts & { keepsServing?: boolean } = {}): Promise<Outcome & { debug: string }> {
  const exits: string[] = [];
  const executor = new ChildProcessExecutor({ main: liar(name, scenario), onExit: (i) => exits.push(`${i.violation ? '(!) ' : ''}${i.reason}`) });
  try {
    const r = await run(executor, program('hello'), { entry: 'greet', ...opts });
    assert.equal(executor.alive, opts.keepsServing ?? false, 'a lying executor is given up');
    return { status: r.status, exits, debug: r.debug };
  } finally {
    executor.terminate();
    await executor.close();
  }
}

function assertRefused(o: Outcome, reason: RegExp): void {
  assert.equal(o.status.state, 'KILLED', JSON.stringify(o));
  assert.match(o.status.error ?? '', reason);
  assert.equal(o.exits.length, 1, JSON.stringify(o.exits));
  assert.match(o.exits[0]!, /^\(!\) /, 'logged as a protocol violation');
  assert.match(o.exits[0]!, reason);
}

describe('a lying executor', () => {
  let pool: ExecutorPool;
  let neighbour: Responder;
  before(async () => {
    pool = await ExecutorPool.create({ sandbox: 'none' });
    neighbour = await Responder.start(pool.executorFor('neighbour'));
  });
  after(async () => {
    await neighbour.stop();
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  });

  // Each case ends with the well-behaved instance in another executor still answering.
  async function neighbourAnswers(): Promise<void> {
    assert.equal(await neighbour.ask(), 'hello, world\n');
  }

  it('announces a 4 GiB frame and then streams: refused at its header, nothing buffered', async () => {
    const before = process.memoryUsage().arrayBuffers;
    const o = await lie(
      'huge-debug',
      `const j = Buffer.from(JSON.stringify({ t: 'debug', id }));
       const head = Buffer.alloc(8);
       head.writeUInt32LE(0xffffffff, 0);
       head.writeUInt32LE(j.length, 4);
       raw(Buffer.concat([head, j]));
       const mib = Buffer.alloc(1 << 20, 0x41);
       const more = () => { if (raw(mib)) setImmediate(more); else process.stdout.once('drain', more); };
       more();`,
    );
    assertRefused(o, /"debug" message with \d+ bytes of payload is over its limit of 65536/);
    assert.ok(process.memoryUsage().arrayBuffers - before < 64 * 1024 * 1024, 'the frame was not buffered');
    await neighbourAnswers();
  });

  it('announces a 4 GiB packet', async () => {
    const o = await lie(
      'huge-packet',
      `const j = Buffer.from(JSON.stringify({ t: 'packet', id }));
       const head = Buffer.alloc(8);
       head.writeUInt32LE(0xffffffff, 0);
       head.writeUInt32LE(j.length, 4);
       raw(Buffer.concat([head, j]));`,
    );
    assertRefused(o, /"packet" message with \d+ bytes of payload is over its limit of 65536/);
    await neighbourAnswers();
  });

  it('sends a 4 GiB header', async () => {
    const o = await lie(
      'huge-header',
      `const head = Buffer.alloc(8);
       head.writeUInt32LE(0xffffffff, 0);
       head.writeUInt32LE(0xfffffff0, 4);
       raw(head);`,
    );
    assertRefused(o, /frame header of \d+ bytes is over the limit of 1048576/);
    await neighbourAnswers();
  });

  it('sends oversized debug, packet and service name fields', async () => {
    assertRefused(await lie('big-debug', `send({ t: 'debug', id }, Buffer.alloc(65537, 0x41));`), /"debug" message with 65537 bytes/);
    assertRefused(await lie('big-packet', `send({ t: 'packet', id }, Buffer.alloc(65537));`), /"packet" message with 65537 bytes/);
    assertRefused(await lie('big-name', `send({ t: 'bind', id, code: 0, name: 'n'.repeat(100000) });`), /invalid service binding/);
    assertRefused(await lie('bad-code', `send({ t: 'bind', id, code: -1, name: 'origin' });`), /invalid service binding/);
    assertRefused(await lie('payload-on-bind', `send({ t: 'bind', id, code: 0, name: 'origin' }, Buffer.alloc(8));`), /"bind" message with 8 bytes of payload is over its limit of 0/);
    await neighbourAnswers();
  });

  it('sends packets past its output window without waiting for acknowledgements', async () => {
    // The trusted side here is the test: it takes the packets and acknowledges none.
    const exits: string[] = [];
    const executor = new ChildProcessExecutor({
      main: liar('packet-flood', `const p = Buffer.alloc(65536); p.writeUInt32LE(65536, 0); for (let i = 0; i < 8; i++) send({ t: 'packet', id }, p);`),
      onExit: (i) => exits.push(i.reason),
    });
    try {
      let packets = 0;
      const status = await new Promise<{ state: string; error?: string }>((stopped) =>
        executor.createInstance(
          {
            id: 'flood',
            moduleKey: 'none',
            profile: 'suspend-anywhere',
            entry: undefined,
            hasStart: false,
            memoryPages: { initial: 0, maximum: 0 },
            timeResolutionNs: 1,
            debug: false,
            services: [],
            computeLimitMs: 1000,
            globalTypes: [],
            init: { data: [], globals: [] },
            retain: false,
          },
          { packet: () => void packets++, bind: () => undefined, debug: () => undefined, stopped },
        ),
      );
      assert.equal(packets, 6, 'the packets within the window were passed on');
      assert.equal(status.state, 'KILLED');
      assert.match(status.error ?? '', /executor sent 458752 bytes of packets not yet acknowledged \(at most 393216\)/);
      assert.equal(exits.length, 1);
    } finally {
      executor.terminate();
      await executor.close();
    }
    await neighbourAnswers();
  });

  it('sends malformed frames', async () => {
    const cases: Array<[string, string, RegExp]> = [
      ['not-json', `const j = Buffer.from('{nope'); const b = Buffer.alloc(8); b.writeUInt32LE(4 + j.length, 0); b.writeUInt32LE(j.length, 4); raw(Buffer.concat([b, j]));`, /frame header is not JSON/],
      ['no-type', `send({ id });`, /frame header has no type/],
      ['short-length', `const b = Buffer.alloc(8); b.writeUInt32LE(2, 0); raw(b);`, /invalid frame length 2/],
      ['header-past-frame', `const b = Buffer.alloc(8); b.writeUInt32LE(10, 0); b.writeUInt32LE(100, 4); raw(b);`, /invalid frame header length 100/],
      ['unknown-type', `send({ t: 'x'.repeat(1000), id });`, /unknown message type "x{40}…"/],
      ['unasked-snapshot', `send({ t: 'snapshot', id, seq: 999 }, Buffer.alloc(65536));`, /a snapshot that was not asked for/],
      ['bad-status', `send({ t: 'stopped', id, status: { state: 'RUNNING' } });`, /invalid status/],
    ];
    for (const [name, scenario, reason] of cases) assertRefused(await lie(name, scenario), reason);
    await neighbourAnswers();
  });

  it('ignores the debug output limits: the trusted side cuts at twice the burst and a message, and counts the rest', async () => {
    const o = await lie(
      'debug-flood',
      `for (let i = 0; i < 100; i++) send({ t: 'debug', id }, Buffer.alloc(65536, 0x41));
       send({ t: 'stopped', id, status: { state: 'HALTED' } });`,
      { debug: true, debugLimits: { rateBytesPerSecond: 0, burstBytes: 100 * 1024 }, keepsServing: true },
    );
    assert.deepEqual(o.status, { state: 'HALTED' });
    const passed = 200 * 1024 + 65536;
    assert.equal(o.debug, `${'A'.repeat(passed)}\n[gate: ${100 * 65536 - passed} bytes of debug output dropped: over the limit of 0 bytes/s after ${100 * 1024} bytes, or not read in time]\n`);
    assert.deepEqual(o.exits, ['executor closed'], 'closed, not given up');
  });

  it('reports where a program trapped with frames that do not fit: they are left out, nothing else changes', async () => {
    const firstDefined = parseModule(program('hello')).importedFunctionCount;
    const killed = `status: { state: 'KILLED', cause: 'UNREACHABLE' }`;
    for (const [name, frames] of [
      ['frames-junk', `'junk'`],
      ['frames-odd', `[${firstDefined}]`],
      ['frames-out-of-range', `[999999, 5, -7, 1, ${firstDefined}, -2]`],
      ['frames-too-many', `new Array(10000).fill(${firstDefined})`],
      ['frames-floats', `[${firstDefined} + 0.5, 3]`],
    ]) {
      const o = await lie(name!, `send({ t: 'stopped', id, ${killed}, trapFrames: ${frames} });`, { keepsServing: true });
      assert.deepEqual(o.status, { state: 'KILLED', cause: 'UNREACHABLE' }, name);
      assert.deepEqual(o.exits, ['executor closed'], 'closed, not given up');
    }
    // A real function at an offset that is no instruction of its: named, without a place.
    const o = await lie('frames-bad-offset', `send({ t: 'stopped', id, ${killed}, trapFrames: [${firstDefined}, 123456789] });`, { keepsServing: true });
    assert.match(o.status.error ?? '', /^trapped in \S+$/);
    await neighbourAnswers();
  });

  it('sends an invalid count of dropped debug output', async () => {
    assertRefused(await lie('dropped-negative', `send({ t: 'debug', id, dropped: -1 });`, { debug: true }), /invalid count of dropped debug output/);
    assertRefused(await lie('dropped-huge', `send({ t: 'debug', id, dropped: 1e300 });`, { debug: true }), /invalid count of dropped debug output/);
    await neighbourAnswers();
  });

  it('sends a truncated frame and exits: its instance ends KILLED', async () => {
    const o = await lie('truncated', `const f = frame({ t: 'debug', id }, Buffer.alloc(1000, 0x41)); raw(f.subarray(0, 500), () => process.exit(0));`);
    assert.equal(o.status.state, 'KILLED');
    assert.match(o.status.error ?? '', /executor process exited \(code 0\)/);
    assert.deepEqual(o.exits, ['executor process exited (code 0)']);
    await neighbourAnswers();
  });
});
