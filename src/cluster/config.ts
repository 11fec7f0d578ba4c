/** gate-server's `cluster.*` keys (docs/cluster.md, docs/server.md). */
import { ConfigError, getBool, getNumber, getPath, getString, getValue, type ConfigTree } from '../config/index.js';
import type { ClusterOptions } from './member.js';

export const CLUSTER_KEYS: readonly string[] = ['cluster.name', 'cluster.address', 'cluster.capacity', 'cluster.heartbeat', 'cluster.failover', 'cluster.blobdir', 'cluster.drain'];

export const CLUSTER_KEYS_HELP = `
  cluster.blobdir            directory for modules and snapshots shared by every server of a cluster
                             (default: in state.dir); atomic renames, so a network filesystem must
                             provide them (NFS does)
  cluster.name               join a cluster under this name (needs inventory.dsn and cluster.blobdir;
                             docs/cluster.md); unset: a single server
  cluster.address            base URL the other servers forward requests to, e.g. http://10.0.0.2:6473
                             (default: the listening URL)
  cluster.capacity           instances this server runs at most when taking over a lost server's
                             (default 1000)
  cluster.heartbeat          seconds between heartbeats (default 2)
  cluster.failover           seconds without a heartbeat after which a server's persistent instances
                             are restored by the others from their latest checkpoint (default 10; at
                             least three heartbeats)
  cluster.drain              true: on SIGTERM, move persistent instances to the other servers before
                             exiting (default false: store them for this server's restart)`;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** The shared blob directory, if configured. */
export function blobDirFrom(tree: ConfigTree): string | undefined {
  const dir = getPath(tree, 'cluster.blobdir');
  return dir === '' ? undefined : dir;
}

/** The cluster settings, or undefined for a single server (other cluster keys are then refused: they would do nothing). */
export function clusterFrom(tree: ConfigTree, inventoryDsn: string | undefined): ClusterOptions | undefined {
  const name = getString(tree, 'cluster.name', '');
  if (name === '') {
    for (const key of CLUSTER_KEYS) {
      if (key !== 'cluster.name' && key !== 'cluster.blobdir' && getValue(tree, key) !== undefined) throw new ConfigError(`${key} is set but cluster.name is not (a single server has no cluster settings)`);
    }
    return undefined;
  }
  if (!NAME.test(name)) throw new ConfigError(`cluster.name must be 1-63 letters, digits and '.', '_', '-' (starting with a letter or digit), not ${JSON.stringify(name)}`);
  if (inventoryDsn === undefined) throw new ConfigError('cluster.name needs inventory.dsn: the servers of a cluster share one PostgreSQL inventory');
  const blobDir = blobDirFrom(tree);
  if (blobDir === undefined) throw new ConfigError('cluster.name needs cluster.blobdir: the servers of a cluster share one directory of modules and snapshots');
  const address = getString(tree, 'cluster.address', '');
  if (address !== '' && !/^https?:\/\/[^/?#]+\/?$/.test(address)) throw new ConfigError(`cluster.address must be http://HOST:PORT or https://HOST:PORT (no path), not ${JSON.stringify(address)}`);
  const capacity = getNumber(tree, 'cluster.capacity', 1000);
  if (!Number.isSafeInteger(capacity) || capacity < 1) throw new ConfigError('cluster.capacity must be a whole number of at least 1');
  const heartbeat = getNumber(tree, 'cluster.heartbeat', 2);
  if (!(Number.isFinite(heartbeat) && heartbeat >= 0.1)) throw new ConfigError('cluster.heartbeat must be a number of seconds, at least 0.1');
  const failover = getNumber(tree, 'cluster.failover', 10);
  if (!(Number.isFinite(failover) && failover >= 3 * heartbeat)) throw new ConfigError(`cluster.failover must be a number of seconds, at least three heartbeats (${3 * heartbeat})`);
  return {
    name,
    ...(address !== '' ? { address: address.replace(/\/$/, '') } : {}),
    capacity,
    heartbeatMs: heartbeat * 1000,
    failoverMs: failover * 1000,
    blobDir,
    drain: getBool(tree, 'cluster.drain', false),
  };
}
