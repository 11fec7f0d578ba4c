/**
 * Gate in a browser page: the core (src/core.ts) plus an executor host that
 * runs instances in a Web Worker. Bundled by scripts/build-browser.mjs into
 * dist/browser/gate.js (with dist/browser/gate-executor-worker.js next to it);
 * see docs/browser.md.
 */
export * from '../core.js';
export { WorkerExecutor, type WorkerExecutorOptions, type WorkerLike } from './worker-executor.js';
export { connectOrigin, type OriginPipe, type OriginPipeOptions } from './origin-pipe.js';
export { WorkerPreparer, BrowserPreparationError, type WorkerPreparerOptions } from './worker-preparer.js';
