/**
 * Drives instances of test/programs/peer.c over real websocket `io`
 * connections: commands go in as lines, the program's report lines come
 * back and are matched in order.
 */
import { PassThrough, Writable } from 'node:stream';
import { GateClient, moduleId, type Status } from '../../src/client/index.js';
import type { ClientIdentity } from '../../src/client/identity.js';
import { programBytes } from './runtime.js';

export const peerProgram = programBytes('peer');

export function clientFor(url: string, key: ClientIdentity): GateClient {
  return new GateClient({ address: url, auth: { kind: 'identity', identity: key } });
}

/** One launched instance of the peer program and its current client connection. */
export class PeerDriver {
  private lines: string[] = [];
  private partial = '';
  private cursor = 0;
  private waiters: Array<() => void> = [];
  private input: PassThrough | undefined;
  /** Settles when the current io connection ends. */
  connection: Promise<Status | undefined> | undefined;

  private constructor(
    readonly client: GateClient,
    readonly id: string,
  ) {}

  static async launch(client: GateClient, module: Uint8Array = peerProgram): Promise<PeerDriver> {
    const { instance } = await client.launch({ id: moduleId(module) }, { upload: { body: module, length: module.length } });
    const d = new PeerDriver(client, instance);
    await d.connect();
    return d;
  }

  /** Drives an instance that is already running (a launched snapshot, say). */
  static async attach(client: GateClient, id: string): Promise<PeerDriver> {
    const d = new PeerDriver(client, id);
    await d.connect();
    return d;
  }

  /** Opens an io connection and waits for the program's "ready" (lines before it, printed while no client was there, can still be expected). */
  async connect(): Promise<void> {
    const cursor = this.cursor;
    this.input = new PassThrough();
    const output = new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        this.partial += chunk.toString('utf8');
        const parts = this.partial.split('\n');
        this.partial = parts.pop()!;
        this.lines.push(...parts);
        const w = this.waiters;
        this.waiters = [];
        for (const f of w) f();
        cb();
      },
    });
    this.connection = this.client.ioWebSocket(this.id, { input: this.input, output }).catch(() => undefined);
    await this.expect(/^ready$/);
    this.cursor = cursor;
  }

  /** Ends the current io connection (the program accepts the next one). */
  disconnect(): void {
    this.input?.end();
    this.input = undefined;
  }

  send(line: string): void {
    this.input!.write(`${line}\n`);
  }

  /** The next line (after the previous match) matching `re`; lines before it are skipped. */
  async expect(re: RegExp, ms = 15000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + ms;
    for (;;) {
      for (; this.cursor < this.lines.length; this.cursor++) {
        const m = re.exec(this.lines[this.cursor]!);
        if (m) {
          this.cursor++;
          return m;
        }
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`instance ${this.id}: no line matching ${re} after ${ms} ms; got:\n${this.lines.join('\n')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The first line ever received that matches `re` (the match order is left alone). */
  find(re: RegExp): RegExpMatchArray | undefined {
    for (const l of this.lines) {
      const m = re.exec(l);
      if (m) return m;
    }
    return undefined;
  }

  /** How many lines received so far match `re`. */
  count(re: RegExp): number {
    return this.lines.filter((l) => re.test(l)).length;
  }

  /** Whether a line matching `re` has arrived after the last match (without waiting). */
  seen(re: RegExp): boolean {
    return this.lines.slice(this.cursor).some((l) => re.test(l));
  }

  /** Sends a call command and returns its reply's error code. */
  async call(line: string): Promise<number> {
    this.send(line);
    return Number((await this.expect(/^reply \d+ (-?\d+)$/))[1]);
  }
}
