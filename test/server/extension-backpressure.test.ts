/**
 * An extension service whose handle() returns a promise holds the program
 * back (hardening issue #12): packets are acknowledged to the executor only
 * once handled, so no more than the output window (256 KiB) of them waits
 * on the trusted side, however fast the program sends.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { Domain, packetContent, packetDomain } from '../../src/abi/packet.js';
import { OUTPUT_WINDOW } from '../../src/runtime/channel.js';
import { defineService } from '../../src/service/extension.js';
import { extensionRegistry } from '../../src/service/provider.js';
import { programBytes } from '../helpers/runtime.js';
import { request, startTestServer } from '../helpers/server.js';

const services = programBytes('services');
const H = createHash('sha256').update(services).digest('hex');
const PACKETS = 1000;
const PACKET_SIZE = 8 + 1000;

describe('extension backpressure', () => {
  it('acknowledges packets after an asynchronous handle, so a flood waits for the service', async () => {
    let handled = 0;
    let handledWhenSent: number | undefined;
    const order: number[] = [];
    const slow = defineService({
      name: 'test',
      revision: '1',
      create() {
        return {
          async handle(packet) {
            if (packetDomain(packet) !== Domain.Info) return;
            order.push(new DataView(packetContent(packet).slice().buffer).getUint32(0, true));
            await new Promise((r) => setTimeout(r, 1));
            handled++;
          },
        };
      },
    });
    // The program's debug output arrives in the server's log; "sent" marks the end of its loop.
    const logStream = {
      write(line: string): void {
        if (handledWhenSent === undefined && line.includes('"msg":"program debug output"') && line.includes('"debug":"sent')) handledWhenSent = handled;
      },
    };
    const server = await startTestServer({ registry: extensionRegistry([slow]), logger: pino({ level: 'info' }, logStream) });
    try {
      const r = await request(server, 'POST', `/gate-0/module/sha256/${H}?action=call&function=flood&log=*`, { headers: { 'Content-Type': 'application/wasm' }, body: services });
      assert.equal(r.status, 200, r.text);
      assert.ok(handledWhenSent !== undefined, 'the program said it had sent everything');
      // When the program's last packet was accepted, at most a window of packets (plus the one being handled) was unhandled.
      const window = Math.floor(OUTPUT_WINDOW / PACKET_SIZE) + 2;
      assert.ok(handledWhenSent >= PACKETS - window, `only ${handledWhenSent} of ${PACKETS} packets were handled when the program had sent them all`);
      assert.equal(handled, PACKETS);
      assert.deepEqual(order, Array.from({ length: PACKETS }, (_, i) => i));
    } finally {
      await server.stop();
    }
  });
});
