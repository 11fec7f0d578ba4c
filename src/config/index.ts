export * from './config.js';
export { checkOwnSocket, daemonSocketPath, envVar, expandPath, privateDir, UnsafePathError } from './paths.js';
export { checkKnownKeys, describeKey, editDistance, nearest, type KnownKeys, type OpenTableCheck } from './keys.js';
