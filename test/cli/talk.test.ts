// `gate talk`: two bin/gate processes chat through two examples/talk.wasm
// instances on one bin/gate-server process started with
// service.peer.enabled = true (issue #14).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spawnServer, type ServerProcess } from '../helpers/server.js';
import { GATE, makeClientEnv, type ClientEnv } from './client-env.js';

/** A running `gate ADDRESS talk GROUP` whose output can be waited for. */
class Talker {
  readonly child: ChildProcess;
  private output = '';
  private waiters: Array<() => void> = [];
  readonly exited: Promise<number | null>;

  constructor(env: ClientEnv, url: string, group: string) {
    this.child = spawn(GATE, [url, 'talk', group], { env: env.env });
    const take = (c: Buffer): void => {
      this.output += c.toString();
      for (const w of this.waiters.splice(0)) w();
    };
    this.child.stdout!.on('data', take);
    this.child.stderr!.on('data', take);
    this.exited = new Promise((resolve) => this.child.on('close', resolve));
  }

  say(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  async expect(re: RegExp, ms = 20000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = re.exec(this.output);
      if (m) return m;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no output matching ${re} after ${ms} ms; got:\n${this.output}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}

/** A gate-server process with its own state directory; stop() ends it and removes the directory. */
async function gateServer(options: string[]): Promise<ServerProcess & { stop(): Promise<void> }> {
  const stateDir = mkdtempSync(join(tmpdir(), 'gate-talk-state-'));
  const server = await spawnServer(stateDir, options);
  return Object.assign(server, {
    async stop() {
      server.proc.kill('SIGTERM');
      await server.exited;
      rmSync(stateDir, { recursive: true, force: true });
    },
  });
}

describe('gate talk', () => {
  let env: ClientEnv;
  let server: ServerProcess & { stop(): Promise<void> };
  before(async () => {
    env = makeClientEnv();
    server = await gateServer(['service.peer.enabled=true']);
  });
  after(async () => {
    await server.stop();
    rmSync(env.home, { recursive: true, force: true });
  });

  it('two terminals chat through two instances on one server', async () => {
    const one = new Talker(env, server.url, 'lobby');
    const two = new Talker(env, server.url, 'lobby');
    try {
      const [, idOfTwo] = await one.expect(/^\* ([0-9a-f]{8}) joined$/m);
      const [, idOfOne] = await two.expect(/^\* ([0-9a-f]{8}) joined$/m);
      assert.notEqual(idOfOne, idOfTwo);
      one.say('hello from one');
      await two.expect(new RegExp(`^${idOfOne}: hello from one$`, 'm'));
      two.say('hi from two');
      await one.expect(new RegExp(`^${idOfTwo}: hi from two$`, 'm'));

      // A different group of the same principal hears nothing.
      const other = new Talker(env, server.url, 'elsewhere');
      other.say('anyone?');
      await other.expect(/^\* nobody else is here$/m);
      other.child.stdin!.end();
      assert.equal(await other.exited, 0);

      two.child.stdin!.end();
      assert.equal(await two.exited, 0);
      await one.expect(new RegExp(`^\\* ${idOfTwo} left$`, 'm'));
      one.child.stdin!.end();
      assert.equal(await one.exited, 0);
    } finally {
      one.child.kill();
      two.child.kill();
    }
  });

  it('says what is wrong when the server does not enable the peer service', async () => {
    const plain = await gateServer([]);
    try {
      const t = new Talker(env, plain.url, 'lobby');
      t.child.stdin!.end();
      assert.equal(await t.exited, 1);
      await t.expect(/talk: the peer service is not available/);
    } finally {
      await plain.stop();
    }
  });
});
