/**
 * What an extension module needs from Gate, handed to a module whose default
 * export is a function (`export default (gate) => gate.defineExtension({…})`),
 * and exported from the package for modules that import it.
 */
export { defineExtension, ExtensionConfigError } from './gate-extension.js';
export { defineService } from './extension.js';
export { AbiViolation } from '../abi/trap.js';
export { callPacket, infoPacket, flowPacket, dataPacket, packetCode, packetContent, packetDomain, readDataPacket, readFlowEntries, Domain, HEADER_SIZE, MAX_PACKET_SIZE } from '../abi/packet.js';
