/**
 * The HTTP side of the API at /gate-0/ (spec web-api.md): cross-cutting
 * request handling (origins, routing rules, authentication) and one handler
 * per resource. Websocket upgrades are in websocket.ts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Program } from '../runtime/program.js';
import type { InstanceStatus } from '../runtime/status.js';
import { AuthError } from './auth/errors.js';
import type { AccessPolicy } from './auth/policy.js';
import type { Principal } from './auth/principal.js';
import { verifyAuthorization, type NonceStore } from './auth/token.js';
import { AnonymousAdmission, type AnonymousLimits } from './anonymous.js';
import { badRequest, conflict, HttpError, moduleNotFound, notFound, unsupported } from './errors.js';
import { toHttpError } from './error-map.js';
import { acceptsJson, acceptsWasm, contentType, readBody, requireContentType, requireJson, requireNoBody, sendEmpty, sendError, sendJson, sendStaticJson } from './http.js';
import { instanceIdProblem } from './instance-id.js';
import { statusHeader, type InstanceManager, type ServerInstance } from './instances.js';
import { checkModuleKey, sha256Hex, type ModuleRegistry } from './modules.js';
import { Query, takeActions, takeFunction, takeLog } from './query.js';
import { API_PREFIX, resolve, type Route } from './routes.js';
import type { ModuleSource } from './sources.js';
import { exchange, wantsTrailers } from './stream.js';
import { parseDebugRequest } from './debug.js';
import { serveConsole } from './console.js';

export interface ApiConfig {
  /** Audience of tokens and realm of challenges, e.g. 'https://example.net/gate-0/'. */
  identity: string;
  /** Allowed Origin values; '*' allows any. */
  origins: string[];
  /** The daemon's local handler: every request acts as principal 'local'. */
  local: boolean;
  policy: AccessPolicy;
  nonces?: NonceStore;
  maxModuleSize: number;
  sources: Map<string, ModuleSource>;
  /** Records which module a source URI gave (spec §8). */
  sourceCache: { recordSource(uri: string, module: string): Promise<void> };
  serverUuid: string;
  serverToken: string;
  /** How many anonymous instances may run at once per address and per module (default DEFAULT_ANONYMOUS_LIMITS). */
  anonymous?: AnonymousLimits;
  /** Serve the web console at /gate-0/console/ and let pages of the server's own origin (the identity's) use the API. */
  console?: boolean;
  /** Several servers on one inventory (docs/cluster.md): migrate, and instances listed across servers. */
  cluster?: ClusterApi;
}

/** What the API asks of the cluster (src/cluster/member.ts). */
export interface ClusterApi {
  migrate(inst: ServerInstance, server: string): Promise<void>;
  /** The principal's instances owned by other servers, as InstanceInfo JSON. */
  foreignInstances(principal: string): Promise<Record<string, unknown>[]>;
}

const LOCAL_PRINCIPAL: Principal = { id: 'local', scope: [] };
const FEATURE_SCOPE = ['program:system'];

interface Request {
  req: IncomingMessage;
  res: ServerResponse;
  query: Query;
}

export class Api {
  readonly sourceNames: ReadonlySet<string>;
  /** Counts anonymous instances by caller address and module (HTTP and websocket calls alike). */
  readonly anonymous: AnonymousAdmission;
  /** The console's origin (the identity's), allowed like a configured origin while the console is served. */
  private readonly selfOrigin: string | undefined;

  constructor(
    private readonly cfg: ApiConfig,
    readonly modules: ModuleRegistry,
    private readonly instances: InstanceManager,
    private readonly log: Logger,
  ) {
    this.sourceNames = new Set(cfg.sources.keys());
    this.anonymous = new AnonymousAdmission(cfg.anonymous);
    this.selfOrigin = cfg.console ? new URL(cfg.identity).origin : undefined;
  }

  get maxModuleSize(): number {
    return this.cfg.maxModuleSize;
  }

  pinModule(principal: string, hash: string, tags: string[]): Promise<void> {
    return this.modules.pin(principal, hash, tags);
  }

