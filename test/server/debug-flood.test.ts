/**
 * Debug output cannot exhaust the server: programs writing to fd 1 without
 * end under `log=*`, through a real gate-server process. Its memory stays
 * bounded, its log grows no faster than `log.debugrate`, the output a client
 * gets is cut with the number of bytes dropped, the server goes on answering,
 * and the flooding instance can still be killed.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest, type ClientRequest } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket, type RawData } from 'ws';
import { programBytes } from '../helpers/runtime.js';
import { newKey, request, spawnServer, type ServerProcess } from '../helpers/server.js';

const flood = programBytes('debugflood');
const hello = programBytes('hello');
const F = createHash('sha256').update(flood).digest('hex');
const H = createHash('sha256').update(hello).digest('hex');
const K = '/gate-0/module/sha256/';
const wasm = { 'Content-Type': 'application/wasm' };

const LOG_RATE = 128 * 1024;
const DROPPED = /\[gate: (\d+) bytes of debug output dropped: over the limit of 65536 bytes\/s after 262144 bytes, or not read in time\]\n/;

/** Resident memory of a process, in bytes. */
function rss(pid: number): number {
  const kib = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kib) * 1024;
}

/** The debug text the server logged for one instance so far. */
function loggedDebug(server: ServerProcess, instance: string): string {
  let text = '';
  for (const line of server.log().split('\n')) {
    if (!line.includes('"program debug output"')) continue;
    const entry = JSON.parse(line) as { instance?: string; debug?: string };
    if (entry.instance === instance) text += entry.debug ?? '';
  }
  return text;
}

describe('debug output floods (log=*)', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'gate-debugflood-'));
  let server: ServerProcess;
  const key = newKey();

  before(async () => {
    // Anonymous floods at the server's CPU priority: demoted (idle), a flood gets CPU only when the host has some to
    // spare, and on a busy host it writes less than the rates under test (what demotion costs a flood is bench/neighbours.ts's).
    server = await spawnServer(stateDir, ['principal.debugrate=65536', 'principal.debugburst=262144', `log.debugrate=${LOG_RATE}`, 'anonymous.nice=0']);
  });
  after(async () => {
    server.proc.kill('SIGKILL');
    await server.exited;
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('an anonymous call writing one byte at a time: the server log stays within its rate, with the drop counted', async (t) => {
    const log0 = server.log().length;
    const t0 = performance.now();
    const call: ClientRequest = httpRequest(`${server.url}${K}${F}?action=call&function=bytes&log=*`, { method: 'POST', headers: wasm }, (res) => res.resume());
    call.on('error', () => undefined);
    call.end(flood);
    // An anonymous call has no instance id for its client: the log names it.
    let id = '';
    for (let i = 0; i < 200 && !id; i++) {
      await sleep(50);
      id = /"instance":"([^"]+)"[^\n]*"msg":"program debug output"/.exec(server.log().slice(log0))?.[1] ?? '';
    }
    assert.ok(id, 'debug output in the log');
    await sleep(4000);

    // Others are served meanwhile.
    const other = await request(server, 'POST', `${K}${H}?action=call&function=greet`, { headers: { ...wasm, TE: 'trailers' }, body: hello });
    assert.equal(other.status, 200);
    assert.equal(other.trailers['gate-status'], '{"state":"TERMINATED"}');
    await sleep(2000);

    const seconds = (performance.now() - t0) / 1000;
    const logged = server.log().length - log0;
    // The log's bucket holds 4 s worth; each entry costs 200 bytes of it besides the text,
    // and pino's JSON around the text is less than that.
    assert.ok(logged < LOG_RATE * (seconds + 4) * 2, `${logged} bytes of log in ${seconds.toFixed(1)} s`);
    const text = loggedDebug(server, id);
    t.diagnostic(`${logged} bytes of log in ${seconds.toFixed(1)} s, ${text.length} of them debug output`);
    assert.match(text, /^y{1000}/);
    assert.ok(text.length <= 2 * 262144 + 65536 * seconds, `${text.length} bytes of debug output passed`);
    const drop = DROPPED.exec(text);
    assert.ok(drop, `a drop notice in the log: ${text.slice(-300)}`);
    assert.ok(Number(drop[1]) > 0);

    // The client leaves: the instance is killed and its output stops.
    call.destroy();
    let before = -1;
    for (let i = 0; i < 20; i++) {
      await sleep(500);
      const n = loggedDebug(server, id).length;
      if (n === before) break;
      before = n;
    }
    await sleep(1500);
    assert.equal(loggedDebug(server, id).length, before, 'no more output after the call was abandoned');
  });

  it('a websocket call whose client does not read: server memory stays bounded; the client gets the output cut, with the drop counted; kill works', async (t) => {
    const ws = new WebSocket(`${server.url.replace(/^http/, 'ws')}${K}${F}?action=call&function=lines&log=*`);
    const texts: string[] = [];
    let closed = false;
    ws.on('message', (data: RawData, binary: boolean) => {
      if (!binary) texts.push(Buffer.from(data as Buffer).toString('utf8'));
    });
    ws.on('close', () => (closed = true));
    ws.on('error', () => undefined);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.send(JSON.stringify({ authorization: `Bearer ${server.token(key)}`, content_type: 'application/wasm', content_length: flood.length }));
    ws.send(flood, { binary: true });
    while (texts.length === 0) await sleep(10);
    const instance = (JSON.parse(texts[0]!) as { instance: string }).instance;
    assert.ok(instance);

    // A client that stops reading (the ws package has no pause of its own).
    const socket = (ws as unknown as { _socket: Socket })._socket;
    socket.pause();
    const base = rss(server.proc.pid!);
    let peak = base;
    for (let i = 0; i < 16; i++) {
      await sleep(500);
      peak = Math.max(peak, rss(server.proc.pid!));
    }
    const other = await request(server, 'POST', `${K}${H}?action=call&function=greet`, { headers: { ...wasm, TE: 'trailers' }, body: hello });
    assert.equal(other.trailers['gate-status'], '{"state":"TERMINATED"}');
    t.diagnostic(`server RSS ${(base / 2 ** 20).toFixed(0)} MiB, at most ${((peak - base) / 2 ** 20).toFixed(0)} MiB more in 8 s of flood`);
    // Without bounds, the server queued some 50 MiB/s of this for the client.
    assert.ok(peak - base < 150 * 1024 * 1024, `server RSS grew by ${((peak - base) / 2 ** 20).toFixed(0)} MiB`);

    socket.resume();
    const debugText = (): string =>
      texts
        .slice(1)
        .map((t) => (JSON.parse(t) as { debug?: string }).debug ?? '')
        .join('');
    for (let i = 0; i < 100 && !DROPPED.test(debugText()); i++) await sleep(100);
    const got = debugText();
    assert.match(got, /^(x{1023}\n)+/);
    const drop = DROPPED.exec(got);
    assert.ok(drop, `a drop notice reached the client: ${got.slice(-300)}`);
    assert.ok(Number(drop[1]) > 1024 * 1024, `${drop[1]} bytes dropped`);

    const kill = await request(server, 'POST', `/gate-0/instance/${instance}?action=kill&action=wait`, { key });
    assert.equal(kill.status, 200, kill.text);
    assert.equal(kill.headers['gate-status'], '{"state":"KILLED"}');
    for (let i = 0; i < 100 && !closed; i++) await sleep(50);
    assert.ok(closed, 'the call ended');
    const status = texts.map((t) => JSON.parse(t) as { status?: { state: string } }).find((m) => m.status);
    assert.equal(status?.status?.state, 'KILLED');
    ws.terminate();
  });
});
