/**
 * gRPC services (docs/grpc.md): the configured commands are started and the
 * configured targets dialled; the services their Root.Init lists become
 * ServiceFactories for the deployment's registry.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { ConfigError } from '../../config/index.js';
import type { ServiceFactory } from '../api.js';
import { BUILTIN_SERVICE_NAMES } from '../builtin.js';
import { checkServiceName, checkServiceRevision } from '../naming.js';
import { GrpcConnection, grpcServiceFactory, type GrpcEndpoint } from './client.js';
import { GrpcStartError } from './errors.js';
import { describe, GrpcCommand, parseCommandLine, type CommandLine } from './executable.js';
import { GateGrpcClient, type ServiceInfo } from './protocol.js';

export { GrpcInstanceClosedError, GrpcProtocolError, GrpcRestoreError, GrpcServiceError, GrpcStartError } from './errors.js';

export interface GrpcTarget {
  address: string;
  insecure: boolean;
  optional: boolean;
}

export interface GrpcConfig {
  commands: CommandLine[];
  targets: GrpcTarget[];
}

/** Checks `service.grpc.commands` and `service.grpc.targets` (raw strings); errors name the key. */
export function parseGrpcConfig(commands: readonly string[], targets: readonly string[]): GrpcConfig {
  return {
    commands: commands.map((line, i) => {
      const c = parseCommandLine(line);
      if (!c) throw new ConfigError(`service.grpc.commands[${i}] must be "[@path] program [args...]", not ${JSON.stringify(line)}`);
      return c;
    }),
    targets: targets.map((line, i) => {
      const [address, ...options] = line.trim().split(/\s+/).filter((f) => f !== '');
      if (!address) throw new ConfigError(`service.grpc.targets[${i}] must be "address [insecure] [optional]", not ${JSON.stringify(line)}`);
      const t: GrpcTarget = { address, insecure: false, optional: false };
      for (const o of options) {
        if (o === 'insecure') t.insecure = true;
        else if (o === 'optional') t.optional = true;
        else throw new ConfigError(`service.grpc.targets[${i}]: unknown dial option ${JSON.stringify(o)} (use insecure, optional)`);
      }
      return t;
    }),
  };
}

/** The started gRPC services of a server. */
export class GrpcServices {
  constructor(
    readonly factories: ServiceFactory[],
    private readonly commands: GrpcCommand[],
    private readonly targets: GrpcConnection[],
  ) {}

  /** Terminates the commands (SIGTERM) and closes the dialled connections; instances still running fail. */
  async close(): Promise<void> {
    for (const t of this.targets) t.close();
    await Promise.all(this.commands.map((c) => c.close()));
  }
}

/**
 * Starts every command and dials every target, in order. Throws
 * GrpcStartError naming the configuration entry that failed (whatever was
 * started is stopped again).
 */
export async function startGrpcServices(config: GrpcConfig, log: Logger): Promise<GrpcServices> {
  const commands: GrpcCommand[] = [];
  const targets: GrpcConnection[] = [];
  const factories = new Map<string, { factory: ServiceFactory; from: string }>();
  const services = new GrpcServices([], commands, targets);
  const add = (endpoint: GrpcEndpoint, key: string, offered: ServiceInfo[]): void => {
    for (const info of offered) {
      try {
        checkServiceName(info.name);
        checkServiceRevision(info.revision, info.name);
      } catch (e) {
        throw new GrpcStartError(`${key} (${endpoint.label}): ${e instanceof Error ? e.message : String(e)}`);
      }
      if (BUILTIN_SERVICE_NAMES.includes(info.name)) throw new GrpcStartError(`${key} (${endpoint.label}) offers service ${JSON.stringify(info.name)}, which is built in`);
      const other = factories.get(info.name);
      if (other) throw new GrpcStartError(`${key} (${endpoint.label}) offers service ${JSON.stringify(info.name)}, which ${other.from} offers too`);
      factories.set(info.name, { factory: grpcServiceFactory(info, endpoint), from: `${key} (${endpoint.label})` });
      log.info({ grpc: endpoint.label, service: info.name, revision: info.revision }, 'gRPC service registered');
    }
  };
  try {
    for (const [i, line] of config.commands.entries()) {
      const key = `service.grpc.commands[${i}]`;
      const registered = new Set<string>();
      const command = new GrpcCommand(line, log, (conn) => {
        const lost = [...registered].filter((n) => !conn.offers(n));
        const extra = conn.services.map((s) => s.name).filter((n) => !registered.has(n));
        if (lost.length + extra.length > 0) {
          log.warn({ grpc: command.label, unavailable: lost, ignored: extra }, 'gRPC service offers other services after its restart (services registered at startup only)');
        }
      });
      commands.push(command);
      let conn: GrpcConnection;
      try {
        conn = await command.start();
      } catch (e) {
        throw new GrpcStartError(`${key}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
      add(command, key, conn.services);
      for (const s of conn.services) registered.add(s.name);
    }
    for (const [i, target] of config.targets.entries()) {
      const key = `service.grpc.targets[${i}]`;
      const credentials = target.insecure ? grpc.credentials.createInsecure() : grpc.credentials.createSsl();
      const conn = new GrpcConnection(`target ${target.address}`, new GateGrpcClient(target.address, credentials), true);
      try {
        await conn.init();
      } catch (e) {
        conn.close();
        if (target.optional) {
          log.info({ grpc: conn.label, err: e }, `optional gRPC ${conn.label} is not used: ${describe(e)}`);
          continue;
        }
        throw new GrpcStartError(`${key}: cannot use ${conn.label}: Root.Init failed: ${describe(e)}`, { cause: e });
      }
      targets.push(conn);
      add({ label: conn.label, connection: () => conn }, key, conn.services);
    }
  } catch (e) {
    await services.close();
    throw e;
  }
  return new GrpcServices([...factories.values()].map((f) => f.factory), commands, targets);
}
