import { test } from 'node:test';
import assert from 'node:assert/strict';

import { createHostImports } from '../../src/abi/host.js';
import { BLOCKING_IMPORTS, GATE_SIGNATURES, WASI_SIGNATURES } from '../../src/abi/imports.js';
import { granularityFor, maskNs } from '../../src/abi/time.js';
import { Trap, TrapId } from '../../src/abi/trap.js';
import { Errno } from '../../src/abi/wasi.js';
import { ExitSignal, FakeContext } from './fake-context.js';

const { Success, Again, BadF, Fault, Inval, NotSock, Perm, NotCapable } = Errno;
const READ = 0x2n;
const WRITE = 0x40n;
const RW = READ | WRITE;

type Fn = (...args: (number | bigint)[]) => unknown;

function setup(ctx = new FakeContext()): { ctx: FakeContext; wasi: (name: string, ...args: (number | bigint)[]) => number; gate: Record<string, Fn> } {
  const host = createHostImports(ctx);
  const wasi = (name: string, ...args: (number | bigint)[]): number => {
    const f = host.wasi[name] as Fn | undefined;
    assert.ok(f, name);
    return f(...args) as number;
  };
  return { ctx, wasi, gate: host.gate as Record<string, Fn> };
}

function isOOB(e: unknown): boolean {
  return e instanceof Trap && e.trap === TrapId.MemoryAccessOutOfBounds;
}

/** Writes iovecs at `at`: each entry {ptr, len}. */
function iovecs(ctx: FakeContext, at: number, entries: [number, number][]): void {
  const v = ctx.view;
  entries.forEach(([ptr, len], i) => {
    v.setUint32(at + 8 * i, ptr, true);
    v.setUint32(at + 8 * i + 4, len, true);
  });
}

function text(s: string): number[] {
  return [...new TextEncoder().encode(s)];
}

test('every ABI function has a host implementation, and nothing else', () => {
  const { gate, wasi } = createHostImports(new FakeContext());
  assert.deepEqual(Object.keys(gate).sort(), Object.keys(GATE_SIGNATURES).sort());
  assert.deepEqual(Object.keys(wasi).sort(), Object.keys(WASI_SIGNATURES).sort());
});

test('fd and args', () => {
  const { ctx, wasi, gate } = setup();
  assert.equal(gate.fd!(), 4);
  ctx.bytes.fill(0xaa, 0, 64);
  assert.equal(wasi('args_get', 8, 16), Success);
  assert.ok(ctx.bytes.subarray(0, 64).every((b) => b === 0xaa));
  assert.equal(wasi('args_sizes_get', 8, 16), Success);
  assert.equal(ctx.view.getUint32(8, true), 0);
  assert.equal(ctx.view.getUint32(16, true), 0);
  assert.equal(wasi('args_sizes_get', 0, 16), Fault);
  assert.equal(wasi('args_sizes_get', 8, 0), Fault);
  assert.throws(() => wasi('args_sizes_get', 65534, 16), isOOB);
});

test('environment', () => {
  const { ctx, wasi } = setup();
  assert.equal(wasi('environ_sizes_get', 8, 12), Success);
  assert.equal(ctx.view.getUint32(8, true), 3);
  assert.equal(ctx.view.getUint32(12, true), 72);
  assert.equal(wasi('environ_sizes_get', 0, 12), Fault);
  assert.equal(wasi('environ_sizes_get', 8, 0), Fault);

  ctx.bytes.fill(0xaa, 1000, 1100);
  assert.equal(wasi('environ_get', 100, 1000), Success);
  const buf = ctx.bytes.subarray(1000, 1072);
  const expected = new Uint8Array(72);
  expected.set(text('GATE_ABI_VERSION=0'), 0);
  expected.set(text('GATE_FD=4'), 24);
  expected.set(text('GATE_MAX_SEND_SIZE=65536'), 40);
  assert.deepEqual(buf, expected);
  assert.equal(ctx.bytes[1072], 0xaa);
  assert.deepEqual([0, 1, 2].map((i) => ctx.view.getUint32(100 + 4 * i, true)), [1000, 1024, 1040]);
  assert.equal(wasi('environ_get', 0, 1000), Fault);
  assert.equal(wasi('environ_get', 100, 0), Fault);
  assert.throws(() => wasi('environ_get', 100, 65536 - 71), isOOB);
});

