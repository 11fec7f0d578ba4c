import type { Logger } from 'pino';
import { getStringList, type ConfigTree } from '../config/index.js';
import { parseGrpcConfig, startGrpcServices, type GrpcConfig, type GrpcServices } from '../service/grpc/index.js';
import { instanceServices, type InstanceServices } from '../service/provider.js';
import { ServiceRegistry } from '../service/registry.js';
import type { ServiceProvider } from '../runtime/runtime.js';

/** Services of a local `gate call`: the built-ins, for the local principal. */
export function createLocalServices(): ServiceProvider<InstanceServices> {
  return instanceServices({ principalId: 'local' });
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
