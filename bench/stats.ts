/** Small statistics helpers shared by the benchmark sections. */

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export const geomean = (xs: number[]): number => Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);

export const fmt = (x: number, d = 2): string => x.toFixed(d);

/** "min–max" with `d` decimals. */
export const range = (xs: number[], d = 2): string => `${fmt(Math.min(...xs), d)}–${fmt(Math.max(...xs), d)}`;

/** "median (min–max)" with `d` decimals. */
export const summary = (xs: number[], d = 1): string => (xs.length ? `${fmt(median(xs), d)} (${range(xs, d)})` : '–');
