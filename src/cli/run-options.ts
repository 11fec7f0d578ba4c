/** Option parsers of `gate run`, apart from the runner so that other commands need not load the runtime. */
import { InvalidArgumentError } from 'commander';
import { PROFILES, isProfile, type Profile } from '../prepare/profile.js';

export function parsePositiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

export function parseProfile(v: string): Profile {
  if (!isProfile(v)) throw new InvalidArgumentError(`must be one of: ${PROFILES.join(', ')}`);
  return v;
}

