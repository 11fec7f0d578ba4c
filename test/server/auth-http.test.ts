/** Authentication, access policies and limits through the HTTP API of a real server. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { makeToken } from '../../src/client/token.js';
import { sshPolicy } from '../../src/server/auth/policy.js';
import { programBytes } from '../helpers/runtime.js';
import { newKey, request, startTestServer } from '../helpers/server.js';

const hello = programBytes('hello');
const H = createHash('sha256').update(hello).digest('hex');
const K = '/gate-0/module/sha256/';
const wasm = { 'Content-Type': 'application/wasm' };

function authorizedKeyLine(jwkX: string): string {
  // OpenSSH wire format: string "ssh-ed25519", string key.
  const type = Buffer.from('ssh-ed25519');
  const key = Buffer.from(jwkX, 'base64url');
  const blob = Buffer.alloc(4 + type.length + 4 + key.length);
  blob.writeUInt32BE(type.length, 0);
  type.copy(blob, 4);
  blob.writeUInt32BE(key.length, 4 + type.length);
  key.copy(blob, 8 + type.length);
  return `ssh-ed25519 ${blob.toString('base64')} test@example\n`;
}

describe('access policy ssh', () => {
  it('admits only authorized keys, and no anonymous calls', async () => {
    const allowed = newKey();
    const other = newKey();
    const dir = mkdtempSync(join(tmpdir(), 'gate-test-keys-'));
    const file = join(dir, 'authorized_keys');
    writeFileSync(file, authorizedKeyLine(allowed.publicJwk.x));
    const server = await startTestServer({ policy: await sshPolicy(file) });
    try {
      assert.equal((await request(server, 'PUT', `${K}${H}?action=pin`, { key: allowed, headers: wasm, body: hello })).status, 201);
      const denied = await request(server, 'POST', K, { key: other });
      assert.equal(denied.status, 403);
      assert.equal(denied.text, 'permission denied\n');
      const anon = await request(server, 'POST', `${K}${H}?action=call`, { headers: wasm, body: hello });
      assert.equal(anon.status, 401);
      assert.equal(anon.text, 'missing authentication credentials\n');
      assert.ok(anon.headers['www-authenticate']);
    } finally {
      await server.stop();
    }
  });
});

describe('tokens', () => {
  it('refuses a reused nonce, an expired token and a foreign audience', async () => {
    const server = await startTestServer();
    const key = newKey();
    try {
      const once = makeToken(key, { audience: server.identity, nonce: 'n-1' });
      assert.equal((await request(server, 'POST', K, { headers: { Authorization: `Bearer ${once}` } })).status, 200);
      const again = await request(server, 'POST', K, { headers: { Authorization: `Bearer ${once}` } });
      assert.equal(again.status, 401);
      assert.equal(again.text, 'token has already been used\n');
      const old = makeToken(key, { audience: server.identity, nowSec: Math.floor(Date.now() / 1000) - 3600 });
      const expired = await request(server, 'POST', K, { headers: { Authorization: `Bearer ${old}` } });
      assert.equal(expired.status, 401);
      assert.equal(expired.text, 'token has expired\n');
      const foreign = makeToken(key, { audience: 'https://elsewhere.example/gate-0/' });
      assert.equal((await request(server, 'POST', K, { headers: { Authorization: `Bearer ${foreign}` } })).status, 401);
      const two = await request(server, 'POST', K, { headers: { Authorization: [`Bearer ${once}`, `Bearer ${once}`] as unknown as string } });
      assert.equal(two.status, 401);
    } finally {
      await server.stop();
    }
  });
});

describe('limits', () => {
  it('refuses a module over the size limit without storing anything', async () => {
    const server = await startTestServer({ limits: { maxModuleSize: 1024, maxMemorySize: 1 << 20, timeResolutionNs: 1 } });
    const key = newKey();
    try {
      const r = await request(server, 'PUT', `${K}${H}?action=pin`, { key, headers: wasm, body: hello });
      assert.equal(r.status, 400);
      assert.equal(r.text, 'module size limit exceeded\n');
      assert.deepEqual(JSON.parse((await request(server, 'POST', K, { key })).text), {});
      const big = await request(server, 'POST', `${K}${H}?action=call`, { headers: wasm, body: hello });
      assert.equal(big.status, 400);
    } finally {
      await server.stop();
    }
  });

  it('refuses a program whose initial memory exceeds the memory limit', async () => {
    const server = await startTestServer({ limits: { maxModuleSize: 1 << 24, maxMemorySize: 1 << 20, timeResolutionNs: 1 } });
    const key = newKey();
    const counter = programBytes('counter');
    const C = createHash('sha256').update(counter).digest('hex');
    try {
      const r = await request(server, 'POST', `${K}${C}?action=launch&function=run`, { key, headers: wasm, body: counter });
      assert.equal(r.status, 400);
      assert.match(r.text, /^initial program memory size exceeds instance memory size limit/);
      assert.deepEqual(JSON.parse((await request(server, 'POST', '/gate-0/instance/', { key })).text), {});
    } finally {
      await server.stop();
    }
  });
});

describe('operations', () => {
  it('serves Prometheus metrics on their own listener only', async () => {
    const server = await startTestServer({ metricsListen: { host: '127.0.0.1', port: 0 } });
    try {
      await request(server, 'GET', '/gate-0/');
      assert.equal((await request(server, 'GET', '/metrics')).status, 404);
      const metrics = { url: server.metricsUrl!.replace(/\/metrics$/, ''), token: server.token };
      assert.equal((await request(metrics, 'GET', '/gate-0/')).status, 404);
      const r = await request(metrics, 'GET', '/metrics');
      assert.equal(r.status, 200);
      assert.match(r.text, /gate_http_requests_total\{method="GET",status="200"\} \d+/);
      assert.match(r.text, /gate_instances_running 0/);
    } finally {
      await server.stop();
    }
  });

  it('serves no metrics unless configured', async () => {
    const server = await startTestServer();
    try {
      assert.equal(server.metricsUrl, undefined);
      assert.equal((await request(server, 'GET', '/metrics')).status, 404);
    } finally {
      await server.stop();
    }
  });
});
