import type { FirstCallReplies } from '../runtime/executor.js';
import type { ServiceConnection, ServiceHooks, ServiceProvider } from '../runtime/runtime.js';
import type { ServiceFactory } from './api.js';
import { builtinServices } from './builtin.js';
import type { OriginOptions, OriginService } from './origin.js';
import type { RandomOptions } from './random.js';
import { ServiceRegistry } from './registry.js';
import type { ProgramScope } from './scope.js';
import { ServiceSession, type ServiceBuffer } from './session.js';

export interface InstanceServicesOptions {
  /** `ed25519:<key>`, `local`, or undefined for anonymous (see ServiceContext). */
  principalId?: string;
  /** Request scope; undefined is unrestricted. */
  scope?: readonly string[];
  /** The deployment's extensions. */
  registry?: ServiceRegistry;
  origin?: OriginOptions;
  random?: RandomOptions;
  /**
   * A client connects to the origin as soon as the instance is launched (a
   * call): the executor answers the program's first accept itself
   * (OriginService.answerFirstAccept), which saves a round trip.
   */
  clientConnects?: boolean;
}

/** The services of one run of one instance: the session plus its origin connector. */
export class InstanceServices implements ServiceConnection {
  readonly session: ServiceSession;
  readonly origin: OriginService;
  readonly programScope: ProgramScope;
  private readonly clientConnects: boolean;

  constructor(hooks: ServiceHooks, opts: InstanceServicesOptions) {
    this.clientConnects = opts.clientConnects === true;
    const builtins = builtinServices({ parent: opts.registry, origin: opts.origin, random: opts.random });
    this.origin = builtins.origin;
    this.programScope = builtins.programScope;
    this.session = new ServiceSession({
      registry: builtins.registry,
      context: { principalId: opts.principalId, instanceId: hooks.instanceId, scope: opts.scope },
      sendToProgram: hooks.send,
      onError: hooks.fail,
    });
  }

  availableNames(): string[] {
    return this.session.availableNames();
  }

  bind(code: number, name: string): void {
    this.session.bind(code, name);
  }

  firstCallReplies(): FirstCallReplies | undefined {
    const packets = this.clientConnects ? this.origin.answerFirstAccept() : undefined;
    return packets && { service: this.origin.name, packets };
  }

  /** Settles when the packet has been handled: the executor is acknowledged then (backpressure). */
  handle(packet: Uint8Array): void | Promise<void> {
    return this.session.handle(packet);
  }

  /** Settles when the restored service instances are ready (remote ones are created asynchronously). */
  restore(states: ServiceBuffer[]): Promise<void> {
    this.session.restore(states);
    return this.session.restored();
  }

  canCheckpoint(): boolean {
    return this.session.canCheckpoint();
  }

  checkpoint(): Promise<ServiceBuffer[]> {
    // Every packet the program sent before it paused has been handled: if
    // its first accept was answered ahead, it has arrived; if it has not,
    // the instance continues without those replies (its spec has a resume).
    this.origin.forgetAnswerAhead();
    return this.session.checkpoint();
  }

  async shutdown(suspend: boolean): Promise<ServiceBuffer[]> {
    try {
      return await this.session.shutdown(suspend);
    } finally {
      // Clients still waiting for an accept are turned away.
      this.origin.close();
    }
  }
}

/** A ServiceProvider creating the built-in services plus the given extensions for each instance. */
export function instanceServices(opts: InstanceServicesOptions = {}): ServiceProvider<InstanceServices> {
  return (hooks) => new InstanceServices(hooks, opts);
}

/** Registry holding the given extensions, for `InstanceServicesOptions.registry`. */
export function extensionRegistry(extensions: ServiceFactory[]): ServiceRegistry {
  const r = new ServiceRegistry();
  for (const f of extensions) r.register(f);
  return r;
}
