/**
 * The configuration keys gate-server and gate-daemon read, so that any other
 * key is refused (a typo such as `runtime.sandboxx=none` must not start a
 * server with the default in force). Keep these lists in step with the
 * getString/getBool/… calls and the --help texts (a test compares them).
 */
import { describeKey, nearest, type KnownKeys, type OpenTableCheck } from '../config/index.js';
import type { ConfigValue } from '../config/index.js';
import { BUILTIN_SERVICE_NAMES } from '../service/builtin.js';
import { PEER_SERVICE_KEYS } from './services.js';
import { CLUSTER_KEYS } from '../cluster/config.js';

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

/** Settings of the gRPC services (docs/grpc.md), under `service.grpc`. */
export const GRPC_KEYS: readonly string[] = ['commands', 'targets'];

/** Keys under `service` read by both programs besides the extensions' own (documented in COMMON_KEYS_HELP). */
export const SERVICE_KEYS: readonly string[] = ['service.extensions', 'service.localhost.addr', ...PEER_SERVICE_KEYS, 'service.grpc.commands', 'service.grpc.targets'];

/** Built-in services with settings (service.<name>.<key>): name → keys. */
export const CONFIGURABLE_BUILTINS: ReadonlyMap<string, readonly string[]> = new Map([
  ['peer', PEER_SERVICE_KEYS.map((k) => k.split('.')[2]!)],
  // The gRPC services' commands and targets (docs/grpc.md): not a service itself.
  ['grpc', GRPC_KEYS],
]);

/** What may be configured under `service.<name>.*`. */
export interface ServiceKeys {
  /** Built-in services: no settings in this implementation. */
  builtins: readonly string[];
  /** Extension name → the keys it reads (service.<name>.<key>). */
  extensions: ReadonlyMap<string, readonly string[]>;
}

const DEFAULT_SERVICE_KEYS: ServiceKeys = { builtins: BUILTIN_SERVICE_NAMES, extensions: new Map([['localhost', ['addr']]]) };

/**
 * `service.<name>.*`: the services and extensions there are, not a fixed
 * list. A key no built-in service or loaded extension reads is refused
 * rather than ignored, with the key named.
 */
export function serviceKeysCheck(known: ServiceKeys = DEFAULT_SERVICE_KEYS): OpenTableCheck {
  return (path, value) => {
    const base = path.join('.');
    if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Date) {
      return `configuration key ${base} must be a table of service.<name>.<key> settings`;
    }
    const names = [...known.builtins, ...CONFIGURABLE_BUILTINS.keys(), ...known.extensions.keys()];
    for (const [name, v] of Object.entries(value as Record<string, ConfigValue>)) {
      if (name === 'extensions') continue; // the list of modules, type-checked where it is read
      const key = describeKey(`${base}.${name}`, v);
      const settings = known.extensions.get(name) ?? CONFIGURABLE_BUILTINS.get(name);
      if (settings) {
        const owner = known.extensions.has(name) ? `the ${name} extension` : name === 'grpc' ? 'the gRPC services' : `the ${name} service`;
        if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Date) {
          return `${key} must be a table of ${owner}' settings (${settings.map((k) => `${base}.${name}.${k}`).join(', ') || 'it has none'})`.replace(/([^s])' settings/, "$1's settings");
        }
        for (const [k, x] of Object.entries(v)) {
          if (settings.includes(k)) continue;
          const hint = nearest(k, settings);
          return `unknown ${describeKey(`${base}.${name}.${k}`, x)}${hint ? ` (did you mean ${base}.${name}.${hint}?)` : ''}; ${owner} read${name === 'grpc' ? '' : 's'} ${settings.map((s) => `${base}.${name}.${s}`).join(', ') || 'no settings'}`;
        }
        continue;
      }
      if (!known.builtins.includes(name)) {
        const hint = nearest(name, [...names, 'extensions']);
        return `unknown service ${JSON.stringify(name)} in ${key}${hint ? ` (did you mean ${base}.${hint}?)` : ''}; services: ${names.join(', ')} (extensions are loaded by service.extensions)`;
      }
      return `${key}: the ${name} service has no settings in this implementation (remove the key)`;
    }
    return undefined;
  };
}

export function serverKeys(programKeys: readonly string[], services?: ServiceKeys): KnownKeys {
  return { keys: [...programKeys, ...COMMON_SERVER_KEYS, ...SERVICE_KEYS], open: { service: serviceKeysCheck(services) } };
}

/** gate-server's own keys (gate-server.ts). */
export const SERVER_KEYS: readonly string[] = [
  'http.addr',
  'http.authority',
  'http.origins',
  'http.console',
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
  'anonymous.nice',
  'anonymous.cputime',
  'server.identityfile',
  'metrics.addr',
  'endpoint.enabled',
  'endpoint.maxrequests',
  'endpoint.maxbodysize',
  'endpoint.timeout',
  'source.http[].name',
  'source.http[].addr',
  'source.ipfs.addr',
  ...CLUSTER_KEYS,
];

/** gate-daemon's own keys (gate-daemon.ts). */
export const DAEMON_KEYS: readonly string[] = ['unix.socket', 'state.dir'];
