// service.peer.* keys (issue #14): accepted by both programs, checked, and
// turned into the deployment's peer service; bad values are configuration errors.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkKnownKeys, ConfigError, type ConfigTree } from '../../src/config/index.js';
import { serverKeys, SERVER_KEYS, DAEMON_KEYS } from '../../src/cli/server-keys.js';
import { serviceRegistryFrom } from '../../src/cli/services.js';
import { PeerService } from '../../src/service/peer.js';
import { ServiceStateError } from '../../src/service/varint.js';

const tree = (t: object): ConfigTree => t as ConfigTree;

describe('service.peer configuration', () => {
  it('accepts the peer settings in both programs and names a typo', () => {
    const good = tree({ service: { peer: { enabled: true, sharedgroups: ['lobby'], maxgroups: 4, maxstreams: 8, maxmembers: 10 } } });
    for (const keys of [SERVER_KEYS, DAEMON_KEYS]) checkKnownKeys(good, serverKeys(keys));
    assert.throws(
      () => checkKnownKeys(tree({ service: { peer: { enabeld: true } } }), serverKeys(SERVER_KEYS)),
      /^(ConfigError: )?unknown configuration key service\.peer\.enabeld .*\(did you mean service\.peer\.enabled\?\); the peer service reads service\.peer\.enabled, /,
    );
    // Other services still have no settings.
    assert.throws(() => checkKnownKeys(tree({ service: { peer: { enabled: true }, origin: { maxconns: 3 } } }), serverKeys(SERVER_KEYS)), /the origin service has no settings/);
  });

  it('registers the service only when enabled, with its limits checked', () => {
    assert.equal(serviceRegistryFrom(tree({})).lookup('peer'), undefined);
    assert.equal(serviceRegistryFrom(tree({ service: { peer: { enabled: false } } })).lookup('peer'), undefined);
    const peer = serviceRegistryFrom(tree({ service: { peer: { enabled: true, maxgroups: 2 } } })).lookup('peer');
    assert.ok(peer instanceof PeerService);
    assert.equal(peer.maxGroups, 2);
    assert.throws(() => serviceRegistryFrom(tree({ service: { peer: { enabled: true, maxstreams: 0 } } })), (e: unknown) => e instanceof ConfigError && /service\.peer\.maxstreams must be a whole number of at least 1/.test(e.message));
    assert.throws(() => serviceRegistryFrom(tree({ service: { peer: { enabled: true, sharedgroups: [''] } } })), ConfigError);
  });

  it('is not offered to anonymous programs', () => {
    const peer = new PeerService();
    assert.equal(peer.discoverable({ principalId: undefined, instanceId: 'x', scope: undefined }), false);
    assert.equal(peer.discoverable({ principalId: 'local', instanceId: 'x', scope: undefined }), true);
  });

  it('refuses a state buffer that is not its own (snapshots can be uploaded by users)', () => {
    const peer = new PeerService();
    const config = { code: 0, maxSendSize: 65536, context: { principalId: 'local', instanceId: 'i', scope: undefined }, send: () => undefined };
    for (const garbage of [[1, 0, 0, 0, 0, 0], [0, 0, 0], [0, 0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0, 255, 255, 255, 255, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 9]]) {
      assert.throws(() => peer.createInstance(config, new Uint8Array(garbage)), ServiceStateError, JSON.stringify(garbage));
    }
    assert.equal(peer.memberCount(), 0);
  });
});
