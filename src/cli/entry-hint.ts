/**
 * A misspelt entry function: the server (and the runtime) only say
 * "function not exported or it cannot be used as entry function". When we
 * have the module, name the function and the ones it could have meant.
 */
import { entryFunctionNames, ENTRY_NOT_FOUND_MESSAGE, EntryError } from '../abi/entry.js';
import { nearest } from '../config/index.js';
import { parseModule } from '../wasm/module.js';
import { ApiError, WebSocketCloseError } from '../client/index.js';

/** Whether `e` is the entry-function-not-found error, from the runtime or through the API. */
export function isEntryNotFound(e: unknown): boolean {
  if (e instanceof EntryError) return e.code === 'GATE_ENTRY_NOT_FOUND';
  return (e instanceof ApiError || e instanceof WebSocketCloseError) && e.message === ENTRY_NOT_FOUND_MESSAGE;
}

/** Entry function names of a module, or undefined when the bytes are not a module we can read. */
function entryNames(bytes: Uint8Array): string[] | undefined {
  try {
    return entryFunctionNames(parseModule(bytes)).filter((n) => n !== '_start');
  } catch {
    return undefined;
  }
}

/** The error to show instead: names `fn`, and when `bytes` are given, the entry functions of the module. */
export function entryNotFoundError(fn: string, module: string, bytes: Uint8Array | undefined): EntryError {
  // The original's text first (scripts and searches know it), then the details.
  let text = `${ENTRY_NOT_FOUND_MESSAGE}: ${JSON.stringify(fn)} in ${module} (an entry function takes no parameters and returns nothing or an i32)`;
  const names = bytes ? entryNames(bytes) : undefined;
  if (names !== undefined) {
    const hint = nearest(fn, names);
    text += hint !== undefined ? `; did you mean ${hint}?` : '.';
    text += names.length > 0 ? ` Entry functions: ${names.join(', ')}` : ' It exports none.';
  }
  return new EntryError('GATE_ENTRY_NOT_FOUND', text, fn);
}
