/**
 * Entry point of an executor Web Worker: untrusted programs run here, off
 * the page's thread, and talk to the page only through messages
 * (protocol.ts). Bundled as gate-executor-worker.js (scripts/build-browser.mjs).
 */
import { ExecutorCore } from '../runtime/executor-core.js';
import { internalFailure, type InstanceStatus } from '../runtime/status.js';
import type { FromWorker, ToWorker } from './protocol.js';

interface WorkerScope {
  postMessage(message: FromWorker): void;
  addEventListener(type: 'message', listener: (e: MessageEvent<ToWorker>) => void): void;
  location: { search: string };
}
const scope = globalThis as unknown as WorkerScope;
// A trap's backtrace is read from V8's stack trace (runtime/trap-frames.ts): keep enough frames.
Error.stackTraceLimit = 100;

// Options come in the worker's URL query (so that they hold before the first message).
const params = new URLSearchParams(scope.location.search);
const sliceMs = Number(params.get('slice-ms')) || 10;
const instanceMemoryCap = Number(params.get('instance-memory-cap')) || undefined;
const core = new ExecutorCore(sliceMs, instanceMemoryCap);

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

function send(m: FromWorker): void {
  scope.postMessage(m);
}

async function handle(m: ToWorker): Promise<void> {
  switch (m.t) {
    case 'load':
      try {
        await core.loadModule(m.key, m.bytes, m.source);
        send({ t: 'loaded', seq: m.seq });
      } catch (e) {
        send({ t: 'loaded', seq: m.seq, error: message(e) });
      }
      break;
    case 'create': {
      const id = m.spec.id;
      try {
        core.createInstance(m.spec, {
          packet: (p) => send({ t: 'packet', id, packet: p }),
          bind: (code, name) => send({ t: 'bind', id, code, name }),
          debug: (data, dropped) => send({ t: 'debug', id, data, dropped }),
          stopped: (status: InstanceStatus, trapFrames?: readonly number[]) => send(trapFrames === undefined ? { t: 'stopped', id, status } : { t: 'stopped', id, status, trapFrames }),
        });
      } catch (e) {
        send({ t: 'stopped', id, status: internalFailure(message(e)) });
      }
      break;
    }
    case 'deliver':
      core.deliver(m.id, m.packet);
      break;
    case 'ack':
      core.ack(m.id, m.bytes);
      break;
    case 'suspend':
      core.suspend(m.id);
      break;
    case 'snapshot':
      try {
        // The memory is a view of the stopped instance's whole memory: it is cloned, not moved.
        send({ t: 'snapshot', seq: m.seq, snapshot: core.snapshot(m.id) });
      } catch (e) {
        send({ t: 'snapshot', seq: m.seq, error: message(e) });
      }
      break;
    case 'release':
      core.release(m.id);
      break;
    case 'kill':
      core.kill(m.id, m.message !== undefined ? { trap: Number(m.trap), message: m.message } : undefined);
      break;
  }
}

// Messages are handled in order even though loading a module is asynchronous.
let queue = Promise.resolve();
scope.addEventListener('message', (e) => {
  // A failure here is a bug of the executor: the page gives the worker up.
  queue = queue.then(() => handle(e.data)).catch((err: unknown) => send({ t: 'fatal', error: err instanceof Error ? (err.stack ?? err.message) : String(err) }));
});
send({ t: 'ready' });
