/**
 * gate-server over TLS (spec extensions.md "TLS and ACME"): a certificate
 * made at test time by openssl, signed by a test CA that the `gate` client
 * trusts through NODE_EXTRA_CA_CERTS; the identity tokens name is https.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spawnServerWithArgs, type ServerProcess } from '../helpers/server.js';
import { gate, makeClientEnv, PROGRAMS, type ClientEnv } from '../cli/client-env.js';

/** A CA and a server certificate for 127.0.0.1 (and a second key that fits neither). */
function makeCertificates(dir: string): { ca: string; cert: string; key: string; otherKey: string } {
  const f = (name: string): string => join(dir, name);
  const openssl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=Gate test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
  openssl('req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1');
  writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  openssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('ext.cnf'));
  openssl('genpkey', '-algorithm', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f('other.key'));
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key'), otherKey: f('other.key') };
}

describe('gate-server with TLS', () => {
  let dir: string;
  let certs: ReturnType<typeof makeCertificates>;
  let server: ServerProcess;
  let env: ClientEnv;
  let trusting: ClientEnv;

  const args = (extra: string[]): string[] => ['-F', '/dev/null', '-o', 'access.policy="public"', '-o', 'http.addr="127.0.0.1:0"', '-o', `state.dir=${JSON.stringify(join(dir, 'state'))}`, '-o', 'runtime.sandbox="none"', ...extra];
  const tlsOptions = (cert: string, key: string): string[] => ['-o', 'http.tls.enabled=true', '-o', `http.tls.certfile=${JSON.stringify(cert)}`, '-o', `http.tls.keyfile=${JSON.stringify(key)}`];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gate-test-tls-'));
    certs = makeCertificates(dir);
    server = await spawnServerWithArgs(args(tlsOptions(certs.cert, certs.key)));
    env = makeClientEnv();
    trusting = { ...env, env: { ...env.env, NODE_EXTRA_CA_CERTS: certs.ca } };
  });
  after(async () => {
    server?.proc.kill('SIGTERM');
    await server?.exited;
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (env) rmSync(env.home, { recursive: true, force: true });
  });

  it('listens with https and names itself https://…/gate-0/', async () => {
    assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const info = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpsRequest(`${server.url}/gate-0/`, { ca: readFileSync(certs.ca) }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(info.status, 200);
    // The API info token is issued by the server's identity.
    const jwt = (JSON.parse(info.body) as { jwt: string }).jwt;
    const payload = JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as { iss?: string; aud?: string[] | string };
    assert.ok(JSON.stringify(payload).includes(`${server.url}/gate-0/`), JSON.stringify(payload));
  });

  it('serves the gate client that trusts its CA: a websocket call, and signed requests with the https audience', async () => {
    const call = await gate(trusting, [server.url, 'call', join(PROGRAMS, 'hello.wasm'), 'greet']);
    assert.equal(call.code, 0, call.stderr);
    assert.equal(call.stdout, 'hello, world\n');
    const id = await gate(trusting, [server.url, 'import', join(PROGRAMS, 'hello.wasm')]);
    assert.equal(id.code, 0, id.stderr);
    const modules = await gate(trusting, [server.url, 'modules']);
    assert.equal(modules.code, 0, modules.stderr);
    assert.equal(modules.stdout, `${id.stdout.trim()} []\n`);
    const known = await gate(trusting, [server.url, 'call', id.stdout.trim(), 'greet']);
    assert.equal(known.code, 0, known.stderr);
    assert.equal(known.stdout, 'hello, world\n');
  });

  it('is refused by a client that does not trust the certificate', async () => {
    const r = await gate(env, [server.url, 'call', join(PROGRAMS, 'hello.wasm'), 'greet']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|certificate/i);
  });

  it('does not speak plain http on its port', async () => {
    const plain = server.url.replace(/^https:/, 'http:');
    const outcome = await new Promise<string>((resolve) => {
      const req = httpGet(`${plain}/gate-0/`, (res) => {
        res.resume();
        resolve(`status ${res.statusCode}`);
      });
      req.on('error', (e) => resolve(`error ${e.message}`));
    });
    assert.doesNotMatch(outcome, /^status 200/);
  });

  it('refuses unusable TLS configurations at startup (exit status 2)', async () => {
    const refusal = async (extra: string[], message: RegExp): Promise<void> => {
      await assert.rejects(spawnServerWithArgs(args(extra)), (e: Error) => {
        assert.match(e.message, /exited \(2\)/);
        assert.match(e.message, message);
        return true;
      });
    };
    await refusal(['-o', 'http.tls.enabled=true'], /http\.tls\.enabled needs http\.tls\.certfile and http\.tls\.keyfile \(certificates from ACME are not supported yet\)/);
    await refusal(['-o', `http.tls.certfile=${JSON.stringify(certs.cert)}`, '-o', `http.tls.keyfile=${JSON.stringify(certs.key)}`], /used only with http\.tls\.enabled = true/);
    await refusal(tlsOptions(join(dir, 'missing.pem'), certs.key), /http\.tls\.certfile: cannot read .*missing\.pem: ENOENT/);
    await refusal(tlsOptions(certs.cert, certs.otherKey), /cannot be used: .*key values mismatch/);
  });
});
