/**
 * The error a preparation worker (a Node worker thread or a Web Worker)
 * reported, rebuilt on the side that asked: errors about the module keep
 * their class (the client's problem, a 400); other Gate errors become
 * `other(message)`, which says where they came from.
 */
import { SnapshotError } from '../snapshot/errors.js';
import { ModuleError } from '../wasm/errors.js';

export function preparationReplyError(reply: { error: string; code: string | undefined }, other: (message: string) => Error): Error {
  switch (reply.code) {
    case 'GATE_BAD_MODULE':
    case 'GATE_MODULE_LIMIT':
    case 'GATE_BAD_IMPORT':
      return new ModuleError(reply.error, undefined, reply.code);
    case 'GATE_BAD_SNAPSHOT':
    case 'GATE_SNAPSHOT_UNSUPPORTED':
      return new SnapshotError(reply.error, undefined, reply.code);
  }
  if (reply.code?.startsWith('GATE_')) return other(reply.error);
  // The rewrite and the transform refuse modules they cannot handle: still the module's problem.
  return new ModuleError(`module cannot be prepared: ${reply.error}`);
}
