/**
 * docs/openapi.yaml against the server's route table: the document parses
 * (with Python's yaml module, when available: no YAML package is a
 * dependency), its references resolve, and every route kind of routes.ts
 * `resolve()` appears as a path with exactly the methods the server routes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { EndpointHttp } from '../../src/server/endpoint.js';
import { resolve, type Route } from '../../src/server/routes.js';

const FILE = new URL('../../../docs/openapi.yaml', import.meta.url);

/** The YAML as JSON, via python3 -c 'import yaml'; undefined if that is not available. */
function load(): Record<string, unknown> | undefined {
  const script = 'import json, sys, yaml\njson.dump(yaml.safe_load(sys.stdin), sys.stdout)';
  const r = spawnSync('python3', ['-c', script], { input: readFileSync(FILE), maxBuffer: 16 * 1024 * 1024 });
  if (r.error || (r.status !== 0 && /No module named|not found/.test(String(r.stderr)))) return undefined;
  assert.equal(r.status, 0, `docs/openapi.yaml does not parse:\n${String(r.stderr)}`);
  return JSON.parse(String(r.stdout)) as Record<string, unknown>;
}

const doc = load();
const skip = doc === undefined ? 'python3 with the yaml module is not available' : false;

type PathItem = Record<string, unknown>;
const OPERATIONS = ['get', 'head', 'post', 'put', 'delete', 'options', 'patch', 'trace'];

function paths(): Record<string, PathItem> {
  return (doc!.paths ?? {}) as Record<string, PathItem>;
}

/** The documented path a request path matches; concrete segments win over templates, as in OpenAPI. */
function match(path: string): string | undefined {
  const candidates = Object.keys(paths()).filter((template) => {
    const re = template
      .split(/(\{[^}]+\})/)
      .map((part) => (part === '{path}' || part === '{key}' ? '.+' : part.startsWith('{') ? '[^/]+' : part.replace(/[.*+?^$()|[\]\\]/g, '\\$&')))
      .join('');
    return new RegExp(`^${re}$`).test(path);
  });
  const literal = (t: string): number => t.replace(/\{[^}]+\}/g, '').length;
  return candidates.sort((a, b) => literal(b) - literal(a))[0];
}

/** One request path per route kind; the Record type makes a new kind a compile error here. */
const SAMPLES: Record<Route['kind'], string> = {
  root: '/gate-0/',
  sources: '/gate-0/module/',
  'known-dir': '/gate-0/module/sha256/',
  known: '/gate-0/module/sha256/0123abcd',
  'source-dir': '/gate-0/module/test/',
  source: '/gate-0/module/test/some/module.wasm',
  'instance-dir': '/gate-0/instance/',
  instance: '/gate-0/instance/3f1d2c5e-8a0b-4c1d-9e2f-1a2b3c4d5e6f',
  console: '/gate-0/console/console.js',
};

describe('docs/openapi.yaml', { skip }, () => {
  it('is OpenAPI 3.1 with resolvable references and unique operation ids', () => {
    assert.match(String(doc!.openapi), /^3\.1\.\d+$/);
    const ids = new Set<string>();
    const visit = (v: unknown): void => {
      if (Array.isArray(v)) return v.forEach(visit);
      if (typeof v !== 'object' || v === null) return;
      for (const [k, x] of Object.entries(v)) {
        if (k === '$ref' && typeof x === 'string') {
          assert.ok(x.startsWith('#/'), x);
          let o: unknown = doc;
          for (const part of x.slice(2).split('/')) o = (o as Record<string, unknown> | undefined)?.[part.replace(/~1/g, '/').replace(/~0/g, '~')];
          assert.ok(o !== undefined, `unresolved reference ${x}`);
        } else visit(x);
      }
    };
    visit(doc);
    for (const [p, item] of Object.entries(paths())) {
      for (const m of OPERATIONS) {
        const op = item[m] as { operationId?: string; responses?: object } | undefined;
        if (!op) continue;
        assert.ok(op.operationId, `${m} ${p} has no operationId`);
        assert.ok(!ids.has(op.operationId), `duplicate operationId ${op.operationId}`);
        ids.add(op.operationId);
        assert.ok(op.responses && Object.keys(op.responses).length, `${m} ${p} has no responses`);
      }
    }
  });

  it('documents every route of the server with exactly its methods', () => {
    const sources = new Set(['test']);
    const used = new Set<string>();
    for (const [kind, sample] of Object.entries(SAMPLES)) {
      const r = resolve(sample, sources, true);
      assert.ok('route' in r, sample);
      assert.equal(r.route.kind, kind, sample);
      const template = match(sample);
      assert.ok(template, `no path of the document matches ${sample} (route kind ${kind})`);
      used.add(template);
      const item = paths()[template]!;
      const documented = OPERATIONS.filter((m) => item[m] !== undefined).sort();
      assert.deepEqual(documented, r.methods.map((m) => m.toLowerCase()).sort(), `methods of ${template}`);
    }
    // Endpoints are routed before the API (EndpointHttp.matches) and take every method.
    const endpoint = '/gate-0/endpoint/3f1d2c5e-8a0b-4c1d-9e2f-1a2b3c4d5e6f/some/page?q=1';
    assert.ok(EndpointHttp.matches(endpoint));
    const endpointTemplate = match(endpoint.split('?')[0]!);
    assert.equal(endpointTemplate, '/gate-0/endpoint/{id}/{path}');
    used.add(endpointTemplate);
    assert.deepEqual(OPERATIONS.filter((m) => paths()[endpointTemplate]![m] !== undefined).sort(), ['delete', 'get', 'head', 'options', 'patch', 'post', 'put']);
    assert.deepEqual(Object.keys(paths()).filter((p) => !used.has(p)), [], 'documented paths the server does not route');
  });

  it('documents the API headers, the security scheme and the data shapes', () => {
    const text = readFileSync(FILE, 'utf8');
    for (const h of ['Gate-Instance', 'Location', 'Gate-Status', 'Trailer', 'WWW-Authenticate', 'TE: trailers']) assert.ok(text.includes(h), h);
    const components = doc!.components as { securitySchemes: Record<string, { type: string; scheme: string }>; schemas: Record<string, unknown> };
    assert.deepEqual(components.securitySchemes.bearer && { type: components.securitySchemes.bearer.type, scheme: components.securitySchemes.bearer.scheme }, { type: 'http', scheme: 'bearer' });
    for (const s of ['APIInfo', 'SourceList', 'ModuleInfo', 'ModuleList', 'Status', 'InstanceInfo', 'InstanceList', 'InstanceUpdate', 'CallSetup', 'CallReply', 'IOSetup', 'IOReply', 'InputHint', 'StatusMessage']) {
      assert.ok(components.schemas[s], s);
    }
  });

  it('is a valid OpenAPI document (openapi-spec-validator, when installed)', (t) => {
    const script = 'import sys, yaml\nfrom openapi_spec_validator import validate\nvalidate(yaml.safe_load(sys.stdin))';
    const r = spawnSync('python3', ['-c', script], { input: readFileSync(FILE), maxBuffer: 16 * 1024 * 1024 });
    if (/No module named 'openapi_spec_validator'/.test(String(r.stderr))) return t.skip('openapi-spec-validator is not installed');
    assert.equal(r.status, 0, String(r.stderr).slice(-2000));
  });
});
