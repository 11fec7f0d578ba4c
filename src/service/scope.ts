/**
 * Authorization scopes and the `scope` service (spec services.md §7).
 *
 * The *request scope* comes with the request that runs the instance
 * (ServiceContext.scope); the *program scope* starts unrestricted for each
 * run and can only be narrowed, by the program through the `scope` service.
 * A scope is in effect only if both contain it (`scopeContains`).
 */
import { GateError } from '../errors.js';
import { callPacket, Domain, packetContent, packetDomain } from '../abi/packet.js';
import type { ServiceContext, ServiceFactory } from './api.js';
import { defineService } from './extension.js';

/** The only scope registered in the original: lets trusted policies attach the caller's Unix user. */
export const PROGRAM_SYSTEM_SCOPE = 'program:system';

const SCOPE_PATTERN = /^[0-9A-Za-z\-./:_]{1,255}$/;

/** 1–255 characters of [0-9A-Za-z-./:_], not starting or ending with `:`, without `::`. */
export function isValidScope(s: string): boolean {
  return SCOPE_PATTERN.test(s) && !s.startsWith(':') && !s.endsWith(':') && !s.includes('::');
}

/** Invalid scope data from the program or a snapshot (kills the instance with INTERNAL, as the original does). */
export class ScopeError extends GateError {
  constructor(message: string) {
    super('GATE_SCOPE', message);
  }
}

/** The program scope of one run of an instance. */
export class ProgramScope {
  private list: string[] | undefined;

  /** True once the program has restricted its scope. */
  get restricted(): boolean {
    return this.list !== undefined;
  }

  /** The scopes the program kept, or undefined if it never restricted them. */
  current(): readonly string[] | undefined {
    return this.list?.slice();
  }

  /** Narrows the program scope to its intersection with `scopes` (the first restriction sets it). */
  restrict(scopes: readonly string[]): void {
    for (const s of scopes) if (!isValidScope(s)) throw new ScopeError(`invalid scope string: ${JSON.stringify(s)}`);
    const unique = [...new Set(scopes)];
    this.list = this.list === undefined ? unique : this.list.filter((s) => unique.includes(s));
  }

  /** Whether the program scope allows `scope` (always, while unrestricted). */
  allows(scope: string): boolean {
    return this.list === undefined || this.list.includes(scope);
  }
}

/**
 * The effective check (the original's `ContextContains`): the request scope
 * has `scope` — an undefined request scope counts as unrestricted, per
 * ServiceContext — and the program has not restricted it away.
 */
export function scopeContains(context: ServiceContext, program: ProgramScope, scope: string): boolean {
  const request = context.scope;
  return (request === undefined || request.includes(scope)) && program.allows(scope);
}

/** Parses `u8 count, count × {u8 len, bytes}`; trailing bytes are ignored as in the original. */
export function decodeScopeList(b: Uint8Array): string[] {
  if (b.length < 1) throw new ScopeError('scope encoding is too short');
  const count = b[0]!;
  const out: string[] = [];
  let off = 1;
  for (let i = 0; i < count; i++) {
    if (off >= b.length) throw new ScopeError('scope encoding is too short');
    const len = b[off]!;
    off++;
    if (b.length - off < len) throw new ScopeError('scope encoding is too short');
    let s = '';
    for (let j = off; j < off + len; j++) s += String.fromCharCode(b[j]!);
    off += len;
    if (!isValidScope(s)) throw new ScopeError(`invalid scope string: ${JSON.stringify(s)}`);
    out.push(s);
  }
  return out;
}

/** Encodes `u8 count, count × {u8 len, bytes}` (scopes are ASCII by construction). */
export function encodeScopeList(scopes: readonly string[]): Uint8Array {
  if (scopes.length > 255) throw new ScopeError(`too many scopes: ${scopes.length} (at most 255)`);
  const out: number[] = [scopes.length];
  for (const s of scopes) {
    if (!isValidScope(s)) throw new ScopeError(`invalid scope string: ${JSON.stringify(s)}`);
    out.push(s.length);
    for (let i = 0; i < s.length; i++) out.push(s.charCodeAt(i));
  }
  return Uint8Array.from(out);
}

const CALL_RESTRICT = 0;

/** The `scope` service, narrowing `program` (one ProgramScope per run of an instance). */
export function scopeService(program: ProgramScope): ServiceFactory {
  return defineService({
    name: 'scope',
    revision: '0',
    create(config, snapshot) {
      if (snapshot && snapshot.length > 0) program.restrict(decodeScopeList(snapshot));
      return {
        handle(packet) {
          if (packetDomain(packet) !== Domain.Call) return;
          const content = packetContent(packet);
          if (content.length > 0 && content[0] === CALL_RESTRICT) {
            program.restrict(decodeScopeList(content.subarray(1)));
            config.send(callPacket(config.code, new Uint8Array(2))); // i16 error = 0
            return;
          }
          config.send(callPacket(config.code));
        },
        checkpoint() {
          const list = program.current();
          return list !== undefined ? encodeScopeList(list) : undefined;
        },
        shutdown(suspend) {
          const list = program.current();
          return suspend && list !== undefined ? encodeScopeList(list) : undefined;
        },
      };
    },
  });
}
