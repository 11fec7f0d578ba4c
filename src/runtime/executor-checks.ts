/**
 * Checks of what an executor host reports back (an executor process, a Web
 * Worker): the executor runs untrusted code and is not trusted, so each
 * status and service binding is checked before the trusted side sees it.
 */
import { State, type InstanceStatus } from './status.js';

/** Service names are 1–127 bytes (spec abi.md); codes fit the discovery packet's u16 count. */
export const MAX_SERVICE_NAME_LENGTH = 127;
export const MAX_SERVICE_CODE = 0xffff;

const STATES = new Set<string>(Object.values(State));

/** A status reported by an executor, checked field by field; undefined if it is not one. */
export function parseStatus(v: unknown): InstanceStatus | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  if (typeof o.state !== 'string' || !STATES.has(o.state) || o.state === 'RUNNING') return undefined;
  const status: InstanceStatus = { state: o.state as InstanceStatus['state'] };
  if (o.cause !== undefined) {
    if (typeof o.cause !== 'string' || !/^[A-Z0-9_]{1,40}$/.test(o.cause)) return undefined;
    status.cause = o.cause;
  }
  if (o.result !== undefined) {
    if (o.result !== 0 && o.result !== 1) return undefined;
    status.result = o.result;
  }
  if (o.error !== undefined) {
    if (typeof o.error !== 'string') return undefined;
    status.error = o.error.slice(0, 1000);
  }
  return status;
}

/** Whether an executor's service binding (discovery allocated `code` for `name`) is possible. */
export function isValidBinding(code: unknown, name: unknown): code is number {
  return (
    Number.isInteger(code) &&
    (code as number) >= 0 &&
    (code as number) <= MAX_SERVICE_CODE &&
    typeof name === 'string' &&
    name.length > 0 &&
    name.length <= MAX_SERVICE_NAME_LENGTH
  );
}
