// `gate clone`: on one server (or the daemon) in one request, and from the
// daemon to a gate-server (the snapshot copied there and launched), the
// original going on in both cases and no pins left behind.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { PROGRAMS, gate, ok, useClientServers } from './client-env.js';

const COUNTER = join(PROGRAMS, 'counter.wasm');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('gate clone', () => {
  const servers = useClientServers();

  it('clones on the server, and from the daemon onto a server', async () => {
    const remote = servers.remote.url;
    const id = (await ok(servers.env, [remote, 'launch', COUNTER, 'run', 'first'])).trim();
    const copy = (await ok(servers.env, [remote, 'clone', id])).trim();
    assert.match(copy, UUID);
    assert.notEqual(copy, id);
    assert.equal(await ok(servers.env, [remote, 'status', copy]), 'RUNNING [first]\n');
    assert.equal(await ok(servers.env, [remote, 'status', id]), 'RUNNING [first]\n');
    const suspended = (await ok(servers.env, [remote, 'clone', '--suspend', id])).trim();
    assert.equal(await ok(servers.env, [remote, 'status', suspended]), 'SUSPENDED [first]\n');

    const local = (await ok(servers.env, ['launch', COUNTER, 'run', 'here'])).trim();
    const modulesBefore = await ok(servers.env, ['modules']);
    const remoteModulesBefore = await ok(servers.env, [remote, 'modules']);
    const moved = (await ok(servers.env, ['clone', local, remote])).trim();
    assert.match(moved, UUID);
    assert.equal(await ok(servers.env, [remote, 'status', moved]), 'RUNNING [here]\n');
    assert.equal(await ok(servers.env, ['status', local]), 'RUNNING [here]\n');
    // The snapshot pinned for the copy is unpinned again on both sides (the copy's record keeps its module).
    assert.equal(await ok(servers.env, ['modules']), modulesBefore);
    assert.equal(await ok(servers.env, [remote, 'modules']), remoteModulesBefore);

    const missing = await gate(servers.env, [remote, 'clone', globalThis.crypto.randomUUID()]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^gate: instance not found\n$/);
    for (const i of [id, copy, suspended, moved]) await ok(servers.env, [remote, 'kill', i]);
    await ok(servers.env, ['kill', local]);
  });
});
