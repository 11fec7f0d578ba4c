// bench/http.ts: the workerd side. Every request gets a fresh wasm instance
// (like a Gate call gets a fresh Gate instance), which writes the 13-byte
// greeting into its memory; the response is those bytes.
import greetModule from './greet.wasm';

export default {
  fetch() {
    const instance = new WebAssembly.Instance(greetModule, {});
    const n = instance.exports.greet();
    return new Response(new Uint8Array(instance.exports.memory.buffer, 64, n).slice(), {
      headers: { 'content-type': 'application/octet-stream' },
    });
  },
};
