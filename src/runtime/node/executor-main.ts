/**
 * Entry point of an executor process. Untrusted programs run here, never in
 * the server or CLI process. Messages arrive on stdin and leave on stdout
 * (see framing.ts); stdout carries nothing else.
 */
import { engineBeforeCompile } from './engine-flags.js';
import { readdirSync, writeFileSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { ExecutorCore } from '../executor-core.js';
import { internalFailure, type InstanceStatus } from '../status.js';
import { FrameDecoder, corkedWrite, encodeFramePieces, type Message } from './framing.js';
import { decodeRewindSource, decodeSpec, encodeSnapshot } from './protocol.js';

// The terminal's Ctrl-C and Ctrl-\ reach the whole foreground process group:
// they are for the parent (gate run suspends or kills the instance), which
// decides when this process ends (by closing its stdin).
process.on('SIGINT', () => {});
process.on('SIGQUIT', () => {});
// A trap's backtrace is read from V8's stack trace (runtime/trap-frames.ts): keep enough frames.
Error.stackTraceLimit = 100;

// Anything printed by accident must not corrupt the message stream.
console.log = console.error;
console.info = console.error;

// The environment is empty (and may not be read in a sandbox): options come as arguments.
const sliceArg = process.argv.find((a) => a.startsWith('--slice-ms='));
const sliceMs = Number(sliceArg?.slice('--slice-ms='.length)) || 10;
const capArg = process.argv.find((a) => a.startsWith('--instance-memory-cap='));
const instanceMemoryCap = capArg ? Number(capArg.slice('--instance-memory-cap='.length)) || undefined : undefined;
/**
 * The session's nice value this process wants, and the pending retry of
 * writing it. The kernel accepts one autogroup change per 100 ms host-wide
 * from unprivileged processes (EAGAIN), so a write may have to wait; one
 * retry loop writes whatever is wanted by then, so that a late retry of the
 * start's value can never undo a demotion.
 */
let sessionNice = 0;
let sessionRetry: ReturnType<typeof setTimeout> | undefined;

const niceArg = process.argv.find((a) => a.startsWith('--nice='));
const niceBy = Number(niceArg?.slice('--nice='.length)) || 0;
if (niceBy > 0) lowerPriority(Math.min(19, getPriority() + niceBy));
const demoteArg = process.argv.find((a) => a.startsWith('--demote-after-ms='));
const demoteAfterMs = Number(demoteArg?.slice('--demote-after-ms='.length)) || 0;
// Slices count the CPU this process had, not the time it waited for a CPU (see Scheduler's cpuClock).
const processCpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const core = new ExecutorCore(sliceMs, instanceMemoryCap, processCpuMs, engineBeforeCompile);

/**
 * Lowers this process's CPU priority to nice value `target`, so
 * that the kernel prefers the server and other executors when the CPU is
 * short. Linux keeps a nice value per thread: every thread node has started
 * by now (V8's workers) is lowered; later ones inherit it from the main
 * thread. Where the kernel groups processes by session (autogroup, the
 * default of most distributions), thread nice values count only within the
 * session, and this process has a session of its own (it is started
 * detached, and bubblewrap makes a new one): the session's nice value is
 * lowered as well. Thread nice values cannot be raised again without
 * privileges; the session's can (the kernel refuses only negative values),
 * so where it can, the server holds the priority from outside, in the
 * executor's cpu cgroup (sandbox/cgroup.ts), which then counts instead.
 */
function lowerPriority(target: number): void {
  let threads = [0];
  try {
    threads = readdirSync('/proc/self/task').map(Number);
  } catch {
    // No /proc: the main thread (which runs the programs) at least.
  }
  for (const tid of threads) {
    try {
      setPriority(tid, target);
    } catch {
      // A thread that has ended meanwhile.
    }
  }
  lowerSessionPriority(target, 50);
}

function lowerSessionPriority(nice: number, attempts: number): void {
  if (nice <= sessionNice) return;
  sessionNice = nice;
  if (sessionRetry) clearTimeout(sessionRetry);
  writeSessionPriority(attempts);
}

function writeSessionPriority(attempts: number): void {
  sessionRetry = undefined;
  try {
    writeFileSync('/proc/self/autogroup', String(sessionNice));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EAGAIN' && attempts > 1) {
      sessionRetry = setTimeout(() => writeSessionPriority(attempts - 1), 20 + Math.random() * 100);
      sessionRetry.unref();
    }
    // Else no autogroup here (ENOENT: kernel without it; the thread nice values then count).
  }
}

