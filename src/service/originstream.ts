/**
 * One origin stream: a byte stream between a client connection and the
 * program, with the flow control and close handshake of spec abi.md
 * §11.3 / services.md §3.2.
 *
 * Each direction is a *half* with three flags (the snapshot's flags):
 *   read half (client → program)
 *     subscribing – the program may still grant credit (no FLOW {id, 0} yet)
 *     reading     – the client input is still being read
 *     sending     – the end-of-stream DATA has not been sent to the program
 *   write half (program → client)
 *     subscribing – we may still grant credit (no FLOW {id, 0} sent yet)
 *     writing     – the client output is still open
 *     receiving   – the program has not sent its end-of-stream DATA
 * The stream is gone when every flag of both halves is clear.
 */
import { DATA_HEADER_SIZE } from '../abi/packet.js';
import { AbiViolation } from '../abi/trap.js';
import { MAX_VARINT_VALUE } from './varint.js';

/** Where a client's bytes come from (null: no input, end-of-stream at once). */
export type OriginInput = AsyncIterable<Uint8Array> | null;

/** Where the program's bytes go. `end` is called when the program closes its sending side. */
export interface OriginOutput {
  write(chunk: Uint8Array): Promise<void> | void;
  end(): Promise<void> | void;
}

/** Packets a stream sends to the program (the origin service adds code and framing). */
export interface StreamSender {
  flow(id: number, value: number): void;
  /** Empty `data`: end of stream. */
  data(id: number, data: Uint8Array): void;
}

export const FLAG_SUBSCRIBING = 1;
export const FLAG_READ_WRITING = 2;
export const FLAG_SEND_RECEIVING = 4;

/** One half's suspended state (services.md §3.4 `State`). */
export interface HalfState {
  flags: number;
  subscribed: number;
  data: Uint8Array;
}

export interface StreamState {
  read: HalfState;
  write: HalfState;
}

export interface OriginStreamOptions {
  id: number;
  /** Program→client buffer size (power of two); the program gets bufsize − 1 bytes of credit. */
  bufsize: number;
  /** Largest packet the program accepts. */
  maxSendSize: number;
  sender: StreamSender;
  /** The connected client (its input already opened; undefined: no input); absent for restored streams. */
  client?: { input: AsyncIterator<Uint8Array> | undefined; output: OriginOutput };
  /** State saved at suspension (restored streams have no client and are driven to closure). */
  restored?: StreamState;
  /** Called once when all four halves are closed. */
  onClosed(): void;
}

export class OriginStream {
  readonly id: number;
  private readonly bufsize: number;
  private readonly maxData: number;
  private readonly sender: StreamSender;
  private readonly onClosed: () => void;
  private stopped = false;
  private closedReported = false;

  // Read half (client → program).
  private rSubscribing = true;
  private rReading: boolean;
  private rSending = true;
  /** Bytes the program can still take. */
  private rCredit = 0;
  /** Bytes read from the client and not yet sent (waiting for credit). */
  private rPending: Uint8Array | undefined;
  private rPulling = false;
  private readonly iterator: AsyncIterator<Uint8Array> | undefined;

  // Write half (program → client).
  private wSubscribing = true;
  private wWriting: boolean;
  private wReceiving = true;
  /** Bytes the program may still send. */
  private wCredit = 0;
  private wQueue: Uint8Array[] = [];
  /** Bytes received from the program and not yet written (queued or being written). */
  private wBuffered = 0;
  private wBusy = false;
  /** The client write in progress, if any (awaited when draining). */
  private wInflight: Promise<void> | undefined;
  private readonly output: OriginOutput | undefined;

  constructor(options: OriginStreamOptions) {
    this.id = options.id;
    this.bufsize = options.bufsize;
    this.maxData = options.maxSendSize - DATA_HEADER_SIZE;
    this.sender = options.sender;
    this.onClosed = options.onClosed;
    const client = options.client;
    this.iterator = client?.input;
    this.rReading = this.iterator !== undefined;
    this.output = client?.output;
    this.wWriting = this.output !== undefined;

    const r = options.restored;
    if (r) {
      // No client after a restore: the connection side of both halves is closed.
      this.rSubscribing = (r.read.flags & FLAG_SUBSCRIBING) !== 0;
      this.rSending = (r.read.flags & FLAG_SEND_RECEIVING) !== 0;
      // Buffered read data was already counted against the program's credit.
      this.rCredit = r.read.subscribed + r.read.data.length;
      this.rPending = r.read.data.length > 0 ? r.read.data.slice() : undefined;
      this.wSubscribing = (r.write.flags & FLAG_SUBSCRIBING) !== 0;
      this.wReceiving = (r.write.flags & FLAG_SEND_RECEIVING) !== 0;
      this.wCredit = Math.max(0, r.write.subscribed - r.write.data.length);
    }
  }

