/**
 * The console's client of the documented HTTP and websocket API
 * (docs/server.md, ../shared/spec/web-api.md), on the page's own origin.
 */
import { makeToken, type ConsoleKey } from './key.js';

export interface Status {
  state?: string;
  cause?: string;
  result?: number;
  error?: string;
}
export interface ModuleInfo {
  module: string;
  tags?: string[];
}
export interface InstanceInfo {
  instance: string;
  module?: string;
  status?: Status;
  transient?: boolean;
  tags?: string[];
}

/** An API request that failed: the server's status and its error text. */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export const API = '/gate-0/';
const K = `${API}module/sha256/`;
const I = `${API}instance/`;

export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export async function sha256(bytes: Uint8Array): Promise<string> {
  return hex(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>)));
}

export class GateApi {
  /** The token audience: this server's identity, `<origin>/gate-0/`. */
  readonly audience = new URL(API, location.href).href;
  private cached?: { token: string; until: number };

  constructor(private readonly key: ConsoleKey) {}

  /** A token, reused for most of its minute. */
  async token(): Promise<string> {
    if (!this.cached || Date.now() > this.cached.until) {
      this.cached = { token: await makeToken(this.key, this.audience), until: Date.now() + 40_000 };
    }
    return this.cached.token;
  }

  async request(method: string, path: string, opts: { body?: Uint8Array; type?: string; accept?: string; expect?: number[] } = {}): Promise<Response> {
    const headers: Record<string, string> = { Authorization: `Bearer ${await this.token()}` };
    if (opts.type) headers['Content-Type'] = opts.type;
    if (opts.accept) headers.Accept = opts.accept;
    const res = await fetch(path, { method, headers, body: opts.body as Uint8Array<ArrayBuffer> | undefined, cache: 'no-store' });
    if (!(opts.expect ?? [200]).includes(res.status)) {
      const text = (await res.text().catch(() => '')).trim();
      throw new ApiError(res.status, `${method} ${path.replace(/\?.*/, '')}: ${res.status} ${text || res.statusText}`);
    }
    return res;
  }

  async modules(): Promise<ModuleInfo[]> {
    const r = await this.request('POST', K, { accept: 'application/json' });
    return ((await r.json()) as { modules?: ModuleInfo[] }).modules ?? [];
  }

  async instances(): Promise<InstanceInfo[]> {
    const r = await this.request('POST', I, { accept: 'application/json' });
    return ((await r.json()) as { instances?: InstanceInfo[] }).instances ?? [];
  }

  /** Uploads and pins a module; returns its hash. */
  async upload(bytes: Uint8Array, tag?: string): Promise<string> {
    const hash = await sha256(bytes);
    const q = tag ? `&module-tag=${encodeURIComponent(tag)}` : '';
    await this.request('PUT', `${K}${hash}?action=pin${q}`, { body: bytes, type: 'application/wasm', expect: [201] });
    return hash;
  }

  /** Launches a pinned module (or snapshot); returns the instance id. */
  async launch(hash: string, opts: { func?: string; instance?: string } = {}): Promise<string> {
    let q = `${K}${hash}?action=launch`;
    if (opts.func) q += `&function=${encodeURIComponent(opts.func)}`;
    if (opts.instance) q += `&instance=${encodeURIComponent(opts.instance)}`;
    const r = await this.request('POST', q, { expect: [200, 201] });
    const id = r.headers.get('Gate-Instance');
    if (!id) throw new ApiError(r.status, 'the server launched no instance');
    return id;
  }

  /** An instance action (`suspend`, `resume`, `kill`, `delete`, …, combinable with `wait`). */
  async act(id: string, ...actions: string[]): Promise<Response> {
    return this.request('POST', `${I}${encodeURIComponent(id)}?${actions.map((a) => `action=${a}`).join('&')}`);
  }

  /** Snapshots an instance; returns the snapshot module's hash. */
  async snapshot(id: string): Promise<string> {
    const r = await this.request('POST', `${I}${encodeURIComponent(id)}?action=snapshot`, { expect: [201] });
    const m = /\/sha256\/([0-9a-f]{64})$/.exec(r.headers.get('Location') ?? '');
    if (!m) throw new ApiError(r.status, 'the snapshot has no usable Location');
    return m[1]!;
  }

  async download(hash: string): Promise<Uint8Array> {
    const r = await this.request('GET', `${K}${hash}`, { accept: 'application/wasm' });
    return new Uint8Array(await r.arrayBuffer());
  }

  /**
   * Attaches to an instance's origin stream over a websocket (`io`):
   * `onData` gets the program's output, `onEnd` the final status (or an
   * error text). Returns the sender of input and a closer.
   */
  async io(id: string, onData: (chunk: Uint8Array) => void, onEnd: (why: string) => void): Promise<{ send(data: Uint8Array): void; close(): void }> {
    const url = new URL(`${I}${encodeURIComponent(id)}?action=io`, location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(url.href);
    ws.binaryType = 'arraybuffer';
    let ended = false;
    // Input typed before the server says the program is connected waits for it.
    let pending: Uint8Array[] | undefined = [];
    const end = (why: string): void => {
      if (!ended) onEnd(why);
      ended = true;
    };
    const token = await this.token();
    ws.onopen = () => ws.send(JSON.stringify({ authorization: `Bearer ${token}` }));
    ws.onmessage = (e: MessageEvent<ArrayBuffer | string>) => {
      if (typeof e.data !== 'string') return onData(new Uint8Array(e.data));
      let m: { connected?: boolean; status?: Status };
      try {
        m = JSON.parse(e.data) as typeof m;
      } catch {
        return;
      }
      if (m.connected === true) {
        for (const d of pending ?? []) ws.send(d as Uint8Array<ArrayBuffer>);
        pending = undefined;
      } else if (m.connected === false) end('not connected');
      else if (m.status && !('input' in m)) end(describeStatus(m.status));
    };
    ws.onclose = (e) => end(e.reason || (e.code === 1000 ? 'closed' : `connection closed (${e.code})`));
    return {
      send: (data) => {
        if (pending) pending.push(data);
        else if (ws.readyState === WebSocket.OPEN) ws.send(data as Uint8Array<ArrayBuffer>);
      },
      close: () => ws.close(1000),
    };
  }
}

/** The CLI's human form of a status (web-api §12). */
export function describeStatus(s: Status | undefined): string {
  if (!s?.state) return 'unknown';
  let t = s.state;
  if (s.cause) t += ` abnormally: ${s.cause}`;
  else if (s.result) t += ` with result ${s.result}`;
  if (s.error) t += `; error: ${s.error}`;
  return t;
}
