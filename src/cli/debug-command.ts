/**
 * `gate debug INSTANCE [COMMAND [ARG…]]` (docs/debugging.md): the debug
 * action from the command line, with breakpoints given as code offsets,
 * function names (the module's name section) or `file:line` (its DWARF line
 * table), and backtraces with function names and source lines.
 *
 *   (none)            the breakpoints
 *   break WHERE…      add breakpoints          delete WHERE…  remove them
 *   detach            remove every breakpoint  bt            the stack, innermost first
 *   globals           the globals              mem ADDR SIZE  memory, as a hex dump
 *
 * The instance's module is downloaded only when a name or a line must be
 * resolved, or to name frames (it must be pinned by the caller).
 */
import { Readable } from 'node:stream';
import { GateError } from '../errors.js';
import { codeBase } from '../wasm/debug-info.js';
import { functionNames } from '../wasm/debug-info.js';
import { lineOffsets, readLineTable } from '../wasm/dwarf-line.js';
import { parseModule, type WasmModule } from '../wasm/module.js';

export class DebugCommandError extends GateError {
  constructor(message: string) {
    super('GATE_DEBUG_COMMAND', message);
  }
}

/** What the command needs of a GateClient. */
export interface DebugClient {
  debug(id: string, request: DebugRequestJson): Promise<unknown>;
  downloadModule(id: string): Promise<{ length: number; body: Readable }>;
}

type Json = Record<string, unknown>;
/** A DebugRequest as JSON (docs/debugging.md). */
export type DebugRequestJson = { [key: string]: string | number | { breakpoints: number[] } };

/**
 * Breakpoint offsets for one argument: a decimal or 0x offset, a function
 * name (its first instruction) or `file:line` (where that line begins).
 */
export function resolveBreakpoint(where: string, module: () => Promise<WasmModule>): Promise<number[]> {
  return (async () => {
    if (/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(where)) return [Number(where)];
    const m = await module();
    const fileLine = /^(.+):([0-9]+)$/.exec(where);
    if (fileLine) {
      const rows = readLineTable(m);
      if (rows.length === 0) throw new DebugCommandError(`${where}: the module has no DWARF line table (build it with -g)`);
      const offsets = lineOffsets(rows, fileLine[1]!, Number(fileLine[2]));
      if (offsets.length === 0) throw new DebugCommandError(`${where}: no code begins at that line`);
      return offsets;
    }
    for (const [index, name] of functionNames(m)) {
      if (name !== where) continue;
      const body = m.bodies[index - m.importedFunctionCount];
      if (!body) throw new DebugCommandError(`${where}: an imported function has no code to break in`);
      return [body.codeStart - codeBase(m)!];
    }
    throw new DebugCommandError(`${where}: neither an offset, a function name of the module nor FILE:LINE`);
  })();
}

async function readModule(client: DebugClient, response: Json): Promise<WasmModule> {
  const ref = String(response.module ?? '');
  const hash = ref.startsWith('sha256/') ? ref.slice(7) : ref;
  let bytes: Buffer;
  try {
    const { body } = await client.downloadModule(hash);
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(c as Buffer);
    bytes = Buffer.concat(chunks);
  } catch (e) {
    throw new DebugCommandError(`the instance's module ${hash} cannot be downloaded to resolve names (pin it): ${e instanceof Error ? e.message : String(e)}`);
  }
  return parseModule(new Uint8Array(bytes));
}

function breakpointsOf(r: Json): string[] {
  const c = r.config as { breakpoints?: unknown[] } | undefined;
  return (c?.breakpoints ?? []).map(String);
}

export interface FrameJson {
  function: number;
  name?: string;
  kind: string;
  /** Absent when the engine did not say (a trap's frame). */
  offset?: number;
  source?: { file: string; line: number; column: number };
  /** Absent for a trap's frames (a trap does not save values). */
  locals?: Array<{ type: string; value: unknown }>;
}

