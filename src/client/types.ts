import { ProtocolError } from './errors.js';

/** Instance status as the API reports it (spec web-api.md §12). */
export interface Status {
  state?: string;
  cause?: string;
  result?: number;
  error?: string;
}

export interface ModuleInfo {
  module: string;
  tags: string[];
}

export interface InstanceInfo {
  instance: string;
  module: string;
  status: Status;
  transient: boolean;
  debugging: boolean;
  tags: string[];
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function isObject(v: Json | undefined): v is { [key: string]: Json } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function parseJson(text: string, what: string): Json {
  try {
    return JSON.parse(text) as Json;
  } catch (e) {
    throw new ProtocolError(`${what}: invalid JSON from the server`, { cause: e });
  }
}

function str(o: { [key: string]: Json }, k: string, what: string): string | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new ProtocolError(`${what}: field ${k} is not a string`);
  return v;
}

function strList(o: { [key: string]: Json }, k: string, what: string): string[] {
  const v = o[k];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new ProtocolError(`${what}: field ${k} is not a list of strings`);
  return v as string[];
}

export function toStatus(v: Json | undefined, what = 'status'): Status {
  if (v === undefined || v === null) return {};
  if (!isObject(v)) throw new ProtocolError(`${what}: not an object`);
  const s: Status = {};
  const state = str(v, 'state', what);
  const cause = str(v, 'cause', what);
  const error = str(v, 'error', what);
  if (state) s.state = state;
  if (cause) s.cause = cause;
  if (error) s.error = error;
  const r = v['result'];
  if (typeof r === 'number') s.result = r;
  else if (typeof r === 'string' && /^-?\d+$/.test(r)) s.result = Number(r);
  return s;
}

export function parseStatus(text: string, what = 'Gate-Status'): Status {
  return toStatus(parseJson(text, what), what);
}

export function toModuleInfo(v: Json | undefined, what = 'module info'): ModuleInfo {
  if (!isObject(v)) throw new ProtocolError(`${what}: not an object`);
  return { module: str(v, 'module', what) ?? '', tags: strList(v, 'tags', what) };
}

export function toInstanceInfo(v: Json | undefined, what = 'instance info'): InstanceInfo {
  if (!isObject(v)) throw new ProtocolError(`${what}: not an object`);
  return {
    instance: str(v, 'instance', what) ?? '',
    module: str(v, 'module', what) ?? '',
    status: toStatus(v['status'], what),
    transient: v['transient'] === true,
    debugging: v['debugging'] === true,
    tags: strList(v, 'tags', what),
  };
}

export function toList<T>(v: Json, field: string, item: (x: Json) => T, what: string): T[] {
  if (!isObject(v)) throw new ProtocolError(`${what}: not an object`);
  const list = v[field];
  if (list === undefined || list === null) return []; // zero values are omitted: {} is an empty list
  if (!Array.isArray(list)) throw new ProtocolError(`${what}: ${field} is not a list`);
  return list.map(item);
}

export type { Json };

/**
 * The human form of a status (spec cli.md §2.1): `STATE`, `STATE with result N`,
 * `STATE abnormally: CAUSE`, plus `; error: TEXT`; `error[: TEXT]` without a state.
 */
export function formatStatus(s: Status): string {
  if (!s.state) return s.error ? `error: ${s.error}` : 'error';
  let out: string;
  if (s.cause) out = `${s.state} abnormally: ${s.cause}`;
  else if (s.state === 'HALTED' || s.state === 'TERMINATED') out = `${s.state} with result ${s.result ?? 0}`;
  else out = s.state;
  if (s.error) out += `; error: ${s.error}`;
  return out;
}

/** True for TERMINATED/HALTED without a cause: the program finished by itself. */
export function finishedNormally(s: Status): boolean {
  return (s.state === 'TERMINATED' || s.state === 'HALTED') && !s.cause && !s.error;
}
