/**
 * The `random` service (spec services.md §6): cryptographically random bytes
 * at a limited rate, so that a program cannot drain the host's entropy or
 * use the service as a cheap timer.
 */
import { GateError } from '../errors.js';
import { callPacket, Domain, packetContent, packetDomain } from '../abi/packet.js';
import type { ServiceFactory } from './api.js';
import { defineService } from './extension.js';

/** 16 bytes per second. */
export const DEFAULT_BITS_PER_MINUTE = 7680;

export interface RandomOptions {
  /** Rate limit (`service.random.bitsperminute`); 0 makes the service undiscoverable. */
  bitsPerMinute?: number;
}

/** Milliseconds per byte: ceil(8 × 60 s / bitsPerMinute), computed in whole nanoseconds as the original does. */
export function randomByteIntervalMs(bitsPerMinute: number): number {
  return Math.ceil((8 * 60e9) / bitsPerMinute) / 1e6;
}

function randomReply(code: number, count: number): Uint8Array {
  const bytes = new Uint8Array(count);
  globalThis.crypto.getRandomValues(bytes);
  return callPacket(code, bytes);
}

export function randomService(options: RandomOptions = {}): ServiceFactory {
  const bitsPerMinute = options.bitsPerMinute ?? DEFAULT_BITS_PER_MINUTE;
  if (!Number.isFinite(bitsPerMinute) || bitsPerMinute < 0) {
    throw new GateError('GATE_CONFIG', `service.random.bitsperminute must be a non-negative number, not ${bitsPerMinute}`);
  }
  const intervalMs = bitsPerMinute > 0 ? randomByteIntervalMs(bitsPerMinute) : Infinity;

  return defineService({
    name: 'random',
    revision: '0',
    discoverable: () => bitsPerMinute > 0,
    create(config, snapshot) {
      if (snapshot && snapshot.length > 1) {
        throw new GateError('GATE_SERVICE_STATE', `random service state must be at most 1 byte, got ${snapshot.length}`);
      }
      let lastSent = performance.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      let stopped = false;

      const sendNow = (count: number): void => {
        config.send(randomReply(config.code, count));
        lastSent = performance.now();
      };

      // A reply was outstanding when the previous run was suspended: the
      // original answers at once with one byte (the count is not saved).
      if (snapshot && snapshot.length === 1 && snapshot[0] !== 0) sendNow(1);

      return {
        handle(packet) {
          if (stopped || packetDomain(packet) !== Domain.Call) return;
          const count = packetContent(packet)[0] ?? 0;
          // While a delayed reply is pending, extra calls get an immediate empty
          // reply. Without an index, the program sees it as the answer to its
          // oldest pending call — the original's quirk, kept for compatibility.
          if (count === 0 || timer !== undefined) {
            config.send(callPacket(config.code));
            return;
          }
          const delay = lastSent + count * intervalMs - performance.now();
          if (delay <= 0) {
            sendNow(count);
            return;
          }
          const due = performance.now() + delay;
          // Timers have millisecond granularity and may fire a little early:
          // wait again until the rate limit has really passed.
          const wake = (): void => {
            const left = due - performance.now();
            if (left > 0) {
              timer = setTimeout(wake, Math.ceil(left));
              return;
            }
            timer = undefined;
            if (!stopped) sendNow(count);
          };
          timer = setTimeout(wake, Math.ceil(delay));
        },
        checkpoint() {
          return timer !== undefined ? Uint8Array.of(1) : undefined;
        },
        shutdown(suspend) {
          stopped = true;
          const pending = timer !== undefined;
          if (timer !== undefined) clearTimeout(timer);
          timer = undefined;
          return suspend && pending ? Uint8Array.of(1) : undefined;
        },
      };
    },
  });
}
