/**
 * A newcomer's first call of a real program: bench/programs/sqlite.c (SQLite
 * 3 with an in-memory database, about 0.8 MB of wasm) sent to a gate-server
 * that has never seen it (fresh state directory, so an empty prepared-module
 * cache), as an anonymous `POST /gate-0/module/sha256/<hash>?action=call&function=run`
 * with the module as body; timed until the response has ended (the program
 * has run: it creates, fills, indexes and queries a table). Then the same
 * call again (prepared module cached). Each round starts a new gate-server.
 */
import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { readFile } from 'node:fs/promises';
import { checkSandbox } from '../src/runtime/node/sandbox/sandbox.js';
import { startGateServer, type GateServerProcess } from './field.js';
import { fmt, median } from './stats.js';

function anonymousCall(server: GateServerProcess, module: Uint8Array): Promise<{ status: number; ms: number; body: string }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      `${server.url}/gate-0/module/sha256/${createHash('sha256').update(module).digest('hex')}?action=call&function=run`,
      { method: 'POST', headers: { 'Content-Type': 'application/wasm', 'Content-Length': String(module.length) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, ms: performance.now() - t0, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(module);
  });
}

export async function launchColdSection(lines: string[], rounds: number, log: (s: string) => void): Promise<void> {
  lines.push('## First call of a real program through gate-server (cold cache)', '');
  const module = new Uint8Array(await readFile(new URL('../../bench/build/sqlite.wasm', import.meta.url)));
  const check = await checkSandbox();
  const sandbox = check.available ? 'bwrap' : 'none';
  const first: number[] = [];
  const second: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const server = await startGateServer([`runtime.sandbox="${sandbox}"`, 'access.policy="public"']);
    try {
      for (const into of [first, second]) {
        const r = await anonymousCall(server, module);
        if (r.status !== 200) throw new Error(`call answered ${r.status}: ${r.body.slice(0, 200)}`);
        into.push(r.ms);
      }
    } finally {
      await server.stop();
    }
    log(`launch-cold: round ${round + 1}: ${fmt(first[round]!, 0)} ms, then ${fmt(second[round]!, 0)} ms`);
  }
  lines.push(
    `bench/programs/sqlite.c (SQLite 3, ${fmt(module.length / 1024, 0)} KiB of wasm, built in the project) sent to a fresh gate-server (runtime.sandbox=${sandbox}, empty state directory) as an anonymous \`POST /gate-0/module/sha256/<hash>?action=call&function=run\`: upload, validation, preparation (suspend-anywhere, the server's profile), compilation, an executor launch and the program's run (a table of 2 000 rows created, indexed and aggregated), until the response ends. Then the same call again, with the prepared module cached. ${rounds} rounds, a new server each. Milliseconds:`,
    '',
    '| call | median | min–max |',
    '|---|---|---|',
    `| first (cold cache) | ${fmt(median(first), 0)} | ${fmt(Math.min(...first), 0)}–${fmt(Math.max(...first), 0)} |`,
    `| second (prepared module cached) | ${fmt(median(second), 0)} | ${fmt(Math.min(...second), 0)}–${fmt(Math.max(...second), 0)} |`,
    '',
  );
}
