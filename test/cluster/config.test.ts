/**
 * The cluster.* keys: what they give, the errors a bad setting gets (from
 * gate-server itself: exit 2 with the key named), and a single server that
 * refuses `action=migrate`.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { clusterFrom } from '../../src/cluster/config.js';
import { ConfigError, type ConfigTree } from '../../src/config/index.js';
import { newKey, request, startTestServer } from '../helpers/server.js';

const DSN = 'postgres://gate@127.0.0.1:5432/gate';
const GATE_SERVER = new URL('../../../bin/gate-server', import.meta.url).pathname;

/** dsn null: no inventory.dsn. */
function cluster(settings: Record<string, unknown>, dsn: string | null = DSN): ReturnType<typeof clusterFrom> {
  return clusterFrom({ cluster: settings } as ConfigTree, dsn ?? undefined);
}

function refused(settings: Record<string, unknown>, message: RegExp, dsn: string | null = DSN): void {
  assert.throws(() => cluster(settings, dsn), (e: unknown) => e instanceof ConfigError && message.test(e.message));
}

function run(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(GATE_SERVER, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

describe('cluster configuration', () => {
  it('gives the settings with their defaults', () => {
    assert.equal(cluster({}), undefined);
    assert.equal(cluster({ blobdir: '/srv/gate/blobs' }), undefined);
    assert.deepEqual(cluster({ name: 'a-1', blobdir: '/srv/gate/blobs' }), { name: 'a-1', capacity: 1000, heartbeatMs: 2000, failoverMs: 10_000, blobDir: '/srv/gate/blobs', drain: false });
    assert.deepEqual(cluster({ name: 'b', blobdir: '/b', address: 'http://10.0.0.2:6473/', capacity: 5, heartbeat: 0.5, failover: 1.5, drain: true }), {
      name: 'b',
      address: 'http://10.0.0.2:6473',
      capacity: 5,
      heartbeatMs: 500,
      failoverMs: 1500,
      blobDir: '/b',
      drain: true,
    });
  });

  it('refuses settings that cannot work, naming the key', () => {
    refused({ name: 'a', blobdir: '/b' }, /cluster\.name needs inventory\.dsn/, null);
    refused({ name: 'a' }, /cluster\.name needs cluster\.blobdir/);
    refused({ name: 'a b', blobdir: '/b' }, /cluster\.name must be/);
    refused({ name: 'a', blobdir: '/b', address: 'ftp://x' }, /cluster\.address must be/);
    refused({ name: 'a', blobdir: '/b', address: 'http://x/path' }, /cluster\.address must be/);
    refused({ name: 'a', blobdir: '/b', capacity: 0 }, /cluster\.capacity must be/);
    refused({ name: 'a', blobdir: '/b', heartbeat: 0 }, /cluster\.heartbeat must be/);
    refused({ name: 'a', blobdir: '/b', heartbeat: 2, failover: 5 }, /cluster\.failover must be .* at least three heartbeats \(6\)/);
    refused({ capacity: 3 }, /cluster\.capacity is set but cluster\.name is not/);
  });

  it('stops gate-server with exit 2 for an unknown or unusable cluster key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gate-test-cluster-config-'));
    try {
      const base = ['-F', '/dev/null', '-o', 'access.policy="public"', '-o', 'http.addr="127.0.0.1:0"', '-o', `state.dir=${JSON.stringify(dir)}`];
      const typo = await run([...base, '-o', 'cluster.nmae="a"']);
      assert.equal(typo.code, 2);
      assert.equal(typo.stderr, 'gate-server: -o cluster.nmae="a": unknown configuration key cluster.nmae (did you mean cluster.name?)\n');
      const noDsn = await run([...base, '-o', 'cluster.name="a"', '-o', 'cluster.blobdir="/tmp"']);
      assert.equal(noDsn.code, 2);
      assert.equal(noDsn.stderr, 'gate-server: cluster.name needs inventory.dsn: the servers of a cluster share one PostgreSQL inventory\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('answers action=migrate with 501 on a single server', async () => {
    const server = await startTestServer();
    const key = newKey();
    try {
      const r = await request(server, 'POST', '/gate-0/instance/00000000-0000-4000-8000-000000000001?action=migrate&server=b', { key });
      assert.equal(r.status, 501);
      assert.equal(r.text, 'migrate needs a cluster (docs/cluster.md)\n');
    } finally {
      await server.stop();
    }
  });
});
