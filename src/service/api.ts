/**
 * The extension API: a service is a factory registered by name, creating one
 * service instance per program instance on first use. Services run in the
 * trusted (server or CLI) process and exchange whole packets with the program.
 */

/** Who and what a program instance runs for; decides discoverability. */
export interface ServiceContext {
  /** `ed25519:<key>`, `local`, or undefined for anonymous. */
  readonly principalId: string | undefined;
  /** Canonical lower-case UUID of the program instance. */
  readonly instanceId: string;
  /** Request scope (canonical scope names); undefined means unrestricted. */
  readonly scope: readonly string[] | undefined;
}

export interface ServiceInstanceConfig {
  /** The service code the program uses for this service. */
  readonly code: number;
  /** Largest packet the program accepts (65536). */
  readonly maxSendSize: number;
  readonly context: ServiceContext;
  /**
   * Queues a packet to the program. The header's size, domain and index must
   * be set; the code is overwritten with this service's code.
   */
  send(packet: Uint8Array): void;
  /**
   * Kills the program instance because of a failure noticed outside
   * handle() (a connection to the service broke): with INTERNAL, or with
   * ABI_VIOLATION for an AbiViolation. Later calls are ignored. Set by the
   * session; absent where no program instance is behind the config.
   */
  fail?(error: unknown): void;
}

export interface ServiceInstance {
  /** A complete packet (header included, no padding) sent by the program to this service. */
  handle(packet: Uint8Array): void | Promise<void>;
  /** The program stopped; release resources. Returns the state buffer if `suspend` is true. */
  shutdown(suspend: boolean): Uint8Array | void | Promise<Uint8Array | void>;
  /**
   * The state buffer `shutdown(true)` would return now, without stopping
   * (a checkpoint: the program is paused for it and continues after). Omitted:
   * the service cannot be checkpointed, and its instance is not checkpointed
   * while it is bound.
   */
  checkpoint?(): Uint8Array | void | Promise<Uint8Array | void>;
  /**
   * Settles when the instance is usable, for services created
   * asynchronously (a remote instance): a restored program does not run
   * before, and a rejection fails the restore (ServiceRestoreError).
   * Omitted: ready when created.
   */
  ready?(): Promise<void>;
}

export interface ServiceFactory {
  /** 1–127 bytes of letters, numbers and punctuation (spec services.md §2). */
  readonly name: string;
  /** 1–127 bytes, implementation detail shown by `catalog`. */
  readonly revision: string;
  /** Whether FLOW and DATA packets are accepted. */
  readonly streams: boolean;
  discoverable(context: ServiceContext): boolean;
  /** `snapshot` is the state buffer saved when a previous run was suspended. */
  createInstance(config: ServiceInstanceConfig, snapshot?: Uint8Array): ServiceInstance;
}
