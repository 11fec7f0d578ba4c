/** Access policies: public, ssh (authorized_keys) and the config parser. */
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadIdentity } from '../../../src/client/identity.js';
import { makeToken } from '../../../src/client/token.js';
import { AccessPolicyConfigError, AuthError, AuthorizedKeysError } from '../../../src/server/auth/errors.js';
import { parseAuthorizedKeys, parsePolicy, publicPolicy, sshPolicy } from '../../../src/server/auth/policy.js';
import type { Principal } from '../../../src/server/auth/principal.js';
import { isTokenRemembered, verifyAuthorization } from '../../../src/server/auth/token.js';
import { genKey, IDENTITY, rejectsAuth, tempDir, writeSshKey, xOfPubLine } from './helpers.js';

const principalOf = (x: string): Principal => ({ id: `ed25519:${x}`, key: Buffer.from(x, 'base64url'), scope: [] });

describe('public policy', () => {
  it('lets everyone in, including anonymous', async () => {
    const p = publicPolicy();
    assert.equal(p.name, 'public');
    await p.authorize(undefined);
    await p.authorize(principalOf(genKey().x));
    await p.authorize({ id: 'local', scope: [] });
  });
});

describe('ssh policy', () => {
  const tmp = tempDir();
  const keysFile = join(tmp.dir, 'authorized_keys');
  const allowedKeyFile = join(tmp.dir, 'id_allowed');
  let allowedLine = '';
  before(() => {
    writeSshKey(allowedKeyFile);
    writeSshKey(join(tmp.dir, 'id_rsa'), { type: 'rsa' });
    allowedLine = readFileSync(`${allowedKeyFile}.pub`, 'utf8').trim();
    writeFileSync(
      keysFile,
      [
        '# comment',
        '',
        readFileSync(join(tmp.dir, 'id_rsa.pub'), 'utf8').trim(), // other key types are ignored
        allowedLine,
      ].join('\n') + '\n',
    );
  });
  after(() => tmp.cleanup());

  it('allowed key passes (end to end from a key file and token), other key 403, anonymous 401', async () => {
    const policy = await sshPolicy(keysFile);
    assert.equal(policy.name, 'ssh');

    const id = await loadIdentity(allowedKeyFile);
    const p = await verifyAuthorization([`Bearer ${makeToken(id, { audience: IDENTITY })}`], { identity: IDENTITY });
    await policy.authorize(p);

    await rejectsAuth(policy.authorize(principalOf(genKey().x)), { status: 403, code: 'GATE_PERMISSION_DENIED', message: 'permission denied' });
    await rejectsAuth(policy.authorize({ id: 'local', scope: [] }), { status: 403, message: 'permission denied' });
    const e = await rejectsAuth(policy.authorize(undefined), { status: 401, code: 'GATE_AUTH_MISSING', message: 'missing authentication credentials' });
    assert.equal(e.challenge(IDENTITY), `Bearer realm="${IDENTITY}"`);
  });

  it('forgets verified tokens when the file changes: a revoked key is refused at once, its token verified anew', async () => {
    const f = join(tmp.dir, 'revoke_keys');
    writeFileSync(f, allowedLine + '\n');
    const policy = await sshPolicy(f);
    const id = await loadIdentity(allowedKeyFile);
    const header = [`Bearer ${makeToken(id, { audience: IDENTITY })}`];
    const token = header[0]!.slice('Bearer '.length);
    await policy.authorize(await verifyAuthorization(header, { identity: IDENTITY }));
    await policy.authorize(await verifyAuthorization(header, { identity: IDENTITY }));
    assert.ok(isTokenRemembered(token));

    writeFileSync(f, '# nobody\n'); // revoke the key
    bumpMtime(f, 10);
    await rejectsAuth(policy.authorize(await verifyAuthorization(header, { identity: IDENTITY })), { status: 403, message: 'permission denied' });
    assert.equal(isTokenRemembered(token), false, 'the reload forgot the token');
  });

  it('reloads the file when it changes', async () => {
    const f = join(tmp.dir, 'reload_keys');
    writeFileSync(f, allowedLine + '\n');
    const policy = await sshPolicy(f);
    const newcomer = genKey();
    const newLine = `ssh-ed25519 ${Buffer.concat([sshString('ssh-ed25519'), sshString(Buffer.from(newcomer.x, 'base64url'))]).toString('base64')} new@host`;
    await rejectsAuth(policy.authorize(principalOf(newcomer.x)), { status: 403 });

    appendFileSync(f, newLine + '\n');
    bumpMtime(f, 10);
    await policy.authorize(principalOf(newcomer.x));

    writeFileSync(f, newLine + '\n'); // revoke the first key
    bumpMtime(f, 20);
    await rejectsAuth(policy.authorize(principalOf(xOfPubLine(allowedLine))), { status: 403 });
    await policy.authorize(principalOf(newcomer.x));

    // A file that disappears fails closed, with a clear server-side error.
    rmSync(f);
    await assert.rejects(policy.authorize(principalOf(newcomer.x)), AuthorizedKeysError);
    writeFileSync(f, newLine + '\n');
    await policy.authorize(principalOf(newcomer.x));
  });

  it('a missing or unreadable file is a clear startup error', async () => {
    const missing = join(tmp.dir, 'missing');
    await assert.rejects(sshPolicy(missing), (e: unknown) => {
      assert.ok(e instanceof AuthorizedKeysError);
      assert.equal(e.code, 'GATE_AUTHORIZED_KEYS');
      assert.equal(e.message, `access.ssh.authorizedkeys: cannot read ${missing} (ENOENT)`);
      return true;
    });
    const dir = join(tmp.dir, 'adir');
    mkdirSync(dir);
    await assert.rejects(sshPolicy(dir), /cannot read .*adir \(EISDIR\)/);
  });

  it('a malformed ssh-ed25519 line is an error naming the line', async () => {
    const f = join(tmp.dir, 'bad_keys');
    writeFileSync(f, `${allowedLine}\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE= broken\n`);
    await assert.rejects(sshPolicy(f), { name: 'AuthorizedKeysError', message: `${f}:2: invalid ssh-ed25519 public key` });
  });
});

