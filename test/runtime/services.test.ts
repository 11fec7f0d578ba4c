/**
 * The built-in services (spec services.md §4–§7) and an extension, used by a
 * real program (test/programs/services.c) over the packet protocol, in both
 * profiles. The program prints what it receives to its debug log; the
 * expected output is written out literally here.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Domain, packetContent, packetDomain } from '../../src/abi/packet.js';
import { PROFILES } from '../../src/prepare/profile.js';
import type { ServiceContext } from '../../src/service/api.js';
import { defineService } from '../../src/service/extension.js';
import { extensionRegistry, instanceServices, type InstanceServices } from '../../src/service/provider.js';
import type { RunningInstance } from '../../src/runtime/runtime.js';
import { programBytes, runWithClient } from '../helpers/runtime.js';

const services = programBytes('services');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const HALTED_OK = { state: 'HALTED', result: 0 };

/** What one instance of the test extension observed. */
interface Observed {
  context: ServiceContext;
  /** Contents of the CALL packets received, as hex. */
  calls: string[];
  /** Contents of the INFO packets received, as text. */
  infos: string[];
  /** Arguments of shutdown() calls. */
  shutdowns: boolean[];
}

/** An extension named `test` that echoes CALLs back unchanged and records what it receives. */
function testExtension() {
  const instances: Observed[] = [];
  const factory = defineService({
    name: 'test',
    revision: '10.23.456-7',
    create(config) {
      const seen: Observed = { context: config.context, calls: [], infos: [], shutdowns: [] };
      instances.push(seen);
      return {
        handle(packet) {
          const content = packetContent(packet);
          switch (packetDomain(packet)) {
            case Domain.Call:
              seen.calls.push(Buffer.from(content).toString('hex'));
              config.send(packet.slice());
              break;
            case Domain.Info:
              seen.infos.push(Buffer.from(content).toString());
              break;
          }
        },
        shutdown(suspend) {
          seen.shutdowns.push(suspend);
        },
      };
    },
  });
  return { factory, instances };
}

function withExtension() {
  const ext = testExtension();
  return { ext, services: instanceServices({ principalId: 'local', registry: extensionRegistry([ext.factory]) }) };
}

const CATALOG_DEFAULT = `{
\t"services": [
\t\t{
\t\t\t"name": "catalog",
\t\t\t"revision": "0"
\t\t},
\t\t{
\t\t\t"name": "identity",
\t\t\t"revision": "0"
\t\t},
\t\t{
\t\t\t"name": "origin",
\t\t\t"revision": "0"
\t\t},
\t\t{
\t\t\t"name": "random",
\t\t\t"revision": "0"
\t\t},
\t\t{
\t\t\t"name": "scope",
\t\t\t"revision": "0"
\t\t}
\t]
}
`;

const CATALOG_WITH_TEST = `{
\t"services": [
\t\t{
\t\t\t"name": "catalog",
\t\t\t"revision": "0"
\t\t},
\t\t{
\t\t\t"name": "identity",
\t\t\t"revision": "0"
\t\t},
\t\t{
\t\t\t"name": "origin",
\t\t\t"revision": "0"
\t\t},
\t\t{
\t\t\t"name": "random",
\t\t\t"revision": "0"
\t\t},
\t\t{
\t\t\t"name": "scope",
\t\t\t"revision": "0"
\t\t},
\t\t{
\t\t\t"name": "test",
\t\t\t"revision": "10.23.456-7"
\t\t}
\t]
}
`;

/** What the program's `catalog` export prints: the reply content verbatim, then its length. */
function catalogOutput(json: string): string {
  return `${json}length=${Buffer.byteLength(json)}\n`;
}

