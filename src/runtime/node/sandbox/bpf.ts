/**
 * Seccomp filters for executor processes, as classic BPF programs written
 * here (no libseccomp, no native addon). Two filters, both x86-64:
 *
 * - the *policy* filter, loaded by bubblewrap (`--seccomp FD`) before it
 *   starts the executor: refuses (EPERM) sockets, ptrace and cross-process
 *   memory access, mounts, keyrings, bpf, perf, userfaultfd, io_uring (whose
 *   operations seccomp cannot see), namespace creation and entry (unshare,
 *   setns, clone with namespace flags; clone3 gets ENOSYS so that libc falls
 *   back to clone, whose flags a filter can read), and the module, kexec,
 *   reboot and swap calls;
 * - the *exec* filter, loaded by the launcher (launcher.ts) just before it
 *   executes node: execve is allowed only from the launcher's own syscall
 *   instruction, execveat never, and nothing may be mapped at the launcher's
 *   low addresses afterwards (so that instruction cannot be recreated).
 *   A filter cannot count, so "no execve after start" is expressed this way.
 */

/** struct seccomp_data offsets. */
const NR = 0;
const ARCH = 4;
const IP_LO = 8;
const IP_HI = 12;
const argLo = (i: number): number => 16 + 8 * i;
const argHi = (i: number): number => 20 + 8 * i;

export const AUDIT_ARCH_X86_64 = 0xc000003e;
export const SECCOMP_RET_KILL_PROCESS = 0x80000000;
export const SECCOMP_RET_ALLOW = 0x7fff0000;
export const SECCOMP_RET_ERRNO = 0x00050000;
export const EPERM = 1;
export const ENOSYS = 38;

/** x86-64 system call numbers used by the filters. */
export const SYS = {
  mmap: 9,
  mremap: 25,
  shmat: 30,
  socket: 41,
  clone: 56,
  execve: 59,
  ptrace: 101,
  pivot_root: 155,
  chroot: 161,
  acct: 163,
  mount: 165,
  umount2: 166,
  swapon: 167,
  swapoff: 168,
  reboot: 169,
  sethostname: 170,
  setdomainname: 171,
  iopl: 172,
  ioperm: 173,
  init_module: 175,
  delete_module: 176,
  quotactl: 179,
  lookup_dcookie: 212,
  kexec_load: 246,
  add_key: 248,
  request_key: 249,
  keyctl: 250,
  unshare: 272,
  perf_event_open: 298,
  name_to_handle_at: 303,
  open_by_handle_at: 304,
  setns: 308,
  process_vm_readv: 310,
  process_vm_writev: 311,
  kcmp: 312,
  finit_module: 313,
  kexec_file_load: 320,
  bpf: 321,
  execveat: 322,
  userfaultfd: 323,
  io_uring_setup: 425,
  io_uring_enter: 426,
  io_uring_register: 427,
  open_tree: 428,
  move_mount: 429,
  fsopen: 430,
  fsconfig: 431,
  fsmount: 432,
  fspick: 433,
  clone3: 435,
  pidfd_getfd: 438,
  mount_setattr: 442,
} as const;

/** Refused with EPERM by the policy filter. */
export const DENIED_SYSCALLS: readonly number[] = [
  SYS.socket,
  SYS.ptrace, SYS.process_vm_readv, SYS.process_vm_writev, SYS.pidfd_getfd, SYS.kcmp,
  SYS.mount, SYS.umount2, SYS.pivot_root, SYS.chroot, SYS.open_tree, SYS.move_mount, SYS.fsopen, SYS.fsconfig, SYS.fsmount, SYS.fspick, SYS.mount_setattr,
  SYS.name_to_handle_at, SYS.open_by_handle_at,
  SYS.keyctl, SYS.add_key, SYS.request_key,
  SYS.bpf, SYS.perf_event_open, SYS.userfaultfd, SYS.lookup_dcookie,
  SYS.io_uring_setup, SYS.io_uring_enter, SYS.io_uring_register,
  SYS.unshare, SYS.setns,
  SYS.init_module, SYS.finit_module, SYS.delete_module, SYS.kexec_load, SYS.kexec_file_load,
  SYS.reboot, SYS.swapon, SYS.swapoff, SYS.acct, SYS.iopl, SYS.ioperm, SYS.quotactl, SYS.sethostname, SYS.setdomainname,
];

/** CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME. */
export const CLONE_NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x00000080;
const MREMAP_FIXED = 2;

// Opcodes: BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ/JGE/JSET|BPF_K, BPF_RET|BPF_K.
const LD_ABS = 0x20;
const JEQ = 0x15;
const JGE = 0x35;
const JSET = 0x45;
const RET = 0x06;

type Target = string | number; // a label, or 0 for the next instruction

interface Insn {
  code: number;
  k: number;
  jt?: Target;
  jf?: Target;
  label?: string;
}

/** A tiny assembler: conditional jumps name labels, resolved to forward offsets. */
class Program {
  private readonly insns: Insn[] = [];
  label(name: string): this {
    this.insns.push({ code: -1, k: 0, label: name });
    return this;
  }
  ld(offset: number): this {
    this.insns.push({ code: LD_ABS, k: offset });
    return this;
  }
  jeq(k: number, jt: Target, jf: Target = 0): this {
    this.insns.push({ code: JEQ, k, jt, jf });
    return this;
  }
  jge(k: number, jt: Target, jf: Target = 0): this {
    this.insns.push({ code: JGE, k, jt, jf });
    return this;
  }
  jset(k: number, jt: Target, jf: Target = 0): this {
    this.insns.push({ code: JSET, k, jt, jf });
    return this;
  }
  ret(k: number): this {
    this.insns.push({ code: RET, k });
    return this;
  }
  /** struct sock_filter[]: u16 code, u8 jt, u8 jf, u32 k (native byte order, little-endian here). */
  assemble(): Buffer {
    const real: Insn[] = [];
    const labels = new Map<string, number>();
    for (const i of this.insns) {
      if (i.label !== undefined) labels.set(i.label, real.length);
      else real.push(i);
    }
    const buf = Buffer.alloc(real.length * 8);
    real.forEach((insn, pc) => {
      const rel = (t: Target | undefined): number => {
        if (t === undefined || t === 0) return 0;
        const at = typeof t === 'number' ? pc + 1 + t : labels.get(t);
        if (at === undefined) throw new Error(`bpf: unknown label ${String(t)}`);
        const off = at - pc - 1;
        if (off < 0 || off > 255) throw new Error(`bpf: jump to ${String(t)} out of range`);
        return off;
      };
      buf.writeUInt16LE(insn.code, pc * 8);
      buf.writeUInt8(rel(insn.jt), pc * 8 + 2);
      buf.writeUInt8(rel(insn.jf), pc * 8 + 3);
      buf.writeUInt32LE(insn.k >>> 0, pc * 8 + 4);
    });
    if (real.length > 4096) throw new Error('bpf: program too long');
    return buf;
  }
}

/** The policy filter (see the top of this file). */
export function policyFilter(): Buffer {
  const p = new Program();
  p.ld(ARCH).jeq(AUDIT_ARCH_X86_64, 0, 'kill');
  // x32 system calls (bit 30) would bypass every number below.
  p.ld(NR).jge(0x40000000, 'kill');
  for (const nr of DENIED_SYSCALLS) p.jeq(nr, 'deny');
  p.jeq(SYS.clone, 'clone');
  p.jeq(SYS.clone3, 'enosys');
  p.ret(SECCOMP_RET_ALLOW);
  p.label('clone').ld(argLo(0)).jset(CLONE_NAMESPACE_FLAGS, 'deny');
  p.ret(SECCOMP_RET_ALLOW);
  p.label('deny').ret(SECCOMP_RET_ERRNO | EPERM);
  p.label('enosys').ret(SECCOMP_RET_ERRNO | ENOSYS);
  p.label('kill').ret(SECCOMP_RET_KILL_PROCESS);
  return p.assemble();
}

