/**
 * The `catalog` service (spec services.md §4): lists the services a program
 * may discover, as JSON formatted exactly like the original (Go's
 * encoding/json with tab indentation and HTML-safe escaping).
 */
import { callPacket, Domain, HEADER_SIZE, packetContent, packetDomain } from '../abi/packet.js';
import type { ServiceContext, ServiceFactory } from './api.js';
import { defineService } from './extension.js';
import type { ServiceRegistry } from './registry.js';

const encoder = new TextEncoder();

/** The catalog document: `{"services": [{name, revision}, …]}` sorted by name, tab-indented, newline-terminated. */
export function catalogJson(registry: ServiceRegistry, context: ServiceContext): string {
  const services = registry.catalog(context).map((e) => ({ name: e.name, revision: e.revision }));
  return goJsonEscape(JSON.stringify({ services }, null, '\t')) + '\n';
}

/** Go's json.Encoder escapes <, >, & and U+2028/U+2029 by default; JSON.stringify does not. */
function goJsonEscape(json: string): string {
  return json.replace(/[<>&\u2028\u2029]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

function isJsonCall(content: Uint8Array): boolean {
  return content.length === 4 && content[0] === 0x6a && content[1] === 0x73 && content[2] === 0x6f && content[3] === 0x6e;
}

/** A catalog of `registry` (including its parents), evaluated in each program's serving context. */
export function catalogService(registry: ServiceRegistry): ServiceFactory {
  return defineService({
    name: 'catalog',
    revision: '0',
    create(config) {
      return {
        handle(packet) {
          if (packetDomain(packet) !== Domain.Call) return;
          let content = new Uint8Array(0);
          if (isJsonCall(packetContent(packet))) {
            content = encoder.encode(catalogJson(registry, config.context));
            // Cannot happen with realistic registries; an empty reply tells the
            // program the call failed instead of killing it.
            if (HEADER_SIZE + content.length > config.maxSendSize) content = new Uint8Array(0);
          }
          config.send(callPacket(config.code, content));
        },
      };
    },
  });
}
