/**
 * Each sandbox layer, verified from inside a real executor process started
 * exactly as the pool starts executors (test/sandbox/probe.ts reports what it
 * could do), and the seccomp filters verified on real system calls.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  AUDIT_ARCH_X86_64,
  CLONE_NAMESPACE_FLAGS,
  DENIED_SYSCALLS,
  ENOSYS,
  EPERM,
  evaluateFilter,
  execFilter,
  policyFilter,
  SECCOMP_RET_ALLOW,
  SECCOMP_RET_ERRNO,
  SECCOMP_RET_KILL_PROCESS,
  SYS,
} from '../../src/runtime/node/sandbox/bpf.js';
import { Cgroups } from '../../src/runtime/node/sandbox/cgroup.js';
import { buildLauncher, LAUNCHER_BASE, LAUNCHER_GUARD_END, RLIMIT } from '../../src/runtime/node/sandbox/launcher.js';
import { checkSandbox, Sandbox, SandboxUnavailableError } from '../../src/runtime/node/sandbox/sandbox.js';
import { ExecutorPool } from '../../src/runtime/node/pool.js';

const PROBE = fileURLToPath(new URL('./probe.js', import.meta.url));
const CODE_DIR = fileURLToPath(new URL('../../src/', import.meta.url));
const DENY = SECCOMP_RET_ERRNO | EPERM;

type Probe = Record<string, unknown> & {
  namespaces: Record<string, string>;
  pids: string[];
  root: string[];
  env: string[];
};

/** Runs the probe as an executor of `sandbox` would run. */
async function probe(sandbox: Sandbox): Promise<Probe> {
  const cmd = sandbox.command([PROBE, '--probe', String(process.pid), path.join(CODE_DIR, 'escape')], [path.dirname(PROBE)]);
  const child = spawn(cmd.file, cmd.args, { env: {}, stdio: ['ignore', 'pipe', 'pipe', ...(cmd.fds ?? [])] });
  for (const fd of cmd.fds ?? []) fs.closeSync(fd);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d));
  child.stderr!.on('data', (d: Buffer) => (err += d));
  const code = await new Promise<number | null>((res) => child.on('close', res));
  await cmd.exited?.();
  assert.equal(code, 0, `probe failed: ${err}`);
  return JSON.parse(out) as Probe;
}

function ownNamespace(n: string): string {
  return fs.readlinkSync(`/proc/self/ns/${n}`);
}

describe('sandbox layers (bwrap)', async () => {
  const check = await checkSandbox();

  it('bubblewrap works on this host (checkSandbox tries it)', () => {
    assert.deepEqual(check, { available: true });
  });

  const sandbox = Sandbox.create({ mode: 'bwrap', memoryLimitBytes: 1024 ** 3, cgroups: false });
  after(() => sandbox.dispose());
  const inside = await probe(sandbox);

  it('runs in new user, pid, net, ipc, uts, mount and cgroup namespaces', () => {
    for (const n of ['user', 'pid', 'net', 'ipc', 'uts', 'mnt', 'cgroup']) {
      assert.match(inside.namespaces[n]!, /^ok:/, n);
      assert.notEqual(inside.namespaces[n]!.slice(3), ownNamespace(n), `${n} namespace is the host's`);
    }
    assert.equal(inside.hostname, 'gate');
  });

  it('as uid/gid 65534 without capabilities, no_new_privs set', () => {
    assert.equal(inside.uid, 65534);
    assert.equal(inside.gid, 65534);
    assert.equal(inside.capEff, '0000000000000000');
    assert.equal(inside.noNewPrivs, '1');
  });

  it('with an empty environment', () => {
    assert.deepEqual(inside.env, []);
  });

  it('sees only its own processes', () => {
    assert.equal(inside.outsidePidVisible, false);
    assert.ok(inside.pids.length <= 3, `pids visible: ${inside.pids.join(' ')}`);
    assert.ok(Number(inside.pid) <= 3);
  });

  it('sees only node, its libraries, the executor code and a private /tmp', () => {
    assert.equal(inside.readPasswd, 'ENOENT');
    for (const dir of ['etc', 'home', 'root', 'var', 'sys', 'bin']) assert.ok(!inside.root.includes(dir), `/${dir} is visible`);
    assert.equal(inside.writeForbidden, 'EROFS'); // the executor's own code
    assert.equal(inside.writeRoot, 'EROFS');
    assert.equal(inside.writeTmp, 'ok');
  });

  it('has no network: sockets are refused by seccomp', () => {
    assert.equal(inside.connectRemote, 'EPERM');
    assert.equal(inside.connectLocal, 'EPERM');
    assert.equal(inside.listen, 'EPERM');
  });

  it('cannot execute anything after start (seccomp exec filter)', () => {
    assert.equal(inside.exec, 'EPERM');
    assert.equal(inside.seccomp, '2');
    assert.equal(inside.seccompFilters, '2'); // bwrap's policy filter + the launcher's exec filter
  });

  it('runs under the configured rlimits (launcher)', () => {
    assert.equal(inside.rlimitData, `${1024 ** 3}/${1024 ** 3}`);
    assert.equal(inside.rlimitNofile, '256/256');
    assert.equal(inside.rlimitCore, '0/0');
  });
});

