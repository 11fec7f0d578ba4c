/**
 * A cgroup per executor process, with memory and pids caps, where the host
 * offers those controllers: cgroup v2 when our own cgroup may enable them
 * for children (a delegated subtree), else cgroup v1 hierarchies we can
 * write to. Where neither works, executors run without one (the rlimits
 * still apply); `describe()` says which.
 *
 * Where the cpu controller is ours too, the cgroup also carries the
 * executor's CPU priority (CgroupLimits.nice), and demoting it makes it an
 * idle cgroup. The server sets both from outside, so they hold from the
 * process's first instruction, take effect at once, and the executor cannot
 * undo them; a priority the executor sets itself lives in its session's
 * autogroup, which the kernel lets any process change only once per 100 ms
 * host-wide (and raise again), and which does not count for a process in a
 * cpu cgroup.
 */
import fs from 'node:fs';
import path from 'node:path';

const ROOT = '/sys/fs/cgroup';

export interface CgroupLimits {
  /** memory.max / memory.limit_in_bytes; undefined: no memory cap. */
  memoryBytes?: number;
  /** pids.max. Node needs about 11 threads (more with a larger V8 pool): below that it hangs rather than failing. */
  pidsMax: number;
  /** With the cpu controller: the CPU weight of a process at this nice value (0-19), against the default weight of the server's. */
  nice?: number;
  /** With the cpu controller: start idle (see CpuPriority.idle), e.g. a spare executor that nobody waits for yet. */
  idle?: boolean;
}

/** An executor's CPU priority, held by its cgroup from outside. */
export interface CpuPriority {
  /**
   * It gets CPU only when nothing else wants it (cpu.idle, the cgroup form
   * of SCHED_IDLE; where the kernel lacks it, the lowest weight).
   */
  idle(): void;
  /** Back from idle to the weight of CgroupLimits.nice. */
  active(): void;
}

/** The kernel's CPU weight of each nice value 0-19 (sched_prio_to_weight); v1 cpu.shares takes the same scale. */
const NICE_WEIGHT = [1024, 820, 655, 526, 423, 335, 272, 215, 172, 137, 110, 87, 70, 56, 45, 36, 29, 23, 18, 15];

/** One executor's cgroup(s): the process joins by writing its pid to each of `procsFiles`. */
export interface ExecutorCgroup {
  procsFiles: string[];
  /** Removes the cgroup(s) once their processes are gone; retries briefly while they exit. */
  remove(): Promise<void>;
  /** With the cpu controller: its CPU priority. */
  cpu?: CpuPriority;
}

