export * from './config.js';
export { daemonSocketPath, envVar, expandPath, privateDir } from './paths.js';
export { checkKnownKeys, describeKey, editDistance, nearest, type KnownKeys, type OpenTableCheck } from './keys.js';
