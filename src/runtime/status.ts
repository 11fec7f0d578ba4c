import { TrapCauseName, TrapId } from '../abi/trap.js';

export const State = {
  Running: 'RUNNING',
  Suspended: 'SUSPENDED',
  Halted: 'HALTED',
  Terminated: 'TERMINATED',
  Killed: 'KILLED',
} as const;
export type StateName = (typeof State)[keyof typeof State];

/** Instance status as the API reports it (spec web-api.md / abi.md §7.3). */
export interface InstanceStatus {
  state: StateName;
  /** Empty for ordinary outcomes, else a trap cause name (abi.md §7.2). */
  cause?: string;
  /** Exit result (0 or 1) for HALTED and TERMINATED. */
  result?: number;
  /** Public text of an ABI violation or internal error. */
  error?: string;
}

/** The status an instance ends with for a given trap (abi.md §7.2). */
export function statusForTrap(trap: number, message?: string): InstanceStatus {
  switch (trap) {
    case TrapId.Suspended:
      return { state: State.Suspended };
    case TrapId.CallStackExhausted:
    case TrapId.Breakpoint:
    case TrapId.AbiDeficiency:
      return { state: State.Suspended, cause: TrapCauseName[trap] };
    case TrapId.Killed:
      return { state: State.Killed };
    case TrapId.AbiViolation:
    case TrapId.InternalError:
      return { state: State.Killed, cause: TrapCauseName[trap], ...(message ? { error: message } : {}) };
    case TrapId.NoFunction:
      return { state: State.Killed, cause: String(TrapId.NoFunction) };
    default:
      return { state: State.Killed, cause: TrapCauseName[trap] ?? String(trap) };
  }
}

/** KILLED with cause INTERNAL: a failure of the runtime or executor, with a message. */
export function internalFailure(message: string): InstanceStatus {
  return statusForTrap(TrapId.InternalError, message);
}

export function isFinal(s: StateName): boolean {
  return s === State.Terminated || s === State.Killed;
}

export function formatStatus(s: InstanceStatus): string {
  let out = s.state;
  if (s.cause) out += ` ${s.cause}`;
  if (s.result !== undefined && (s.state === State.Halted || s.state === State.Terminated)) out += ` result ${s.result}`;
  if (s.error) out += `: ${s.error}`;
  return out;
}

/**
 * The status a transient instance ends with (spec abi.md §7.3): an entry
 * function that returns leaves a persistent instance HALTED (it can be
 * resumed with another function), but a transient one TERMINATED, since
 * nothing can resume it.
 */
export function transientEnd(s: InstanceStatus): InstanceStatus {
  return s.state === State.Halted ? { ...s, state: State.Terminated } : s;
}

/** Status of a launched final snapshot, from its trap and result (spec snapshot.md §7). */
export function statusOfSnapshot(trap: number, result: number): InstanceStatus {
  if (trap === TrapId.Exit) return { state: State.Terminated, result: result === 0 ? 0 : 1 };
  return trap === TrapId.Killed ? { state: State.Killed } : statusForTrap(trap);
}

/** The trap id of a cause name (the inverse of TrapCauseName). */
function trapOfCause(cause: string): number | undefined {
  const entry = Object.entries(TrapCauseName).find(([, name]) => name === cause);
  return entry ? Number(entry[0]) : undefined;
}

/** Trap id recorded in a snapshot for a status (spec snapshot.md §3). */
export function trapOfStatus(status: InstanceStatus): number {
  switch (status.state) {
    case State.Halted:
    case State.Terminated:
      return TrapId.Exit;
    case State.Suspended:
      return (status.cause ? trapOfCause(status.cause) : undefined) ?? TrapId.Suspended;
    default:
      if (!status.cause) return TrapId.Killed;
      // NO_FUNCTION has no name: its cause is the number itself.
      return trapOfCause(status.cause) ?? (Number(status.cause) || TrapId.InternalError);
  }
}