/** Our own cgroup path in each hierarchy (`''` for v2), from /proc/self/cgroup. */
function ownCgroups(): Map<string, string> {
  const out = new Map<string, string>();
  let text = '';
  try {
    text = fs.readFileSync('/proc/self/cgroup', 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    for (const c of m[1]!.split(',')) out.set(c, m[2]!);
  }
  return out;
}

function tryWrite(file: string, value: string): boolean {
  try {
    fs.writeFileSync(file, value);
    return true;
  } catch {
    return false;
  }
}

let counter = 0;

/**
 * Makes a cpu cgroup idle, or active again at the weight of `nice` (leaving
 * idle resets the weight to the default). A kernel without cpu.idle (before
 * 5.15) gets the lowest weight instead.
 */
function setIdle(dir: string, version: 1 | 2, idle: boolean, nice: number): void {
  const weightFile = path.join(dir, version === 2 ? 'cpu.weight' : 'cpu.shares');
  if (tryWrite(path.join(dir, 'cpu.idle'), idle ? '1' : '0') && idle) return;
  if (idle) tryWrite(weightFile, version === 2 ? '1' : '2');
  else if (version === 2) tryWrite(path.join(dir, 'cpu.weight.nice'), String(nice));
  else tryWrite(weightFile, String(niceWeight(nice)));
}

/** The CPU weight of nice value `nice` (clamped to 0-19). */
export function niceWeight(nice: number): number {
  return NICE_WEIGHT[Math.max(0, Math.min(19, Math.round(nice)))]!;
}

/** Removes the cgroups, retrying for up to 2 s while their last processes exit. */
async function removeLater(dirs: string[], attempts = 20): Promise<void> {
  let left = dirs;
  for (let i = 0; ; i++) {
    left = left.filter((d) => {
      try {
        fs.rmdirSync(d);
        return false;
      } catch (e) {
        return (e as NodeJS.ErrnoException).code !== 'ENOENT';
      }
    });
    if (left.length === 0 || i >= attempts) return;
    await new Promise((res) => setTimeout(res, 100));
  }
}

export class Cgroups {
  private constructor(
    readonly version: 1 | 2,
    /** Directories under which executor cgroups are made (one per v1 controller, or one v2 directory). */
    private readonly parents: Array<{ dir: string; controller: 'memory' | 'pids' | 'cpu' | 'both' }>,
    /** v2: the cpu controller is enabled for the executors' cgroups as well. */
    private readonly v2cpu = false,
  ) {}

  /** Executors' CPU priority is set here (see the module's comment). */
  get cpu(): boolean {
    return this.v2cpu || this.parents.some((p) => p.controller === 'cpu');
  }

  /**
   * What the host offers us; undefined when no usable cgroup controller
   * exists. Executor cgroups that servers now gone left behind are removed
   * first (sweepStale).
   */
  static detect(): Cgroups | undefined {
    const cgroups = Cgroups.find();
    cgroups?.sweepStale();
    return cgroups;
  }

  /**
   * Removes executor cgroups of processes that no longer exist: a server
   * killed with SIGKILL cannot remove its executors' cgroups, and they would
   * pile up (thousands on a test machine). A name carries the pid of the
   * process that made it; only cgroups older than `minAgeMs` go (a process
   * in another pid namespace may have just made one), and the kernel refuses
   * to remove one that still has processes. Returns how many were removed.
   */
  sweepStale(minAgeMs = 60_000): number {
    let removed = 0;
    const now = Date.now();
    for (const p of this.parents) {
      let names: string[];
      try {
        names = fs.readdirSync(p.dir);
      } catch {
        continue;
      }
      for (const name of names) {
        const m = /^gate-executor-(\d+)-\d+$/.exec(name);
        if (!m || Number(m[1]) === process.pid || fs.existsSync(`/proc/${m[1]}`)) continue;
        const dir = path.join(p.dir, name);
        try {
          if (now - fs.statSync(dir).ctimeMs < minAgeMs) continue;
          fs.rmdirSync(dir);
          removed++;
        } catch {
          // in use, gone meanwhile, or not ours to remove
        }
      }
    }
    return removed;
  }

  private static find(): Cgroups | undefined {
    const own = ownCgroups();
    // v2: a unified hierarchy whose cgroup (ours) lets children have memory and pids.
    const v2root = fs.existsSync(path.join(ROOT, 'cgroup.controllers')) ? ROOT : path.join(ROOT, 'unified');
    const v2path = own.get('');
    if (v2path !== undefined && fs.existsSync(path.join(v2root, 'cgroup.controllers'))) {
      const dir = path.join(v2root, v2path);
      try {
        const enabled = fs.readFileSync(path.join(dir, 'cgroup.subtree_control'), 'utf8');
        if ((/\bmemory\b/.test(enabled) && /\bpids\b/.test(enabled)) || tryWrite(path.join(dir, 'cgroup.subtree_control'), '+memory +pids')) {
          const cpu = /\bcpu\b/.test(enabled) || tryWrite(path.join(dir, 'cgroup.subtree_control'), '+cpu');
          return new Cgroups(2, [{ dir, controller: 'both' }], cpu);
        }
      } catch {
        // not ours to use
      }
    }
    // v1: separate memory, pids and cpu hierarchies, each where we are.
    const parents: Array<{ dir: string; controller: 'memory' | 'pids' | 'cpu' }> = [];
    for (const c of ['memory', 'pids', 'cpu'] as const) {
      const p = own.get(c);
      const dir = p === undefined ? undefined : path.join(ROOT, c, p);
      if (dir && fs.existsSync(path.join(dir, 'cgroup.procs'))) {
        try {
          fs.accessSync(dir, fs.constants.W_OK);
          parents.push({ dir, controller: c });
        } catch {
          // no permission
        }
      }
    }
    return parents.length > 0 ? new Cgroups(1, parents) : undefined;
  }

  describe(): string {
    const controllers = this.parents.map((p) => (p.controller === 'both' ? 'memory, pids' : p.controller));
    if (this.v2cpu) controllers.push('cpu');
    return `cgroup v${this.version} (${controllers.join(', ')})`;
  }

  /** Makes the cgroup(s) of one executor. Throws if the host refuses. */
  create(limits: CgroupLimits): ExecutorCgroup {
    const name = `gate-executor-${process.pid}-${++counter}`;
    const dirs: string[] = [];
    try {
      for (const p of this.parents) {
        const dir = path.join(p.dir, name);
        fs.mkdirSync(dir);
        dirs.push(dir);
        const mem = limits.memoryBytes !== undefined ? String(limits.memoryBytes) : undefined;
        if (this.version === 2) {
          if (mem) fs.writeFileSync(path.join(dir, 'memory.max'), mem);
          // No swap either: the cap is on memory, not on RAM.
          if (mem) tryWrite(path.join(dir, 'memory.swap.max'), '0');
          fs.writeFileSync(path.join(dir, 'pids.max'), String(limits.pidsMax));
          // The CPU priority is best effort: failing it must not cost the memory and pids caps.
          if (this.v2cpu && limits.nice) tryWrite(path.join(dir, 'cpu.weight.nice'), String(limits.nice));
          if (this.v2cpu && limits.idle) setIdle(dir, 2, true, 0);
        } else if (p.controller === 'memory') {
          if (mem) fs.writeFileSync(path.join(dir, 'memory.limit_in_bytes'), mem);
          if (mem) tryWrite(path.join(dir, 'memory.memsw.limit_in_bytes'), mem);
        } else if (p.controller === 'cpu') {
          if (limits.nice) tryWrite(path.join(dir, 'cpu.shares'), String(niceWeight(limits.nice)));
          if (limits.idle) setIdle(dir, 1, true, 0);
        } else {
          fs.writeFileSync(path.join(dir, 'pids.max'), String(limits.pidsMax));
        }
      }
    } catch (e) {
      void removeLater(dirs, 0);
      throw e;
    }
    const cpuDir = this.version === 2 ? (this.v2cpu ? dirs[0] : undefined) : dirs[this.parents.findIndex((p) => p.controller === 'cpu')];
    const version = this.version;
    const nice = limits.nice ?? 0;
    return {
      procsFiles: dirs.map((d) => path.join(d, 'cgroup.procs')),
      remove: () => removeLater(dirs),
      cpu: cpuDir ? { idle: () => setIdle(cpuDir, version, true, nice), active: () => setIdle(cpuDir, version, false, nice) } : undefined,
    };
  }
}