  /**
   * Sends the initial flow (or drives a restored stream towards closure) and
   * starts reading. `creditGiven`: a new stream whose initial flow the
   * program has had already, with the accept reply (OriginService.answerFirstAccept).
   */
  start(creditGiven = false): void {
    if (creditGiven) this.wCredit = this.bufsize - 1;
    if (this.wWriting) {
      if (!creditGiven) {
        // A new stream: the program's send credit follows the accept reply at once.
        this.wCredit = this.bufsize - 1;
        this.sender.flow(this.id, this.wCredit);
      }
      this.pumpRead();
    } else {
      // Restored (or output-less): end-of-file for the read half, FLOW 0 for the write half.
      this.pumpRead();
      this.closeWriteSubscription();
    }
    this.checkClosed();
  }

  get closed(): boolean {
    return !(this.rSubscribing || this.rReading || this.rSending || this.wSubscribing || this.wWriting || this.wReceiving);
  }

  /** A FLOW entry from the program: credit for client → program data, or 0 to stop receiving. */
  flow(value: number): void {
    if (value < 0) throw new AbiViolation('stream flow increment is negative');
    if (!this.rSubscribing) throw new AbiViolation('read stream already closed');
    if (value === 0) {
      // The program will take nothing more: stop reading, drop what was read
      // ahead, and acknowledge with end-of-stream (unless already sent).
      this.rSubscribing = false;
      this.rReading = false;
      this.rPending = undefined;
    } else {
      if (this.rCredit + value > MAX_VARINT_VALUE) throw new AbiViolation('stream flow credit overflow');
      this.rCredit += value;
    }
    this.pumpRead();
    this.checkClosed();
  }

  /** A DATA packet's payload from the program; empty means end of stream. */
  data(payload: Uint8Array): void {
    if (!this.wReceiving) throw new AbiViolation('write stream already closed');
    if (payload.length === 0) {
      this.wReceiving = false;
    } else {
      if (payload.length > this.wCredit) throw new AbiViolation('write stream buffer overflow');
      this.wCredit -= payload.length;
      if (this.wWriting) {
        this.wQueue.push(payload);
        this.wBuffered += payload.length;
      }
    }
    this.pumpWrite();
    this.checkClosed();
  }

  /** The client gave up: both connection sides close as if the connection broke. */
  abort(): void {
    if (this.stopped) return;
    this.rReading = false;
    this.writeSideGone();
    this.pumpRead();
    this.checkClosed();
  }

  /** The program instance stopped: nothing more is sent, the client is let go (its output is not ended). */
  stop(): void {
    this.stopped = true;
  }

  /**
   * The program ended (not suspended): bytes it sent before that still reach
   * the client, then the client is let go. Write errors only end the drain.
   */
  async drain(): Promise<void> {
    this.stopped = true;
    try {
      while (this.wInflight) await this.wInflight;
      if (this.wWriting && this.wQueue.length > 0) {
        const chunk = this.wQueue.length === 1 ? this.wQueue[0]! : concat(this.wQueue, this.wBuffered);
        this.wQueue = [];
        await this.output!.write(chunk);
      }
    } catch {
      // The client went away; nothing more to deliver.
    }
  }

  /**
   * The state to save at suspension. Program→client bytes not yet written
   * are dropped (connections are not conserved) and so are client bytes read
   * ahead beyond the program's credit (like bytes still in a socket); bytes
   * within credit are always sent at once, so the read data is empty too.
   */
  state(): StreamState {
    return {
      read: {
        flags: flag(this.rSubscribing, FLAG_SUBSCRIBING) | flag(this.rReading, FLAG_READ_WRITING) | flag(this.rSending, FLAG_SEND_RECEIVING),
        subscribed: Math.min(this.rCredit, MAX_VARINT_VALUE),
        data: new Uint8Array(0),
      },
      write: {
        // A writer still flushing after the program's end-of-stream cannot
        // survive the suspension: record it as closed, which keeps the state
        // consistent for restore.
        flags:
          flag(this.wSubscribing, FLAG_SUBSCRIBING) |
          flag(this.wWriting && this.wReceiving, FLAG_READ_WRITING) |
          flag(this.wReceiving, FLAG_SEND_RECEIVING),
        subscribed: this.wCredit,
        data: new Uint8Array(0),
      },
    };
  }

