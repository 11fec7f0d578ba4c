/**
 * `gate talk GROUP`: chat with the other clients of a group through
 * examples/talk.wasm instances on a server that enables the peer service
 * (issue #14; docs/services.md "peer"). The module is uploaded with the
 * call (not pinned); the first line the program gets is the group name,
 * then stdin; its output is stdout.
 */
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { formatStatus, moduleId, type IoOptions, type WebSocketCallOptions } from '../client/index.js';
import { clientSettings, EXIT_FAILURE, openClient, UsageError, type Session } from './client-commands.js';

/** The chat program, prebuilt and committed with the examples. */
export const TALK_MODULE = fileURLToPath(new URL('../../../examples/talk.wasm', import.meta.url));

export async function talk(s: Session, group: string): Promise<number> {
  const length = Buffer.byteLength(group, 'utf8');
  if (length === 0 || length > 255 || /[\r\n]/.test(group)) throw new UsageError('the group name must be 1-255 bytes on one line');
  const st = clientSettings(s.config);
  const client = await openClient(s, st);
  const bytes = await readFile(TALK_MODULE);
  const abort = new AbortController();
  const onInt = (): void => abort.abort();
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onInt);
  try {
    // The program's debug log (why it gave up, e.g. no peer service) goes to stderr.
    const opts: WebSocketCallOptions & IoOptions & { upload: Uint8Array } = {
      upload: bytes,
      input: Readable.from(withFirstLine(`${group}\n`, process.stdin)),
      output: process.stdout,
      log: true,
      debug: process.stderr,
      signal: abort.signal,
    };
    const r = await client.callWebSocket({ id: moduleId(bytes) }, opts);
    const st = r.status;
    if ((st.state === 'TERMINATED' || st.state === 'HALTED') && !st.cause && (st.result ?? 0) === 0) return 0;
    process.stderr.write(`gate talk: ${formatStatus(st)}\n`);
    return EXIT_FAILURE;
  } catch (e) {
    if (abort.signal.aborted) return 0;
    throw e;
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onInt);
  }
}

async function* withFirstLine(first: string, rest: AsyncIterable<Buffer | string>): AsyncGenerator<Buffer> {
  yield Buffer.from(first, 'utf8');
  for await (const chunk of rest) yield typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
}
