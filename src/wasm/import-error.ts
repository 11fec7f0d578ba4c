import { ModuleError } from './errors.js';

/**
 * A module imports something the Gate ABI does not provide (spec abi.md §1.2).
 * Defined in wasm/ (not abi/) because module validation rejects global imports
 * with the same error before the ABI resolver runs; abi/imports.ts re-exports it.
 */
export class ImportError extends ModuleError {
  constructor(
    message: string,
    /** Module name of the offending import, as written in the module. */
    readonly module: string,
    /** Field name of the offending import, as written in the module. */
    readonly field: string,
  ) {
    super(message, undefined, 'GATE_BAD_IMPORT');
  }
}

/**
 * Quotes a string the way Go's `%q` does, so that error messages match the
 * original implementation byte for byte for ordinary names, and so that
 * control characters in hostile names cannot forge log lines.
 */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    switch (c) {
      case 0x07: out += '\\a'; continue;
      case 0x08: out += '\\b'; continue;
      case 0x0c: out += '\\f'; continue;
      case 0x0a: out += '\\n'; continue;
      case 0x0d: out += '\\r'; continue;
      case 0x09: out += '\\t'; continue;
      case 0x0b: out += '\\v'; continue;
      case 0x22: out += '\\"'; continue;
      case 0x5c: out += '\\\\'; continue;
    }
    if (c < 0x20 || c === 0x7f) out += '\\x' + c.toString(16).padStart(2, '0');
    else if (c >= 0x80 && c < 0xa0) out += '\\u' + c.toString(16).padStart(4, '0');
    else out += ch;
  }
  return out + '"';
}
