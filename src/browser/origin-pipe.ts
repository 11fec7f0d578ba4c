/**
 * The page's end of an instance's origin stream, in the shape a page wants:
 * push bytes or text in, get the program's bytes through a callback.
 */
import type { OriginConnector } from '../service/origin.js';

export interface OriginPipe {
  /** Sends bytes (or UTF-8 text) to the program. */
  send(data: Uint8Array | string): void;
  /** Closes the page's sending side (the program reads end of stream). */
  end(): void;
  /** Settles when the stream is closed both ways or the instance stops (rejects if it stopped before accepting). */
  readonly done: Promise<void>;
}

export interface OriginPipeOptions {
  /** The program closed its sending side. */
  onEnd?(): void;
  signal?: AbortSignal;
}

/** Connects the page to `origin` (an instance's `services.origin`); `onData` gets what the program writes. */
export function connectOrigin(origin: OriginConnector, onData: (chunk: Uint8Array) => void, opts: OriginPipeOptions = {}): OriginPipe {
  const queued: Uint8Array[] = [];
  let ended = false;
  let wake: (() => void) | undefined;
  const encoder = new TextEncoder();
  async function* input(): AsyncGenerator<Uint8Array> {
    for (;;) {
      const next = queued.shift();
      if (next) {
        yield next;
        continue;
      }
      if (ended) return;
      await new Promise<void>((res) => (wake = res));
      wake = undefined;
    }
  }
  const done = origin.connect(input(), { write: (c) => onData(c.slice()), end: () => opts.onEnd?.() }, opts.signal).finally(() => {
    ended = true;
    wake?.();
  });
  return {
    send(data) {
      if (ended) return;
      const bytes = typeof data === 'string' ? encoder.encode(data) : data.slice();
      if (bytes.length === 0) return;
      queued.push(bytes);
      wake?.();
    },
    end() {
      ended = true;
      wake?.();
    },
    done,
  };
}
