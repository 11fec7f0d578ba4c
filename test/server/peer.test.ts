/**
 * The peer service end to end (issue #14): real gate-server, real
 * test/programs/peer.wasm instances, real websocket clients driving them.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PeerService } from '../../src/service/peer.js';
import { extensionRegistry } from '../../src/service/provider.js';
import { clientFor, PeerDriver } from '../helpers/peer-driver.js';
import { newKey, startTestServer, type TestServer } from '../helpers/server.js';

const OK = 0;
const GROUP_NOT_FOUND = 2;
const PEER_NOT_FOUND = 3;
const SINGULARITY = 4;
const ALREADY_CONNECTING = 5;
const ALREADY_CONNECTED = 6;
const ALREADY_JOINED = 7;
const NOT_PERMITTED = 8;
const BUSY = 10;

describe('peer service', () => {
  let server: TestServer;
  let peers: PeerService;
  const alice = newKey();
  const bob = newKey();

  before(async () => {
    peers = new PeerService({ sharedGroups: ['lobby'] });
    server = await startTestServer({ registry: extensionRegistry([peers]) });
  });
  after(async () => {
    await server.stop();
  });

  const launch = (key = alice): Promise<PeerDriver> => PeerDriver.launch(clientFor(server.url, key));

  it('members see each other join and leave, and exchange messages within the credit they grant', async () => {
    const a = await launch();
    const b = await launch();
    assert.equal(await a.call('join chat'), OK);
    assert.equal(await a.call('join chat'), ALREADY_JOINED);
    assert.equal(await b.call('join chat'), OK);
    await a.expect(new RegExp(`^joined chat ${b.id}$`));
    await b.expect(new RegExp(`^joined chat ${a.id}$`));

    // No credit granted yet: the message is refused, not queued.
    assert.equal(await a.call(`send chat ${b.id} hello`), BUSY);
    assert.equal(await b.call('receive 2'), OK);
    assert.equal(await a.call(`send chat ${b.id} hello`), OK);
    assert.equal(await a.call(`send chat ${b.id} again`), OK);
    assert.equal(await a.call(`send chat ${b.id} third`), BUSY);
    await b.expect(new RegExp(`^message chat ${a.id} hello$`));
    await b.expect(new RegExp(`^message chat ${a.id} again$`));

    assert.equal(await a.call(`send chat ${a.id} me`), SINGULARITY);
    assert.equal(await a.call(`send other ${b.id} x`), GROUP_NOT_FOUND);
    assert.equal(await a.call('send chat 00000000-0000-4000-8000-000000000000 x'), PEER_NOT_FOUND);

    assert.equal(await b.call('leave chat'), OK);
    await a.expect(new RegExp(`^left chat ${b.id}$`));
    assert.equal(await b.call('leave chat'), GROUP_NOT_FOUND);
    await a.client.kill(a.id, true);
    await b.client.kill(b.id, true);
  });

  it('connects two programs by a handshake and relays a stream within FLOW credit', async () => {
    const a = await launch();
    const b = await launch();
    await a.call('join s');
    await b.call('join s');
    await a.expect(/^joined s /);
    assert.equal(await a.call(`connect s ${b.id} text/plain`), OK);
    assert.equal(await a.call(`connect s ${b.id} text/plain`), ALREADY_CONNECTING);
    await b.expect(new RegExp(`^request s ${a.id} text/plain$`));
    assert.equal(await b.call(`connect s ${a.id} text/x-b`), OK);
    const [, sa] = await a.expect(new RegExp(`^connected (\\d+) s ${b.id} text/x-b$`));
    const [, sb] = await b.expect(new RegExp(`^connected (\\d+) s ${a.id} text/plain$`));
    assert.equal(await a.call(`connect s ${b.id} again`), ALREADY_CONNECTED);

    // b grants a 5 bytes, a writes 5: relayed as one DATA.
    b.send(`flow ${sb} 5`);
    await a.expect(new RegExp(`^flow ${sa} 5$`));
    a.send(`write ${sa} hello`);
    await b.expect(new RegExp(`^data ${sb} hello$`));
    a.send(`flow ${sa} 100`);
    await b.expect(new RegExp(`^flow ${sb} 100$`));
    b.send(`write ${sb} back at you`);
    await a.expect(new RegExp(`^data ${sa} back at you$`));

    // End of data both ways.
    a.send(`eof ${sa}`);
    await b.expect(new RegExp(`^eof ${sb} 0$`));
    b.send(`eof ${sb}`);
    await a.expect(new RegExp(`^eof ${sa} 0$`));
    // Both ids are free again: a new stream between them gets the same ones.
    assert.equal(await a.call(`connect s ${b.id} x`), OK);
    assert.equal(await b.call(`connect s ${a.id} y`), OK);
    await a.expect(new RegExp(`^connected ${sa} s `));
    await b.expect(new RegExp(`^connected ${sb} s `));
    await a.client.kill(a.id, true);
    await b.expect(new RegExp(`^left s ${a.id}$`));
    await b.client.kill(b.id, true);
  });

  it('scopes groups to the principal; shared groups only by the operator\'s list', async () => {
    const a = await launch(alice);
    const b = await launch(bob);
    await a.call('join team');
    await b.call('join team');
    assert.equal(await b.call(`send team ${a.id} hi`), PEER_NOT_FOUND);
    assert.equal(await b.call(`connect team ${a.id} x`), PEER_NOT_FOUND);
    assert.ok(!a.seen(/^joined team/) && !b.seen(/^joined team/), 'different principals do not see each other');

    assert.equal(await a.call('join secret shared'), NOT_PERMITTED);
    assert.equal(await a.call('join lobby shared'), OK);
    assert.equal(await b.call('join lobby shared'), OK);
    await a.expect(new RegExp(`^joined lobby ${b.id}$`));
    await b.expect(new RegExp(`^joined lobby ${a.id}$`));
    await a.call('receive 1');
    assert.equal(await b.call(`send lobby ${a.id} across`), OK);
    await a.expect(new RegExp(`^message lobby ${b.id} across$`));
    // "lobby" without the flag is the principal's own group: empty.
    const a2 = await launch(alice);
    assert.equal(await a2.call('join lobby'), OK);
    assert.equal(await a2.call(`send lobby ${a.id} x`), PEER_NOT_FOUND);
    for (const d of [a, b, a2]) await d.client.kill(d.id, true);
  });

  it('a stop of one peer ends its streams for the others (EOF with note -1, FLOW 0) and frees them', async () => {
    const a = await launch();
    const b = await launch();
    await a.call('join k');
    await b.call('join k');
    await a.expect(/^joined k /);
    await a.call(`connect k ${b.id} x`);
    await b.call(`connect k ${a.id} y`);
    const [, sa] = await a.expect(/^connected (\d+) k /);
    await b.expect(/^connected \d+ k /);
    b.send('flow 0 10');
    await a.expect(new RegExp(`^flow ${sa} 10$`));

    const status = await b.client.kill(b.id, true);
    assert.equal(status.state, 'KILLED');
    await a.expect(new RegExp(`^left k ${b.id}$`));
    await a.expect(new RegExp(`^eof ${sa} -1$`));
    await a.expect(new RegExp(`^flow ${sa} 0$`));
    // Writing within the credit the gone peer had granted is not an error (it is dropped); then a's EOF frees the id.
    a.send(`write ${sa} late`);
    a.send(`eof ${sa}`);
    const c = await launch();
    await c.call('join k');
    await a.expect(new RegExp(`^joined k ${c.id}$`));
    await a.call(`connect k ${c.id} x`);
    await c.call(`connect k ${a.id} y`);
    await a.expect(new RegExp(`^connected ${sa} k ${c.id} y$`));
    await a.client.kill(a.id, true);
    await c.client.kill(c.id, true);
    assert.equal(peers.memberCount(), 0);
  });

  it('malformed peer packets are ABI violations for the sender only', async () => {
    const a = await launch();
    const b = await launch();
    const c = await launch();
    for (const d of [a, b, c]) await d.call('join v');
    await a.expect(/^joined v /);
    await a.expect(/^joined v /);
    await a.call(`connect v ${b.id} x`);
    await b.call(`connect v ${a.id} y`);
    const [, sa] = await a.expect(/^connected (\d+) v /);
    const [, sb] = await b.expect(/^connected (\d+) v /);

    // b grants 3 bytes; a sends 100: a is killed, b sees the stream end.
    b.send(`flow ${sb} 3`);
    await a.expect(new RegExp(`^flow ${sa} 3$`));
    a.send(`overrun ${sa} 100`);
    const status = await a.client.wait(a.id);
    assert.equal(status.state, 'KILLED');
    assert.equal(status.cause, 'ABI_VIOLATION');
    await b.expect(new RegExp(`^left v ${a.id}$`));
    await b.expect(new RegExp(`^eof ${sb} -1$`));

    // A call with a non-zero reserved byte: c is killed, b carries on.
    c.send('badcall');
    const cs = await c.client.wait(c.id);
    assert.equal(cs.cause, 'ABI_VIOLATION');
    await b.expect(new RegExp(`^left v ${c.id}$`));
    assert.equal(await b.call('join w'), OK);
    // FLOW for a stream that is not open.
    b.send('flow 7 1');
    assert.equal((await b.client.wait(b.id)).cause, 'ABI_VIOLATION');
    assert.equal(peers.memberCount(), 0);
  });

  it('a suspended peer leaves its groups and rejoins when resumed; its streams are closed', async () => {
    const a = await launch();
    const b = await launch();
    await a.call('join z');
    await b.call('join z');
    await a.expect(/^joined z /);
    await a.call(`connect z ${b.id} x`);
    await b.call(`connect z ${a.id} y`);
    const [, sa] = await a.expect(/^connected (\d+) z /);
    const [, sb] = await b.expect(/^connected (\d+) z /);
    await b.call('receive 5');

    const suspended = await a.client.suspend(a.id, true);
    assert.equal(suspended.state, 'SUSPENDED');
    await b.expect(new RegExp(`^left z ${a.id}$`));
    await b.expect(new RegExp(`^eof ${sb} -1$`));
    await b.expect(new RegExp(`^flow ${sb} 0$`));
    assert.equal(await b.call(`send z ${a.id} are you there`), PEER_NOT_FOUND);

    await a.client.resume(a.id);
    await b.expect(new RegExp(`^joined z ${a.id}$`));
    a.disconnect();
    await a.connect();
    // Its side of the old stream is ended for it too, then it learns it was away.
    await a.expect(new RegExp(`^eof ${sa} -1$`));
    await a.expect(/^reset z 0$/);
    await a.expect(new RegExp(`^joined z ${b.id}$`));
    assert.equal(await a.call(`send z ${b.id} back`), OK);
    await b.expect(new RegExp(`^message z ${a.id} back$`));
    await a.client.kill(a.id, true);
    await b.client.kill(b.id, true);
  });

  it('floods are bounded: FLOW packets a writer has not answered are merged, joins are rate-limited', async () => {
    const a = await launch();
    const b = await launch();
    await a.call('join f');
    await b.call('join f');
    await a.expect(/^joined f /);
    await a.call(`connect f ${b.id} x`);
    await b.call(`connect f ${a.id} y`);
    const [, sa] = await a.expect(/^connected (\d+) f /);
    const [, sb] = await b.expect(/^connected (\d+) f /);
    // b grants 1 byte 100 times; a (not writing) gets 16 FLOW packets, the rest is held for it.
    for (let i = 0; i < 100; i++) b.send(`flow ${sb} 1`);
    b.send('receive 0');
    await b.expect(/^reply 4 0$/); // b's FLOWs have all been handled before this call
    // What the service sent a before this reply has reached a before it.
    assert.equal(await a.call('receive 0'), OK);
    assert.equal(a.count(new RegExp(`^flow ${sa} `)), 16, 'no more than 16 FLOW packets for a writer that sent nothing');
    // Its DATA answers them: the held credit (84) comes at once.
    a.send(`write ${sa} 0123456789`);
    await a.expect(new RegExp(`^flow ${sa} 84$`));
    await b.expect(new RegExp(`^data ${sb} 0123456789$`));

    // JOIN (events for every member) is limited to a burst of 50, then 20 a second.
    a.send('churn g 200');
    const [, joined, limited] = await a.expect(/^churned (\d+) (\d+)$/);
    assert.equal(Number(joined) + Number(limited), 200);
    assert.ok(Number(limited) > 0 && Number(joined) >= 49, `joined ${joined}, limited ${limited}`);
    for (const d of [a, b]) await d.client.kill(d.id, true);
  });

  it('a snapshot launched as a new instance joins the groups as a new peer; the original stays away until resumed', async () => {
    const a = await launch();
    const b = await launch();
    await a.call('join snap');
    await b.call('join snap');
    await a.expect(/^joined snap /);
    await a.client.suspend(a.id, true);
    await b.expect(new RegExp(`^left snap ${a.id}$`));
    const module = await a.client.snapshot(a.id);
    const { instance } = await a.client.launch({ id: module });
    assert.notEqual(instance, a.id);
    await b.expect(new RegExp(`^joined snap ${instance}$`));
    const copy = await PeerDriver.attach(a.client, instance);
    await copy.expect(/^reset snap 0$/);
    await copy.expect(new RegExp(`^joined snap ${b.id}$`));
    await b.call('receive 1');
    assert.equal(await copy.call(`send snap ${b.id} from the copy`), OK);
    await b.expect(new RegExp(`^message snap ${instance} from the copy$`));
    assert.ok(!b.seen(new RegExp(`joined snap ${a.id}`)), 'the suspended original is not a member');
    for (const d of [copy, b]) await d.client.kill(d.id, true);
    await a.client.deleteInstance(a.id);
  });
});

describe('peer service and migration', () => {
  it('groups are local to a server: a migrated peer leaves there and joins the same-named group here', async () => {
    const s1 = await startTestServer({ registry: extensionRegistry([new PeerService()]) });
    const s2 = await startTestServer({ registry: extensionRegistry([new PeerService()]) });
    try {
      const key = newKey();
      const on1 = clientFor(s1.url, key);
      const on2 = clientFor(s2.url, key);
      const a = await PeerDriver.launch(on1);
      const b = await PeerDriver.launch(on1);
      const c = await PeerDriver.launch(on2);
      for (const d of [a, b, c]) await d.call('join m');
      await b.expect(new RegExp(`^joined m ${a.id}$`));
      assert.ok(!c.seen(/^joined /), 'members on another server are not seen');

      await on1.suspend(a.id, true);
      await b.expect(new RegExp(`^left m ${a.id}$`));
      const module = await on1.snapshot(a.id);
      const download = await on1.downloadModule(module);
      const chunks: Buffer[] = [];
      for await (const chunk of download.body) chunks.push(chunk as Buffer);
      const bytes = Buffer.concat(chunks);
      await on1.deleteInstance(a.id);
      await on2.launch({ id: module }, { upload: { body: bytes, length: bytes.length }, instance: a.id });

      await c.expect(new RegExp(`^joined m ${a.id}$`));
      const moved = await PeerDriver.attach(on2, a.id);
      await moved.expect(/^reset m 0$/);
      await moved.expect(new RegExp(`^joined m ${c.id}$`));
      await c.call('receive 1');
      assert.equal(await moved.call(`send m ${c.id} moved`), OK);
      await c.expect(new RegExp(`^message m ${a.id} moved$`));
      assert.equal(await moved.call(`send m ${b.id} still there?`), PEER_NOT_FOUND);
      assert.ok(!b.seen(new RegExp(`^joined m ${a.id}$`)));
      for (const d of [moved, c]) await d.client.kill(d.id, true);
      await b.client.kill(b.id, true);
    } finally {
      await s1.stop();
      await s2.stop();
    }
  });
});

describe('peer service and checkpoints', () => {
  it('periodic checkpoints of running members leave the groups alone', async () => {
    const server = await startTestServer({ registry: extensionRegistry([new PeerService()]), checkpointIntervalMs: 100 });
    try {
      const key = newKey();
      const a = await PeerDriver.launch(clientFor(server.url, key));
      const b = await PeerDriver.launch(clientFor(server.url, key));
      await a.call('join c');
      await b.call('join c');
      await a.expect(/^joined c /);
      await a.call(`connect c ${b.id} x`);
      await b.call(`connect c ${a.id} y`);
      const [, sa] = await a.expect(/^connected (\d+) c /);
      const [, sb] = await b.expect(/^connected (\d+) c /);
      // Several checkpoint intervals pass (each pauses the programs and takes the service state).
      await new Promise((r) => setTimeout(r, 600));
      b.send(`flow ${sb} 4`);
      await a.expect(new RegExp(`^flow ${sa} 4$`));
      a.send(`write ${sa} ping`);
      await b.expect(new RegExp(`^data ${sb} ping$`));
      assert.ok(!a.seen(/^left /) && !b.seen(/^left /) && !a.seen(/^reset /));
      for (const d of [a, b]) await d.client.kill(d.id, true);
    } finally {
      await server.stop();
    }
  });
});
