/**
 * A cgroup per executor process, with memory and pids caps, where the host
 * offers those controllers: cgroup v2 when our own cgroup may enable them
 * for children (a delegated subtree), else cgroup v1 hierarchies we can
 * write to. Where neither works, executors run without one (the rlimits
 * still apply); `describe()` says which.
 */
import fs from 'node:fs';
import path from 'node:path';

const ROOT = '/sys/fs/cgroup';

export interface CgroupLimits {
  /** memory.max / memory.limit_in_bytes; undefined: no memory cap. */
  memoryBytes?: number;
  /** pids.max. Node needs about 11 threads (more with a larger V8 pool): below that it hangs rather than failing. */
  pidsMax: number;
}

/** One executor's cgroup(s): the process joins by writing its pid to each of `procsFiles`. */
export interface ExecutorCgroup {
  procsFiles: string[];
  /** Removes the cgroup(s) once their processes are gone; retries briefly while they exit. */
  remove(): Promise<void>;
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
    private readonly parents: Array<{ dir: string; controller: 'memory' | 'pids' | 'both' }>,
  ) {}

  /** What the host offers us; undefined when no usable cgroup controller exists. */
  static detect(): Cgroups | undefined {
    const own = ownCgroups();
    // v2: a unified hierarchy whose cgroup (ours) lets children have memory and pids.
    const v2root = fs.existsSync(path.join(ROOT, 'cgroup.controllers')) ? ROOT : path.join(ROOT, 'unified');
    const v2path = own.get('');
    if (v2path !== undefined && fs.existsSync(path.join(v2root, 'cgroup.controllers'))) {
      const dir = path.join(v2root, v2path);
      try {
        const enabled = fs.readFileSync(path.join(dir, 'cgroup.subtree_control'), 'utf8');
        if ((/\bmemory\b/.test(enabled) && /\bpids\b/.test(enabled)) || tryWrite(path.join(dir, 'cgroup.subtree_control'), '+memory +pids')) {
          return new Cgroups(2, [{ dir, controller: 'both' }]);
        }
      } catch {
        // not ours to use
      }
    }
    // v1: separate memory and pids hierarchies, each where we are.
    const parents: Array<{ dir: string; controller: 'memory' | 'pids' }> = [];
    for (const c of ['memory', 'pids'] as const) {
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
    return `cgroup v${this.version} (${this.parents.map((p) => p.controller).join(', ')})`;
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
        } else if (p.controller === 'memory') {
          if (mem) fs.writeFileSync(path.join(dir, 'memory.limit_in_bytes'), mem);
          if (mem) tryWrite(path.join(dir, 'memory.memsw.limit_in_bytes'), mem);
        } else {
          fs.writeFileSync(path.join(dir, 'pids.max'), String(limits.pidsMax));
        }
      }
    } catch (e) {
      void removeLater(dirs, 0);
      throw e;
    }
    return { procsFiles: dirs.map((d) => path.join(d, 'cgroup.procs')), remove: () => removeLater(dirs) };
  }
}
