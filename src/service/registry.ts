/**
 * The service registry (spec services.md §1): service name → factory.
 *
 * A deployment has one registry of globally configured services
 * (extensions); each program instance gets a child (`clone()`) to which the
 * per-instance services (origin, catalog, …) are added. Lookups fall through
 * to the parents.
 */
import type { ServiceContext, ServiceFactory } from './api.js';
import { ServiceRegistrationError, checkServiceName, checkServiceRevision, compareCodePoints } from './naming.js';

export { ServiceRegistrationError } from './naming.js';

export interface RegisterOptions {
  /**
   * Replace a factory already registered under the same name, here or in a
   * parent registry (a child's entry shadows the parent's; the parent is not
   * changed).
   */
  replace?: boolean;
}

export interface CatalogEntry {
  name: string;
  revision: string;
}

export class ServiceRegistry {
  private readonly factories = new Map<string, ServiceFactory>();

  constructor(readonly parent?: ServiceRegistry) {}

  /**
   * Adds a factory. Throws ServiceRegistrationError for an invalid name or
   * revision, or when the name is already visible from this registry (own or
   * inherited) and `replace` is not set.
   */
  register(factory: ServiceFactory, options: RegisterOptions = {}): void {
    checkServiceName(factory.name);
    checkServiceRevision(factory.revision, factory.name);
    if (typeof factory.discoverable !== 'function' || typeof factory.createInstance !== 'function') {
      throw new ServiceRegistrationError(`service ${JSON.stringify(factory.name)} is not a ServiceFactory (discoverable/createInstance missing)`);
    }
    if (!options.replace && this.lookup(factory.name) !== undefined) {
      throw new ServiceRegistrationError(
        `service ${JSON.stringify(factory.name)} is already registered; pass { replace: true } to replace it`,
      );
    }
    this.factories.set(factory.name, factory);
  }

  /** A child registry: additions to it do not affect this one, lookups fall through to this one. */
  clone(): ServiceRegistry {
    return new ServiceRegistry(this);
  }

  /** The factory registered under `name` here or in a parent (the nearest wins). */
  lookup(name: string): ServiceFactory | undefined {
    for (let r: ServiceRegistry | undefined = this; r; r = r.parent) {
      const f = r.factories.get(name);
      if (f) return f;
    }
    return undefined;
  }

  /** Every visible factory, nearest registration per name. */
  factoriesInScope(): ServiceFactory[] {
    const seen = new Map<string, ServiceFactory>();
    for (let r: ServiceRegistry | undefined = this; r; r = r.parent) {
      for (const [name, f] of r.factories) if (!seen.has(name)) seen.set(name, f);
    }
    return [...seen.values()];
  }

  /** Names a program running in `context` may discover (abi.md §9: found and discoverable). */
  discoverableNames(context: ServiceContext): Set<string> {
    const names = new Set<string>();
    for (const f of this.factoriesInScope()) if (f.discoverable(context)) names.add(f.name);
    return names;
  }

  /** Discoverable services sorted by name (code point order), as the `catalog` service lists them. */
  catalog(context: ServiceContext): CatalogEntry[] {
    return this.factoriesInScope()
      .filter((f) => f.discoverable(context))
      .map((f) => ({ name: f.name, revision: f.revision }))
      .sort((a, b) => compareCodePoints(a.name, b.name));
  }
}
