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
  ...PEER_SERVICE_KEYS,
];

/** service name → the settings read from service.<name>.* */
const SERVICE_SETTINGS = new Map<string, string[]>();
for (const key of PEER_SERVICE_KEYS) {
  const [, name, setting] = key.split('.') as [string, string, string];
  SERVICE_SETTINGS.set(name, [...(SERVICE_SETTINGS.get(name) ?? []), setting]);
}

/**
 * `service.<name>.*`: the services are the registry's, not a fixed list. The
 * programs configure no service yet (the built-ins take their defaults and
 * no extension is loaded), so a key there names either an unknown service or
 * a setting that is not read: both are refused rather than ignored.
 */
export function serviceKeysCheck(services: readonly string[] = BUILTIN_SERVICE_NAMES): OpenTableCheck {
  return (path, value) => {
    const base = path.join('.');
    if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Date) {
      return `configuration key ${base} must be a table of service.<name>.<key> settings`;
    }
    // Settings of configurable services (service.peer.*) are known keys; the rest is checked below.
    const rest: Record<string, ConfigValue> = {};
    for (const [name, table] of Object.entries(value as Record<string, ConfigValue>)) {
      const settings = SERVICE_SETTINGS.get(name);
      if (!settings) {
        rest[name] = table;
        continue;
      }
      const where = `${base}.${name}`;
      if (typeof table !== 'object' || table === null || Array.isArray(table) || table instanceof Date) return `configuration key ${where} must be a table`;
      for (const key of Object.keys(table)) {
        if (!settings.includes(key)) {
          const hint = nearest(key, settings);
          return `unknown configuration key ${where}.${key}${hint ? ` (did you mean ${where}.${hint}?)` : ''}`;
        }
      }
    }
    value = rest;
    const names = Object.keys(value);
    if (names.length === 0) return undefined;
    const name = names[0]!;
    const key = describeKey(`${base}.${name}`, (value as Record<string, ConfigValue>)[name]!);
    if (!services.includes(name)) {
      const hint = nearest(name, services);
      return `unknown service ${JSON.stringify(name)} in ${key}${hint ? ` (did you mean ${base}.${hint}?)` : ''}; services: ${services.join(', ')}`;
    }
    return `${key}: the ${name} service has no settings in this implementation (remove the key)`;
  };
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
  'endpoint.enabled',
  'endpoint.maxrequests',
  'endpoint.maxbodysize',
  'endpoint.timeout',
  'source.http[].name',
  'source.http[].addr',
];

/** gate-daemon's own keys (gate-daemon.ts). */
export const DAEMON_KEYS: readonly string[] = ['unix.socket', 'state.dir'];
