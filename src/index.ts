/**
 * Gate's library API: load a program, launch it in an executor with its
 * services, suspend it, snapshot it to a portable wasm module, and restore or
 * clone it elsewhere.
 *
 *     const runtime = new Runtime({ executor: new ChildProcessExecutor(), memoryLimitPages: 512, timeResolutionNs: 1 });
 *     const inst = await runtime.launch(await runtime.load(bytes), { entry: 'main', retain: true, services: instanceServices() });
 *     inst.suspend();
 *     await inst.wait();
 *     const snapshot = await inst.snapshot();
 *     const copy = await runtime.restore(snapshot, { services: instanceServices() });
 */
import './runtime/node/engine-flags.js';
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
export type { Executor } from './runtime/executor.js';
export { InProcessExecutor } from './runtime/inprocess.js';
export { ChildProcessExecutor } from './runtime/node/child-executor.js';
export { ExecutorPool, type ExecutorPoolOptions } from './runtime/node/pool.js';
export { checkSandbox, SandboxUnavailableError, type SandboxMode } from './runtime/node/sandbox/sandbox.js';
export { FileCache } from './runtime/node/file-cache.js';
export { State, formatStatus, type InstanceStatus } from './runtime/status.js';
export { InstanceStateError, ExecutorError } from './runtime/errors.js';
export { SnapshotError, SnapshotUnsupportedError } from './snapshot/errors.js';
export { readSnapshot } from './snapshot/format.js';
export { instanceServices, extensionRegistry, InstanceServices } from './service/provider.js';
export { defineService } from './service/extension.js';
export { defineExtension, ExtensionConfigError, type GateExtension, type ExtensionDefinition, type ExtensionSetting, type ExtensionConfig, type ExtensionApi } from './service/gate-extension.js';
export type { ServiceFactory, ServiceInstance, ServiceContext, ServiceInstanceConfig } from './service/api.js';
