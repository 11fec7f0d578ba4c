/**
 * The messages a call costs between the trusted side and a child-process
 * executor: the real executor, behind a recording main module that logs
 * every frame it receives (with the write it arrived in) and every frame it
 * sends, in the executor's own order of events.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { MemoryCache } from '../../src/prepare/cache.js';
import { ChildProcessExecutor } from '../../src/runtime/node/child-executor.js';
import type { ExecutorRequest } from '../../src/runtime/remote-executor.js';
import { Program } from '../../src/runtime/program.js';
import { Runtime } from '../../src/runtime/runtime.js';
import { instanceServices } from '../../src/service/provider.js';
import { DEFAULT_LOCAL_LIMITS } from '../../src/wasm/validate.js';
import { programBytes } from '../helpers/runtime.js';

const REAL_MAIN = fileURLToPath(new URL('../../src/runtime/node/executor-main.js', import.meta.url));

/** One logged event: a frame in (`chunk`: the number of the read it came in) or out (`chunk`: the corked batch it left in). */
interface Event {
  dir: 'in' | 'out';
  chunk: number;
  t: string;
  id?: string;
}

/** A main module that records frames to `log` (one JSON line each) and then runs the real executor. */
function recordingMain(dir: string, log: string): string {
  const file = join(dir, 'recording-main.mjs');
  writeFileSync(
    file,
    `
import { appendFileSync } from 'node:fs';
const log = ${JSON.stringify(log)};
// In: a chunk is one read. Out: frames are written corked, a batch leaves at each uncork.
let batches = 1;
function parser(dir) {
  let buf = Buffer.alloc(0);
  let chunks = 0;
  return (chunk) => {
    if (dir === 'in') chunks++;
    else chunks = batches;
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 8 && buf.length >= 4 + buf.readUInt32LE(0)) {
      const h = JSON.parse(buf.subarray(8, 8 + buf.readUInt32LE(4)).toString());
      buf = buf.subarray(4 + buf.readUInt32LE(0));
      const id = h.id ?? h.spec?.id;
      appendFileSync(log, JSON.stringify({ dir, chunk: chunks, t: h.t, id }) + '\\n');
    }
  };
}
process.stdin.on('data', parser('in'));
const sent = parser('out');
const write = process.stdout.write.bind(process.stdout);
process.stdout.write = (chunk, ...rest) => {
  sent(Buffer.from(chunk));
  return write(chunk, ...rest);
};
const uncork = process.stdout.uncork.bind(process.stdout);
process.stdout.uncork = () => {
  batches++;
  uncork();
};
await import(${JSON.stringify(REAL_MAIN)});
`,
  );
  return file;
}

function events(log: string): Event[] {
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Event);
}

describe('executor messages of a call', () => {
  let dir: string;
  let log: string;
  let executor: ChildProcessExecutor;
  let runtime: Runtime;
  let program: Program;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gate-messages-'));
    log = join(dir, 'frames.log');
    writeFileSync(log, '');
    executor = new ChildProcessExecutor({ main: recordingMain(dir, log) });
    runtime = new Runtime({ executor, memoryLimitPages: 2048, timeResolutionNs: 1000, cache: new MemoryCache() });
    program = await Program.load(programBytes('hello'), DEFAULT_LOCAL_LIMITS);
  });
  after(async () => {
    await executor.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /**
   * hello's greet as gate-server runs it (retained: it may be made persistent while it runs), with one origin client;
   * `clientConnects`: as for a call, whose client connects at once (the executor answers the first accept).
   */
  async function call(clientConnects = false): Promise<{ id: string; output: string; release(): void }> {
    const inst = await runtime.launch(program, { entry: 'greet', retain: true, services: instanceServices({ principalId: 'local', clientConnects }) });
    const out: Buffer[] = [];
    await inst.services.origin.connect(null, { write: (c) => void out.push(Buffer.from(c)), end: () => {} });
    const status = await inst.wait();
    assert.deepEqual(status, { state: 'HALTED', result: 0 });
    return { id: inst.id, output: Buffer.concat(out).toString(), release: () => inst.release() };
  }

  it('sends nothing about an instance once it has stopped, and its release later, without a write of its own when a batch follows', async () => {
    const first = await call();
    assert.equal(first.output, 'hello, world\n');
    first.release();
    const second = await call();
    assert.equal(second.output, 'hello, world\n');
    second.release();
    // The last release has no batch to go with: it goes on its own, soon (bounded wait for liveness).
    for (let i = 0; i < 200 && !events(log).some((e) => e.dir === 'in' && e.t === 'release' && e.id === second.id); i++) await new Promise((r) => setTimeout(r, 25));

    const all = events(log);
    for (const { id } of [first, second]) {
      const stoppedAt = all.findIndex((e) => e.dir === 'out' && e.t === 'stopped' && e.id === id);
      assert.ok(stoppedAt >= 0, `the executor reported ${id} stopped`);
      const after = all.slice(stoppedAt + 1).filter((e) => e.dir === 'in' && e.id === id);
      // Deliveries and acks the trusted side made in reply to its last packets (in the same turn as its end) are left out.
      assert.deepEqual(after.map((e) => e.t), ['release'], `what reached the executor about ${id} after it stopped`);
    }
    // The first call's release was not a write of its own: it came ahead of a later batch, in the same read.
    const release = all.find((e) => e.dir === 'in' && e.t === 'release' && e.id === first.id)!;
    const sameRead = all.filter((e) => e.dir === 'in' && e.chunk === release.chunk);
    assert.ok(sameRead.length > 1 && sameRead[0] === release, `the release went with the next batch: ${JSON.stringify(sameRead)}`);
  });

  it('costs a small constant number of writes each way for a call', async () => {
    const before = events(log).length;
    const c = await call();
    c.release();
    const mine = events(log).slice(before).filter((e) => e.id === c.id && e.t !== 'release');
    const writesIn = new Set(mine.filter((e) => e.dir === 'in').map((e) => e.chunk)).size;
    const writesOut = new Set(mine.filter((e) => e.dir === 'out').map((e) => e.chunk)).size;
    // hello's greet needs two exchanges: discovery, then the origin stream (accept, data, end).
    // Reads may join writes, never split a batch into more reads than frames.
    assert.ok(writesIn <= 2, `the executor got the call's frames in ${writesIn} reads: ${JSON.stringify(mine)}`);
    assert.ok(writesOut <= 2, `the executor sent the call's frames in ${writesOut} writes: ${JSON.stringify(mine)}`);
  });

  it('costs one write each way for a call whose client connects at once: the executor answers its first accept', async () => {
    const before = events(log).length;
    const c = await call(true);
    assert.equal(c.output, 'hello, world\n');
    c.release();
    const mine = events(log).slice(before).filter((e) => e.id === c.id && e.t !== 'release');
    const writesIn = new Set(mine.filter((e) => e.dir === 'in').map((e) => e.chunk)).size;
    const writesOut = new Set(mine.filter((e) => e.dir === 'out').map((e) => e.chunk)).size;
    assert.deepEqual(mine.filter((e) => e.dir === 'in').map((e) => e.t), ['create'], `what reached the executor: ${JSON.stringify(mine)}`);
    assert.equal(writesIn, 1);
    assert.equal(writesOut, 1, `the executor sent the call's frames in ${writesOut} writes: ${JSON.stringify(mine)}`);
  });
});