test('clocks', () => {
  const { ctx, wasi } = setup();
  for (let id = 0; id < 4; id++) {
    assert.equal(wasi('clock_res_get', id, 8), Success);
    assert.equal(ctx.view.getBigUint64(8, true), 1024n);
  }
  assert.equal(wasi('clock_res_get', 4, 8), Inval);
  assert.equal(wasi('clock_res_get', 0, 0), Fault);
  ctx.granularityNs = granularityFor(1_000_000_000n);
  assert.equal(ctx.granularityNs, 1n << 30n);
  assert.equal(wasi('clock_res_get', 1, 8), Success);
  assert.equal(ctx.view.getBigUint64(8, true), 1_000_000_000n);
  ctx.granularityNs = 1024n;

  assert.equal(wasi('clock_time_get', 0, 1n, 16), Success);
  const rt = ctx.view.getBigUint64(16, true);
  assert.equal(rt, 1_700_000_000_000_000_000n + (123_456_789n & ~1023n));
  assert.ok(rt >= 1_500_000_000_000_000_000n);
  assert.equal(wasi('clock_time_get', 1, 0n, 16), Success);
  assert.equal(ctx.view.getBigUint64(16, true), 1_000_000_000n + (123_456_789n & ~1023n));
  assert.equal(wasi('clock_time_get', 4, 1n, 16), Inval);
  assert.equal(wasi('clock_time_get', -1, 1n, 16), Inval);
  assert.equal(wasi('clock_time_get', 4, 1n, 0), Fault);
  assert.ok(!ctx.blocked);
  wasi('clock_time_get', 2, 1n, 16);
  wasi('clock_time_get', 3, 1n, 16);
  assert.equal(ctx.deficiencies, 2);
  assert.throws(() => wasi('clock_time_get', 0, 1n, 65532), isOOB);
});

test('time granularity table', () => {
  assert.equal(granularityFor(1n), 2n);
  assert.equal(granularityFor(1000n), 1024n);
  assert.equal(granularityFor(1_000_000n), 1048576n);
  assert.equal(granularityFor(10_000_000n), 16777216n);
  assert.equal(granularityFor(1_000_000_000n), 1073741824n);
  assert.equal(granularityFor(0n), 1073741824n);
  assert.equal(granularityFor(2_000_000_000n), 1073741824n);
  assert.equal(maskNs(5_999_999_999n, 1n << 30n), 5_000_000_000n);
});

test('fd_fdstat_get', () => {
  const { ctx, wasi } = setup();
  const cases: [number, number, bigint][] = [
    [0, 0, 0n],
    [1, 0, WRITE],
    [2, 0, WRITE],
    [4, 4, RW],
  ];
  for (const [fd, flags, rights] of cases) {
    ctx.bytes.fill(0xaa, 64, 88);
    assert.equal(wasi('fd_fdstat_get', fd, 64), Success);
    const v = ctx.view;
    assert.equal(v.getUint8(64), 0);
    assert.equal(v.getUint16(66, true), flags);
    assert.equal(v.getBigUint64(72, true), rights);
    assert.equal(v.getBigUint64(80, true), 0n);
    // Padding is not written.
    assert.equal(v.getUint8(65), 0xaa);
    assert.equal(v.getUint32(68, true), 0xaaaaaaaa);
  }
  assert.equal(wasi('fd_fdstat_get', 3, 64), BadF);
  assert.equal(wasi('fd_fdstat_get', 5, 64), BadF);
  assert.equal(wasi('fd_fdstat_get', 4, 0), Fault);
  assert.equal(wasi('fd_fdstat_get', 3, 0), Fault);
});

test('fd_fdstat_set_rights', () => {
  const { ctx, wasi } = setup();
  const ALLOCATE = 0x100n;
  const DATASYNC = 0x1n;
  const SEEK = 0x4n;
  const TELL = 0x20n;
  const expect = (fd: number, base: bigint, inh: bigint, result: number | 'trap'): void => {
    const before = ctx.deficiencies;
    const r = wasi('fd_fdstat_set_rights', fd, base, inh);
    if (result === 'trap') assert.equal(ctx.deficiencies, before + 1, `fd ${fd} ${base} ${inh}`);
    else {
      assert.equal(r, result, `fd ${fd} ${base} ${inh}`);
      assert.equal(ctx.deficiencies, before);
    }
  };
  expect(0, 0n, 0n, Success);
  expect(0, 0n, READ, NotCapable);
  expect(0, READ, 0n, NotCapable);
  expect(0, ALLOCATE, 0n, NotCapable);
  for (const fd of [1, 2]) {
    expect(fd, 0n, WRITE, NotCapable);
    expect(fd, WRITE, 0n, Success);
    expect(fd, READ, 0n, NotCapable);
    expect(fd, RW, 0n, NotCapable);
    expect(fd, DATASYNC, 0n, NotCapable);
    expect(fd, SEEK, 0n, NotCapable);
    expect(fd, 0n, 0n, 'trap');
  }
  for (const fd of [3, 5]) {
    for (const [b, i] of [[0n, 0n], [WRITE, 0n], [RW, 0n], [0n, RW]] as const) expect(fd, b, i, BadF);
  }
  expect(4, 0n, RW, NotCapable);
  expect(4, RW, 0n, Success);
  expect(4, RW | TELL, 0n, NotCapable);
  expect(4, TELL, 0n, NotCapable);
  expect(4, -1n, 0n, NotCapable);
  expect(4, WRITE, 0n, 'trap');
  expect(4, READ, 0n, 'trap');
  expect(4, 0n, 0n, 'trap');
});