describe('sandbox "none"', async () => {
  const sandbox = Sandbox.create({ mode: 'none', memoryLimitBytes: 2 * 1024 ** 3, cgroups: false });
  after(() => sandbox.dispose());
  const inside = await probe(sandbox);

  it('still has an empty environment and the rlimits, but no other layer', () => {
    assert.deepEqual(inside.env, []);
    assert.equal(inside.rlimitData, `${2 * 1024 ** 3}/${2 * 1024 ** 3}`);
    assert.equal(inside.rlimitCore, '0/0');
    assert.equal(inside.seccomp, '0');
    assert.equal(inside.namespaces.net!.slice(3), ownNamespace('net'));
  });
});

describe('seccomp filters (evaluated)', () => {
  const policy = policyFilter();
  const execIp = LAUNCHER_BASE + 0x123;
  const exec = execFilter(execIp, LAUNCHER_GUARD_END);

  it('the policy filter refuses sockets, ptrace, mounts, keyrings, bpf, io_uring and namespaces', () => {
    for (const nr of [SYS.socket, SYS.ptrace, SYS.mount, SYS.keyctl, SYS.bpf, SYS.unshare, SYS.setns, SYS.io_uring_setup, SYS.process_vm_writev]) {
      assert.ok(DENIED_SYSCALLS.includes(nr));
      assert.equal(evaluateFilter(policy, { nr }), DENY, `syscall ${nr}`);
    }
    for (const nr of DENIED_SYSCALLS) assert.equal(evaluateFilter(policy, { nr }), DENY);
  });

  it('refuses clone with namespace flags, sends clone3 to the clone fallback, allows threads', () => {
    const threadFlags = 0x3d0f00; // glibc pthread_create
    assert.equal(evaluateFilter(policy, { nr: SYS.clone, args: [threadFlags] }), SECCOMP_RET_ALLOW);
    for (let bit = 0; bit < 32; bit++) {
      const flag = 2 ** bit;
      if (CLONE_NAMESPACE_FLAGS & flag) assert.equal(evaluateFilter(policy, { nr: SYS.clone, args: [threadFlags | flag] }), DENY, `flag ${flag.toString(16)}`);
    }
    assert.equal(evaluateFilter(policy, { nr: SYS.clone3 }), SECCOMP_RET_ERRNO | ENOSYS);
  });

  it('allows ordinary calls and kills other ABIs', () => {
    for (const nr of [0, 1, 3, 9, 10, 11, 202, 232, 281]) assert.equal(evaluateFilter(policy, { nr }), SECCOMP_RET_ALLOW);
    assert.equal(evaluateFilter(policy, { nr: 0x40000000 + SYS.socket }), SECCOMP_RET_KILL_PROCESS);
    assert.equal(evaluateFilter(policy, { nr: 1, arch: 0x40000003 /* i386 */ }), SECCOMP_RET_KILL_PROCESS);
    assert.notEqual(AUDIT_ARCH_X86_64, 0x40000003);
  });

  it('the exec filter allows execve only from the launcher and nothing mapped over it', () => {
    assert.equal(evaluateFilter(exec, { nr: SYS.execve, ip: BigInt(execIp) }), SECCOMP_RET_ALLOW);
    assert.equal(evaluateFilter(exec, { nr: SYS.execve, ip: BigInt(execIp) + 2n }), DENY);
    assert.equal(evaluateFilter(exec, { nr: SYS.execve, ip: (1n << 32n) + BigInt(execIp) }), DENY);
    assert.equal(evaluateFilter(exec, { nr: SYS.execveat, ip: BigInt(execIp) }), DENY);
    assert.equal(evaluateFilter(exec, { nr: SYS.mmap, args: [0] }), SECCOMP_RET_ALLOW);
    assert.equal(evaluateFilter(exec, { nr: SYS.mmap, args: [0x7f0000000000n] }), SECCOMP_RET_ALLOW);
    assert.equal(evaluateFilter(exec, { nr: SYS.mmap, args: [LAUNCHER_BASE] }), DENY);
    assert.equal(evaluateFilter(exec, { nr: SYS.mmap, args: [0x1000] }), DENY);
    assert.equal(evaluateFilter(exec, { nr: SYS.mremap, args: [0x7f0000000000n, 4096, 8192, 1, 0] }), SECCOMP_RET_ALLOW);
    assert.equal(evaluateFilter(exec, { nr: SYS.mremap, args: [0x7f0000000000n, 4096, 8192, 3, LAUNCHER_BASE] }), DENY);
    assert.equal(evaluateFilter(exec, { nr: SYS.shmat, args: [3, LAUNCHER_BASE] }), DENY);
  });
});

