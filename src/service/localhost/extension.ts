/**
 * The localhost service as a built-in extension: enabled by
 * `service.localhost.addr` (as the original's localhost.Ext).
 */
import { defineExtension } from '../gate-extension.js';
import { LocalhostClient, localhostService, parseLocalhostAddr } from './localhost.js';

export const localhostExtension = defineExtension({
  name: 'localhost',
  settings: {
    addr: {
      type: 'string',
      help: 'gate.computer/localhost: programs make HTTP requests to this server: http://HOST[:PORT],\n                             https://HOST[:PORT] or unix:/PATH (default: none, the service is absent)',
    },
  },
  services(config) {
    const addr = config['addr'] as string | undefined;
    if (addr === undefined || addr === '') return undefined;
    return localhostService(new LocalhostClient(parseLocalhostAddr(addr)));
  },
});
