/**
 * Bad input in the browser runtime: a worker taken over by its program (it
 * sends whatever it likes) is given up with a clear reason and its instance
 * ends KILLED, the page going on with other workers; a corrupt snapshot is
 * refused by the same validation as an upload to gate-server.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openTestPage, type TestPage } from '../helpers/browser.js';
import { programBytes } from '../helpers/runtime.js';
import type { RunReport } from './harness.js';

let tp!: TestPage;

type Liar = { status: RunReport['status']; exit: string | undefined };
const onLiar = (scenario: string): Promise<Liar> => tp.page.evaluate((s) => (globalThis as any).gateHarness.runOnLiar(s), scenario);

describe('the browser runtime and untrusted input', () => {
  before(async () => {
    tp = await openTestPage();
  });
  after(async () => {
    await tp?.close();
  });

  const liars: Array<[string, string, RegExp]> = [
    ['a packet larger than the ABI allows', `send({ t: 'packet', id, packet: new Uint8Array(65537) });`, /invalid packet/],
    // The page kills the instance for the malformed packet; the liar ignores that.
    ['a packet whose header lies about its size, then ignoring the kill', `send({ t: 'packet', id, packet: new Uint8Array(16) });`, /did not stop within 5000 ms of being killed/],
    ['an impossible service binding', `send({ t: 'bind', id, code: 70000, name: 'x' });`, /invalid service binding/],
    ['debug output that is not bytes', `send({ t: 'debug', id, data: 'text', dropped: 0 });`, /invalid debug output/],
    ['a status that is not one', `send({ t: 'stopped', id, status: { state: 'RUNNING' } });`, /invalid status/],
    ['an unknown message type', `send({ t: 'surprise', id });`, /unknown message type/],
    ['a snapshot nobody asked for', `send({ t: 'snapshot', seq: 4242, snapshot: {} });`, /not asked for/],
    ['an uncaught error', `throw new Error('boom');`, /executor worker failed/],
  ];
  for (const [what, scenario, reason] of liars) {
    it(`a worker sending ${what} is given up; its instance ends KILLED (INTERNAL)`, async () => {
      const r = await onLiar(scenario);
      assert.equal(r.status.state, 'KILLED');
      assert.equal(r.status.cause, 'INTERNAL');
      assert.match(r.exit ?? '', reason);
    });
  }

  it('the page goes on running programs in its real worker', async () => {
    const r = await tp.page.evaluate(() => (globalThis as any).gateHarness.run({ program: 'hello', entry: 'greet' }));
    assert.equal(r.output, 'hello, world\n');
  });

  it('a corrupt snapshot or module is refused with the same errors as on the server', async () => {
    const load = (bytes: Uint8Array) => tp.page.evaluate((b) => (globalThis as any).gateHarness.load(b), Array.from(bytes));
    assert.equal(await load(programBytes('hello')), 'ok');
    const truncated = programBytes('hello').subarray(0, 100);
    const r = await load(truncated);
    assert.notEqual(r, 'ok');
    assert.equal((r as { name: string }).name, 'ModuleError');
    const junk = await load(new TextEncoder().encode('not wasm at all'));
    assert.notEqual(junk, 'ok');
    assert.equal((junk as { name: string }).name, 'ModuleError');
  });
});
