import { GateError } from '../errors.js';

/**
 * A snapshot module is malformed or inconsistent (spec snapshot.md §7), or a
 * state cannot be encoded as one. Loaders report it like any other bad
 * program (HTTP 400); the message names the section and what is wrong.
 */
export class SnapshotError extends GateError {
  constructor(message: string, options?: { cause?: unknown }, code = 'GATE_BAD_SNAPSHOT') {
    super(code, message, options);
  }
}

/**
 * The program is valid but cannot be snapshotted by this implementation
 * (e.g. it uses passive data segments, whose indices a regenerated data
 * section would break). A separate code lets callers tell "the user's module
 * is unsuitable" from "the snapshot bytes are bad".
 */
export class SnapshotUnsupportedError extends SnapshotError {
  constructor(message: string) {
    super(message, undefined, 'GATE_SNAPSHOT_UNSUPPORTED');
  }
}