/** One line per frame: `#0  descend (debuggee.c:29:10) at 0x14 [breakpoint] locals: i32 5`. */
export function formatFrames(frames: FrameJson[]): string[] {
  return frames.map((f, i) => {
    const name = f.name ?? `function ${f.function}`;
    const src = f.source ? ` (${f.source.file}:${f.source.line}:${f.source.column})` : '';
    const locals = f.locals?.length ? ` locals: ${f.locals.map((l) => `${l.type} ${String(l.value)}`).join(', ')}` : '';
    const at = f.offset === undefined ? '' : ` at 0x${f.offset.toString(16)}`;
    return `#${i}  ${name}${src}${at} [${f.kind}]${locals}`;
  });
}

function hexDump(addr: number, data: Buffer): string[] {
  const lines: string[] = [];
  for (let i = 0; i < data.length; i += 16) {
    const row = data.subarray(i, i + 16);
    const hex = [...row].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    const text = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${(addr + i).toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${text}`);
  }
  return lines;
}

/** Runs one debug command and writes its lines with `out`; throws DebugCommandError for bad arguments. */
export async function debugCommand(client: DebugClient, id: string, command: string | undefined, args: string[], out: (line: string) => void): Promise<void> {
  let moduleCache: Promise<WasmModule> | undefined;
  const module = async (): Promise<WasmModule> => (moduleCache ??= (async () => readModule(client, (await client.debug(id, { op: 'CONFIG_GET' })) as Json))());
  const resolveAll = async (): Promise<number[]> => {
    if (args.length === 0) throw new DebugCommandError(`${command} needs at least one offset, function name or FILE:LINE`);
    const all: number[] = [];
    for (const a of args) all.push(...(await resolveBreakpoint(a, module)));
    return all;
  };
  const noArgs = (): void => {
    if (args.length) throw new DebugCommandError(`${command ?? 'debug'} takes no arguments`);
  };
  switch (command) {
    case undefined:
    case 'break':
    case 'delete':
    case 'detach': {
      let request: DebugRequestJson = { op: 'CONFIG_GET' };
      if (command === 'break') request = { op: 'CONFIG_UNION', config: { breakpoints: await resolveAll() } };
      else if (command === 'delete') request = { op: 'CONFIG_COMPLEMENT', config: { breakpoints: await resolveAll() } };
      else if (command === 'detach') {
        noArgs();
        request = { op: 'CONFIG_SET', config: { breakpoints: [] } };
      } else noArgs();
      const r = (await client.debug(id, request)) as Json;
      for (const b of breakpointsOf(r)) out(`breakpoint 0x${Number(b).toString(16)} (${b})`);
      return;
    }
    case 'bt': {
      noArgs();
      const r = (await client.debug(id, { op: 'READ_STACK' })) as Json;
      const frames = (r.frames ?? []) as FrameJson[];
      const status = r.status as { state?: string; cause?: string } | undefined;
      out(`status: ${status?.state ?? '?'}${status?.cause ? ` ${status.cause}` : ''}`);
      const trap = r.trap as { function: number; name?: string; source?: { file: string; line: number; column: number } } | undefined;
      if (trap) out(`trapped in ${trap.name ?? `function ${trap.function}`}${trap.source ? ` (${trap.source.file}:${trap.source.line}:${trap.source.column})` : ''}`);
      for (const l of formatFrames(frames)) out(l);
      if (frames.length === 0 && !trap) out('no stack (the instance has not started, or its function returned)');
      return;
    }
    case 'globals': {
      noArgs();
      const r = (await client.debug(id, { op: 'READ_GLOBALS' })) as Json;
      for (const g of (r.globals ?? []) as Array<{ index: number; type: string; value: unknown; bits: string }>) out(`global ${g.index}: ${g.type} ${String(g.value)} (${g.bits})`);
      return;
    }
    case 'mem': {
      if (args.length !== 2 || !args.every((a) => /^(0x[0-9a-fA-F]+|[0-9]+)$/.test(a))) throw new DebugCommandError('mem takes ADDR and SIZE (decimal or 0x hex)');
      const addr = Number(args[0]);
      const r = (await client.debug(id, { op: 'READ_MEMORY', addr, size: Number(args[1]) })) as Json;
      for (const l of hexDump(addr, Buffer.from(String(r.data ?? ''), 'base64'))) out(l);
      return;
    }
    default:
      throw new DebugCommandError(`unknown debug command ${JSON.stringify(command)} (break, delete, detach, bt, globals, mem)`);
  }
}
