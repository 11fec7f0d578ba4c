/**
 * The WASI preview1 subset of the Gate ABI (spec abi.md §2, §3.2, §5, §6).
 *
 * Most functions are stubs with fixed errno values; fd 4 is the packet
 * stream, fds 1 and 2 are the debug log. The behaviour (including the order
 * of checks, which fields of a struct are written, and the quirks marked in
 * the spec) follows the original's library.cpp so that programs observe the
 * same results.
 *
 * Blocking: functions listed in imports.ts BLOCKING_IMPORTS may call
 * ctx.wait / yieldPoint / abiDeficiency; when one of those returns true the
 * function returns at once (the value is ignored) and is called again from
 * the beginning after the rewind, so nothing observable happens before a
 * blocking point.
 */
import type { AbiContext } from './context.js';
import { GuestMemory, IOVEC_SIZE, transferIovecs } from './memory.js';
import { maskNs, reportedResolution } from './time.js';

export const Errno = {
  Success: 0,
  Again: 6,
  BadF: 8,
  Fault: 21,
  Inval: 28,
  NotSock: 57,
  Perm: 63,
  NotCapable: 76,
} as const;

export const Rights = {
  FdRead: 0x2n,
  FdWrite: 0x40n,
} as const;

export const FdFlags = { NonBlock: 0x4 } as const;
export const EventType = { Clock: 0, FdRead: 1, FdWrite: 2 } as const;
export const ClockId = { Realtime: 0, Monotonic: 1, ProcessCputime: 2, ThreadCputime: 3 } as const;

export const GATE_FD = 4;
/** nbytes reported by poll_oneoff for the packet fd. */
const PACKET_NBYTES = 65536;
/** nbytes reported by poll_oneoff for writable fds 1 and 2. */
const DEBUG_NBYTES = 0x7fffffff;

const SUBSCRIPTION_SIZE = 48;
const EVENT_SIZE = 32;
const U64_MASK = (1n << 64n) - 1n;

/** The environment block written by environ_get: strings at offsets 0, 24 and 40 of a 72-byte buffer. */
export const ENVIRONMENT = ['GATE_ABI_VERSION=0', 'GATE_FD=4', 'GATE_MAX_SEND_SIZE=65536'] as const;
export const ENVIRONMENT_OFFSETS = [0, 24, 40] as const;
export const ENVIRONMENT_SIZE = 72;
const ENV_BLOCK: Uint8Array = (() => {
  const b = new Uint8Array(ENVIRONMENT_SIZE);
  const enc = new TextEncoder();
  ENVIRONMENT.forEach((s, i) => b.set(enc.encode(s), ENVIRONMENT_OFFSETS[i]));
  return b;
})();

/** fds that exist: stdin, stdout, stderr and the packet fd. */
function inFdSet(fd: number): boolean {
  return fd === 0 || fd === 1 || fd === 2 || fd === GATE_FD;
}

/** `err` for an existing fd, EBADF otherwise. */
function fdError(fd: number, err: number): number {
  return inFdSet(fd) ? err : Errno.BadF;
}

// Stubs of spec §3.2: EPERM for existing fds, EBADF otherwise; arguments
// other than the fd are not inspected. JS ignores the extra parameters.
const stub = (fd: number): number => fdError(fd, Errno.Perm);
const stubFd3 = (_a: number, _b: number, fd: number): number => fdError(fd, Errno.Perm);
const stubTwoFdAt3 = (fd: number, _a: number, _b: number, fd2: number): number => fdError(fd, fdError(fd2, Errno.Perm));
const stubTwoFdAt4 = (fd: number, _a: number, _b: number, _c: number, fd2: number): number => fdError(fd, fdError(fd2, Errno.Perm));

export type HostFunctions = Record<string, Function>;

