/**
 * The launcher: a tiny static x86-64 ELF executable, generated here byte by
 * byte (like the seccomp filters: no compiler, no native addon), that sets
 * the executor's resource limits, installs seccomp filters and executes its
 * arguments:
 *
 *     launcher /path/to/node [node args...]
 *
 * (with an empty environment, whatever it was given)
 * A node process cannot set its own rlimits, and bubblewrap has no rlimit
 * options; `prlimit` from util-linux could wrap bwrap, but only a program that
 * runs *after* bubblewrap and *before* node can load a filter that forbids
 * execve from then on (see bpf.ts execFilter), so one small program does both.
 * It is loaded at a fixed low address (non-PIE): the exec filter allows
 * execve only from the launcher's own syscall instruction.
 *
 * Failure of any step exits with status 127 before node runs.
 */
import { execFilter } from './bpf.js';

/** Where the launcher is loaded; below node (0x400000) and above mmap_min_addr's usual 64 KiB. */
export const LAUNCHER_BASE = 0x10000;
/** No mapping may be hinted below this after the launcher has run. */
export const LAUNCHER_GUARD_END = LAUNCHER_BASE + 0x10000;

export const RLIMIT = { DATA: 2, CORE: 4, NOFILE: 7 } as const;

export interface LauncherOptions {
  /** Resource limits to set (soft = hard), by RLIMIT number. */
  rlimits: Array<{ resource: number; value: bigint }>;
  /** Policy filters to load before the exec filter (e.g. when no bwrap loads them). */
  filters: Uint8Array[];
  /** Load the exec filter (no execve after the launcher's own). */
  execFilter: boolean;
}

const EHDR = 64;
const PHDR = 56;

class Code {
  readonly bytes: number[] = [];
  private readonly fixups: Array<{ at: number; label: string }> = [];
  private readonly labels = new Map<string, number>();
  emit(...b: number[]): void {
    this.bytes.push(...b);
  }
  u32(v: number): number[] {
    return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
  }
  /** mov e??, imm32 (opcode byte B8+reg). */
  movImm(reg: number, v: number): void {
    this.emit(0xb8 + reg, ...this.u32(v));
  }
  syscall(): void {
    this.emit(0x0f, 0x05);
  }
  /** test eax, eax; jnz label. */
  failIfNonZero(label: string): void {
    this.emit(0x85, 0xc0, 0x0f, 0x85);
    this.fixups.push({ at: this.bytes.length, label });
    this.emit(0, 0, 0, 0);
  }
  label(name: string): void {
    this.labels.set(name, this.bytes.length);
  }
  resolve(): void {
    for (const f of this.fixups) {
      const to = this.labels.get(f.label)!;
      const rel = to - (f.at + 4);
      this.bytes.splice(f.at, 4, ...this.u32(rel >>> 0));
    }
  }
}

const EAX = 0;
const EDX = 2;
const ESI = 6;
const EDI = 7;

