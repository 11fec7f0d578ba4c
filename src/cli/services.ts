import type { Logger } from 'pino';
import { ConfigError, getBool, getNumber, getStringList, type ConfigTree } from '../config/index.js';
import { PeerConfigError, PeerService } from '../service/peer.js';
import { parseGrpcConfig, startGrpcServices, type GrpcConfig, type GrpcServices } from '../service/grpc/index.js';
import { instanceServices, type InstanceServices } from '../service/provider.js';
import { ServiceRegistry } from '../service/registry.js';
import type { ServiceProvider } from '../runtime/runtime.js';

/** Services of a local `gate call`: the built-ins, for the local principal. */
export function createLocalServices(): ServiceProvider<InstanceServices> {
  return instanceServices({ principalId: 'local' });
}

/** The `peer` service's settings (gate-server and gate-daemon; docs/services.md "peer"). */
export const PEER_SERVICE_KEYS: readonly string[] = ['service.peer.enabled', 'service.peer.sharedgroups', 'service.peer.maxgroups', 'service.peer.maxstreams', 'service.peer.maxmembers'];

export const PEER_KEYS_HELP = `
  service.peer.enabled       true: programs (of authenticated principals) may use the peer service to
                             find and talk to other instances on this server (default false)
  service.peer.sharedgroups  group names programs of different principals may join together (JOIN with
                             the SHARED flag); "*" allows any name (default []: every group is private
                             to its principal)
  service.peer.maxgroups     groups one instance may be in at once (default 16)
  service.peer.maxstreams    peer streams and pending connection requests per instance (default 64)
  service.peer.maxmembers    members of one group (default 1000)`;

/** The deployment's configured built-in services (service.peer.*), added to `registry` (the extensions' services). */
export function serviceRegistryFrom(tree: ConfigTree, registry = new ServiceRegistry()): ServiceRegistry {
  if (getBool(tree, 'service.peer.enabled', false)) {
    try {
      registry.register(
        new PeerService({
          sharedGroups: getStringList(tree, 'service.peer.sharedgroups', []),
          maxGroups: getNumber(tree, 'service.peer.maxgroups'),
          maxStreams: getNumber(tree, 'service.peer.maxstreams'),
          maxMembers: getNumber(tree, 'service.peer.maxmembers'),
        }),
      );
    } catch (e) {
      if (e instanceof PeerConfigError) throw new ConfigError(e.message, { cause: e });
      throw e;
    }
  }
  return registry;
}

/** `service.grpc.commands` and `service.grpc.targets` (docs/grpc.md); throws ConfigError naming the key. */
export function grpcConfigFrom(tree: ConfigTree): GrpcConfig {
  return parseGrpcConfig(getStringList(tree, 'service.grpc.commands'), getStringList(tree, 'service.grpc.targets'));
}

/**
 * Starts the configured gRPC services and adds them to `registry` (a new
 * one if none). Throws GrpcStartError naming the entry that failed.
 */
export async function startConfiguredGrpc(config: GrpcConfig, log: Logger, registry: ServiceRegistry | undefined): Promise<{ services: GrpcServices; registry: ServiceRegistry }> {
  const services = await startGrpcServices(config, log);
  const r = registry ?? new ServiceRegistry();
  try {
    for (const f of services.factories) r.register(f);
  } catch (e) {
    await services.close();
    throw e;
  }
  return { services, registry: r };
}
