/**
 * The convenient way to write a service: one call describing it, checked at
 * definition time. See docs/services.md.
 */
import type { ServiceContext, ServiceFactory, ServiceInstance, ServiceInstanceConfig } from './api.js';
import { checkServiceName, checkServiceRevision, ServiceRegistrationError } from './naming.js';

/** What `create` returns: only `handle` is required. */
export interface ServiceInstanceDefinition {
  /** A complete packet (header included, no padding) from the program. */
  handle(packet: Uint8Array): void | Promise<void>;
  /**
   * The program stopped. With `suspend`, return the state to keep in the
   * snapshot (it comes back as `create`'s `snapshot`); otherwise release
   * resources. Omitted: nothing to save or release.
   */
  shutdown?(suspend: boolean): Uint8Array | void | Promise<Uint8Array | void>;
  /**
   * The state `shutdown(true)` would return now, without stopping (periodic
   * checkpoints of persistent instances). A service with `shutdown` but
   * without `checkpoint` keeps its instances from being checkpointed; one
   * with neither has no state.
   */
  checkpoint?(): Uint8Array | void | Promise<Uint8Array | void>;
}

export interface ServiceDefinition {
  /** 1–127 UTF-8 bytes of letters, numbers and punctuation; put major versions in the name. */
  name: string;
  /** 1–127 UTF-8 bytes of letters, marks, numbers, punctuation and symbols (shown by `catalog`). */
  revision: string;
  /** Whether the service accepts FLOW and DATA packets (default false). */
  streams?: boolean;
  /** Whether programs running in `context` may use the service (default: always). */
  discoverable?(context: ServiceContext): boolean;
  /**
   * Creates the service's instance for one program instance, on the first
   * packet the program sends to it, or when a suspended instance is resumed
   * (then `snapshot` is what `shutdown(true)` returned, possibly empty).
   * Throwing AbiViolation kills the program with ABI_VIOLATION; any other
   * error kills it with INTERNAL (the same holds for `handle`).
   */
  create(config: ServiceInstanceConfig, snapshot: Uint8Array | undefined): ServiceInstanceDefinition;
}

/** Checks a service definition and turns it into a factory for ServiceRegistry.register. */
export function defineService(definition: ServiceDefinition): ServiceFactory {
  const { name, revision, create, discoverable } = definition;
  checkServiceName(name);
  checkServiceRevision(revision, name);
  if (typeof create !== 'function') throw new ServiceRegistrationError(`service ${JSON.stringify(name)} has no create function`);
  const streams = definition.streams ?? false;
  return {
    name,
    revision,
    streams,
    discoverable: discoverable ? (context) => discoverable(context) : () => true,
    createInstance(config: ServiceInstanceConfig, snapshot?: Uint8Array): ServiceInstance {
      const inst = create(config, snapshot);
      if (!inst || typeof inst.handle !== 'function') {
        throw new TypeError(`service ${JSON.stringify(name)}: create() must return an object with a handle method`);
      }
      return {
        handle: (packet) => inst.handle(packet),
        shutdown: (suspend) => (inst.shutdown ? inst.shutdown(suspend) : undefined),
        checkpoint: inst.checkpoint ? () => inst.checkpoint!() : inst.shutdown ? undefined : () => undefined,
      };
    },
  };
}