test('fd_close, fd_renumber, fd_prestat_dir_name', () => {
  const { ctx, wasi } = setup();
  for (const fd of [0, 1, 2, 4]) wasi('fd_close', fd);
  assert.equal(ctx.deficiencies, 4);
  assert.equal(wasi('fd_close', 3), BadF);
  assert.equal(wasi('fd_close', 5), BadF);

  for (const fd of [0, 1, 2, 4]) assert.equal(wasi('fd_renumber', fd, fd), Success);
  assert.equal(wasi('fd_renumber', 3, 3), BadF);
  assert.equal(wasi('fd_renumber', 5, 5), BadF);
  for (const fd of [0, 1, 2, 4]) {
    assert.equal(wasi('fd_renumber', fd, 10), BadF);
    assert.equal(wasi('fd_renumber', 10, fd), BadF);
  }
  assert.equal(ctx.deficiencies, 4);
  for (const [a, b] of [[0, 1], [1, 4], [2, 0], [4, 1]]) wasi('fd_renumber', a!, b!);
  assert.equal(ctx.deficiencies, 8);

  assert.equal(wasi('fd_prestat_dir_name', 3, 0, 10), Fault);
  assert.equal(wasi('fd_prestat_dir_name', 3, 0, 0), BadF);
  assert.equal(wasi('fd_prestat_dir_name', 4, 16, 10), Inval);
  assert.equal(wasi('fd_prestat_dir_name', 0, 16, 10), Inval);
  assert.equal(wasi('fd_prestat_dir_name', 9, 16, 10), BadF);
});

test('stubs and sockets', () => {
  const { ctx, wasi } = setup();
  const oneFd = [
    ['fd_advise', [0n, 0n, 0]],
    ['fd_allocate', [0n, 0n]],
    ['fd_datasync', []],
    ['fd_fdstat_set_flags', [0]],
    ['fd_filestat_get', [0]],
    ['fd_filestat_set_size', [0n]],
    ['fd_filestat_set_times', [0n, 0n, 0]],
    ['fd_pread', [0, 0, 0n, 0]],
    ['fd_prestat_get', [0]],
    ['fd_pwrite', [0, 0, 0n, 0]],
    ['fd_readdir', [0, 0, 0n, 0]],
    ['fd_seek', [0n, 0, 0]],
    ['fd_sync', []],
    ['fd_tell', [0]],
    ['path_create_directory', [0, 0]],
    ['path_filestat_get', [0, 0, 0, 0]],
    ['path_filestat_set_times', [0, 0, 0, 0n, 0n, 0]],
    ['path_open', [0, 0, 0, 0, 0n, 0n, 0, 0]],
    ['path_readlink', [0, 0, 0, 0, 0]],
    ['path_remove_directory', [0, 0]],
    ['path_unlink_file', [0, 0]],
    ['sock_shutdown', [0]],
  ] as const;
  for (let fd = 0; fd < 10; fd++) {
    const expected = fd <= 2 || fd === 4 ? Perm : BadF;
    for (const [name, rest] of oneFd) assert.equal(wasi(name, fd, ...rest), expected, `${name} ${fd}`);
    assert.equal(wasi('path_symlink', 0, 0, fd, 0, 0), expected);
    assert.equal(wasi('sock_recv', fd, 0, 0, 0, 0, 0), fd === 4 ? NotSock : fd <= 2 ? Perm : BadF);
    assert.equal(wasi('sock_send', fd, 0, 0, 0, 0), fd === 4 || fd === 1 || fd === 2 ? NotSock : fd === 0 ? Perm : BadF);
    for (let fd2 = 0; fd2 < 10; fd2++) {
      const exists = (x: number): boolean => x <= 2 || x === 4;
      const two = !exists(fd) ? BadF : exists(fd2) ? Perm : BadF;
      assert.equal(wasi('path_link', fd, 0, 0, 0, fd2, 0, 0), two);
      assert.equal(wasi('path_rename', fd, 0, 0, fd2, 0, 0), two);
    }
  }
  assert.ok(!ctx.blocked);
});