/** Builds the launcher; `execIp` is the address its exec filter allows execve from. */
export function buildLauncher(opts: LauncherOptions): { bytes: Uint8Array; execIp: number } {
  // Two passes: the data's addresses depend on the code's length, which does not depend on them.
  let layout = { dataAt: 0, execIp: 0 };
  for (let pass = 0; pass < 2; pass++) {
    const code = new Code();
    const codeStart = LAUNCHER_BASE + EHDR + PHDR;
    const data: number[] = [];
    const dataAddr = (offset: number): number => layout.dataAt + offset;
    const place = (bytes: Uint8Array | number[], align = 8): number => {
      while (data.length % align) data.push(0);
      const at = data.length;
      data.push(...bytes);
      return at;
    };
    for (const r of opts.rlimits) {
      const lim = Buffer.alloc(16);
      lim.writeBigUInt64LE(r.value, 0);
      lim.writeBigUInt64LE(r.value, 8);
      const at = place([...lim]);
      // prlimit64(0, resource, &new, NULL)
      code.movImm(EAX, 302);
      code.emit(0x31, 0xff); // xor edi, edi
      code.movImm(ESI, r.resource);
      code.movImm(EDX, dataAddr(at));
      code.emit(0x45, 0x31, 0xd2); // xor r10d, r10d
      code.syscall();
      code.failIfNonZero('fail');
    }
    const filters = [...opts.filters];
    if (opts.execFilter) filters.push(execFilter(layout.execIp, LAUNCHER_GUARD_END));
    if (filters.length > 0) {
      // prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0): required to load a filter without privileges.
      code.movImm(EAX, 157);
      code.movImm(EDI, 38);
      code.movImm(ESI, 1);
      code.emit(0x31, 0xd2, 0x45, 0x31, 0xd2, 0x45, 0x31, 0xc0); // xor edx,edx; xor r10d,r10d; xor r8d,r8d
      code.syscall();
      code.failIfNonZero('fail');
    }
    for (const f of filters) {
      const prog = place([...f]);
      const fprog = Buffer.alloc(16);
      fprog.writeUInt16LE(f.length / 8, 0);
      fprog.writeBigUInt64LE(BigInt(dataAddr(prog)), 8);
      const at = place([...fprog]);
      // seccomp(SECCOMP_SET_MODE_FILTER, 0, &fprog)
      code.movImm(EAX, 317);
      code.movImm(EDI, 1);
      code.emit(0x31, 0xf6); // xor esi, esi
      code.movImm(EDX, dataAddr(at));
      code.syscall();
      code.failIfNonZero('fail');
    }
    // execve(argv[1], &argv[1], {NULL}): at entry rsp → argc, argv[]. The
    // environment is always empty (bwrap would otherwise add PWD).
    const noEnv = place([0, 0, 0, 0, 0, 0, 0, 0]);
    code.emit(0x48, 0x8b, 0x7c, 0x24, 0x10); // mov rdi, [rsp+16]
    code.emit(0x48, 0x8d, 0x74, 0x24, 0x10); // lea rsi, [rsp+16]
    code.movImm(EDX, dataAddr(noEnv));
    code.movImm(EAX, 59);
    code.syscall();
    const execIp = codeStart + code.bytes.length;
    code.label('fail');
    code.movImm(EDI, 127);
    code.movImm(EAX, 231); // exit_group
    code.syscall();
    code.resolve();

    let dataAt = codeStart + code.bytes.length;
    dataAt = (dataAt + 7) & ~7;
    const stable = layout.dataAt === dataAt && layout.execIp === execIp;
    layout = { dataAt, execIp };
    if (pass === 1) {
      if (!stable) throw new Error('launcher layout did not converge');
      const total = dataAt - LAUNCHER_BASE + data.length;
      const out = Buffer.alloc(total);
      // ELF header
      out.write('\x7fELF', 0, 'latin1');
      out[4] = 2; // 64-bit
      out[5] = 1; // little-endian
      out[6] = 1; // version
      out.writeUInt16LE(2, 16); // ET_EXEC
      out.writeUInt16LE(62, 18); // EM_X86_64
      out.writeUInt32LE(1, 20);
      out.writeBigUInt64LE(BigInt(codeStart), 24); // e_entry
      out.writeBigUInt64LE(BigInt(EHDR), 32); // e_phoff
      out.writeUInt16LE(EHDR, 52); // e_ehsize
      out.writeUInt16LE(PHDR, 54); // e_phentsize
      out.writeUInt16LE(1, 56); // e_phnum
      // PT_LOAD, R+X, the whole file at LAUNCHER_BASE
      out.writeUInt32LE(1, EHDR);
      out.writeUInt32LE(5, EHDR + 4);
      out.writeBigUInt64LE(0n, EHDR + 8);
      out.writeBigUInt64LE(BigInt(LAUNCHER_BASE), EHDR + 16);
      out.writeBigUInt64LE(BigInt(LAUNCHER_BASE), EHDR + 24);
      out.writeBigUInt64LE(BigInt(total), EHDR + 32);
      out.writeBigUInt64LE(BigInt(total), EHDR + 40);
      out.writeBigUInt64LE(0x1000n, EHDR + 48);
      Buffer.from(code.bytes).copy(out, EHDR + PHDR);
      Buffer.from(data).copy(out, dataAt - LAUNCHER_BASE);
      return { bytes: new Uint8Array(out.buffer, out.byteOffset, out.length), execIp };
    }
  }
  throw new Error('unreachable');
}