  /** Handles a request under /gate-0/; returns false if the path is not the API's. */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const rawPath = q < 0 ? url : url.slice(0, q);
    if (!rawPath.startsWith('/gate-0')) return false;
    try {
      let path: string;
      try {
        path = decodeURIComponent(rawPath);
      } catch {
        throw badRequest('invalid URL path encoding');
      }
      const r = resolve(path, this.sourceNames, this.cfg.console === true);
      if ('redirect' in r) {
        sendEmpty(res, 301, { Location: escapePath(r.redirect) + (q < 0 ? '' : url.slice(q)) });
        return true;
      }
      if ('notFound' in r) throw notFound('404 page not found');
      if (!this.originAllowed(req)) {
        sendEmpty(res, 403);
        return true;
      }
      const allow = r.methods.join(', ');
      if (req.headers.origin !== undefined && r.route.kind !== 'console') this.corsHeaders(req, res, r.route, allow);
      if (req.method === 'OPTIONS') {
        sendEmpty(res, 200, { Allow: allow });
        return true;
      }
      if (!r.methods.includes(req.method ?? '')) throw new HttpError(405, 'method not allowed', { Allow: allow });
      const query = Query.fromUrl(url);
      await this.dispatch(r.route, { req, res, query });
    } catch (e) {
      const { error, internal } = toHttpError(e);
      if (internal) this.log.error({ err: e, url }, 'request failed');
      sendError(req, res, error);
    }
    return true;
  }

  originAllowed(req: IncomingMessage): boolean {
    const origin = req.headers.origin;
    if (origin === undefined || this.cfg.origins.includes('*')) return true;
    return origin.split(' ').every((o) => o === '' || this.cfg.origins.includes(o) || o === this.selfOrigin);
  }

  private corsHeaders(req: IncomingMessage, res: ServerResponse, route: Route, allow: string): void {
    res.setHeader('Access-Control-Allow-Methods', allow);
    res.setHeader('Access-Control-Allow-Origin', this.cfg.origins.includes('*') ? '*' : req.headers.origin!);
    res.setHeader('Access-Control-Max-Age', '86400');
    if (route.kind === 'root' || route.kind === 'sources') return;
    const bodies = route.kind === 'known' || route.kind === 'source' || route.kind === 'instance';
    res.setHeader('Access-Control-Allow-Headers', bodies ? 'Authorization, Content-Type' : 'Authorization');
    if (route.kind === 'known' || route.kind === 'source') res.setHeader('Access-Control-Expose-Headers', 'Location, Gate-Instance, Gate-Status');
    else if (route.kind === 'instance') res.setHeader('Access-Control-Expose-Headers', 'Gate-Instance, Gate-Status');
  }

  /** The request's principal; undefined for anonymous requests the policy allows. */
  principal(req: IncomingMessage, required: boolean): Promise<Principal | undefined> {
    return this.principalOf(req.headersDistinct.authorization, required);
  }

  /** The principal of Authorization header values (websockets send theirs in a message). */
  async principalOf(headers: string[] | undefined, required: boolean): Promise<Principal | undefined> {
    let p: Principal | undefined;
    if (this.cfg.local) {
      if (headers) await verifyAuthorization(headers, { identity: this.cfg.identity, local: true });
      p = LOCAL_PRINCIPAL;
    } else {
      p = await verifyAuthorization(headers, { identity: this.cfg.identity, nonces: this.cfg.nonces });
    }
    if (p === undefined && required) throw AuthError.missingCredentials(this.cfg.identity);
    await this.cfg.policy.authorize(p).catch((e: unknown) => {
      if (e instanceof AuthError && e.status === 401 && !e.wwwAuthenticate) throw AuthError.missingCredentials(this.cfg.identity);
      throw e;
    });
    return p;
  }

  private async dispatch(route: Route, r: Request): Promise<void> {
    switch (route.kind) {
      case 'root':
        return this.root(r);
      case 'sources':
        r.query.finish();
        requireJson(r.req);
        return sendStaticJson(r.res, ['sha256', ...[...this.sourceNames].sort()]);
      case 'known-dir':
        return r.req.method === 'POST' ? this.listModules(r) : this.emptyDir(r);
      case 'source-dir':
        return this.emptyDir(r);
      case 'known':
        return this.known(route.key, r);
      case 'source':
        return this.source(route.source, route.key, r);
      case 'instance-dir':
        return r.req.method === 'POST' ? this.listInstances(r) : this.emptyDir(r);
      case 'instance':
        return this.instance(route.id, r);
      case 'console':
        return serveConsole(route.file, r.req, r.res);
    }
  }

  private emptyDir(r: Request): void {
    r.query.finish();
    sendEmpty(r.res);
  }

  // ---------------------------------------------------------------- root

  private root(r: Request): void {
    const features = r.query.all('feature');
    r.query.finish();
    for (const f of features) if (f !== 'scope' && f !== '*') throw new HttpError(501, `unsupported feature: ${JSON.stringify(f)}`);
    if (!acceptsJson(r.req)) {
      if (features.length) throw new HttpError(406, 'not acceptable');
      return sendEmpty(r.res);
    }
    const info: Record<string, unknown> = { uuid: this.cfg.serverUuid, jwt: this.cfg.serverToken };
    if (features.length) info.features = { scope: FEATURE_SCOPE };
    sendStaticJson(r.res, info, { 'Cache-Control': 'public, max-age=3600' });
  }

  /**
   * A request without content (list, info, pin, unpin): no more parameters,
   * no content type, no body, JSON acceptable if it answers with JSON; acts
   * for its (required) principal.
   */
  private async contentless(r: Request, answersJson: boolean): Promise<Principal> {
    r.query.finish();
    requireContentType(r.req, undefined);
    requireNoBody(r.req);
    if (answersJson) requireJson(r.req);
    return (await this.principal(r.req, true))!;
  }

  // ------------------------------------------------------------- modules

  private async listModules(r: Request): Promise<void> {
    const p = await this.contentless(r, true);
    const modules = await this.modules.list(p.id);
    sendJson(r.res, modules.length ? { modules: modules.map(moduleInfo) } : {});
  }

  private async known(key: string, r: Request): Promise<void> {
    checkModuleKey(key);
    const method = r.req.method;
    if (method === 'PUT') return this.putModule(key, r);
    if (method === 'GET' || method === 'HEAD') {
      if (!r.query.present) return this.download(key, r);
      const actions = takeActions(r.query);
      if (actions.size === 0) throw badRequest('missing query parameter: action');
      // GET with action=call is a websocket call: only reachable through an upgrade.
      if (actions.has('call')) throw badRequest('websocket upgrade required');
      throw unsupported();
    }
    const actions = takeActions(r.query);
    if (actions.size === 0) return this.moduleInfo(key, r);
    if (actions.has('pin') && actions.has('unpin')) throw badRequest('pin and unpin actions are mutually exclusive');
    const main = [...actions].filter((a) => a !== 'pin');
    if (main.length === 0) return this.pinKnown(key, r);
    if (main.length === 1 && main[0] === 'unpin') return this.unpin(key, r);
    if (main.length === 1 && main[0] === 'call') return this.callKnown(key, actions.has('pin'), r);
    if (main.length === 1 && main[0] === 'launch') return this.launchKnown(key, actions.has('pin'), false, r);
    if (main.length === 2 && main.includes('launch') && main.includes('suspend')) return this.launchKnown(key, actions.has('pin'), true, r);
    if (main.length === 2 && main.includes('call') && main.includes('suspend')) return this.callKnown(key, actions.has('pin'), r);
    throw unsupported();
  }

  private async download(key: string, r: Request): Promise<void> {
    if (!acceptsWasm(r.req)) throw new HttpError(406, 'not acceptable');
    const p = (await this.principal(r.req, true))!;
    await this.modules.requirePinned(p.id, key);
    const size = await this.modules.size(key);
    const stream = r.req.method === 'HEAD' ? undefined : this.modules.readStream(key);
    if (size === undefined || (r.req.method !== 'HEAD' && !stream)) throw moduleNotFound();
    r.res.writeHead(200, { 'Content-Type': 'application/wasm', 'Content-Length': size });
    if (!stream) return void r.res.end();
    stream.pipe(r.res);
  }

  private async putModule(key: string, r: Request): Promise<void> {
    requireContentType(r.req, 'application/wasm');
    if (r.req.headers['content-length'] === undefined) throw new HttpError(411, 'length required');
    const actions = takeActions(r.query);
    if (!actions.has('pin')) throw unsupported();
    if (actions.size !== 1) throw unsupported();
    const tags = r.query.all('module-tag');
    r.query.finish();
    const p = (await this.principal(r.req, true))!;
    const bytes = await this.upload(key, r.req);
    await this.modules.program(key, bytes);
    await this.modules.store(key, [bytes]);
    await this.modules.pin(p.id, key, tags);
    sendEmpty(r.res, 201);
  }

  private async upload(key: string, req: IncomingMessage): Promise<Uint8Array> {
    const bytes = await readBody(req, this.cfg.maxModuleSize, () => badRequest('module size limit exceeded'));
    await this.modules.verifyUpload(key, bytes);
    return bytes;
  }

  private async moduleInfo(key: string, r: Request): Promise<void> {
    const p = await this.contentless(r, true);
    sendJson(r.res, moduleInfo(await this.modules.requirePinned(p.id, key)));
  }

  private async pinKnown(key: string, r: Request): Promise<void> {
    const tags = r.query.all('module-tag');
    const p = await this.contentless(r, false);
    const pinned = await this.modules.info(p.id, key);
    const used = this.instances.list(p.id).some((i) => i.module === key);
    if (!pinned && !used) throw moduleNotFound();
    await this.modules.pin(p.id, key, tags);
    sendEmpty(r.res);
  }

  private async unpin(key: string, r: Request): Promise<void> {
    const p = await this.contentless(r, false);
    if (!(await this.modules.unpin(p.id, key))) throw moduleNotFound();
    sendEmpty(r.res);
  }

  /** The module of a call or launch: uploaded in the body, or known (pinned) by the caller. */
  private async moduleFor(key: string, pin: boolean, r: Request, p: Principal | undefined): Promise<{ program: Program; uploaded: boolean }> {
    const type = contentType(r.req);
    if (type === 'application/wasm') {
      const bytes = await this.upload(key, r.req);
      const program = await this.modules.program(key, bytes);
      if (pin) {
        await this.modules.store(key, [bytes]);
        await this.modules.pin(p!.id, key, r.query.all('module-tag'));
      }
      return { program, uploaded: true };
    }
    if (type !== undefined) throw new HttpError(415, 'unsupported content type');
    if (pin) throw badRequest('pin action requires module content');
    if (!p) throw AuthError.missingCredentials(this.cfg.identity);
    await this.modules.requirePinned(p.id, key);
    const program = await this.modules.storedProgram(key);
    if (!program) throw moduleNotFound();
    return { program, uploaded: false };
  }

  private async callKnown(key: string, pin: boolean, r: Request): Promise<void> {
    const uploading = contentType(r.req) === 'application/wasm';
    const p = await this.principal(r.req, pin || !uploading);
    const opts = this.launchParams(r.query, pin, false);
    const { program, uploaded } = await this.moduleFor(key, pin, r, p);
    r.query.finish();
    await this.call(key, program, p, pin, uploaded ? null : r.req, opts, r);
  }

  private async launchKnown(key: string, pin: boolean, suspend: boolean, r: Request): Promise<void> {
    const p = (await this.principal(r.req, true))!;
    const opts = this.launchParams(r.query, pin, true);
    if (contentType(r.req) === undefined) requireNoBody(r.req);
    const { program } = await this.moduleFor(key, pin, r, p);
    r.query.finish();
    await this.launch(key, program, p, pin, suspend, opts, r);
  }

  // ------------------------------------------------------------- sources

  private async source(name: string, path: string, r: Request): Promise<void> {
    const method = r.req.method;
    if (method === 'GET' || method === 'HEAD') {
      if (!r.query.present) return sendEmpty(r.res);
      const actions = takeActions(r.query);
      if (actions.size === 0) throw badRequest('missing query parameter: action');
      if (actions.has('call')) throw badRequest('websocket upgrade required');
      throw unsupported();
    }
    const actions = takeActions(r.query);
    const pin = actions.has('pin');
    const main = [...actions].filter((a) => a !== 'pin');
    requireContentType(r.req, undefined);
    if (main.length === 0 && pin) {
      const tags = r.query.all('module-tag');
      r.query.finish();
      requireNoBody(r.req);
      const p = (await this.principal(r.req, true))!;
      const { hash } = await this.fetchSource(name, path);
      await this.modules.pin(p.id, hash, tags);
      return sendEmpty(r.res, 201, { Location: `${API_PREFIX}module/sha256/${hash}` });
    }
    const isCall = main.length === 1 && main[0] === 'call';
    const isLaunch = (main.length === 1 && main[0] === 'launch') || (main.length === 2 && main.includes('launch') && main.includes('suspend'));
    if (!isCall && !isLaunch) throw unsupported();
    const p = await this.principal(r.req, pin || isLaunch);
    const opts = this.launchParams(r.query, pin, isLaunch);
    r.query.finish();
    if (isLaunch) requireNoBody(r.req);
    const { hash, program } = await this.fetchSource(name, path);
    if (pin) await this.modules.pin(p!.id, hash, opts.moduleTags);
    if (isCall) return this.call(hash, program, p, pin, r.req, opts, r);
    return this.launch(hash, program, p!, pin, main.includes('suspend'), opts, r);
  }

  async fetchSource(name: string, path: string): Promise<{ hash: string; program: Program }> {
    const source = this.cfg.sources.get(name);
    if (!source) throw moduleNotFound();
    const bytes = await source.fetch(path, this.cfg.maxModuleSize);
    const hash = sha256Hex(bytes);
    const program = await this.modules.program(hash, bytes);
    await this.modules.store(hash, [bytes]);
    this.modules.collectAfterUse(hash);
    await this.cfg.sourceCache.recordSource(`/${name}/${path}`, hash);
    return { hash, program };
  }

  // --------------------------------------------------------- call, launch

  launchParams(q: Query, pin: boolean, launch: boolean): LaunchParams {
    const fn = takeFunction(q, this.cfg.local);
    const debugLog = takeLog(q);
    const instanceTags = q.all('instance-tag');
    const moduleTags = pin ? q.all('module-tag') : [];
    let instance: string | undefined;
    if (launch) {
      instance = q.one('instance');
      if (instance !== undefined) {
        const problem = instanceIdProblem(instance);
        if (problem) throw badRequest(problem);
      }
    }
    return { fn, debugLog, instanceTags, moduleTags, instance };
  }

  private async call(hash: string, program: Program, p: Principal | undefined, pin: boolean, input: IncomingMessage | null, opts: LaunchParams, r: Request): Promise<void> {
    const ticket = p ? undefined : this.anonymous.admit(r.req.socket.remoteAddress, hash);
    try {
      await this.callAdmitted(hash, program, p, pin, input, opts, r, ticket?.group);
    } finally {
      ticket?.release();
    }
  }

  private async callAdmitted(hash: string, program: Program, p: Principal | undefined, pin: boolean, input: IncomingMessage | null, opts: LaunchParams, r: Request, executorGroup: string | undefined): Promise<void> {
    const inst = await this.instances.launch({
      executorGroup,
      principal: p?.id,
      scope: p?.scope,
      module: hash,
      program,
      function: opts.fn,
      transient: true,
      suspend: false,
      tags: opts.instanceTags,
      debugLog: opts.debugLog,
      // exchange() connects right after this.
      clientConnects: true,
    });
    const headers: Record<string, string> = {};
    if (p) headers['Gate-Instance'] = inst.id;
    if (p && pin) headers.Location = `${API_PREFIX}module/sha256/${hash}`;
    const trailers = wantsTrailers(r.req);
    if (trailers) headers.Trailer = 'Gate-Status';
    const status = pin ? 201 : 200;
    const head = (): void => void r.res.writeHead(status, headers);
    head();
    await exchange({ instances: this.instances, inst, req: r.req, res: r.res, input, untilStopped: true, killOnDisconnect: true, head, trailers });
  }

  private async launch(hash: string, program: Program, p: Principal, pin: boolean, suspend: boolean, opts: LaunchParams, r: Request): Promise<void> {
    if (suspend && opts.fn !== undefined) throw conflict('function cannot be specified for suspended instance');
    const inst = await this.instances.launch({
      principal: p.id,
      scope: p.scope,
      module: hash,
      program,
      function: opts.fn,
      id: opts.instance,
      transient: false,
      suspend,
      tags: opts.instanceTags,
      debugLog: opts.debugLog,
    });
    const headers: Record<string, string> = { 'Gate-Instance': inst.id };
    if (pin) headers.Location = `${API_PREFIX}module/sha256/${hash}`;
    sendEmpty(r.res, pin ? 201 : 200, headers);
  }

  // ----------------------------------------------------------- instances

  private async listInstances(r: Request): Promise<void> {
    const p = await this.contentless(r, true);
    const insts = this.instances.list(p.id);
    for (const i of insts) await this.instances.loadBreakpoints(i);
    const list = insts.map((i) => i.info());
    if (this.cfg.cluster) list.push(...(await this.cfg.cluster.foreignInstances(p.id)));
    sendJson(r.res, list.length ? { instances: list } : {});
  }

  private async instance(id: string, r: Request): Promise<void> {
    const problem = instanceIdProblem(id);
    if (problem) throw notFound(problem);
    if (r.req.method !== 'POST') {
      if (!r.query.present) return sendEmpty(r.res);
      const actions = takeActions(r.query);
      if (actions.size === 0) throw badRequest('missing query parameter: action');
      if (actions.size === 1 && actions.has('io')) throw badRequest('websocket upgrade required');
      throw unsupported();
    }
    const actions = takeActions(r.query);
    const key = [...actions].sort().join('+');
    const known = ['', 'io', 'wait', 'kill', 'kill+wait', 'suspend', 'suspend+wait', 'resume', 'snapshot', 'delete', 'update', 'debug', 'clone', 'clone+suspend', 'migrate'];
    if (!known.includes(key)) throw unsupported();
    let fn: string | undefined;
    let debugLog = false;
    let tags: string[] = [];
    if (key === 'resume') {
      fn = takeFunction(r.query, this.cfg.local);
      debugLog = takeLog(r.query);
    }
    if (key === 'snapshot') tags = r.query.all('module-tag');
    let cloneId: string | undefined;
    if (key === 'clone' || key === 'clone+suspend') {
      tags = r.query.all('instance-tag');
      cloneId = r.query.one('instance');
      const problem = cloneId === undefined ? undefined : instanceIdProblem(cloneId);
      if (problem) throw badRequest(problem);
    }
    const server = key === 'migrate' ? r.query.one('server') : undefined;
    if (key === 'migrate' && !this.cfg.cluster) throw unsupported('migrate needs a cluster (docs/cluster.md)');
    if (key === 'migrate' && !server) throw badRequest('missing query parameter: server');
    r.query.finish();
    if (key === 'update' || key === 'debug') requireContentType(r.req, 'application/json');
    else if (key !== 'io') {
      requireContentType(r.req, undefined);
      requireNoBody(r.req);
    }
    if (key === '') requireJson(r.req);
    const p = (await this.principal(r.req, true))!;
    const inst = await this.instances.ready(p.id, id);
    switch (key) {
      case '':
        await this.instances.loadBreakpoints(inst);
        return sendJson(r.res, inst.info());
      case 'io':
        return this.io(inst, r);
      case 'wait':
        return this.sendStatus(r, await this.instances.wait(inst));
      case 'kill':
        this.instances.kill(inst);
        return sendEmpty(r.res);
      case 'kill+wait':
        this.instances.kill(inst);
        return this.sendStatus(r, await this.instances.wait(inst));
      case 'suspend':
        await this.instances.suspend(inst);
        return sendEmpty(r.res);
      case 'suspend+wait':
        await this.instances.suspend(inst);
        return this.sendStatus(r, await this.instances.wait(inst));
      case 'resume':
        await this.instances.resume(inst, fn, debugLog, p.scope);
        return sendEmpty(r.res);
      case 'snapshot': {
        const hash = await this.instances.snapshot(inst, p.scope);
        await this.modules.pin(p.id, hash, tags);
        return sendEmpty(r.res, 201, { Location: `${API_PREFIX}module/sha256/${hash}` });
      }
      case 'clone':
      case 'clone+suspend': {
        const copy = await this.instances.clone(inst, { id: cloneId, suspend: key === 'clone+suspend', tags: tags.length ? tags : undefined, scope: p.scope });
        return sendEmpty(r.res, 200, { 'Gate-Instance': copy.id });
      }
      case 'delete':
        await this.instances.delete(inst);
        return sendEmpty(r.res);
      case 'update':
        return this.update(inst, r);
      case 'debug':
        return this.debug(inst, r);
      case 'migrate':
        await this.cfg.cluster!.migrate(inst, server!);
        return sendEmpty(r.res);
    }
  }

  private sendStatus(r: Request, status: InstanceStatus): void {
    sendEmpty(r.res, 200, { 'Gate-Status': statusHeader(status) });
  }

  private async io(inst: ServerInstance, r: Request): Promise<void> {
    const headers: Record<string, string> = {};
    const trailers = wantsTrailers(r.req);
    if (trailers) headers.Trailer = 'Gate-Status';
    const head = (): void => void r.res.writeHead(200, headers);
    await exchange({ instances: this.instances, inst, req: r.req, res: r.res, input: r.req, untilStopped: false, killOnDisconnect: false, head, trailers });
  }

  private async debug(inst: ServerInstance, r: Request): Promise<void> {
    const body = await readBody(r.req, 64 * 1024, () => badRequest('debug request is too large'));
    let parsed: unknown;
    try {
      parsed = body.length ? JSON.parse(body.toString('utf8')) : {};
    } catch {
      throw badRequest('content parse error');
    }
    sendJson(r.res, await this.instances.debug(inst, parseDebugRequest(parsed)));
  }

  private async update(inst: ServerInstance, r: Request): Promise<void> {
    const body = await readBody(r.req, 64 * 1024, () => badRequest('content parse error'));
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      throw badRequest('content parse error');
    }
    const update = parseUpdate(parsed);
    await this.instances.update(inst, update.persist, update.tags);
    if (acceptsJson(r.req) && r.req.headers.accept !== undefined) return sendJson(r.res, inst.info());
    sendEmpty(r.res);
  }
}

export interface LaunchParams {
  fn: string | undefined;
  debugLog: boolean;
  instanceTags: string[];
  moduleTags: string[];
  instance: string | undefined;
}

/** A decoded path as it goes in a URL again (like Go's URL.EscapedPath). */
export function escapePath(path: string): string {
  return encodeURI(path).replace(/\?/g, '%3F').replace(/#/g, '%23');
}

function moduleInfo(m: { module: string; tags: string[] }): Record<string, unknown> {
  return m.tags.length ? { module: m.module, tags: m.tags } : { module: m.module };
}



/** `{"persist": bool, "tags": [..]}` (spec §9.2 `update`); unknown fields are refused like protobuf-JSON does. */
function parseUpdate(v: unknown): { persist: boolean; tags: string[] } {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw badRequest('content parse error');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (k !== 'persist' && k !== 'tags') throw badRequest('content parse error');
  if (o.persist !== undefined && typeof o.persist !== 'boolean') throw badRequest('content parse error');
  if (o.tags !== undefined && (!Array.isArray(o.tags) || o.tags.some((t) => typeof t !== 'string'))) throw badRequest('content parse error');
  return { persist: o.persist === true, tags: (o.tags as string[] | undefined) ?? [] };
}
