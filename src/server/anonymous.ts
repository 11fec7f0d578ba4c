/**
 * Admission of anonymous work: how many instances anonymous callers may run
 * at once from one network address and of one module, and which of the
 * anonymous executor groups each runs in. Signed principals are not limited
 * here (their own limits and executors contain them); anonymous callers
 * share the server's capacity, so no one of them, nor one hostile module
 * called from many addresses, may take all of it, and an instance goes to
 * the group with fewest anonymous instances, so that a few endless loops do
 * not share a process with everybody else's requests.
 */
import { isIPv6 } from 'node:net';
import { HttpError } from './errors.js';

export interface AnonymousLimits {
  /** Anonymous instances running at once from one address (IPv6: one /64). */
  perAddress: number;
  /** Anonymous instances of one module running at once, from any address. */
  perModule: number;
  /** Executor groups anonymous instances are spread over (each is one executor process or more). */
  executors: number;
  /**
   * Nice steps (0-19) below the server's CPU priority that anonymous
   * executors run at, so that when the CPU is short the kernel prefers the
   * server and signed principals' executors to anonymous programs.
   */
  nice: number;
  /**
   * With `nice` > 0: an anonymous executor in which one instance has
   * computed this long (ms of CPU) drops to the lowest priority (nice 19),
   * and new anonymous instances go to another executor, so that requests
   * that compute little do not wait behind endless loops (ExecutorPlacement).
   */
  demoteAfterMs: number;
  /** CPU milliseconds one anonymous run may use before it ends SUSPENDED (0: unlimited; see RuntimeOptions.cpuBudgetMs). */
  cpuTimeMs: number;
}

export const DEFAULT_ANONYMOUS_LIMITS: AnonymousLimits = { perAddress: 4, perModule: 32, executors: 8, nice: 5, demoteAfterMs: 50, cpuTimeMs: 10_000 };

/** One admitted anonymous instance. */
export interface AnonymousTicket {
  /** The executor group to run it in ('anonymous/N'). */
  group: string;
  /** Gives the place back; call it exactly once, when the instance is gone (later calls do nothing). */
  release(): void;
}

/** 429 Too Many Requests, with a hint of what to do about it. */
export class AnonymousLimitError extends HttpError {
  constructor(
    message: string,
    readonly limit: 'address' | 'module',
  ) {
    super(429, message, { 'Retry-After': '1' });
  }
}

/**
 * The unit a limit counts per: an IPv4 address (IPv4-mapped IPv6 included),
 * or the /64 prefix of an IPv6 address, since one IPv6 host usually has a
 * whole /64 to pick source addresses from.
 */
export function addressKey(address: string | undefined): string {
  if (!address) return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!isIPv6(address)) return address;
  return `${expandIPv6(address).slice(0, 4).join(':')}::/64`;
}

function expandIPv6(address: string): string[] {
  const [head, tail] = address.split('%')[0]!.split('::') as [string, string | undefined];
  const left = head ? head.split(':') : [];
  const right = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const fill = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...fill, ...right].map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''));
}

export class AnonymousAdmission {
  private readonly byAddress = new Map<string, number>();
  private readonly byModule = new Map<string, number>();
  private readonly byGroup: number[];

  constructor(private readonly limits: AnonymousLimits = DEFAULT_ANONYMOUS_LIMITS) {
    this.byGroup = new Array<number>(Math.max(1, limits.executors)).fill(0);
  }

  /** Counts one anonymous instance from `address` of `module` (a module hash), or throws AnonymousLimitError. */
  admit(address: string | undefined, module: string): AnonymousTicket {
    const key = addressKey(address);
    if ((this.byAddress.get(key) ?? 0) >= this.limits.perAddress) {
      throw new AnonymousLimitError(
        `too many anonymous programs running from your address (at most ${this.limits.perAddress} at once): try again when one has finished, or sign your requests`,
        'address',
      );
    }
    if ((this.byModule.get(module) ?? 0) >= this.limits.perModule) {
      throw new AnonymousLimitError(`too many anonymous instances of this module are running (at most ${this.limits.perModule} at once): try again later, or sign your requests`, 'module');
    }
    let slot = 0;
    for (let i = 1; i < this.byGroup.length; i++) if (this.byGroup[i]! < this.byGroup[slot]!) slot = i;
    bump(this.byAddress, key, 1);
    bump(this.byModule, module, 1);
    this.byGroup[slot]!++;
    let released = false;
    return {
      group: `anonymous/${slot}`,
      release: () => {
        if (released) return;
        released = true;
        bump(this.byAddress, key, -1);
        bump(this.byModule, module, -1);
        this.byGroup[slot]!--;
      },
    };
  }

  /** Anonymous instances counted now (for metrics and tests). */
  get running(): number {
    let n = 0;
    for (const v of this.byModule.values()) n += v;
    return n;
  }
}

function bump(map: Map<string, number>, key: string, by: number): void {
  const n = (map.get(key) ?? 0) + by;
  if (n > 0) map.set(key, n);
  else map.delete(key);
}
