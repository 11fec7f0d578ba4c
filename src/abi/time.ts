/**
 * Time granularity (spec abi.md §5.1). The instance's time resolution R is
 * turned into a granularity G = 2^bitlen(R) and every nanoseconds field the
 * program can observe — timestamps and wait timeouts alike — is masked with
 * ~(G-1), so that timing side channels are no finer than G.
 */

const NS_PER_SEC = 1_000_000_000n;

/** G for a time resolution in nanoseconds; values ≤ 0 or > 1 s mean 1 s. */
export function granularityFor(resolutionNs: bigint): bigint {
  let r = resolutionNs;
  if (r <= 0n || r > NS_PER_SEC) r = NS_PER_SEC;
  return 1n << BigInt(r.toString(2).length);
}

/** What clock_res_get reports: min(G, 1 s). */
export function reportedResolution(granularityNs: bigint): bigint {
  return granularityNs < NS_PER_SEC ? granularityNs : NS_PER_SEC;
}

/**
 * Splits `ns` into seconds and nanoseconds and masks the nanoseconds with
 * ~(G-1): seconds×1e9 + (nanoseconds & mask). `ns` must be non-negative.
 */
export function maskNs(ns: bigint, granularityNs: bigint): bigint {
  const frac = ns % NS_PER_SEC;
  return ns - frac + (frac & ~(granularityNs - 1n));
}