describe('parseAuthorizedKeys', () => {
  const k = genKey();
  const blob = Buffer.concat([sshString('ssh-ed25519'), sshString(Buffer.from(k.x, 'base64url'))]).toString('base64');

  it('handles options, comments, CRLF and other key types', () => {
    const text = [
      `# ssh-ed25519 ${blob}`,
      `from="10.0.0.1,host name",command="echo \\"a b\\"" ssh-ed25519 ${blob} with options`,
      `ssh-rsa AAAAB3NzaC1yc2E= rsa`,
      `ecdsa-sha2-nistp256 AAAA ecdsa`,
      `  ssh-ed25519 ${blob}\r`,
      'garbage line',
    ].join('\n');
    assert.deepEqual([...parseAuthorizedKeys(text, 'f')], [k.x]);
  });

  it('refuses a blob with the wrong type, length or trailing bytes', () => {
    const bad = [
      Buffer.concat([sshString('ssh-rsa'), sshString(Buffer.alloc(32))]),
      Buffer.concat([sshString('ssh-ed25519'), sshString(Buffer.alloc(31))]),
      Buffer.concat([sshString('ssh-ed25519'), sshString(Buffer.alloc(32)), Buffer.from([0])]),
    ];
    for (const b of bad) assert.throws(() => parseAuthorizedKeys(`ssh-ed25519 ${b.toString('base64')}`, 'f'), AuthorizedKeysError);
    assert.throws(() => parseAuthorizedKeys('ssh-ed25519', 'f'), AuthorizedKeysError);
    assert.throws(() => parseAuthorizedKeys('ssh-ed25519 !!!', 'f'), AuthorizedKeysError);
  });
});

describe('parsePolicy', () => {
  const tmp = tempDir();
  after(() => tmp.cleanup());

  it('builds public and ssh policies', async () => {
    assert.equal((await parsePolicy('public')).name, 'public');
    mkdirSync(join(tmp.dir, '.ssh'));
    writeFileSync(join(tmp.dir, '.ssh', 'authorized_keys'), '');
    const ssh = await parsePolicy('ssh', { home: tmp.dir });
    assert.equal(ssh.name, 'ssh');
    await rejectsAuth(ssh.authorize(principalOf(genKey().x)), { status: 403 });
    await assert.rejects(parsePolicy('ssh', { authorizedKeys: join(tmp.dir, 'none') }), AuthorizedKeysError);
  });

  it('anything else is a config error naming the valid values', async () => {
    await assert.rejects(parsePolicy('private'), (e: unknown) => {
      assert.ok(e instanceof AccessPolicyConfigError);
      assert.equal(e.code, 'GATE_CONFIG_ACCESS_POLICY');
      assert.equal(e.message, 'access.policy: unknown policy "private" (valid values: public, ssh)');
      return true;
    });
    await assert.rejects(parsePolicy(undefined), { message: 'access.policy must be set (valid values: public, ssh)' });
    await assert.rejects(parsePolicy(''), AccessPolicyConfigError);
    await assert.rejects(parsePolicy('PUBLIC'), AccessPolicyConfigError);
    assert.ok(!(AccessPolicyConfigError.prototype instanceof AuthError));
  });
});

function sshString(b: string | Buffer): Buffer {
  const data = typeof b === 'string' ? Buffer.from(b) : b;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  return Buffer.concat([len, data]);
}

/** Moves the mtime forward so the change is seen even within one timestamp tick. */
function bumpMtime(f: string, seconds: number): void {
  const t = Date.now() / 1000 + seconds;
  utimesSync(f, t, t);
}

