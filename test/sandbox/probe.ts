/**
 * A test build of the executor: started exactly as an executor is (same
 * command, same sandbox), it tries what a program that escaped the wasm
 * sandbox might try, and prints what happened as one JSON line on stdout.
 * argv: ['--probe', outsidePid, forbiddenWritePath]. Without '--probe' (the
 * test runner runs every file under test/) it does nothing.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';

const [mode, outsidePid = '1', forbidden = '/x'] = process.argv.slice(2);
if (mode !== '--probe') process.exit(0);

function attempt(fn: () => unknown): string {
  try {
    const r = fn();
    return r === undefined ? 'ok' : `ok:${String(r)}`;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? String(e);
  }
}

function connect(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    try {
      const s = net.connect(port, host);
      s.on('connect', () => {
        s.destroy();
        resolve('connected');
      });
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    } catch (e) {
      resolve((e as NodeJS.ErrnoException).code ?? String(e));
    }
  });
}

function listen(): Promise<string> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    srv.listen(0, '127.0.0.1', () => {
      srv.close();
      resolve('listening');
    });
  });
}

const status = fs.readFileSync('/proc/self/status', 'utf8');
const field = (name: string): string | undefined => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1]?.trim();
const limits = fs.readFileSync('/proc/self/limits', 'utf8');
const limit = (name: string): string | undefined => new RegExp(`^${name}\\s+(\\S+)\\s+(\\S+)`, 'm').exec(limits)?.slice(1, 3).join('/');
const exec = spawnSync(process.execPath, ['-e', '0']);

const report = {
  uid: process.getuid?.(),
  gid: process.getgid?.(),
  capEff: field('CapEff'),
  noNewPrivs: field('NoNewPrivs'),
  seccomp: field('Seccomp'),
  seccompFilters: field('Seccomp_filters'),
  env: Object.keys(process.env),
  hostname: os.hostname(),
  pid: process.pid,
  pids: fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n)),
  outsidePidVisible: fs.existsSync(`/proc/${outsidePid}`),
  root: fs.readdirSync('/').sort(),
  namespaces: Object.fromEntries(['user', 'pid', 'net', 'ipc', 'uts', 'mnt', 'cgroup'].map((n) => [n, attempt(() => fs.readlinkSync(`/proc/self/ns/${n}`))])),
  readPasswd: attempt(() => fs.readFileSync('/etc/passwd')),
  writeForbidden: attempt(() => fs.writeFileSync(forbidden, 'x')),
  writeRoot: attempt(() => fs.writeFileSync('/escape', 'x')),
  writeTmp: attempt(() => fs.writeFileSync('/tmp/scratch', 'x')),
  exec: exec.error ? ((exec.error as NodeJS.ErrnoException).code ?? String(exec.error)) : `status ${exec.status}`,
  connectRemote: await connect('1.1.1.1', 80),
  connectLocal: await connect('127.0.0.1', 22),
  listen: await listen(),
  rlimitData: limit('Max data size'),
  rlimitNofile: limit('Max open files'),
  rlimitCore: limit('Max core file size'),
};
process.stdout.write(`${JSON.stringify(report)}\n`);
