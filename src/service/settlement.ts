/**
 * How a connection waiting for a program ends: resolved or rejected once,
 * after `detach` (set by the owner, e.g. to remove its abort listener).
 * The origin and endpoint services keep their waiting clients this way.
 */
export interface Settlement {
  settled: boolean;
  detach(): void;
  resolve(): void;
  reject(e: Error): void;
}

/** A Settlement over a promise's `resolve` and `reject`; the result is extended in place (Object.assign) with the owner's fields. */
export function settlement(resolve: () => void, reject: (e: Error) => void): Settlement {
  const s: Settlement = {
    settled: false,
    detach: () => {},
    resolve: () => {
      if (s.settled) return;
      s.settled = true;
      s.detach();
      resolve();
    },
    reject: (e) => {
      if (s.settled) return;
      s.settled = true;
      s.detach();
      reject(e);
    },
  };
  return s;
}
