// bench/http.ts: the workerd side. Every request gets a fresh wasm instance
// (like a Gate call gets a fresh Gate instance), which writes the 13-byte
// greeting into its memory; the response is those bytes.
//
// At /verify the worker first verifies the request's bearer token as
// gate-server does (an Ed25519 JWS with the key in its header, exp in the
// future), with WebCrypto, on every request; imported keys are kept by their
// `x` (gate-server keeps its KeyObjects the same way). 401 if it fails.
import greetModule from './greet.wasm';

const keys = new Map();

function base64UrlBytes(s) {
  const b = atob(s.replace(/-/g, '+').replace(/_/g, '/'));
  const out = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i++) out[i] = b.charCodeAt(i);
  return out;
}

async function verified(request) {
  const auth = request.headers.get('authorization') ?? '';
  if (!auth.startsWith('Bearer ')) return false;
  const parts = auth.slice(7).split('.');
  if (parts.length !== 3) return false;
  const header = JSON.parse(new TextDecoder().decode(base64UrlBytes(parts[0])));
  const claims = JSON.parse(new TextDecoder().decode(base64UrlBytes(parts[1])));
  if (header.alg !== 'EdDSA' || header.jwk?.kty !== 'OKP' || header.jwk?.crv !== 'Ed25519') return false;
  if (typeof claims.exp !== 'number' || claims.exp < Date.now() / 1000) return false;
  const x = header.jwk.x;
  let key = keys.get(x);
  if (!key) {
    key = await crypto.subtle.importKey('jwk', { kty: 'OKP', crv: 'Ed25519', x }, { name: 'Ed25519' }, false, ['verify']);
    keys.set(x, key);
  }
  return crypto.subtle.verify({ name: 'Ed25519' }, key, base64UrlBytes(parts[2]), new TextEncoder().encode(`${parts[0]}.${parts[1]}`));
}

export default {
  async fetch(request) {
    if (new URL(request.url).pathname === '/verify' && !(await verified(request).catch(() => false))) {
      return new Response('invalid token\n', { status: 401 });
    }
    const instance = new WebAssembly.Instance(greetModule, {});
    const n = instance.exports.greet();
    return new Response(new Uint8Array(instance.exports.memory.buffer, 64, n).slice(), {
      headers: { 'content-type': 'application/octet-stream' },
    });
  },
};
