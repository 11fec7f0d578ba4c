/**
 * How executor processes are started: under bubblewrap with seccomp filters,
 * resource limits and a cgroup (mode 'bwrap'), or as plain child processes
 * with limits only (mode 'none', the operator's explicit opt-out).
 * docs/security.md describes the layers and how the tests verify them.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GateError } from '../../../errors.js';
import type { ExecutorLaunch, LaunchCommand, LaunchPriority } from '../child-executor.js';
import { policyFilter } from './bpf.js';
import { Cgroups, type CgroupLimits, type CpuPriority } from './cgroup.js';
import { buildLauncher, RLIMIT } from './launcher.js';

export type SandboxMode = 'bwrap' | 'none';

/** The host cannot sandbox executors as configured. */
export class SandboxUnavailableError extends GateError {
  constructor(readonly reason: string) {
    super(
      'GATE_SANDBOX_UNAVAILABLE',
      `executor processes cannot be sandboxed on this host: ${reason}. ` +
        'Install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) and enable unprivileged user namespaces ' +
        '(sysctl user.max_user_namespaces > 0; kernel.unprivileged_userns_clone = 1 where that setting exists), ' +
        'or set runtime.sandbox = "none" to run untrusted programs without these layers (unsafe)',
    );
  }
}

/** Sandbox layers' defaults. */
export const DEFAULT_EXECUTOR_MEMORY_BYTES = 4 * 1024 ** 3;
export const DEFAULT_EXECUTOR_NOFILE = 256;
/** Node's own threads (~11) plus V8's pool (one per core) and the libuv pool, with room. */
export const DEFAULT_EXECUTOR_PIDS = 64 + os.cpus().length;

/** Where the launcher appears inside the sandbox. */
const LAUNCHER_INSIDE = '/gate/launcher';

/** dist/src: the executor's code (and everything it imports) lives under it. */
const CODE_DIR = fileURLToPath(new URL('../../../', import.meta.url));

export interface SandboxOptions {
  mode: SandboxMode;
  /** RLIMIT_DATA and the cgroup's memory cap, per executor (default 4 GiB). */
  memoryLimitBytes?: number;
  /** RLIMIT_NOFILE (default 256). */
  nofile?: number;
  /** pids.max of the cgroup (default 64 + cores). */
  pidsMax?: number;
  /** Put executors in a cgroup where the host has controllers (default true). */
  cgroups?: boolean;
  /** The bubblewrap binary (default: bwrap from /usr/bin, /bin, /usr/local/bin or PATH). */
  bwrapPath?: string;
}

function isExecutable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function findOnPath(name: string): string | undefined {
  for (const dir of ['/usr/bin', '/bin', '/usr/local/bin', ...(process.env.PATH ?? '').split(':')]) {
    if (!dir) continue;
    const p = path.join(dir, name);
    if (isExecutable(p)) return p;
  }
  return undefined;
}