test('fd_write to the debug log', () => {
  const { ctx, wasi } = setup();
  ctx.bytes.set(text('PAS'), 200);
  ctx.bytes.set(text('S\n'), 300);
  iovecs(ctx, 100, [[200, 3], [999999, 0], [300, 2]]);
  assert.equal(wasi('fd_write', 1, 100, 3, 50), Success);
  assert.equal(ctx.view.getUint32(50, true), 5);
  assert.equal(new TextDecoder().decode(new Uint8Array(ctx.log)), 'PASS\n');
  iovecs(ctx, 100, [[200, 3]]);
  assert.equal(wasi('fd_write', 2, 100, 1, 50), Success);
  assert.equal(ctx.log.length, 8);
  assert.equal(wasi('fd_write', 0, 100, 1, 50), Perm);
  assert.equal(wasi('fd_write', 3, 100, 1, 50), BadF);
  assert.equal(wasi('fd_write', 5, 100, 1, 50), BadF);
  assert.equal(wasi('fd_write', 3, 0, 1, 50), Fault);
  assert.equal(wasi('fd_write', 1, 100, 1, 0), Fault);
  assert.equal(wasi('fd_write', 1, 0, 0, 50), Success);
  assert.equal(wasi('fd_write', 1, 0, -1, 50), Success); // negative count: nothing
  assert.equal(ctx.view.getUint32(50, true), 0);
  assert.ok(!ctx.blocked);

  // Out-of-bounds iovec array, buffer, result pointer.
  assert.throws(() => wasi('fd_write', 1, 65532, 1, 50), isOOB);
  iovecs(ctx, 100, [[65530, 7]]);
  assert.throws(() => wasi('fd_write', 1, 100, 1, 50), isOOB);
  iovecs(ctx, 100, [[0xffffffff, 1]]);
  assert.throws(() => wasi('fd_write', 1, 100, 1, 50), isOOB);
  iovecs(ctx, 100, [[200, 3]]);
  assert.throws(() => wasi('fd_write', 1, 100, 1, 65533), isOOB);
  assert.throws(() => wasi('fd_write', 1, 100, 1, -1), isOOB);
});

test('memory growth is picked up', () => {
  const { ctx, wasi } = setup();
  iovecs(ctx, 100, [[70000, 2]]);
  assert.throws(() => wasi('fd_write', 1, 100, 1, 50), isOOB);
  ctx.wasmMemory.grow(1);
  ctx.bytes.set(text('ok'), 70000);
  assert.equal(wasi('fd_write', 1, 100, 1, 50), Success);
  assert.deepEqual(ctx.log, text('ok'));
});

test('fd_write and fd_read on the packet fd', () => {
  const { ctx, wasi } = setup();
  ctx.bytes.set([1, 2, 3, 4, 5, 6, 7, 8], 200);
  iovecs(ctx, 100, [[200, 4], [204, 0], [204, 4]]);
  assert.equal(wasi('fd_write', 4, 100, 3, 50), Success);
  assert.equal(ctx.view.getUint32(50, true), 8);
  assert.deepEqual(ctx.output, [1, 2, 3, 4, 5, 6, 7, 8]);

  // Short write stops at the first short iovec.
  ctx.space = 6;
  ctx.output = [];
  assert.equal(wasi('fd_write', 4, 100, 3, 50), Success);
  assert.equal(ctx.view.getUint32(50, true), 6);
  assert.deepEqual(ctx.output, [1, 2, 3, 4, 5, 6]);
  assert.ok(!ctx.blocked);

  // Nothing writable: a yield point, then EAGAIN.
  assert.equal(wasi('fd_write', 4, 100, 3, 50), Again);
  assert.equal(ctx.yields, 1);
  // If the yield unwinds, the function returns at once.
  ctx.unwind = 1;
  ctx.view.setUint32(50, 12345, true);
  wasi('fd_write', 4, 100, 3, 50);
  assert.equal(ctx.yields, 2);
  assert.equal(ctx.view.getUint32(50, true), 12345);

  // Reading.
  ctx.input = [9, 8, 7, 6, 5];
  iovecs(ctx, 100, [[300, 2], [400, 4], [500, 4]]);
  assert.equal(wasi('fd_read', 4, 100, 3, 50), Success);
  assert.equal(ctx.view.getUint32(50, true), 5);
  assert.deepEqual([...ctx.bytes.subarray(300, 302)], [9, 8]);
  assert.deepEqual([...ctx.bytes.subarray(400, 403)], [7, 6, 5]);
  assert.equal(ctx.yields, 2);
  assert.equal(wasi('fd_read', 4, 100, 3, 50), Again);
  assert.equal(ctx.yields, 3);
  assert.equal(wasi('fd_read', 4, 100, 0, 50), Success); // no iovecs: nothing to wait for
  assert.equal(ctx.view.getUint32(50, true), 0);
  for (const fd of [0, 1, 2]) assert.equal(wasi('fd_read', fd, 100, 1, 50), Perm);
  for (const fd of [3, 5, 9]) assert.equal(wasi('fd_read', fd, 100, 1, 50), BadF);
  assert.equal(wasi('fd_read', 3, 0, 1, 50), Fault);
  assert.equal(wasi('fd_read', 4, 100, 1, 0), Fault);
  ctx.input = [1];
  iovecs(ctx, 100, [[65536, 1]]);
  assert.throws(() => wasi('fd_read', 4, 100, 1, 50), isOOB);
});

