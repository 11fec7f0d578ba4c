/**
 * The configuration keys gate-server and gate-daemon read, so that any other
 * key is refused (a typo such as `runtime.sandboxx=none` must not start a
 * server with the default in force). Keep these lists in step with the
 * getString/getBool/… calls and the --help texts (a test compares them).
 */
import { describeKey, nearest, type KnownKeys, type OpenTableCheck } from '../config/index.js';
import type { ConfigValue } from '../config/index.js';
import { BUILTIN_SERVICE_NAMES } from '../service/builtin.js';

/** Keys both programs read (server-main.ts). */
export const COMMON_SERVER_KEYS: readonly string[] = [
  'runtime.sandbox',
  'runtime.bwrap',
  'runtime.profile',
  'runtime.isolateprincipals',
  'runtime.maxinstances',
  'principal.maxmodulesize',
  'principal.maxmemorysize',
  'principal.timeresolution',
  'principal.cputime',
  'principal.debugrate',
  'principal.debugburst',
  'log.level',
  'log.debugrate',
  'state.checkpointinterval',
  // Checked by serviceKeysCheck (the service table is open); listed for --help.
  'service.grpc.commands',
  'service.grpc.targets',
];

/** Settings of the gRPC extension (docs/grpc.md), under `service.grpc`: it is not a service itself. */
export const GRPC_KEYS: readonly string[] = ['commands', 'targets'];

/**
 * `service.<name>.*`: the services are the registry's, not a fixed list.
 * Apart from `service.grpc.*` (the gRPC services' commands and targets) the
 * programs configure no service yet (the built-ins take their defaults), so
 * a key there names either an unknown service or a setting that is not
 * read: both are refused rather than ignored.
 */
export function serviceKeysCheck(services: readonly string[] = BUILTIN_SERVICE_NAMES): OpenTableCheck {
  return (path, value) => {
    const base = path.join('.');
    if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Date) {
      return `configuration key ${base} must be a table of service.<name>.<key> settings`;
    }
    for (const [name, settings] of Object.entries(value as Record<string, ConfigValue>)) {
      const key = describeKey(`${base}.${name}`, settings);
      if (name === 'grpc') {
        const problem = grpcKeysProblem(`${base}.${name}`, settings);
        if (problem) return problem;
        continue;
      }
      if (!services.includes(name)) {
        const hint = nearest(name, [...services, 'grpc']);
        return `unknown service ${JSON.stringify(name)} in ${key}${hint ? ` (did you mean ${base}.${hint}?)` : ''}; services: ${services.join(', ')}`;
      }
      return `${key}: the ${name} service has no settings in this implementation (remove the key)`;
    }
    return undefined;
  };
}

function grpcKeysProblem(base: string, value: ConfigValue): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Date) {
    return `configuration key ${base} must be a table (${GRPC_KEYS.map((k) => `${base}.${k}`).join(', ')})`;
  }
  for (const name of Object.keys(value)) {
    if (!GRPC_KEYS.includes(name)) {
      const hint = nearest(name, GRPC_KEYS);
      return `unknown configuration key ${base}.${name}${hint ? ` (did you mean ${base}.${hint}?)` : ''}; the gRPC settings are ${GRPC_KEYS.map((k) => `${base}.${k}`).join(', ')}`;
    }
  }
  return undefined;
}

export function serverKeys(programKeys: readonly string[], services?: readonly string[]): KnownKeys {
  return { keys: [...programKeys, ...COMMON_SERVER_KEYS], open: { service: serviceKeysCheck(services) } };
}

/** gate-server's own keys (gate-server.ts). */
export const SERVER_KEYS: readonly string[] = [
  'http.addr',
  'http.authority',
  'http.origins',
  'http.tls.enabled',
  'http.tls.certfile',
  'http.tls.keyfile',
  'state.dir',
  'inventory.dsn',
  'access.policy',
  'access.ssh.authorizedkeys',
  'anonymous.maxperaddress',
  'anonymous.maxpermodule',
  'anonymous.executors',
  'server.identityfile',
  'metrics.addr',
  'source.http[].name',
  'source.http[].addr',
];

/** gate-daemon's own keys (gate-daemon.ts). */
export const DAEMON_KEYS: readonly string[] = ['unix.socket', 'state.dir'];
