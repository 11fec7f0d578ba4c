/**
 * The `identity` service (spec services.md §5): tells the program who it
 * runs for and which instance it is.
 */
import { callPacket, Domain, packetContent, packetDomain } from '../abi/packet.js';
import type { ServiceFactory } from './api.js';
import { defineService } from './extension.js';

const CALL_PRINCIPAL_ID = 0;
const CALL_INSTANCE_ID = 1;

const encoder = new TextEncoder();

export function identityService(): ServiceFactory {
  return defineService({
    name: 'identity',
    revision: '0',
    create(config) {
      return {
        handle(packet) {
          if (packetDomain(packet) !== Domain.Call) return;
          const content = packetContent(packet);
          let reply = '';
          // Unsupported or empty calls get an empty reply (services.md §1.1).
          if (content[0] === CALL_PRINCIPAL_ID) reply = config.context.principalId ?? '';
          else if (content[0] === CALL_INSTANCE_ID) reply = config.context.instanceId;
          config.send(callPacket(config.code, encoder.encode(reply)));
        },
      };
    },
  });
}
