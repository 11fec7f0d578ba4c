/**
 * The host side of the ABI for one instance: an import object keyed by the
 * canonical names of imports.ts (the preparation step rewrites every import
 * of a program to module `gate` or `wasi` and the canonical field name).
 * i64 parameters arrive as BigInt.
 */
import type { AbiContext } from './context.js';
import { createGateFunctions } from './gate.js';
import { createWasiFunctions, type HostFunctions } from './wasi.js';

export type { HostFunctions } from './wasi.js';

export interface HostImports {
  gate: HostFunctions;
  wasi: HostFunctions;
  /** Lets the object be passed to WebAssembly.instantiate as is. */
  [module: string]: HostFunctions;
}

export function createHostImports(ctx: AbiContext): HostImports {
  return { gate: createGateFunctions(ctx), wasi: createWasiFunctions(ctx) };
}