/** The WASI host functions of one instance, keyed by WASI function name. */
export function createWasiFunctions(ctx: AbiContext): HostFunctions {
  const mem = new GuestMemory(ctx);

  function maskedTime(clock: number): bigint {
    const t = clock === ClockId.Realtime ? ctx.realtimeNs() : ctx.monotonicNs();
    return maskNs(t, ctx.granularityNs);
  }

  /** fd_read/fd_write on the packet fd: the byte count, or -1 for EAGAIN. */
  const transfer = (iov: number, cnt: number, write: boolean): number => transferIovecs(mem, ctx, iov, cnt, write);

  /** A wait that cannot block is only a preemption point. */
  function poll(input: boolean, output: boolean, timeoutNs: bigint | undefined): boolean {
    if (timeoutNs === 0n) return ctx.yieldPoint();
    return ctx.wait({ input, output, timeoutNs });
  }

  return {
    args_get(): number {
      return Errno.Success;
    },

    args_sizes_get(argcPtr: number, sizePtr: number): number {
      argcPtr >>>= 0;
      sizePtr >>>= 0;
      if (argcPtr === 0 || sizePtr === 0) return Errno.Fault;
      mem.sync();
      mem.setU32(argcPtr, 0);
      mem.setU32(sizePtr, 0);
      return Errno.Success;
    },

    clock_res_get(id: number, ptr: number): number {
      ptr >>>= 0;
      if (ptr === 0) return Errno.Fault;
      if (id >>> 0 >= 4) return Errno.Inval;
      mem.sync();
      mem.setU64(ptr, reportedResolution(ctx.granularityNs));
      return Errno.Success;
    },

    clock_time_get(id: number, _precision: bigint, ptr: number): number {
      ptr >>>= 0;
      id >>>= 0;
      if (ptr === 0) return Errno.Fault;
      if (id >= 4) return Errno.Inval;
      if (id >= 2) {
        // Process and thread CPU time are not provided.
        ctx.abiDeficiency();
        return 0;
      }
      // Precision only chooses between coarse and precise host clocks in
      // the original; here both are the context's clocks, masked by G.
      const t = maskedTime(id);
      mem.sync();
      mem.setU64(ptr, t);
      return Errno.Success;
    },

    environ_get(envPtr: number, bufPtr: number): number {
      envPtr >>>= 0;
      bufPtr >>>= 0;
      if (envPtr === 0 || bufPtr === 0) return Errno.Fault;
      mem.sync();
      mem.check(bufPtr, ENVIRONMENT_SIZE);
      mem.u8.set(ENV_BLOCK, bufPtr);
      mem.check(envPtr, 4 * ENVIRONMENT_OFFSETS.length);
      for (let i = 0; i < ENVIRONMENT_OFFSETS.length; i++) mem.setU32(envPtr + 4 * i, bufPtr + ENVIRONMENT_OFFSETS[i]!);
      return Errno.Success;
    },

    environ_sizes_get(countPtr: number, sizePtr: number): number {
      countPtr >>>= 0;
      sizePtr >>>= 0;
      if (countPtr === 0 || sizePtr === 0) return Errno.Fault;
      mem.sync();
      mem.setU32(countPtr, ENVIRONMENT.length);
      mem.setU32(sizePtr, ENVIRONMENT_SIZE);
      return Errno.Success;
    },

    fd_advise: stub,
    fd_allocate: stub,

    fd_close(fd: number): number {
      if (inFdSet(fd)) {
        ctx.abiDeficiency();
        return 0;
      }
      return Errno.BadF;
    },

    fd_datasync: stub,

    fd_fdstat_get(fd: number, ptr: number): number {
      ptr >>>= 0;
      if (ptr === 0) return Errno.Fault;
      let flags = 0;
      let rights = 0;
      if (fd === GATE_FD) {
        flags = FdFlags.NonBlock;
        rights = Number(Rights.FdRead | Rights.FdWrite);
      } else if (fd === 1 || fd === 2) {
        rights = Number(Rights.FdWrite);
      } else if (fd !== 0) {
        return Errno.BadF;
      }
      mem.sync();
      mem.check(ptr, 24);
      // Only the fields are written; padding bytes keep their contents.
      mem.setU8(ptr, 0); // filetype unknown
      mem.setU16(ptr + 2, flags);
      mem.setU64Number(ptr + 8, rights);
      mem.setU64Number(ptr + 16, 0);
      return Errno.Success;
    },

    fd_fdstat_set_flags: stub,

    fd_fdstat_set_rights(fd: number, base: bigint, inheriting: bigint): number {
      const rw = Rights.FdRead | Rights.FdWrite;
      if (fd === GATE_FD) {
        if (inheriting !== 0n) return Errno.NotCapable;
        if (base === rw) return Errno.Success;
        if ((base & ~rw) !== 0n) return Errno.NotCapable;
        // Dropping read and/or write rights of the packet fd is not supported.
        ctx.abiDeficiency();
        return 0;
      }
      if (fd === 1 || fd === 2) {
        if (inheriting !== 0n) return Errno.NotCapable;
        if (base === Rights.FdWrite) return Errno.Success;
        if (base !== 0n) return Errno.NotCapable;
        ctx.abiDeficiency();
        return 0;
      }
      if (fd === 0) {
        if (inheriting !== 0n) return Errno.NotCapable;
        return base === 0n ? Errno.Success : Errno.NotCapable;
      }
      return Errno.BadF;
    },

    fd_filestat_get: stub,
    fd_filestat_set_size: stub,
    fd_filestat_set_times: stub,
    fd_pread: stub,

    fd_prestat_dir_name(fd: number, buf: number, len: number): number {
      if (len >>> 0 > 0 && buf >>> 0 === 0) return Errno.Fault;
      return fdError(fd, Errno.Inval);
    },

    fd_prestat_get: stub,
    fd_pwrite: stub,

    fd_read(fd: number, iov: number, cnt: number, nreadPtr: number): number {
      iov >>>= 0;
      cnt |= 0; // a signed count: negative means no iovecs
      nreadPtr >>>= 0;
      if (cnt > 0 && iov === 0) return Errno.Fault;
      if (nreadPtr === 0) return Errno.Fault;
      if (fd === GATE_FD) {
        mem.sync();
        const total = transfer(iov, cnt, false);
        if (total < 0) {
          // Nothing to read: give the scheduler a chance before the program
          // spins on EAGAIN.
          if (ctx.yieldPoint()) return 0;
          return Errno.Again;
        }
        mem.setU32(nreadPtr, total);
        return Errno.Success;
      }
      return fd === 0 || fd === 1 || fd === 2 ? Errno.Perm : Errno.BadF;
    },

    fd_readdir: stub,

    fd_renumber(from: number, to: number): number {
      if (inFdSet(from) && inFdSet(to)) {
        if (from === to) return Errno.Success;
        ctx.abiDeficiency();
        return 0;
      }
      return Errno.BadF;
    },

    fd_seek: stub,
    fd_sync: stub,
    fd_tell: stub,

    fd_write(fd: number, iov: number, cnt: number, nwrittenPtr: number): number {
      iov >>>= 0;
      cnt |= 0;
      nwrittenPtr >>>= 0;
      if (cnt > 0 && iov === 0) return Errno.Fault;
      if (nwrittenPtr === 0) return Errno.Fault;
      let total = 0;
      if (fd === 1 || fd === 2) {
        mem.sync();
        for (let i = 0; i < cnt; i++) {
          const e = iov + i * IOVEC_SIZE;
          const ptr = mem.getU32(e);
          const len = mem.getU32(e + 4);
          if (len === 0) continue;
          ctx.debugWrite(mem.bytes(ptr, len));
          total += len;
        }
      } else if (fd === GATE_FD) {
        mem.sync();
        total = transfer(iov, cnt, true);
        if (total < 0) {
          if (ctx.yieldPoint()) return 0;
          return Errno.Again;
        }
      } else {
        return fd === 0 ? Errno.Perm : Errno.BadF;
      }
      mem.setU32(nwrittenPtr, total);
      return Errno.Success;
    },

    path_create_directory: stub,
    path_filestat_get: stub,
    path_filestat_set_times: stub,
    path_link: stubTwoFdAt4,
    path_open: stub,
    path_readlink: stub,
    path_remove_directory: stub,
    path_rename: stubTwoFdAt3,
    path_symlink: stubFd3,
    path_unlink_file: stub,

    poll_oneoff(inPtr: number, outPtr: number, nsub: number, neventsPtr: number): number {
      inPtr >>>= 0;
      outPtr >>>= 0;
      nsub |= 0;
      neventsPtr >>>= 0;
      if (nsub > 0 && (inPtr === 0 || outPtr === 0)) return Errno.Fault;
      if (neventsPtr === 0) return Errno.Fault;
      mem.sync();
      if (nsub > 0) mem.check(inPtr, nsub * SUBSCRIPTION_SIZE);

      // Begin timestamps, for clocks that have a subscription with a
      // non-zero timeout (spec §6 step 1).
      let beginRealtime: bigint | undefined;
      let beginMonotonic: bigint | undefined;
      for (let i = 0; i < nsub; i++) {
        const s = inPtr + i * SUBSCRIPTION_SIZE;
        if (mem.getU8(s + 8) !== EventType.Clock) continue;
        const id = mem.getU32(s + 16);
        if (id >= 4 || mem.getU64(s + 24) === 0n) continue;
        if (id === ClockId.Realtime) beginRealtime ??= maskedTime(ClockId.Realtime);
        else beginMonotonic ??= maskedTime(ClockId.Monotonic);
      }

      // The wait (step 2).
      let pollIn = false;
      let pollOut = false;
      let haveTimeout = false;
      let timeout = U64_MASK;
      for (let i = 0; i < nsub; i++) {
        const s = inPtr + i * SUBSCRIPTION_SIZE;
        const tag = mem.getU8(s + 8);
        if (tag === EventType.Clock) {
          const id = mem.getU32(s + 16);
          if (id < 4) {
            if (id >= 2) {
              ctx.abiDeficiency();
              return 0;
            }
            let t = mem.getU64(s + 24);
            if (mem.getU16(s + 40) & 1) {
              const now = (id === ClockId.Realtime ? beginRealtime : beginMonotonic) ?? 0n;
              t = t < now ? 0n : t - now;
            }
            if (t < timeout) timeout = t;
            haveTimeout = true;
            continue;
          }
        } else if (tag === EventType.FdRead) {
          if (mem.getU32(s + 16) === GATE_FD) {
            pollIn = true;
            continue;
          }
        } else if (tag === EventType.FdWrite) {
          if (mem.getU32(s + 16) === GATE_FD) {
            pollOut = true;
            continue;
          }
        }
        // Anything else is answered at once: no blocking.
        timeout = 0n;
        haveTimeout = true;
      }

      if (poll(pollIn, pollOut, haveTimeout ? maskNs(timeout, ctx.granularityNs) : undefined)) return 0;
      mem.sync();
      const inputReady = pollIn && ctx.inputBuffered() > 0;
      const outputReady = pollOut && ctx.outputSpace() > 0;

      const endRealtime = beginRealtime === undefined ? 0n : maskedTime(ClockId.Realtime);
      const endMonotonic = beginMonotonic === undefined ? 0n : maskedTime(ClockId.Monotonic);

      // Events (step 5): out[n] is filled for every subscription, but n only
      // advances for those that count.
      let n = 0;
      for (let i = 0; i < nsub; i++) {
        const s = inPtr + i * SUBSCRIPTION_SIZE;
        const e = outPtr + n * EVENT_SIZE;
        mem.check(e, EVENT_SIZE);
        const tag = mem.getU8(s + 8);
        mem.setU64(e, mem.getU64(s));
        mem.setU16(e + 8, Errno.Success);
        mem.setU8(e + 10, tag);
        mem.setU64Number(e + 16, 0);
        mem.setU16(e + 24, 0);

        if (tag === EventType.Clock) {
          const id = mem.getU32(s + 16);
          if (id < 4) {
            let t = mem.getU64(s + 24);
            if (t === 0n) {
              n++;
              continue;
            }
            const end = id === ClockId.Realtime ? endRealtime : endMonotonic;
            if ((mem.getU16(s + 40) & 1) === 0) {
              // Relative: the original compares end+timeout with end, so a
              // relative non-zero timeout never counts (spec §6 [BUG?]).
              const abs = (end + t) & U64_MASK;
              if (abs < t) continue; // overflow
              t = abs;
            }
            if (t <= end) n++;
            continue;
          }
        } else if (tag === EventType.FdRead) {
          const fd = mem.getU32(s + 16);
          if (fd === GATE_FD) {
            if (inputReady) {
              mem.setU64Number(e + 16, PACKET_NBYTES);
              n++;
            }
            continue;
          }
          mem.setU16(e + 8, fd <= 2 ? Errno.Perm : Errno.BadF);
          n++;
          continue;
        } else if (tag === EventType.FdWrite) {
          const fd = mem.getU32(s + 16);
          if (fd === GATE_FD) {
            if (outputReady) {
              mem.setU64Number(e + 16, PACKET_NBYTES);
              n++;
            }
            continue;
          }
          if (fd === 1 || fd === 2) mem.setU64Number(e + 16, DEBUG_NBYTES);
          else mem.setU16(e + 8, fd === 0 ? Errno.Perm : Errno.BadF);
          n++;
          continue;
        }
        mem.setU16(e + 8, Errno.Inval);
        n++;
      }

      mem.setU32(neventsPtr, n);
      return Errno.Success;
    },

    proc_exit(status: number): void {
      ctx.exit(status | 0);
    },

    proc_raise(): number {
      ctx.abiDeficiency();
      return 0;
    },

    random_get(buf: number, len: number): number {
      buf >>>= 0;
      len >>>= 0;
      if (len > 0 && buf === 0) return Errno.Fault;
      if (len === 0) return Errno.Success;
      const got = ctx.takeRandom(len);
      if (got.length > 0) {
        mem.sync();
        mem.check(buf, got.length);
        mem.u8.set(got, buf);
      }
      if (got.length < len) {
        // The pool (16 bytes per process start) ran dry: suspend; the call
        // is retried with a fresh pool on resume.
        ctx.abiDeficiency();
        return 0;
      }
      return Errno.Success;
    },

    sched_yield(): number {
      ctx.yieldPoint();
      return Errno.Success;
    },

    sock_recv(fd: number): number {
      if (fd === GATE_FD) return Errno.NotSock;
      return fd === 0 || fd === 1 || fd === 2 ? Errno.Perm : Errno.BadF;
    },

    sock_send(fd: number): number {
      if (fd === GATE_FD || fd === 1 || fd === 2) return Errno.NotSock;
      return fd === 0 ? Errno.Perm : Errno.BadF;
    },

    sock_shutdown: stub,
  };
}