describe('seccomp filters (real system calls)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gate-seccomp-test-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, opts: Parameters<typeof buildLauncher>[0]): string => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, buildLauncher(opts).bytes, { mode: 0o755 });
    return file;
  };
  const policyLauncher = write('policy', { rlimits: [], filters: [policyFilter()], execFilter: false });
  const execLauncher = write('exec', { rlimits: [{ resource: RLIMIT.NOFILE, value: 64n }], filters: [], execFilter: true });

  it('the launcher sets rlimits and executes its arguments; after it, execve is refused', () => {
    const r = spawnSync(execLauncher, ['/bin/sh', '-c', 'ulimit -n; /bin/true; echo "status $?"'], { env: {}, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^64\nstatus 126\n$/);
    assert.match(r.stderr, /Operation not permitted/);
  });

  // Calls JavaScript cannot make, made by python through libc's syscall(),
  // with and without the policy filter: each is refused only under it.
  const python = ['/usr/bin/python3', ...(process.env.PATH ?? '').split(':').map((d) => path.join(d, 'python3'))].find((p) => fs.existsSync(p));
  it('the policy filter refuses ptrace, mount, keyctl, bpf, unshare, setns, io_uring, perf and sockets', { skip: python ? false : 'python3 is not installed' }, () => {
    const script = `
import ctypes, json
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return 0 if r >= 0 else ctypes.get_errno()
print(json.dumps({
    'ptrace': call(${SYS.ptrace}, 12, 999999999, 0, 0),
    'mount': call(${SYS.mount}, 0, 0, 0, 0, 0),
    'keyctl': call(${SYS.keyctl}, 0, -3, 0),
    'bpf': call(${SYS.bpf}, 999, 0, 0),
    'unshare': call(${SYS.unshare}, 0x40000000),
    'setns': call(${SYS.setns}, -1, 0),
    'io_uring_setup': call(${SYS.io_uring_setup}, 0, 0),
    'perf_event_open': call(${SYS.perf_event_open}, 0, 0, -1, -1, 0),
    'socket': call(${SYS.socket}, 2, 1, 0),
}))`;
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/' };
    const plain = spawnSync(python!, ['-c', script], { env, encoding: 'utf8' });
    const filtered = spawnSync(policyLauncher, [python!, '-c', script], { env, encoding: 'utf8' });
    assert.equal(plain.status, 0, plain.stderr);
    assert.equal(filtered.status, 0, filtered.stderr);
    const before = JSON.parse(plain.stdout) as Record<string, number>;
    const after = JSON.parse(filtered.stdout) as Record<string, number>;
    for (const [name, errno] of Object.entries(after)) {
      assert.equal(errno, EPERM, `${name} under the filter`);
      assert.notEqual(before[name], EPERM, `${name} is refused even without the filter: the test proves nothing`);
    }
  });
});

