import type { RunningInstance } from '../runtime/runtime.js';
import type { InstanceServices } from '../service/provider.js';

/**
 * Connects stdin and stdout to the instance's origin as one client stream.
 * Returns a function that detaches (when the instance has stopped).
 */
export function connectStdio(instance: RunningInstance<InstanceServices>): () => Promise<void> {
  const abort = new AbortController();
  const output = {
    write: (chunk: Uint8Array): Promise<void> =>
      new Promise((resolve, reject) => process.stdout.write(chunk, (e) => (e ? reject(e) : resolve()))),
    end: (): void => {},
  };
  const done = instance.services.origin
    .connect(process.stdin, output, abort.signal)
    .catch(() => undefined);
  return async () => {
    abort.abort();
    await done;
    process.stdin.destroy();
  };
}