/**
 * The exec filter: execve only with the instruction pointer `execIp` (the
 * address after the launcher's syscall instruction), and no mapping hinted
 * below `guardEnd` (where the launcher was) after it.
 */
export function execFilter(execIp: number, guardEnd: number): Buffer {
  const p = new Program();
  p.ld(ARCH).jeq(AUDIT_ARCH_X86_64, 0, 'kill');
  p.ld(NR).jge(0x40000000, 'kill');
  p.jeq(SYS.execve, 'execve');
  p.jeq(SYS.execveat, 'deny');
  p.jeq(SYS.mmap, 'arg0');
  p.jeq(SYS.shmat, 'arg1');
  p.jeq(SYS.mremap, 'mremap');
  p.ret(SECCOMP_RET_ALLOW);
  p.label('execve').ld(IP_HI).jeq(0, 0, 'deny').ld(IP_LO).jeq(execIp, 'allow', 'deny');
  p.label('mremap').ld(argLo(3)).jset(MREMAP_FIXED, 0, 'allow').ld(argHi(4)).jeq(0, 0, 'allow').ld(argLo(4)).jeq(0, 'allow').jge(guardEnd, 'allow', 'deny');
  p.label('arg0').ld(argHi(0)).jeq(0, 0, 'allow').ld(argLo(0)).jeq(0, 'allow').jge(guardEnd, 'allow', 'deny');
  p.label('arg1').ld(argHi(1)).jeq(0, 0, 'allow').ld(argLo(1)).jeq(0, 'allow').jge(guardEnd, 'allow', 'deny');
  p.label('allow').ret(SECCOMP_RET_ALLOW);
  p.label('deny').ret(SECCOMP_RET_ERRNO | EPERM);
  p.label('kill').ret(SECCOMP_RET_KILL_PROCESS);
  return p.assemble();
}

export interface SeccompData {
  nr: number;
  arch?: number;
  ip?: bigint;
  args?: Array<number | bigint>;
}

/**
 * Runs a filter on one system call, as the kernel would (only the
 * instructions emitted above). For tests and documentation: what a filter
 * does with calls a JavaScript program cannot make.
 */
export function evaluateFilter(filter: Uint8Array, data: SeccompData): number {
  const d = Buffer.alloc(64);
  d.writeUInt32LE(data.nr, NR);
  d.writeUInt32LE(data.arch ?? AUDIT_ARCH_X86_64, ARCH);
  d.writeBigUInt64LE(data.ip ?? 0n, IP_LO);
  (data.args ?? []).forEach((a, i) => d.writeBigUInt64LE(BigInt.asUintN(64, BigInt(a)), argLo(i)));
  const f = Buffer.from(filter.buffer, filter.byteOffset, filter.byteLength);
  let acc = 0;
  for (let pc = 0; pc * 8 < f.length; ) {
    const code = f.readUInt16LE(pc * 8);
    const jt = f.readUInt8(pc * 8 + 2);
    const jf = f.readUInt8(pc * 8 + 3);
    const k = f.readUInt32LE(pc * 8 + 4);
    switch (code) {
      case LD_ABS:
        acc = d.readUInt32LE(k);
        pc++;
        break;
      case JEQ:
        pc += 1 + (acc === k ? jt : jf);
        break;
      case JGE:
        pc += 1 + (acc >= k ? jt : jf);
        break;
      case JSET:
        pc += 1 + ((acc & k) !== 0 ? jt : jf);
        break;
      case RET:
        return k;
      default:
        throw new Error(`bpf: unknown opcode ${code}`);
    }
  }
  throw new Error('bpf: fell off the end');
}
