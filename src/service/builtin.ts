/**
 * The default per-instance service set (services.md §1): origin, catalog,
 * identity, random and scope, added to a child of the deployment's registry
 * (which holds the extensions).
 */
import { catalogService } from './catalog.js';
import { identityService } from './identity.js';
import { OriginService, type OriginOptions } from './origin.js';
import { randomService, type RandomOptions } from './random.js';
import { ServiceRegistry } from './registry.js';
import { ProgramScope, scopeService } from './scope.js';

export interface BuiltinServicesOptions {
  /** The deployment's registry (extensions); the built-ins are added to a child of it. */
  parent?: ServiceRegistry;
  origin?: OriginOptions;
  random?: RandomOptions;
}

export interface BuiltinServices {
  /** The registry to give this run's ServiceSession. */
  registry: ServiceRegistry;
  /**
   * Where clients connect. Call `origin.close()` when the instance stops, so
   * that waiting clients are rejected even if the program never used origin.
   */
  origin: OriginService;
  /** This run's program scope, as narrowed by the `scope` service (see scopeContains). */
  programScope: ProgramScope;
}

/** Names of the built-in services (an extension registered under one of them conflicts). */
export const BUILTIN_SERVICE_NAMES: readonly string[] = ['catalog', 'identity', 'origin', 'random', 'scope'];

/**
 * Creates the services of one run of one program instance. Throws
 * ServiceRegistrationError if the parent registry already has one of the
 * built-in names.
 */
export function builtinServices(options: BuiltinServicesOptions = {}): BuiltinServices {
  const registry = options.parent ? options.parent.clone() : new ServiceRegistry();
  const origin = new OriginService(options.origin);
  const programScope = new ProgramScope();
  registry.register(origin);
  registry.register(catalogService(registry));
  registry.register(identityService());
  registry.register(randomService(options.random));
  registry.register(scopeService(programScope));
  return { registry, origin, programScope };
}
