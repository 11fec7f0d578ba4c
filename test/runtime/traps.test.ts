import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PROFILES } from '../../src/prepare/profile.js';
import { programBytes, runWithClient } from '../helpers/runtime.js';

const traps = programBytes('traps');
const violations = programBytes('violations');

const TRAP_CAUSES: Record<string, object> = {
  unreachable: { state: 'KILLED', cause: 'UNREACHABLE' },
  oob: { state: 'KILLED', cause: 'MEMORY_ACCESS_OUT_OF_BOUNDS' },
  div_zero: { state: 'KILLED', cause: 'INTEGER_DIVIDE_BY_ZERO' },
  int_overflow: { state: 'KILLED', cause: 'INTEGER_OVERFLOW' },
  trunc_overflow: { state: 'KILLED', cause: 'INTEGER_OVERFLOW' },
  call_index: { state: 'KILLED', cause: 'INDIRECT_CALL_INDEX_OUT_OF_BOUNDS' },
  call_signature: { state: 'KILLED', cause: 'INDIRECT_CALL_SIGNATURE_MISMATCH' },
  stack_exhaust: { state: 'SUSPENDED', cause: 'CALL_STACK_EXHAUSTED' },
  exit0: { state: 'TERMINATED', result: 0 },
  exit1: { state: 'TERMINATED', result: 1 },
  ret1: { state: 'HALTED', result: 0 },
};

// Each sends one bad packet (spec abi.md §8.2); the expected error text.
const VIOLATIONS: Record<string, RegExp> = {
  size_small: /invalid op packet size: 4/,
  size_large: /invalid op packet size: 65544/,
  bad_code: /invalid code in incoming packet: -2/,
  unknown_code: /invalid service code in packet: 5/,
  bad_domain: /invalid domain in packet: 4/,
  short_data: /data packet is too short: 12 bytes/,
  discovery_domain: /service discovery packet has wrong domain/,
  discovery_short: /service discovery packet is too short/,
  discovery_name_zero: /service name length in discovery packet is out of bounds/,
  discovery_truncated: /name data is truncated in service discovery packet/,
  rediscover: /duplicate service/,
  no_credit: /write stream buffer overflow/,
};

for (const profile of PROFILES) {
  describe(`traps (${profile})`, () => {
    for (const [fn, expected] of Object.entries(TRAP_CAUSES)) {
      it(fn, async () => {
        const r = await runWithClient(traps, { profile, entry: fn });
        const { error, ...status } = r.status;
        assert.deepEqual(status, expected);
        // A wasm trap says where: the function (name section) and the offset of the instruction (no DWARF here).
        if (status.state === 'KILLED') assert.match(error ?? '', new RegExp(`^trapped in ${fn} at 0x[0-9a-f]+$`));
        else assert.equal(error, undefined);
      });
    }

    it('memory.grow beyond the limit returns -1', async () => {
      const r = await runWithClient(traps, { profile, entry: 'grow', memoryLimitPages: 4 });
      assert.equal(r.status.state, 'HALTED');
      assert.match(r.debug, /grow=-1/);
    });

    it('endless debug output is taken (10 MiB) and the instance finishes', async () => {
      const r = await runWithClient(traps, { profile, entry: 'debug_flood' });
      assert.equal(r.status.state, 'HALTED');
      assert.ok(r.debug.length >= 10 * 1024 * 1024);
    });
  });

  describe(`packet violations (${profile})`, () => {
    for (const [fn, message] of Object.entries(VIOLATIONS)) {
      it(fn, async () => {
        const r = await runWithClient(violations, { profile, entry: fn });
        assert.equal(r.status.state, 'KILLED');
        assert.equal(r.status.cause, 'ABI_VIOLATION');
        assert.match(r.status.error ?? '', message);
      });
    }

    it('a packet flood is throttled, not buffered without bound', async () => {
      const r = await runWithClient(violations, {
        profile,
        entry: 'flood',
        onLaunch: (inst) => setTimeout(() => inst.kill(), 1500),
      });
      // The program floods forever; it must still be killable and the process must survive.
      assert.ok(r.status.state === 'KILLED' || r.status.state === 'HALTED', JSON.stringify(r.status));
    });
  });
}
