/**
 * Instrumentation profiles (DESIGN.md "Execution model"):
 * - `suspend-anywhere`: preemption checks may unwind, so a computing instance
 *   can be time-sliced, suspended and snapshotted at any check point.
 * - `io-suspend`: only calls that may block unwind; the checks can only stop
 *   runaway code (CPU limit), and a suspend request waits for the next I/O call.
 */
export const PROFILES = ['suspend-anywhere', 'io-suspend'] as const;
export type Profile = (typeof PROFILES)[number];
export const DEFAULT_PROFILE: Profile = 'suspend-anywhere';

export function isProfile(s: string): s is Profile {
  return (PROFILES as readonly string[]).includes(s);
}
