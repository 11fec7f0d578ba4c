/**
 * Extensions configured per server (spec extensions.md): a module names its
 * configuration table (`service.<name>.*`), declares the settings it reads,
 * and turns their values into services. gate-server and gate-daemon load the
 * modules listed in `service.extensions`; see docs/services.md.
 */
import { GateError } from '../errors.js';
import type { ServiceFactory } from './api.js';

/** The kinds of values a setting may have (TOML types). */
export type ExtensionSettingType = 'string' | 'number' | 'boolean' | 'strings';

export interface ExtensionSetting {
  type: ExtensionSettingType;
  /** One line for --help and docs: what it is, its default. */
  help: string;
}

/** A setting's value as the extension receives it (`strings`: a list of strings). */
export type ExtensionSettingValue = string | number | boolean | string[];

/** The validated values of an extension's settings; absent keys are undefined. */
export type ExtensionConfig = Readonly<Record<string, ExtensionSettingValue | undefined>>;

export interface ExtensionDefinition {
  /** The configuration table, `service.<name>.*`: lower-case letters, digits, `_` and `-`. */
  name: string;
  /** The keys under `service.<name>.` the extension reads (others are refused). */
  settings?: Readonly<Record<string, ExtensionSetting>>;
  /**
   * The services to register, given the configured values; none (undefined
   * or []) leaves the extension disabled (e.g. a required address is not
   * set). Throw ExtensionConfigError for a bad value: it stops the server
   * with the key named.
   */
  services(config: ExtensionConfig): ServiceFactory | ServiceFactory[] | undefined | Promise<ServiceFactory | ServiceFactory[] | undefined>;
}

/** What defineExtension returns and an extension module exports (default export). */
export interface GateExtension extends ExtensionDefinition {
  readonly settings: Readonly<Record<string, ExtensionSetting>>;
  readonly gateExtension: true;
}

/** An extension's setting has a bad value, or the extension definition is malformed. */
export class ExtensionConfigError extends GateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GATE_CONFIG', message, options);
  }
}

const NAME = /^[a-z][a-z0-9_-]*$/;
const KEY = /^[a-z][a-z0-9_-]*$/;
const TYPES: readonly ExtensionSettingType[] = ['string', 'number', 'boolean', 'strings'];

/** Checks an extension definition (name, settings) and marks it as one. */
export function defineExtension(definition: ExtensionDefinition): GateExtension {
  const { name, services } = definition;
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new ExtensionConfigError(`extension name ${JSON.stringify(name)} must be lower-case letters, digits, "_" and "-", starting with a letter (it names service.<name>.*)`);
  }
  if (name === 'extensions') throw new ExtensionConfigError('an extension cannot be named "extensions" (service.extensions lists the modules)');
  if (typeof services !== 'function') throw new ExtensionConfigError(`extension ${name} has no services function`);
  const settings = definition.settings ?? {};
  for (const [key, s] of Object.entries(settings)) {
    if (!KEY.test(key)) throw new ExtensionConfigError(`extension ${name}: setting name ${JSON.stringify(key)} must be lower-case letters, digits, "_" and "-"`);
    if (!s || !TYPES.includes(s.type)) throw new ExtensionConfigError(`extension ${name}: setting ${key} needs a type (${TYPES.join(', ')})`);
  }
  return { ...definition, settings, gateExtension: true };
}

/**
 * What an extension module's default export may be instead of an extension:
 * a function given Gate's extension API, so that the module needs no import
 * of Gate (it may live anywhere, e.g. next to the configuration file).
 */
export type ExtensionModuleFunction = (gate: ExtensionApi) => GateExtension | GateExtension[] | Promise<GateExtension | GateExtension[]>;

/** The API an ExtensionModuleFunction receives (see extension-api.ts). */
export type ExtensionApi = typeof import('./extension-api.js');

/** Whether a module export is an extension made by defineExtension (possibly by another copy of this module). */
export function isGateExtension(value: unknown): value is GateExtension {
  return typeof value === 'object' && value !== null && (value as { gateExtension?: unknown }).gateExtension === true;
}

function typeOk(type: ExtensionSettingType, v: unknown): v is ExtensionSettingValue {
  switch (type) {
    case 'string':
      return typeof v === 'string';
    case 'number':
      return typeof v === 'number';
    case 'boolean':
      return typeof v === 'boolean';
    case 'strings':
      return Array.isArray(v) && v.every((x) => typeof x === 'string');
  }
}

const TYPE_NAMES: Record<ExtensionSettingType, string> = { string: 'a string', number: 'a number', boolean: 'true or false', strings: 'a list of strings' };

/**
 * The values of `service.<name>.*` for an extension, type-checked (unknown
 * keys are refused earlier, by the key check). A single string is accepted
 * for a list (handy with -o).
 */
export function extensionConfig(extension: GateExtension, table: Readonly<Record<string, unknown>> | undefined): ExtensionConfig {
  const out: Record<string, ExtensionSettingValue | undefined> = {};
  for (const [key, setting] of Object.entries(extension.settings)) {
    let v = table?.[key];
    if (v === undefined) {
      out[key] = undefined;
      continue;
    }
    if (setting.type === 'strings' && typeof v === 'string') v = [v];
    if (!typeOk(setting.type, v)) {
      throw new ExtensionConfigError(`configuration key service.${extension.name}.${key} must be ${TYPE_NAMES[setting.type]}, not ${Array.isArray(v) ? 'an array' : `${typeof v} ${JSON.stringify(v)}`}`);
    }
    out[key] = v;
  }
  return out;
}
