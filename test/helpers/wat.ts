import binaryen from 'binaryen';

/** Assembles WebAssembly text into module bytes (binaryen's parser). */
export function wat(text: string): Uint8Array {
  const mod = binaryen.parseText(text);
  try {
    mod.setFeatures(binaryen.Features.MutableGlobals | binaryen.Features.SignExt | binaryen.Features.NontrappingFPToInt | binaryen.Features.BulkMemory);
    return mod.emitBinary();
  } finally {
    mod.dispose();
  }
}