const out = process.stdout;

/**
 * Past this much unsent output (debug logs, packets), no instance runs until
 * the parent has read it: a program writing without end cannot grow this
 * process's memory without bound.
 */
const OUTPUT_HIGH_WATER = 8 * 1024 * 1024;

function send(header: Message['header'], payload?: Uint8Array | Uint8Array[]): void {
  // Pieces are written as they are; the stream keeps references until they
  // are written (a stopped instance's memory does not change meanwhile).
  for (const piece of encodeFramePieces(header, payload)) corkedWrite(out, piece);
  if (out.writableLength > OUTPUT_HIGH_WATER) core.pause();
}
out.on('drain', () => core.resume());

// Demotion: once one of its instances has computed for demoteAfterMs, this
// process goes to the lowest priority for good (it cannot be raised again)
// and says so; the pool then starts new instances elsewhere, so that requests
// that compute little do not wait behind long computations.
if (demoteAfterMs > 0) {
  const watch = setInterval(() => {
    if (core.mostCpuMs < demoteAfterMs) return;
    clearInterval(watch);
    lowerPriority(19);
    send({ t: 'demoted' });
  }, 50);
  watch.unref();
}

async function handle(m: Message): Promise<void> {
  const h = m.header;
  const id = typeof h.id === 'string' ? h.id : '';
  switch (h.t) {
    case 'load': {
      const key = String(h.key);
      try {
        const payload = m.payload ?? new Uint8Array(0);
        // The payload: the prepared module, then the module its rewind copies are made from (h.source says how long and how).
        const source = decodeRewindSource(h.source, payload);
        await core.loadModule(key, source ? payload.subarray(0, payload.length - source.module.length) : payload, source);
        send({ t: 'loaded', key, seq: h.seq });
      } catch (e) {
        send({ t: 'loaded', key, seq: h.seq, error: e instanceof Error ? e.message : String(e) });
      }
      break;
    }
    case 'create': {
      const spec = decodeSpec(h, m.payload);
      try {
        core.createInstance(spec, {
          packet: (p) => send({ t: 'packet', id: spec.id }, p),
          bind: (code, name) => send({ t: 'bind', id: spec.id, code, name }),
          debug: (d, dropped) => send(dropped > 0 ? { t: 'debug', id: spec.id, dropped } : { t: 'debug', id: spec.id }, d),
          stopped: (status: InstanceStatus, trapFrames?: readonly number[]) => send(trapFrames === undefined ? { t: 'stopped', id: spec.id, status } : { t: 'stopped', id: spec.id, status, trapFrames }),
        });
      } catch (e) {
        const status: InstanceStatus = internalFailure(e instanceof Error ? e.message : String(e));
        send({ t: 'stopped', id: spec.id, status });
      }
      break;
    }
    case 'deliver':
      core.deliver(id, m.payload ?? new Uint8Array(0));
      break;
    case 'ack':
      core.ack(id, Number(h.bytes) || 0);
      break;
    case 'suspend':
      core.suspend(id);
      break;
    case 'snapshot': {
      try {
        const { header, payload } = encodeSnapshot(core.snapshot(id));
        send({ t: 'snapshot', id, seq: h.seq, ...header }, payload);
      } catch (e) {
        send({ t: 'snapshot', id, seq: h.seq, error: e instanceof Error ? e.message : String(e) });
      }
      break;
    }
    case 'release':
      core.release(id);
      break;
    case 'kill':
      core.kill(id, typeof h.message === 'string' ? { trap: Number(h.trap), message: h.message } : undefined);
      break;
    default:
      throw new Error(`unknown message type ${h.t}`);
  }
}

const decoder = new FrameDecoder();
let queue = Promise.resolve();
process.stdin.on('data', (chunk: Buffer) => {
  let messages: Message[];
  try {
    messages = decoder.push(chunk);
  } catch (e) {
    console.error(`executor: ${e instanceof Error ? e.message : e}`);
    process.exit(70);
  }
  for (const m of messages) {
    // Keep messages in order even though loading a module is asynchronous.
    queue = queue.then(() => handle(m)).catch((e: unknown) => {
      console.error(`executor: ${e instanceof Error ? e.stack : e}`);
      process.exit(70);
    });
  }
});
// The parent is gone: nobody is left to serve.
process.stdin.on('end', () => process.exit(0));
send({ t: 'ready' });
