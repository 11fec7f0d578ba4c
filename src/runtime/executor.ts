import type { Profile } from '../prepare/profile.js';
import type { InstanceStatus } from './status.js';

/** Everything an executor needs to start an instance of a loaded module. */
export interface InstanceSpec {
  id: string;
  moduleKey: string;
  profile: Profile;
  entry: string | undefined;
  hasStart: boolean;
  memoryPages: { initial: number; maximum: number };
  timeResolutionNs: number;
  debug: boolean;
  /** Names of the services this instance may discover. */
  services: string[];
  /**
   * io-suspend only: longest stretch of computation without a blocking call,
   * in milliseconds. Such a profile cannot preempt, so this is what stops
   * runaway code from holding its executor forever.
   */
  computeLimitMs: number;
}

/** Events of one instance, delivered to the trusted side. */
export interface InstanceEvents {
  /** A validated packet for an available service (exact size, no padding). */
  packet(packet: Uint8Array): void;
  /** Discovery allocated a code for a service name, in code order (available or not). */
  bind(code: number, name: string): void;
  debug(data: Uint8Array): void;
  /** The instance stopped (final for this run). */
  stopped(status: InstanceStatus): void;
}

/**
 * Where instances run. Untrusted code runs only behind this interface: the
 * in-process host serves tests and the browser, the child-process host keeps
 * programs out of the server's and CLI's process.
 */
export interface Executor {
  loadModule(key: string, bytes: Uint8Array): Promise<void>;
  hasModule(key: string): boolean;
  createInstance(spec: InstanceSpec, events: InstanceEvents): void;
  /** A packet from a service to the program (exact size; the executor pads it). */
  deliver(id: string, packet: Uint8Array): void;
  /** The trusted side has consumed `bytes` of the instance's packets (flow control). */
  ack(id: string, bytes: number): void;
  suspend(id: string): void;
  /** Kills the instance; with a reason, as a trap found by the trusted side (ABI violation, service failure). */
  kill(id: string, reason?: KillReason): void;
  close(): Promise<void>;
}

export interface KillReason {
  /** TrapId.AbiViolation or TrapId.InternalError. */
  trap: number;
  message: string;
}
