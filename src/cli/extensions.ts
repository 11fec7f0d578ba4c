/**
 * Loading the extensions a server's configuration names (`service.extensions`,
 * spec extensions.md): each module's Gate extension is imported, its
 * `service.<name>.*` settings checked, and its services registered in the
 * deployment's registry. Anything wrong stops the server with the module or
 * key named.
 */
import { createRequire } from 'node:module';
import { dirname, isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { checkKnownKeys, ConfigError, getStringList, getValue, type ConfigTree, type ConfigValue } from '../config/index.js';
import { GateError } from '../errors.js';
import type { ServiceFactory } from '../service/api.js';
import { BUILTIN_SERVICE_NAMES } from '../service/builtin.js';
import { extensionConfig, isGateExtension, type ExtensionModuleFunction, type GateExtension } from '../service/gate-extension.js';
import * as extensionApi from '../service/extension-api.js';
import { localhostExtension } from '../service/localhost/extension.js';
import { ServiceRegistry } from '../service/registry.js';
import { serviceKeysCheck, type ServiceKeys } from './server-keys.js';

/** The extensions every server has (enabled by their settings). */
export const BUILTIN_EXTENSIONS: readonly GateExtension[] = [localhostExtension];

/** An extension module cannot be found, loaded or started. */
export class ExtensionLoadError extends GateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GATE_EXTENSION', message, options);
  }
}

/** One entry of service.extensions and where it is resolved from. */
export interface ExtensionReference {
  /** As written in the configuration. */
  specifier: string;
  /** The configuration file's directory, or the working directory for -o. */
  baseDir: string;
}

/**
 * Follows the configuration as it is read (readConfig's check callback):
 * remembers where `service.extensions` was last set, so that relative paths
 * are relative to that file, and keeps the pieces with `service` keys, which
 * can be checked only once the extensions are loaded.
 */
export class ExtensionConfigTracker {
  private baseDir = process.cwd();
  private readonly servicePieces: Array<{ piece: ConfigTree; source: string }> = [];

  /** For readConfig's check: call with every piece before it is merged (`reset`: a -F file, which replaces what came before). */
  see(piece: ConfigTree, source: string, reset = false): void {
    if (reset) {
      this.servicePieces.length = 0;
      this.baseDir = process.cwd();
    }
    if (piece['service'] === undefined) return;
    this.servicePieces.push({ piece: { service: piece['service'] }, source });
    if (getValue(piece, 'service.extensions') !== undefined) {
      this.baseDir = source.startsWith('-o ') ? process.cwd() : dirname(resolve(source));
    }
  }

  references(tree: ConfigTree): ExtensionReference[] {
    return getStringList(tree, 'service.extensions').map((specifier) => ({ specifier, baseDir: this.baseDir }));
  }

  /** Checks every `service.*` key read against the built-ins and the loaded extensions, naming the file. */
  checkServiceKeys(extensions: readonly GateExtension[]): void {
    const known: ServiceKeys = { builtins: BUILTIN_SERVICE_NAMES, extensions: new Map(extensions.map((e) => [e.name, Object.keys(e.settings)])) };
    for (const { piece, source } of this.servicePieces) checkKnownKeys(piece, { keys: [], open: { service: serviceKeysCheck(known) } }, source);
  }
}

/** A file path (./x.js, ../x.js, /x.js) or a package name. */
function moduleUrl(ref: ExtensionReference): string {
  const s = ref.specifier;
  if (s.startsWith('./') || s.startsWith('../') || isAbsolute(s)) return pathToFileURL(resolve(ref.baseDir, s)).href;
  // A package: from node_modules next to the configuration first, else Gate's own.
  try {
    return pathToFileURL(createRequire(resolve(ref.baseDir, 'gate-extensions.js')).resolve(s)).href;
  } catch {
    return s;
  }
}

function describeRef(ref: ExtensionReference): string {
  return JSON.stringify(ref.specifier);
}