/** The ELF interpreter (PT_INTERP) of an executable, e.g. /lib64/ld-linux-x86-64.so.2. */
function elfInterpreter(file: string): string | undefined {
  const fd = fs.openSync(file, 'r');
  try {
    const head = Buffer.alloc(64 * 1024);
    const n = fs.readSync(fd, head, 0, head.length, 0);
    if (n < 64 || head.toString('latin1', 0, 4) !== '\x7fELF' || head[4] !== 2) return undefined;
    const phoff = Number(head.readBigUInt64LE(32));
    const phentsize = head.readUInt16LE(54);
    const phnum = head.readUInt16LE(56);
    for (let i = 0; i < phnum; i++) {
      const at = phoff + i * phentsize;
      if (at + 56 > n) return undefined;
      if (head.readUInt32LE(at) !== 3) continue;
      const off = Number(head.readBigUInt64LE(at + 8));
      const size = Number(head.readBigUInt64LE(at + 32));
      if (off + size > n) return undefined;
      return head.toString('latin1', off, off + size).replace(/\0.*$/s, '');
    }
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Read-only binds for node itself: the binary, the shared libraries this
 * (node) process has mapped from the system's library directories, with the
 * symlink names the loader looks them up by, and the ELF interpreter. Nothing
 * else of the host's file system is visible inside.
 */
function nodeBinds(): string[] {
  const args: string[] = [];
  const bound = new Set<string>();
  const bind = (src: string, dest: string): void => {
    if (bound.has(dest)) return;
    bound.add(dest);
    args.push('--ro-bind', src, dest);
  };
  const exe = process.execPath;
  const realExe = fs.realpathSync(exe);
  bind(realExe, realExe);
  if (exe !== realExe) bind(realExe, exe);
  const interp = elfInterpreter(realExe);
  if (interp) bind(fs.realpathSync(interp), interp);
  const libs = new Set<string>();
  for (const line of fs.readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    const file = line.slice(line.indexOf('/'));
    if (line.includes('/') && /^\/(usr\/)?lib(64|32|x32)?\//.test(file) && /\.so(\.[\d.]+)?$/.test(file)) libs.add(fs.realpathSync(file));
  }
  const dirs = new Map<string, string[]>();
  for (const lib of libs) {
    bind(lib, lib);
    const dir = path.dirname(lib);
    if (!dirs.has(dir)) dirs.set(dir, fs.readdirSync(dir));
    for (const name of dirs.get(dir)!) {
      const alias = path.join(dir, name);
      if (alias === lib) continue;
      try {
        if (fs.lstatSync(alias).isSymbolicLink() && fs.realpathSync(alias) === lib && !bound.has(alias)) {
          bound.add(alias);
          args.push('--symlink', path.basename(lib), alias);
        }
      } catch {
        // a dangling link
      }
    }
  }
  return args;
}

/** The nearest package.json above a directory (node needs its "type" to load ESM .js files). */
function packageJsonOf(dir: string): string | undefined {
  for (let d = dir; ; d = path.dirname(d)) {
    const p = path.join(d, 'package.json');
    if (fs.existsSync(p)) return p;
    if (path.dirname(d) === d) return undefined;
  }
}

/**
 * A prepared way of starting executor processes: the launcher and filter
 * files in a private temporary directory, the bind list, the cgroup
 * hierarchy. One per pool; `dispose` removes the files.
 */
export class Sandbox implements ExecutorLaunch {
  private readonly dir: string;
  private readonly launcher: string | undefined;
  private readonly filterFile: string | undefined;
  private readonly bwrap: string | undefined;
  private readonly binds: string[];
  readonly cgroups: Cgroups | undefined;
  private readonly limits: CgroupLimits;
  private readonly rlimits: Array<{ resource: number; value: bigint }>;

  private constructor(readonly opts: SandboxOptions) {
    const memory = opts.memoryLimitBytes ?? DEFAULT_EXECUTOR_MEMORY_BYTES;
    this.rlimits = [
      { resource: RLIMIT.DATA, value: BigInt(memory) },
      { resource: RLIMIT.NOFILE, value: BigInt(opts.nofile ?? DEFAULT_EXECUTOR_NOFILE) },
      { resource: RLIMIT.CORE, value: 0n },
    ];
    this.limits = { memoryBytes: memory, pidsMax: opts.pidsMax ?? DEFAULT_EXECUTOR_PIDS };
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gate-sandbox-'));
    const x64 = process.platform === 'linux' && process.arch === 'x64';
    if (opts.mode === 'bwrap') {
      if (!x64) throw new SandboxUnavailableError('the seccomp filters and the launcher are built for x86-64 Linux only');
      this.bwrap = opts.bwrapPath ?? findOnPath('bwrap');
      if (!this.bwrap || !isExecutable(this.bwrap)) throw new SandboxUnavailableError(`bubblewrap (bwrap) is not installed${opts.bwrapPath ? ` at ${opts.bwrapPath}` : ''}`);
      this.filterFile = path.join(this.dir, 'policy.bpf');
      fs.writeFileSync(this.filterFile, policyFilter(), { mode: 0o600 });
      this.binds = nodeBinds();
    } else {
      this.binds = [];
    }
    if (x64) {
      this.launcher = path.join(this.dir, 'launcher');
      const { bytes } = buildLauncher({ rlimits: this.rlimits, filters: [], execFilter: opts.mode === 'bwrap' });
      fs.writeFileSync(this.launcher, bytes, { mode: 0o755 });
    }
    this.cgroups = opts.cgroups === false ? undefined : Cgroups.detect();
  }

  /** Prepares the files; throws SandboxUnavailableError when 'bwrap' cannot work here. */
  static create(opts: SandboxOptions): Sandbox {
    return new Sandbox(opts);
  }

  get mode(): SandboxMode {
    return this.opts.mode;
  }

  describe(): string {
    const layers = this.opts.mode === 'bwrap' ? ['bubblewrap', 'seccomp'] : ['no sandbox'];
    layers.push(this.launcher ? 'rlimits' : 'no rlimits');
    layers.push(this.cgroups ? this.cgroups.describe() : 'no cgroup');
    return layers.join(', ');
  }

  /**
   * The command that runs `node nodeArgv...` as an executor: `readable` are
   * extra paths (files or directories) the process may read, e.g. its main
   * module's directory. `cpu.nice`: the nice steps below this process's
   * CPU priority that the executor runs at; where the cpu controller is
   * ours, its cgroup holds that priority (and LaunchCommand.cpu is set),
   * idle from the start with `cpu.idle`.
   */
  command(nodeArgv: string[], readable: string[] = [], cpu: LaunchPriority = {}): LaunchCommand {
    const node = process.execPath;
    let file: string;
    let args: string[];
    const fds: number[] = [];
    const inner = this.launcher ? [this.opts.mode === 'bwrap' ? LAUNCHER_INSIDE : this.launcher, node, ...nodeArgv] : [node, ...nodeArgv];
    if (this.opts.mode === 'bwrap') {
      const paths = new Set<string>([CODE_DIR, ...readable]);
      for (const p of [...paths]) {
        const pkg = packageJsonOf(fs.statSync(p).isDirectory() ? p : path.dirname(p));
        if (pkg) paths.add(pkg);
      }
      const extra: string[] = [];
      for (const p of paths) extra.push('--ro-bind', p, p);
      fds.push(fs.openSync(this.filterFile!, 'r'));
      file = this.bwrap!;
      args = [
        '--unshare-all',
        '--uid', '65534',
        '--gid', '65534',
        '--cap-drop', 'ALL',
        '--hostname', 'gate',
        '--die-with-parent',
        '--new-session',
        '--clearenv',
        // Mounts first, so that binds of paths under /tmp stay visible.
        '--proc', '/proc',
        '--dev', '/dev',
        '--tmpfs', '/tmp',
        ...this.binds,
        '--ro-bind', this.launcher!, LAUNCHER_INSIDE,
        ...extra,
        '--remount-ro', '/',
        '--chdir', '/tmp',
        '--seccomp', '3',
        '--',
        ...inner,
      ];
    } else {
      file = inner[0]!;
      args = inner.slice(1);
      if (!this.launcher) {
        const prlimit = findOnPath('prlimit');
        if (prlimit) {
          file = prlimit;
          args = [`--data=${this.limits.memoryBytes}`, `--nofile=${this.rlimits[1]!.value}`, '--core=0', '--', ...inner];
        }
      }
    }
    let cleanup: (() => void) | undefined;
    let priority: CpuPriority | undefined;
    if (this.cgroups) {
      try {
        // Without nice steps the cgroup keeps the default weight, as a session of its own would have.
        const cg = this.cgroups.create({ ...this.limits, nice: cpu.nice ? Math.min(19, os.getPriority() + cpu.nice) : undefined, idle: cpu.idle });
        priority = cg.cpu;
        // The process joins its cgroup before it starts anything (bwrap forks
        // at once): a shell writes its own pid, then becomes the command.
        args = ['-c', 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 126; shift; n=$((n-1)); done; exec "$@"', 'sh', String(cg.procsFiles.length), ...cg.procsFiles, file, ...args];
        file = '/bin/sh';
        cleanup = () => cg.remove();
      } catch {
        // The host refused this time (e.g. too many cgroups): the rlimits still apply.
      }
    }
    return { file, args, fds, exited: cleanup, cpu: priority };
  }

  dispose(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Whether executors can be sandboxed with bubblewrap here: actually starts
 * node once inside the sandbox (with the seccomp filter and the launcher).
 */
export async function checkSandbox(opts: { bwrapPath?: string } = {}): Promise<{ available: boolean; reason?: string }> {
  if (process.platform !== 'linux') return { available: false, reason: 'bubblewrap needs Linux' };
  try {
    const max = fs.readFileSync('/proc/sys/user/max_user_namespaces', 'utf8').trim();
    if (max === '0') return { available: false, reason: 'user namespaces are disabled (user.max_user_namespaces = 0)' };
  } catch {
    return { available: false, reason: 'the kernel has no user namespaces' };
  }
  let sandbox: Sandbox;
  try {
    sandbox = Sandbox.create({ mode: 'bwrap', cgroups: false, bwrapPath: opts.bwrapPath });
  } catch (e) {
    return { available: false, reason: e instanceof SandboxUnavailableError ? e.reason : String(e) };
  }
  try {
    const cmd = sandbox.command(['-e', 'require("fs").writeFileSync("/tmp/probe", "ok")']);
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(cmd.file, cmd.args, { env: {}, stdio: ['ignore', 'ignore', 'pipe', ...cmd.fds!] });
      for (const fd of cmd.fds!) fs.closeSync(fd);
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')).slice(0, 4096));
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      child.on('error', (e) => {
        clearTimeout(timer);
        resolve({ code: -1, stderr: e.message });
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stderr });
      });
    });
    if (result.code === 0) return { available: true };
    const detail = result.stderr.trim().split('\n')[0]?.replace(/[^\x20-\x7e]/g, '?').slice(0, 300) || `exit status ${result.code}`;
    return { available: false, reason: `bwrap failed: ${detail}` };
  } finally {
    sandbox.dispose();
  }
}