test('io: send and receive a discovery packet; started flag', () => {
  const { ctx, gate } = setup();
  const packet = [16, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 5, ...text('bogus')];
  ctx.bytes.set(packet, 1000);
  // recv iovec at 100 (buffer 2000, 65536 bytes would not fit: use 1024), send iovec at 108.
  iovecs(ctx, 100, [[2000, 1024]]);
  iovecs(ctx, 108, [[1000, 16]]);
  const reply = [11, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
  ctx.onWait = (): void => {
    ctx.input = [...reply];
  };
  ctx.view.setBigUint64(40, 0xffffffffffffffffn, true);

  // First attempt unwinds: nothing may happen.
  ctx.unwind = 1;
  gate.io!(100, 1, 24, 108, 1, 28, -1n, 40);
  assert.equal(ctx.waits.length, 1);
  assert.deepEqual(ctx.waits[0], { input: true, output: true, timeoutNs: undefined });
  assert.equal(ctx.takenFlags, 0);
  assert.equal(ctx.output.length, 0);
  assert.equal(ctx.view.getBigUint64(40, true), 0xffffffffffffffffn);

  // The repeated call completes.
  gate.io!(100, 1, 24, 108, 1, 28, -1n, 40);
  assert.deepEqual(ctx.output, packet);
  assert.equal(ctx.view.getUint32(28, true), 16);
  assert.equal(ctx.view.getUint32(24, true), 16);
  assert.deepEqual([...ctx.bytes.subarray(2000, 2016)], reply);
  assert.equal(ctx.view.getBigUint64(40, true), 1n);
  assert.equal(ctx.takenFlags, 1);

  // Later calls report 0.
  ctx.onWait = undefined;
  gate.io!(100, 1, 24, 108, 0, 28, 0n, 40);
  assert.equal(ctx.view.getBigUint64(40, true), 0n);
  // Null result pointers are skipped and the flag is then left alone.
  ctx.started = true;
  gate.io!(100, 1, 0, 108, 0, 0, 0n, 0);
  assert.equal(ctx.started, true);
});

test('io: waiting, timeouts and the fast path', () => {
  const { ctx, gate } = setup();
  iovecs(ctx, 100, [[2000, 64]]); // receive buffer
  iovecs(ctx, 108, [[3000, 0]]); // empty send
  iovecs(ctx, 116, [[3000, 8]]); // non-empty send

  // Short timeout with a receive buffer: no wait, no yield.
  gate.io!(100, 1, 24, 108, 1, 28, 0n, 0);
  gate.io!(100, 1, 24, 116, 1, 28, 999n, 0);
  assert.ok(!ctx.blocked);
  assert.equal(ctx.view.getUint32(28, true), 8);

  // Nothing to do and a short timeout: a yield point.
  gate.io!(100, 0, 24, 108, 1, 28, 0n, 0);
  gate.io!(0, 0, 0, 0, 0, 0, 500n, 0);
  assert.equal(ctx.yields, 2);
  assert.equal(ctx.waits.length, 0);

  // Longer timeouts wait, with the nanoseconds masked; output only if sending.
  gate.io!(100, 1, 24, 108, 1, 28, 1_500_001_234n, 0);
  assert.deepEqual(ctx.waits.at(-1), { input: true, output: false, timeoutNs: 1_500_000_768n }); // 500001234 & ~1023
  gate.io!(100, 1, 24, 116, 1, 28, 5_000n, 0);
  assert.deepEqual(ctx.waits.at(-1), { input: true, output: true, timeoutNs: 4096n });
  gate.io!(100, 1, 24, 116, 1, 28, -5n, 0);
  assert.deepEqual(ctx.waits.at(-1), { input: true, output: true, timeoutNs: undefined });
  // A timeout that masks to zero cannot block: only a yield point.
  const yields = ctx.yields;
  gate.io!(100, 1, 24, 108, 1, 28, 1000n, 0);
  assert.equal(ctx.yields, yields + 1);
  assert.equal(ctx.waits.length, 3);

  // Bad iovec arrays trap.
  assert.throws(() => gate.io!(100, 1, 24, 65530, 1, 28, -1n, 0), isOOB);
  iovecs(ctx, 124, [[65530, 8]]);
  assert.throws(() => gate.io!(100, 1, 24, 124, 1, 28, 0n, 0), isOOB);
  assert.throws(() => gate.io!(100, 1, 24, 116, 1, 28, 0n, 65532), isOOB);
});

/** Writes a subscription at index i of the array at `at`. */
function sub(ctx: FakeContext, at: number, i: number, s: { userdata: bigint; tag: number; id?: number; fd?: number; timeout?: bigint; precision?: bigint; flags?: number }): void {
  const v = ctx.view;
  const p = at + 48 * i;
  ctx.bytes.fill(0, p, p + 48);
  v.setBigUint64(p, s.userdata, true);
  v.setUint8(p + 8, s.tag);
  v.setUint32(p + 16, s.id ?? s.fd ?? 0, true);
  v.setBigUint64(p + 24, s.timeout ?? 0n, true);
  v.setBigUint64(p + 32, s.precision ?? 0n, true);
  v.setUint16(p + 40, s.flags ?? 0, true);
}

interface Ev {
  userdata: bigint;
  error: number;
  type: number;
  nbytes: bigint;
  flags: number;
}

function events(ctx: FakeContext, at: number, n: number): Ev[] {
  const v = ctx.view;
  return Array.from({ length: n }, (_, i) => {
    const p = at + 32 * i;
    return { userdata: v.getBigUint64(p, true), error: v.getUint16(p + 8, true), type: v.getUint8(p + 10), nbytes: v.getBigUint64(p + 16, true), flags: v.getUint16(p + 24, true) };
  });
}

const IN = 1000;
const OUT = 3000;
const NEV = 60;

test('poll_oneoff: clocks (abi.cpp case 1) and invalid clock', () => {
  const { ctx, wasi } = setup();
  ctx.realtime = 1_700_000_000_000_000_000n;
  sub(ctx, IN, 0, { userdata: 0n, tag: 0, id: 0, timeout: 1n, flags: 1 });
  sub(ctx, IN, 1, { userdata: 1n, tag: 0, id: 0, timeout: 1n << 30n });
  sub(ctx, IN, 2, { userdata: 2n, tag: 0, id: 1, timeout: 0n });
  sub(ctx, IN, 3, { userdata: 3n, tag: 0, id: 1, timeout: 1n << 63n, flags: 1 });
  assert.equal(wasi('poll_oneoff', IN, OUT, 4, NEV), Success);
  assert.equal(ctx.view.getUint32(NEV, true), 2);
  const ev = events(ctx, OUT, 2);
  assert.deepEqual(ev.map((e) => [e.userdata, e.error, e.type]), [[0n, 0, 0], [2n, 0, 0]]);
  // Absolute timeout in the past and a zero timeout: no wait at all.
  assert.equal(ctx.waits.length, 0);
  assert.equal(ctx.yields, 1);

  sub(ctx, IN, 0, { userdata: 7n, tag: 0, id: 4, timeout: 1000n });
  assert.equal(wasi('poll_oneoff', IN, OUT, 1, NEV), Success);
  assert.equal(ctx.view.getUint32(NEV, true), 1);
  assert.deepEqual(events(ctx, OUT, 1)[0], { userdata: 7n, error: Inval, type: 0, nbytes: 0n, flags: 0 });
});

test('poll_oneoff: relative and absolute waits', () => {
  const { ctx, wasi } = setup();
  ctx.monotonic = 10_000_000_000n;
  // Relative: waits the (masked) timeout but never counts.
  sub(ctx, IN, 0, { userdata: 1n, tag: 0, id: 1, timeout: 2_000_000_500n });
  ctx.onWait = (c): void => {
    ctx.monotonic += c.timeoutNs ?? 0n;
  };
  assert.equal(wasi('poll_oneoff', IN, OUT, 1, NEV), Success);
  assert.deepEqual(ctx.waits.at(-1), { input: false, output: false, timeoutNs: 2_000_000_000n });
  assert.equal(ctx.view.getUint32(NEV, true), 0);

  // Absolute: waits until the deadline and then counts.
  const deadline = ctx.monotonic + 3_000_000_000n;
  sub(ctx, IN, 0, { userdata: 2n, tag: 0, id: 1, timeout: deadline, flags: 1 });
  assert.equal(wasi('poll_oneoff', IN, OUT, 1, NEV), Success);
  assert.deepEqual(ctx.waits.at(-1), { input: false, output: false, timeoutNs: 3_000_000_000n });
  assert.equal(ctx.view.getUint32(NEV, true), 1);
  assert.equal(events(ctx, OUT, 1)[0]!.userdata, 2n);

  // The minimum of several timeouts.
  sub(ctx, IN, 0, { userdata: 3n, tag: 0, id: 0, timeout: 5_000_000_000n });
  sub(ctx, IN, 1, { userdata: 4n, tag: 0, id: 1, timeout: 4_000_000_000n });
  assert.equal(wasi('poll_oneoff', IN, OUT, 2, NEV), Success);
  assert.equal(ctx.waits.at(-1)!.timeoutNs, 4_000_000_000n);

  // An unwound call writes nothing.
  ctx.view.setUint32(NEV, 99, true);
  ctx.unwind = 1;
  wasi('poll_oneoff', IN, OUT, 2, NEV);
  assert.equal(ctx.view.getUint32(NEV, true), 99);

  // No subscriptions: waits indefinitely for nothing.
  assert.equal(wasi('poll_oneoff', 0, 0, 0, NEV), Success);
  assert.deepEqual(ctx.waits.at(-1), { input: false, output: false, timeoutNs: undefined });
  assert.equal(ctx.view.getUint32(NEV, true), 0);
});

test('poll_oneoff: fd subscriptions (abi.cpp cases 3–6)', () => {
  const { ctx, wasi } = setup();
  // (3) FD_WRITE on 0, 1, 4, 2, 3, 5.
  [0, 1, 4, 2, 3, 5].forEach((fd, i) => sub(ctx, IN, i, { userdata: BigInt(fd), tag: 2, fd }));
  assert.equal(wasi('poll_oneoff', IN, OUT, 6, NEV), Success);
  assert.equal(ctx.view.getUint32(NEV, true), 6);
  const ev3 = events(ctx, OUT, 6);
  assert.deepEqual(ev3.map((e) => [e.userdata, e.error]), [[0n, Perm], [1n, 0], [4n, 0], [2n, 0], [3n, BadF], [5n, BadF]]);
  assert.deepEqual(ev3.map((e) => e.nbytes), [0n, 0x7fffffffn, 65536n, 0x7fffffffn, 0n, 0n]);
  assert.ok(ev3.every((e) => e.type === 2 && e.flags === 0));
  assert.equal(ctx.waits.length, 0); // invalid subscriptions force a zero timeout

  // (4) FD_READ on 0, 1, 2, 4 with nothing pending: 3 error events.
  [0, 1, 2, 4].forEach((fd, i) => sub(ctx, IN, i, { userdata: BigInt(fd), tag: 1, fd }));
  assert.equal(wasi('poll_oneoff', IN, OUT, 4, NEV), Success);
  assert.equal(ctx.view.getUint32(NEV, true), 3);
  assert.deepEqual(events(ctx, OUT, 3).map((e) => [e.userdata, e.error, e.type]), [[0n, Perm, 1], [1n, Perm, 1], [2n, Perm, 1]]);

  // (5) FD_READ on 4 blocks until input is there.
  sub(ctx, IN, 0, { userdata: 42n, tag: 1, fd: 4 });
  ctx.unwind = 1;
  ctx.onWait = (): void => {
    ctx.input = [1, 2, 3];
  };
  wasi('poll_oneoff', IN, OUT, 1, NEV);
  assert.deepEqual(ctx.waits.at(-1), { input: true, output: false, timeoutNs: undefined });
  assert.equal(wasi('poll_oneoff', IN, OUT, 1, NEV), Success);
  assert.equal(ctx.view.getUint32(NEV, true), 1);
  assert.deepEqual(events(ctx, OUT, 1)[0], { userdata: 42n, error: 0, type: 1, nbytes: 65536n, flags: 0 });

  // FD_WRITE on 4 without output space does not count.
  ctx.space = 0;
  ctx.onWait = undefined;
  sub(ctx, IN, 0, { userdata: 1n, tag: 2, fd: 4 });
  sub(ctx, IN, 1, { userdata: 2n, tag: 0, id: 1, timeout: 0n });
  assert.equal(wasi('poll_oneoff', IN, OUT, 2, NEV), Success);
  assert.equal(ctx.view.getUint32(NEV, true), 1);
  assert.equal(events(ctx, OUT, 1)[0]!.userdata, 2n);

  // (6) Unknown tag.
  sub(ctx, IN, 0, { userdata: 5n, tag: 100 });
  assert.equal(wasi('poll_oneoff', IN, OUT, 1, NEV), Success);
  assert.equal(ctx.view.getUint32(NEV, true), 1);
  assert.deepEqual(events(ctx, OUT, 1)[0], { userdata: 5n, error: Inval, type: 100, nbytes: 0n, flags: 0 });
});

test('poll_oneoff: CPU clocks, faults and bounds', () => {
  const { ctx, wasi } = setup();
  sub(ctx, IN, 0, { userdata: 1n, tag: 0, id: 2, timeout: 0n });
  wasi('poll_oneoff', IN, OUT, 1, NEV);
  sub(ctx, IN, 0, { userdata: 1n, tag: 0, id: 3, timeout: 100n });
  wasi('poll_oneoff', IN, OUT, 1, NEV);
  assert.equal(ctx.deficiencies, 2);
  assert.equal(ctx.waits.length + ctx.yields, 0);

  assert.equal(wasi('poll_oneoff', 0, OUT, 1, NEV), Fault);
  assert.equal(wasi('poll_oneoff', IN, 0, 1, NEV), Fault);
  assert.equal(wasi('poll_oneoff', IN, OUT, 1, 0), Fault);
  assert.equal(wasi('poll_oneoff', 0, 0, -1, NEV), Success);
  assert.throws(() => wasi('poll_oneoff', 65536 - 47, OUT, 1, NEV), isOOB);
  sub(ctx, IN, 0, { userdata: 1n, tag: 0, id: 0, timeout: 0n });
  assert.throws(() => wasi('poll_oneoff', IN, 65536 - 31, 1, NEV), isOOB);
});

test('random_get', () => {
  const { ctx, wasi } = setup();
  assert.equal(wasi('random_get', 100, 10), Success);
  assert.deepEqual([...ctx.bytes.subarray(100, 110)], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  // The second 10 bytes exhaust the pool: 6 are written, then an ABI deficiency.
  wasi('random_get', 200, 10);
  assert.deepEqual([...ctx.bytes.subarray(200, 210)], [11, 12, 13, 14, 15, 16, 0, 0, 0, 0]);
  assert.equal(ctx.deficiencies, 1);
  assert.equal(wasi('random_get', 0, 5), Fault);
  assert.equal(wasi('random_get', 0, 0), Success);
  assert.equal(ctx.deficiencies, 1);
  ctx.pool = [1, 2, 3];
  assert.throws(() => wasi('random_get', 65534, 3), isOOB);

  const fresh = setup().ctx;
  const host = createHostImports(fresh);
  (host.wasi.random_get as Fn)(100, 17);
  assert.equal(fresh.deficiencies, 1);
});

test('proc_exit, proc_raise, sched_yield', () => {
  const { ctx, wasi } = setup();
  assert.throws(() => wasi('proc_exit', 0), (e: unknown) => e instanceof ExitSignal && e.status === 0);
  assert.throws(() => wasi('proc_exit', -7), (e: unknown) => e instanceof ExitSignal && e.status === -7);
  wasi('proc_raise', 1);
  assert.equal(ctx.deficiencies, 1);
  assert.equal(wasi('sched_yield'), Success);
  assert.equal(ctx.yields, 1);
});

test('BLOCKING_IMPORTS lists exactly the functions that block', () => {
  // Drive every function through many argument combinations and record
  // which ones ever called wait, yieldPoint or abiDeficiency.
  const blocking = new Set<string>();
  const ctx = new FakeContext();
  const host = createHostImports(ctx);
  const values = [0, 1, 2, 3, 4, 5, 16, 64];
  ctx.space = 0;
  for (const [module, table] of [['gate', GATE_SIGNATURES], ['wasi', WASI_SIGNATURES]] as const) {
    for (const [name, sig] of Object.entries(table)) {
      const f = host[module]![name] as Fn;
      for (let combo = 0; combo < values.length ** 3; combo++) {
        {
          const args = sig.params.map((t, i) => {
            if (i >= 3) return t === 0x7e ? -1n : 16;
            const v = values[Math.floor(combo / values.length ** i) % values.length]!;
            return t === 0x7e ? BigInt(v) : v;
          });
          ctx.bytes.fill(0, 0, 1024);
          iovecs(ctx, 16, [[512, 4]]);
          ctx.waits = [];
          ctx.yields = 0;
          ctx.deficiencies = 0;
          try {
            f(...args);
          } catch (e) {
            if (!(e instanceof ExitSignal) && !(e instanceof Trap)) throw e;
          }
          if (ctx.blocked) blocking.add(`${module}.${name}`);
        }
      }
    }
  }
  assert.deepEqual([...blocking].sort(), [...BLOCKING_IMPORTS].sort());
});

test('host functions work as imports of a real module', async () => {
  // Import every ABI function under its canonical name and re-export it, so
  // that calls go through the engine's JS↔wasm conversions (BigInt for i64).
  const { ModuleBuilder } = await import('../wasm/wasm-builder.js');
  const b = new ModuleBuilder();
  const indexes: [string, number][] = [];
  for (const [module, table] of [['gate', GATE_SIGNATURES], ['wasi', WASI_SIGNATURES]] as const) {
    for (const [name, sig] of Object.entries(table)) indexes.push([`${module}.${name}`, b.importFunc(module, name, sig.params, sig.results)]);
  }
  for (const [name, index] of indexes) b.exportFunc(name, index);
  const bytes = b.build();
  const ctx = new FakeContext();
  const { instance } = await WebAssembly.instantiate(bytes as Uint8Array<ArrayBuffer>, createHostImports(ctx));
  const x = instance.exports as Record<string, Fn>;
  assert.equal(x['gate.fd']!(), 4);
  assert.equal(x['wasi.clock_time_get']!(1, 1000n, 8), Success);
  assert.equal(ctx.view.getBigUint64(8, true), maskNs(ctx.monotonic, 1024n));
  assert.equal(x['wasi.fd_fdstat_set_rights']!(4, RW, 0n), Success);
  assert.equal(x['wasi.fd_seek']!(4, -1n, 0, 0), Perm);
  ctx.bytes.set(text('hi\n'), 300);
  iovecs(ctx, 100, [[300, 3]]);
  assert.equal(x['wasi.fd_write']!(1, 100, 1, 50), Success);
  assert.deepEqual(ctx.log, text('hi\n'));
  assert.equal(x['gate.io']!(0, 0, 0, 100, 1, 24, 0n, 40), undefined);
  assert.equal(ctx.view.getUint32(24, true), 3);
  assert.equal(ctx.view.getBigUint64(40, true), 1n);
  assert.throws(() => x['wasi.proc_exit']!(3), (e: unknown) => e instanceof ExitSignal && e.status === 3);
  assert.throws(() => x['wasi.fd_write']!(1, 65535, 1, 50), isOOB);
});