/** Imports one module and returns its extensions (the default export: one, or a list). */
export async function importExtension(ref: ExtensionReference): Promise<GateExtension[]> {
  if (ref.specifier.trim() === '') throw new ExtensionLoadError('service.extensions has an empty entry');
  let mod: Record<string, unknown>;
  try {
    mod = (await import(moduleUrl(ref))) as Record<string, unknown>;
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' ? `not found (looked in ${ref.baseDir})` : e instanceof Error ? e.message : String(e);
    throw new ExtensionLoadError(`extension ${describeRef(ref)} cannot be loaded: ${why}`, { cause: e });
  }
  let exported = mod['default'] ?? mod['extension'];
  if (typeof exported === 'function') {
    try {
      exported = await (exported as ExtensionModuleFunction)(extensionApi);
    } catch (e) {
      throw new ExtensionLoadError(`extension ${describeRef(ref)}: its default export failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  }
  const list: unknown[] = Array.isArray(exported) ? exported : [exported];
  if (list.length === 0 || !list.every(isGateExtension)) {
    throw new ExtensionLoadError(`extension ${describeRef(ref)} exports no Gate extension (export default (gate) => gate.defineExtension({ name, settings, services }))`);
  }
  return list as GateExtension[];
}

/** Checks that names are unique and do not collide with built-ins. */
function checkNames(extensions: ReadonlyArray<{ extension: GateExtension; from: string }>): void {
  const seen = new Map<string, string>();
  for (const { extension, from } of extensions) {
    if (BUILTIN_SERVICE_NAMES.includes(extension.name)) throw new ExtensionLoadError(`extension ${from} is named ${JSON.stringify(extension.name)}, which is a built-in service's configuration table`);
    const other = seen.get(extension.name);
    if (other !== undefined) throw new ExtensionLoadError(`extensions ${other} and ${from} are both named ${JSON.stringify(extension.name)} (service.${extension.name}.*)`);
    seen.set(extension.name, from);
  }
}

export interface LoadedExtensions {
  extensions: GateExtension[];
  /** The deployment's registry with every enabled extension's services. */
  registry: ServiceRegistry;
  /** Service names per enabled extension (for the log). */
  enabled: Array<{ extension: string; services: string[] }>;
}

/** Imports the configured extension modules (without starting them): for the key check and --help. */
export async function importConfiguredExtensions(refs: readonly ExtensionReference[]): Promise<Array<{ extension: GateExtension; from: string }>> {
  const out: Array<{ extension: GateExtension; from: string }> = BUILTIN_EXTENSIONS.map((extension) => ({ extension, from: '(built in)' }));
  for (const ref of refs) for (const extension of await importExtension(ref)) out.push({ extension, from: describeRef(ref) });
  checkNames(out);
  return out;
}

/**
 * Loads the built-in and configured extensions, checks the `service.*` keys,
 * and registers their services. Errors name the extension or the key.
 */
export async function loadExtensions(tree: ConfigTree, tracker: ExtensionConfigTracker): Promise<LoadedExtensions> {
  const imported = await importConfiguredExtensions(tracker.references(tree));
  tracker.checkServiceKeys(imported.map((i) => i.extension));
  const registry = new ServiceRegistry();
  const enabled: LoadedExtensions['enabled'] = [];
  for (const { extension, from } of imported) {
    const table = getValue(tree, `service.${extension.name}`) as Readonly<Record<string, ConfigValue>> | undefined;
    const config = extensionConfig(extension, table);
    let services: ServiceFactory | ServiceFactory[] | undefined;
    try {
      services = await extension.services(config);
    } catch (e) {
      if (e instanceof ConfigError || (e instanceof GateError && e.code === 'GATE_CONFIG')) throw e;
      throw new ExtensionLoadError(`extension ${from} (service.${extension.name}) failed to start: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    const list = services === undefined ? [] : Array.isArray(services) ? services : [services];
    for (const f of list) {
      if (BUILTIN_SERVICE_NAMES.includes(f?.name)) throw new ExtensionLoadError(`extension ${from} (service.${extension.name}) defines a service named ${JSON.stringify(f.name)}, which is built in`);
      try {
        registry.register(f);
      } catch (e) {
        throw new ExtensionLoadError(`extension ${from} (service.${extension.name}): ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
    }
    if (list.length > 0) enabled.push({ extension: extension.name, services: list.map((f) => f.name) });
  }
  return { extensions: imported.map((i) => i.extension), registry, enabled };
}

/** --help lines for extensions' settings: `  service.<name>.<key>   help`. */
export function extensionKeysHelp(extensions: readonly GateExtension[]): string {
  const lines: string[] = [];
  for (const e of extensions) {
    for (const [key, s] of Object.entries(e.settings)) {
      const k = `service.${e.name}.${key}`;
      lines.push(`  ${k.padEnd(26)} ${s.help}`.replace(/\s+$/, ''));
    }
  }
  return lines.join('\n');
}