describe('cgroup', () => {
  const cgroups = Cgroups.detect();
  it('an executor runs in its own cgroup with memory and pids caps', { skip: cgroups ? false : 'no writable cgroup controllers on this host' }, async () => {
    const pool = await ExecutorPool.create({ sandbox: 'bwrap', memoryLimitBytes: 768 * 1024 ** 2 });
    try {
      const ex = pool.executorFor('cgroup-test');
      await ex.started();
      const own = fs.readFileSync(`/proc/${ex.pid}/cgroup`, 'utf8');
      const lines = own.split('\n').filter((l) => l.includes('gate-executor-'));
      assert.ok(lines.length > 0, own);
      for (const line of lines) {
        const [, controllers, rel] = /^\d+:([^:]*):(.*)$/.exec(line)!;
        const dir = controllers === '' ? path.join('/sys/fs/cgroup', fs.existsSync('/sys/fs/cgroup/cgroup.controllers') ? '' : 'unified', rel!) : path.join('/sys/fs/cgroup', controllers!, rel!);
        if (controllers === 'memory' || controllers === '') {
          const file = controllers === '' ? 'memory.max' : 'memory.limit_in_bytes';
          assert.equal(fs.readFileSync(path.join(dir, file), 'utf8').trim(), String(768 * 1024 ** 2));
        }
        if (controllers === 'pids' || controllers === '') assert.match(fs.readFileSync(path.join(dir, 'pids.max'), 'utf8'), /^\d+\n$/);
      }
    } finally {
      await pool.close();
    }
  });
});

describe('cgroups left behind', () => {
  const cgroups = Cgroups.detect();
  it('those of a server killed with SIGKILL are removed by the next one, those in use are kept', { skip: cgroups ? false : 'no writable cgroup controllers on this host' }, async () => {
    // A process that makes executor cgroups and is killed before it can remove them.
    const module = new URL('../../src/runtime/node/sandbox/cgroup.js', import.meta.url).href;
    const script = `const { Cgroups } = await import(${JSON.stringify(module)}); const g = Cgroups.detect().create({ pidsMax: 20 }); process.stdout.write(JSON.stringify(g.procsFiles)); process.kill(process.pid, 'SIGKILL');`;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(child.signal, 'SIGKILL');
    const left = (JSON.parse(child.stdout) as string[]).map((f) => path.dirname(f));
    assert.ok(left.length > 0 && left.every((d) => fs.existsSync(d)), 'the killed process left its cgroups');
    const mine = cgroups!.create({ pidsMax: 20 });
    try {
      cgroups!.sweepStale(60_000);
      for (const d of left) assert.ok(fs.existsSync(d), `${d} was made just now: left alone (its maker may be in another pid namespace)`);
      assert.ok(cgroups!.sweepStale(0) >= left.length);
      for (const d of left) assert.equal(fs.existsSync(d), false, `${d} removed`);
      for (const f of mine.procsFiles) assert.ok(fs.existsSync(f), 'this process\'s own cgroups are kept');
    } finally {
      await mine.remove();
    }
  });
});

describe('sandbox unavailable', () => {
  it('the error tells the operator what to do', async () => {
    const e = new SandboxUnavailableError('user namespaces are disabled');
    assert.equal(e.code, 'GATE_SANDBOX_UNAVAILABLE');
    assert.match(e.message, /user namespaces are disabled/);
    assert.match(e.message, /bubblewrap/);
    assert.match(e.message, /runtime\.sandbox = "none"/);
    await assert.rejects(ExecutorPool.create({ sandbox: 'chroot' as 'none' }), SandboxUnavailableError);
  });
});
