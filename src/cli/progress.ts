import { Transform, type TransformCallback } from 'node:stream';

/** Transfers below this size finish too quickly to need an indicator. */
const THRESHOLD = 1 << 20;

/**
 * A pass-through stream that shows `label: N% (x of y MiB)` on stderr, only
 * when stderr is a terminal and the transfer is larger than 1 MiB.
 */
export function progress(label: string, total: number): Transform {
  const show = process.stderr.isTTY === true && total > THRESHOLD;
  let done = 0;
  let lastPercent = -1;
  const mib = (n: number): string => (n / (1 << 20)).toFixed(1);
  const draw = (): void => {
    const percent = total > 0 ? Math.floor((done * 100) / total) : 100;
    if (percent === lastPercent) return;
    lastPercent = percent;
    process.stderr.write(`\r${label}: ${percent}% (${mib(done)} of ${mib(total)} MiB)`);
  };
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      done += chunk.length;
      if (show) draw();
      cb(null, chunk);
    },
    flush(cb: TransformCallback) {
      if (show) process.stderr.write('\r\x1b[K');
      cb();
    },
  });
}
