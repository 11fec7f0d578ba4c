/**
 * The state directory: layout and modes, the pid-file lock (refusing a
 * second holder in this or another live process, taking over after the
 * holder died or its pid was reused), cleanup of interrupted blob writes,
 * and the default location.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir, hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { StateDirLockedError } from '../../src/store/errors.js';
import { openSqliteInventory } from '../../src/store/sqlite.js';
import { defaultStateDir, openStateDir } from '../../src/store/state-dir.js';

const TMP = mkdtempSync(join(tmpdir(), 'gate-store-state-'));
after(() => rmSync(TMP, { recursive: true, force: true }));
let n = 0;
// realpath: openStateDir reports the resolved root (tmpdir may be a symlink).
const freshRoot = (): string => join(realpathSync(TMP), `s${n++}`, 'gate', 'server');
const HAS_PROC = existsSync('/proc/self/stat');
const STATE_DIR_JS = new URL('../../src/store/state-dir.js', import.meta.url).href;

function isLocked(root: string, mention?: string): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof StateDirLockedError, String(e));
    assert.equal(e.code, 'GATE_STATE_DIR_LOCKED');
    assert.ok(e.message.includes(root), e.message);
    if (mention !== undefined) assert.ok(e.message.includes(mention), e.message);
    return true;
  };
}

function writeLock(root: string, info: Record<string, unknown> | string): void {
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, 'lock'), typeof info === 'string' ? info : JSON.stringify(info));
}

/** A child process that opens the state dir, reports, then waits (or exits when `exitAfterOpen`). */
function holderProcess(root: string, exitAfterOpen = false) {
  const script = `
    const { openStateDir } = await import(${JSON.stringify(STATE_DIR_JS)});
    await openStateDir(${JSON.stringify(root)});
    process.stdout.write('ready\\n');
    ${exitAfterOpen ? 'process.exit(0);' : 'setInterval(() => {}, 1000);'}`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) resolve();
    });
    // 'close', not 'exit': 'exit' can come before the last stdout data has been read.
    child.on('close', (code) => reject(new Error(`holder exited (${code}) before it was ready: ${stderr}`)));
  });
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  return { child, ready, exited };
}

async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((resolve) => child.on('exit', resolve));
  return child.pid!;
}

