/**
 * Gate's core, without anything Node-only: module validation, preparation,
 * the ABI, the runtime (with the in-process executor), snapshots and the
 * service framework with the built-in services. It runs anywhere with
 * WebAssembly and Web Crypto: Node, a browser page or worker (see
 * src/browser/index.ts and docs/browser.md). `gate-ts` (src/index.ts) adds the
 * Node executor hosts on top; `gate-ts/core` is this module.
 *
 * Nothing reachable from here may import node:* modules: the browser bundle
 * (scripts/build-browser.mjs) fails to build if something does.
 */
export { GateError } from './errors.js';
export { ModuleError, ModuleLimitError } from './wasm/errors.js';
export { DEFAULT_LOCAL_LIMITS, DEFAULT_SERVER_LIMITS, type ModuleLimits } from './wasm/validate.js';
export { EntryError } from './abi/entry.js';
export { ImportError } from './abi/imports.js';
export { PROFILES, DEFAULT_PROFILE, type Profile } from './prepare/profile.js';
export { MemoryCache, type PreparedCache } from './prepare/cache.js';
export { PIPELINE_VERSION } from './prepare/pipeline.js';
export { Program } from './runtime/program.js';
export { Runtime, RunningInstance, type RuntimeOptions, type LaunchOptions, type ServiceConnection, type ServiceProvider } from './runtime/runtime.js';
export type { Executor, InstanceSpec, InstanceEvents, ExecutorSnapshot, KillReason } from './runtime/executor.js';
export { InProcessExecutor } from './runtime/inprocess.js';
export { State, formatStatus, type InstanceStatus } from './runtime/status.js';
export { InstanceStateError, ExecutorError } from './runtime/errors.js';
export { SnapshotError, SnapshotUnsupportedError } from './snapshot/errors.js';
export { readSnapshot } from './snapshot/format.js';
export { instanceServices, extensionRegistry, InstanceServices, type InstanceServicesOptions } from './service/provider.js';
export { defineService, type ServiceDefinition, type ServiceInstanceDefinition } from './service/extension.js';
export type { ServiceFactory, ServiceInstance, ServiceContext, ServiceInstanceConfig } from './service/api.js';
export { OriginClosedError, OriginAbortedError, type OriginConnector, type OriginInput, type OriginOutput } from './service/origin.js';
export { callPacket, dataPacket, flowPacket, packetContent, packetDomain, Domain, MAX_PACKET_SIZE } from './abi/packet.js';