describe('the batches the trusted side sends for calls in a row', () => {
  /** Records the types of the requests of each flush (a flush sends its requests in one run, corked into one write). */
  class RecordingExecutor extends ChildProcessExecutor {
    readonly batches: string[][] = [];
    private inRun = false;
    protected override send(m: ExecutorRequest): void {
      if (!this.inRun) {
        this.inRun = true;
        this.batches.push([]);
        queueMicrotask(() => (this.inRun = false));
      }
      this.batches.at(-1)!.push(m.t);
      super.send(m);
    }
  }

  it('sends a call’s release with the next call’s create, not on its own after the call’s last acknowledgements', async () => {
    const executor = new RecordingExecutor();
    try {
      const runtime = new Runtime({ executor, memoryLimitPages: 2048, timeResolutionNs: 1000, cache: new MemoryCache() });
      const program = await Program.load(programBytes('hello'), DEFAULT_LOCAL_LIMITS);
      const call = async (): Promise<void> => {
        const inst = await runtime.launch(program, { entry: 'greet', retain: true, services: instanceServices({ principalId: 'local', clientConnects: true }) });
        const out: Buffer[] = [];
        await inst.services.origin.connect(null, { write: (c) => void out.push(Buffer.from(c)), end: () => {} });
        assert.deepEqual(await inst.wait(), { state: 'HALTED', result: 0 });
        assert.equal(Buffer.concat(out).toString(), 'hello, world\n');
        // As gate-server does, in the turn the call's end arrived in (with its last packets, whose acknowledgements are left out).
        inst.release();
      };
      await call();
      // The next call comes in a later turn (a client's next request).
      await new Promise((r) => setImmediate(r));
      await call();
      const from = executor.batches.findIndex((b) => b.includes('create'));
      assert.deepEqual(executor.batches.slice(from), [['create'], ['release', 'create']]);
      // The last release has no batch to go with: it goes on its own, after its delay (bounded wait for liveness).
      for (let i = 0; i < 200 && executor.batches.length === from + 2; i++) await new Promise((r) => setTimeout(r, 25));
      assert.deepEqual(executor.batches.slice(from + 2), [['release']]);
    } finally {
      await executor.close();
    }
  });
});

describe('a request that cannot be sent', () => {
  /** A host whose transport refuses to encode a create (as a browser's postMessage may refuse a value). */
  class RefusingExecutor extends ChildProcessExecutor {
    protected override send(m: ExecutorRequest): void {
      if (m.t === 'create') throw new TypeError('cannot encode this request');
      super.send(m);
    }
  }

  it('ends the instance KILLED (INTERNAL) with the reason, and gives the executor up, instead of throwing at the end of the turn', async () => {
    const executor = new RefusingExecutor();
    try {
      const runtime = new Runtime({ executor, memoryLimitPages: 2048, timeResolutionNs: 1000, cache: new MemoryCache() });
      const program = await Program.load(programBytes('hello'), DEFAULT_LOCAL_LIMITS);
      const inst = await runtime.launch(program, { entry: 'greet', services: instanceServices({ principalId: 'local' }) });
      const status = await inst.wait();
      assert.equal(status.state, 'KILLED');
      assert.match(status.error ?? '', /a request could not be sent to the executor: cannot encode this request/);
      assert.equal(executor.alive, false);
    } finally {
      await executor.close();
    }
  });
});
