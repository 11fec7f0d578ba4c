export * from './config.js';
export { daemonSocketPath, envVar, expandPath, privateDir } from './paths.js';
