/**
 * Peers (issue #14): the peer service between instances of
 * test/programs/peer.wasm on one gate-server process (service.peer.enabled,
 * 1 µs time resolution so that the programs can time themselves).
 *
 * - Round trip: instance A sends a 4-byte message to B, which sends it back
 *   (B grants one message of credit again each time); A times each round
 *   trip with its monotonic clock: median and p99 in µs.
 * - Messages per second: each sender sends 16-byte messages with up to 64
 *   calls in flight (a BUSY answer, when the receiver has not granted credit
 *   yet, is sent again); each receiver counts and keeps 768–1024 messages of
 *   credit granted. 2 peers: A → B. 100 peers: a ring, each to the next one.
 *   Rate = messages delivered / wall time from the start commands to the
 *   last receiver's report, as seen by the bench over websocket `io`.
 */
import { generateKeyPairSync } from 'node:crypto';
import { identityFromPrivateKey } from '../src/client/identity.js';
import { checkSandbox } from '../src/runtime/node/sandbox/sandbox.js';
import { clientFor, PeerDriver } from '../test/helpers/peer-driver.js';
import { startGateServer } from './field.js';
import { fmt } from './stats.js';

export async function peersSection(lines: string[], quick: boolean, log: (s: string) => void): Promise<void> {
  const check = await checkSandbox();
  const sandbox = check.available ? 'bwrap' : 'none';
  const server = await startGateServer([`runtime.sandbox="${sandbox}"`, 'service.peer.enabled=true', 'principal.timeresolution=1000']);
  const client = clientFor(server.url, identityFromPrivateKey(generateKeyPairSync('ed25519').privateKey));
  const rows: string[] = [];
  const drivers: PeerDriver[] = [];
  const launch = async (n: number): Promise<PeerDriver[]> => {
    const out: PeerDriver[] = [];
    for (let i = 0; i < n; i++) out.push(await PeerDriver.launch(client));
    drivers.push(...out);
    return out;
  };
  try {
    // Round trip.
    const [a, b] = await launch(2);
    await a!.call('join rtt');
    await b!.call('join rtt');
    await a!.expect(/^joined rtt /);
    await a!.call('receive 1');
    await b!.call('receive 1');
    b!.send('echo');
    const trips = quick ? 500 : 3000;
    a!.send(`ping rtt ${b!.id} 100`); // warm-up
    await a!.expect(/^rtt /, 60000);
    log(`peers: ${trips} round trips`);
    a!.send(`ping rtt ${b!.id} ${trips}`);
    const [, , median, p99] = await a!.expect(/^rtt (\d+) (\d+) (\d+)$/, 120000);
    rows.push(`| message round trip, 2 instances | ${trips} | ${fmt(Number(median) / 1000, 1)} µs | ${fmt(Number(p99) / 1000, 1)} µs | |`);
    for (const d of [a!, b!]) await d.client.kill(d.id, true);
    drivers.length = 0;

    // Throughput.
    for (const peers of [2, 100]) {
      const perSender = peers === 2 ? (quick ? 20000 : 100000) : quick ? 500 : 2000;
      log(`peers: ${peers} peers, ${perSender} messages each`);
      const ds = await launch(peers);
      for (const d of ds) await d.call('join tp');
      // Everyone has seen everyone: the last member's JOINED reached the first.
      await ds[0]!.expect(new RegExp(`^joined tp ${ds[peers - 1]!.id}$`), 60000);
      for (const d of ds) {
        d.send('quiet');
        d.send(`expect ${perSender}`);
      }
      const targets = peers === 2 ? [[ds[0]!, ds[1]!]] : ds.map((d, i) => [d, ds[(i + 1) % peers]!]);
      const receivers = peers === 2 ? [ds[1]!] : ds;
      const started = performance.now();
      for (const [from, to] of targets) from!.send(`blast tp ${to!.id} ${perSender}`);
      await Promise.all(receivers.map((r) => r.expect(/^done \d+$/, 300000)));
      const seconds = (performance.now() - started) / 1000;
      let busy = 0;
      for (const [from] of targets) busy += Number((from!.find(/^blasted \d+ (\d+)$/) ?? (await from!.expect(/^blasted \d+ (\d+)$/, 60000)))[1]);
      const total = perSender * targets.length;
      rows.push(`| messages/s, ${peers} peers${peers === 2 ? ' (one direction)' : ' (ring)'} | ${total} | ${fmt(total / seconds, 0)} msg/s | | ${busy} BUSY resends |`);
      for (const d of ds) await d.client.kill(d.id, true);
      drivers.length = 0;
    }
  } finally {
    for (const d of drivers) await d.client.kill(d.id).catch(() => undefined);
    await server.stop();
  }
  lines.push(
    '## Peers (issue #14)',
    '',
    `One gate-server process (sandbox ${sandbox}), test/programs/peer.wasm instances of one principal, each driven over websocket \`io\`.`,
    'Round trips are timed by the sending program (1 µs clock resolution); rates by the bench, from the start commands to the last receiver\'s report.',
    '',
    '| measurement | messages | median / rate | p99 | note |',
    '|---|---:|---:|---:|---|',
    ...rows,
    '',
  );
}