for (const profile of PROFILES) {
  describe(`services program (${profile})`, () => {
    it('catalog lists the built-in services and the extension, sorted, as tab-indented JSON', async () => {
      const { ext, services: provider } = withExtension();
      const r = await runWithClient(services, { profile, entry: 'catalog', services: provider });
      assert.deepEqual(r.status, HALTED_OK);
      assert.equal(r.debug, catalogOutput(CATALOG_WITH_TEST));
      assert.equal(ext.instances.length, 0, 'listing a service does not create it');
    });

    it('catalog without extensions lists only the built-in services', async () => {
      const r = await runWithClient(services, { profile, entry: 'catalog' });
      assert.deepEqual(r.status, HALTED_OK);
      assert.equal(r.debug, catalogOutput(CATALOG_DEFAULT));
    });

    it('identity tells the principal and the instance id', async () => {
      let inst: RunningInstance<InstanceServices> | undefined;
      const r = await runWithClient(services, { profile, entry: 'identity', onLaunch: (i) => (inst = i) });
      assert.deepEqual(r.status, HALTED_OK);
      assert.ok(inst);
      assert.match(inst.id, UUID);
      assert.equal(r.debug, `principal=local\ninstance=${inst.id}\n`);
    });

    it('identity of an anonymous program is empty', async () => {
      let inst: RunningInstance<InstanceServices> | undefined;
      const r = await runWithClient(services, {
        profile,
        entry: 'identity',
        services: instanceServices({}),
        onLaunch: (i) => (inst = i),
      });
      assert.deepEqual(r.status, HALTED_OK);
      assert.equal(r.debug, `principal=\ninstance=${inst!.id}\n`);
    });

    it('random gives 16 rate-limited random bytes, and an empty reply for 0 bytes', async () => {
      const runs = await Promise.all(
        [0, 1].map(async () => {
          let launched = 0;
          const r = await runWithClient(services, { profile, entry: 'random', onLaunch: () => (launched = performance.now()) });
          return { r, elapsed: performance.now() - launched };
        }),
      );
      const bytes: string[] = [];
      for (const { r, elapsed } of runs) {
        assert.deepEqual(r.status, HALTED_OK);
        const m = /^random=([0-9a-f]{32})\nempty=0\n$/.exec(r.debug);
        assert.ok(m, JSON.stringify(r.debug));
        assert.notEqual(m[1], '0'.repeat(32));
        bytes.push(m[1]!);
        // 16 bytes at the default 16 bytes/s: not before a second after the
        // service was created (services.md §6).
        assert.ok(elapsed >= 1000, `random reply after ${elapsed} ms`);
      }
      assert.notEqual(bytes[0], bytes[1]);
    });

    it('scope restricts the program scope to program:system', async () => {
      let inst: RunningInstance<InstanceServices> | undefined;
      const r = await runWithClient(services, { profile, entry: 'scope', onLaunch: (i) => (inst = i) });
      assert.deepEqual(r.status, HALTED_OK);
      assert.equal(r.debug, 'scope=0\n');
      assert.deepEqual(inst!.services.programScope.current(), ['program:system']);
    });

    it('unknown: an unregistered name is unavailable, origin is available', async () => {
      const r = await runWithClient(services, { profile, entry: 'unknown' });
      assert.deepEqual(r.status, HALTED_OK);
      assert.equal(r.debug, 'states=0,1\n');
    });

    it('ext: the extension echoes calls and receives INFO packets', async () => {
      const { ext, services: provider } = withExtension();
      let inst: RunningInstance<InstanceServices> | undefined;
      const r = await runWithClient(services, { profile, entry: 'ext', services: provider, onLaunch: (i) => (inst = i) });
      assert.deepEqual(r.status, HALTED_OK);
      assert.equal(r.debug, 'echo=0102030405060708\nreply=bye\n');
      assert.equal(ext.instances.length, 1);
      const seen = ext.instances[0]!;
      assert.deepEqual(seen.calls, ['0102030405060708', Buffer.from('bye').toString('hex')]);
      assert.deepEqual(seen.infos, ['hi']);
      assert.deepEqual(seen.context, { principalId: 'local', instanceId: inst!.id, scope: undefined });
      assert.deepEqual(seen.shutdowns, [false]);
    });

    it('ext: without the extension, `test` is unavailable', async () => {
      const r = await runWithClient(services, { profile, entry: 'ext' });
      assert.equal(r.status.state, 'HALTED'); // the export's return value is ignored (abi.md §1.3)
      assert.equal(r.debug, 'services: test unavailable\n');
    });
  });
}