  private pumpRead(): void {
    if (this.stopped) return;
    while (this.rSending && this.rPending && this.rCredit > 0) {
      const chunk = this.rPending;
      const n = Math.min(this.rCredit, this.maxData, chunk.length);
      this.sender.data(this.id, chunk.subarray(0, n));
      this.rCredit -= n;
      this.rPending = n < chunk.length ? chunk.subarray(n) : undefined;
    }
    if (this.rSending && !this.rReading && !this.rPending) {
      this.rSending = false;
      this.sender.data(this.id, new Uint8Array(0));
    }
    if (this.rSending && this.rReading && this.rCredit > 0 && !this.rPending && !this.rPulling) this.pull();
  }

  /** Asks the client for more input (only while the program has granted credit). */
  private pull(): void {
    this.rPulling = true;
    let next: Promise<IteratorResult<Uint8Array>>;
    try {
      next = Promise.resolve(this.iterator!.next());
    } catch (e) {
      next = Promise.reject(e);
    }
    next.then(
      (r) => {
        this.rPulling = false;
        if (this.stopped || !this.rReading) return;
        if (r.done) {
          this.rReading = false;
        } else if (r.value instanceof Uint8Array) {
          if (r.value.length > 0) this.rPending = r.value;
        } else {
          this.rReading = false; // Not bytes: treat like a broken connection.
        }
        this.pumpRead();
        this.checkClosed();
      },
      () => {
        // A read error ends the input like end-of-file does (as in the original).
        this.rPulling = false;
        if (this.stopped || !this.rReading) return;
        this.rReading = false;
        this.pumpRead();
        this.checkClosed();
      },
    );
  }

  private pumpWrite(): void {
    while (!this.stopped && !this.wBusy) {
      if (this.wWriting && this.wQueue.length > 0) {
        const chunk = this.wQueue.length === 1 ? this.wQueue[0]! : concat(this.wQueue, this.wBuffered);
        this.wQueue = [];
        if (!this.callOutput(() => this.output!.write(chunk), () => this.wrote(chunk.length))) return;
        continue;
      }
      if (this.wWriting && !this.wReceiving) {
        // The program finished sending and everything is written: close the
        // client's writer, then tell the program with FLOW {id, 0}.
        this.wWriting = false;
        if (!this.callOutput(() => this.output!.end(), () => this.closeWriteSubscription())) return;
        continue;
      }
      return;
    }
  }

  /**
   * Runs an output operation; returns true if it completed synchronously
   * (after running `done`), false if it is still in progress or failed.
   */
  private callOutput(op: () => Promise<void> | void, done: () => void): boolean {
    let result: Promise<void> | void;
    try {
      result = op();
    } catch {
      this.writeSideGone();
      this.checkClosed();
      return false;
    }
    if (result === undefined || typeof (result as { then?: unknown }).then !== 'function') {
      done();
      return true;
    }
    this.wBusy = true;
    const inflight = (result as Promise<void>).then(
      () => {
        this.wInflight = undefined;
        this.wBusy = false;
        if (this.stopped) return;
        done();
        this.pumpWrite();
        this.checkClosed();
      },
      () => {
        this.wInflight = undefined;
        this.wBusy = false;
        if (this.stopped) return;
        this.writeSideGone();
        this.checkClosed();
      },
    );
    this.wInflight = inflight;
    return false;
  }

  /** Bytes reached the client: grant the program the freed buffer space (always keeping one byte free). */
  private wrote(n: number): void {
    if (!this.wWriting) return; // The writer went away meanwhile; nothing is buffered any more.
    this.wBuffered -= n;
    if (!this.wSubscribing || !this.wReceiving) return;
    const increment = this.bufsize - 1 - (this.wCredit + this.wBuffered);
    if (increment > 0) {
      this.wCredit += increment;
      this.sender.flow(this.id, increment);
    }
  }

  /** The client's writer failed or went away. */
  private writeSideGone(): void {
    this.wWriting = false;
    this.wQueue = [];
    this.wBuffered = 0;
    this.closeWriteSubscription();
  }

  private closeWriteSubscription(): void {
    if (!this.wSubscribing || this.stopped) return;
    this.wSubscribing = false;
    this.sender.flow(this.id, 0);
  }

  private checkClosed(): void {
    if (this.closedReported || this.stopped || !this.closed) return;
    this.closedReported = true;
    this.onClosed();
  }
}

function flag(on: boolean, bit: number): number {
  return on ? bit : 0;
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}