describe('state directory', () => {
  it('creates the layout with private permissions', async () => {
    const root = freshRoot();
    const dir = await openStateDir(root);
    try {
      assert.equal(dir.root, root);
      assert.equal(dir.inventoryPath, join(root, 'inventory.sqlite'));
      assert.equal(dir.lockPath, join(root, 'lock'));
      assert.equal(dir.modules.dir, join(root, 'modules'));
      assert.equal(dir.snapshots.dir, join(root, 'snapshots'));
      for (const d of [root, dir.modules.dir, dir.snapshots.dir]) assert.equal(statSync(d).mode & 0o777, 0o700, d);
      const lock = JSON.parse(readFileSync(dir.lockPath, 'utf8')) as { pid: number; host: string };
      assert.equal(lock.pid, process.pid);
      assert.equal(lock.host, hostname());
      assert.equal(dir.modules.naming, 'sha256');
      assert.equal(dir.snapshots.naming, 'safe');
    } finally {
      await dir.close();
    }
    assert.equal(existsSync(join(root, 'lock')), false, 'close releases the lock');
  });

  it('holds an inventory and blobs that survive reopening', async () => {
    const root = freshRoot();
    const hash = 'cd'.repeat(32);
    let dir = await openStateDir(root);
    let inv = openSqliteInventory(dir.inventoryPath);
    await dir.modules.put(hash, [new Uint8Array([0, 97, 115, 109])]);
    await inv.pinModule('local', hash, []);
    await inv.close();
    await dir.close();
    dir = await openStateDir(root);
    inv = openSqliteInventory(dir.inventoryPath);
    assert.deepEqual(await inv.listModules('local'), [{ module: hash, tags: [] }]);
    assert.deepEqual(await dir.modules.list(), [hash]);
    await inv.close();
    await dir.close();
  });

  it('refuses a second open in the same process until the first is closed', async () => {
    const root = freshRoot();
    const first = await openStateDir(root);
    await assert.rejects(openStateDir(root), isLocked(root, 'this process'));
    await assert.rejects(openStateDir(join(root, '..', 'server')), isLocked(root), 'another spelling of the same path');
    await first.close();
    await first.close(); // idempotent
    const second = await openStateDir(root);
    await second.close();
  });

  it('refuses while another live process holds it, and takes over after that process is killed', async () => {
    const root = freshRoot();
    const holder = holderProcess(root);
    try {
      await holder.ready;
      await assert.rejects(openStateDir(root), isLocked(root, `process ${holder.child.pid}`));
    } finally {
      holder.child.kill('SIGKILL');
      await holder.exited;
    }
    const dir = await openStateDir(root);
    assert.equal((JSON.parse(readFileSync(dir.lockPath, 'utf8')) as { pid: number }).pid, process.pid);
    await dir.close();
  });

  it('a holder that exits normally without close removes its lock', async () => {
    const root = freshRoot();
    const holder = holderProcess(root, true);
    await holder.ready;
    await holder.exited;
    assert.equal(existsSync(join(root, 'lock')), false);
  });

  it('takes over a lock of a dead process, of its own pid from a previous run, or an unreadable one', async () => {
    for (const info of [{ pid: await deadPid(), host: hostname() }, { pid: process.pid, host: hostname(), start: '1' }, 'garbage', '']) {
      const root = freshRoot();
      writeLock(root, info);
      const dir = await openStateDir(root);
      assert.equal((JSON.parse(readFileSync(dir.lockPath, 'utf8')) as { pid: number }).pid, process.pid);
      await dir.close();
      assert.deepEqual(
        readdirSync(root).filter((f) => f.startsWith('lock')),
        [],
        'no lock temporaries or moved-aside locks are left',
      );
    }
  });

  it('refuses a lock of a live process without a start time (pid cannot be proven reused)', async () => {
    const root = freshRoot();
    writeLock(root, { pid: process.ppid, host: hostname() });
    await assert.rejects(openStateDir(root), isLocked(root, `process ${process.ppid}`));
  });

  it('takes over a lock whose pid is alive but belongs to a process started at another time', { skip: !HAS_PROC && 'needs /proc' }, async () => {
    const root = freshRoot();
    writeLock(root, { pid: process.ppid, host: hostname(), start: '1' });
    const dir = await openStateDir(root);
    await dir.close();
  });

  it('refuses a lock from another host and says how to clear it', async () => {
    const root = freshRoot();
    writeLock(root, { pid: 1234, host: 'elsewhere.example' });
    await assert.rejects(openStateDir(root), isLocked(root, 'elsewhere.example'));
    await assert.rejects(openStateDir(root), isLocked(root, join(root, 'lock')));
  });

  it('removes temporaries of interrupted blob writes when opened', async () => {
    const root = freshRoot();
    mkdirSync(join(root, 'modules'), { recursive: true });
    mkdirSync(join(root, 'snapshots'), { recursive: true });
    writeFileSync(join(root, 'modules', '.tmp-deadbeef'), 'half');
    writeFileSync(join(root, 'snapshots', '.tmp-cafe'), 'half');
    const dir = await openStateDir(root);
    assert.equal(existsSync(join(root, 'modules', '.tmp-deadbeef')), false);
    assert.equal(existsSync(join(root, 'snapshots', '.tmp-cafe')), false);
    await dir.close();
  });

  it('defaults under XDG_STATE_HOME, or ~/.local/state when it is unset or relative', () => {
    assert.equal(defaultStateDir('server', { XDG_STATE_HOME: '/var/x' }), '/var/x/gate/server');
    assert.equal(defaultStateDir('daemon', { XDG_STATE_HOME: '/var/x' }), '/var/x/gate/daemon');
    assert.equal(defaultStateDir('server', {}), join(homedir(), '.local', 'state', 'gate', 'server'));
    assert.equal(defaultStateDir('daemon', { XDG_STATE_HOME: '' }), join(homedir(), '.local', 'state', 'gate', 'daemon'));
    assert.equal(defaultStateDir('daemon', { XDG_STATE_HOME: 'relative/dir' }), join(homedir(), '.local', 'state', 'gate', 'daemon'));
  });
});
