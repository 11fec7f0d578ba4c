/**
 * Service naming and revision rules (spec services.md §2), checked when a
 * service is defined or registered so that a bad name fails at startup, not
 * when a program first asks for it.
 */
import { GateError } from '../errors.js';

export const MAX_SERVICE_NAME_BYTES = 127;
export const MAX_SERVICE_REVISION_BYTES = 127;

/** A service factory cannot be registered (bad name or revision, duplicate name). */
export class ServiceRegistrationError extends GateError {
  constructor(message: string) {
    super('GATE_SERVICE_REGISTRATION', message);
  }
}

// Every code point must be a Letter, Number or Punctuation (names), plus Mark
// and Symbol for revisions. Lone surrogates are category Cs and fail too.
const NAME_PATTERN = /^[\p{L}\p{N}\p{P}]+$/u;
const REVISION_PATTERN = /^[\p{L}\p{M}\p{N}\p{P}\p{S}]+$/u;

const encoder = new TextEncoder();

export function utf8Length(s: string): number {
  return encoder.encode(s).length;
}

/**
 * Names and revisions found valid before: each instance's services are
 * registered anew (builtin.ts), always under the same few names, and the
 * Unicode property checks cost more than the rest of the registration.
 */
const validNames = new Set<string>();
const validRevisions = new Set<string>();
const MAX_REMEMBERED = 1024;

function remember(set: Set<string>, s: string): void {
  if (set.size >= MAX_REMEMBERED) set.clear();
  set.add(s);
}

/** Throws ServiceRegistrationError unless `name` is a valid service name. */
export function checkServiceName(name: unknown): asserts name is string {
  if (typeof name !== 'string') throw new ServiceRegistrationError('service name must be a string');
  if (validNames.has(name)) return;
  const n = utf8Length(name);
  if (n < 1 || n > MAX_SERVICE_NAME_BYTES) {
    throw new ServiceRegistrationError(
      `service name ${JSON.stringify(name)} is ${n} bytes long in UTF-8; it must be 1–${MAX_SERVICE_NAME_BYTES}`,
    );
  }
  if (!NAME_PATTERN.test(name)) {
    throw new ServiceRegistrationError(
      `service name ${JSON.stringify(name)} may contain only letters, numbers and punctuation (no spaces, symbols or control characters)`,
    );
  }
  remember(validNames, name);
}

/** Throws ServiceRegistrationError unless `revision` is a valid revision string. */
export function checkServiceRevision(revision: unknown, name = '?'): asserts revision is string {
  if (typeof revision !== 'string') throw new ServiceRegistrationError(`revision of service ${JSON.stringify(name)} must be a string`);
  if (validRevisions.has(revision)) return;
  const n = utf8Length(revision);
  if (n < 1 || n > MAX_SERVICE_REVISION_BYTES) {
    throw new ServiceRegistrationError(
      `revision ${JSON.stringify(revision)} of service ${JSON.stringify(name)} is ${n} bytes long in UTF-8; it must be 1–${MAX_SERVICE_REVISION_BYTES}`,
    );
  }
  if (!REVISION_PATTERN.test(revision)) {
    throw new ServiceRegistrationError(
      `revision ${JSON.stringify(revision)} of service ${JSON.stringify(name)} may contain only letters, marks, numbers, punctuation and symbols`,
    );
  }
  remember(validRevisions, revision);
}

/** Orders strings by Unicode code point, i.e. by their UTF-8 bytes (as the original's catalog does). */
export function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done) return y.done ? 0 : -1;
    if (y.done) return 1;
    const d = x.value.codePointAt(0)! - y.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}
