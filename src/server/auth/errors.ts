/**
 * Authentication and access-policy errors (spec web-api.md §3.4, §4).
 *
 * An AuthError carries everything the HTTP layer needs: the status, the
 * public text (`message`, used as the response body) and, for token problems,
 * the exact `WWW-Authenticate` value.
 */
import { GateError } from '../../errors.js';

/** Why authentication failed; for logs and metrics, not shown to clients. */
export type AuthFailure =
  | 'missing'
  | 'anonymous'
  | 'denied'
  | 'invalid-request'
  | 'invalid-token'
  | 'principal-key'
  | 'expired'
  | 'reused'
  | 'scope-too-large'
  | 'too-long';

export type AuthErrorCode =
  | 'GATE_AUTH_MISSING'
  | 'GATE_AUTH_ANONYMOUS'
  | 'GATE_PERMISSION_DENIED'
  | 'GATE_AUTH_INVALID_REQUEST'
  | 'GATE_AUTH_INVALID_TOKEN';

/**
 * Quotes like Go's `%q`, which the original uses for the realm and error
 * fields, so header values stay byte-identical for printable input.
 */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"' || ch === '\\') out += '\\' + ch;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20 || c === 0x7f) out += '\\x' + c.toString(16).padStart(2, '0');
    else out += ch;
  }
  return out + '"';
}

/** `Bearer realm="<identity>"[ error="…"[ error_description="…"]]` */
export function bearerChallenge(realm: string, error?: string, description?: string): string {
  let s = `Bearer realm=${goQuote(realm)}`;
  if (error !== undefined) s += ` error=${goQuote(error)}`;
  if (error !== undefined && description !== undefined) s += ` error_description=${goQuote(description)}`;
  return s;
}

export class AuthError extends GateError {
  declare readonly code: AuthErrorCode;
  readonly status: 401 | 403;
  /** Exact header value; undefined when the thrower did not know the realm (see challenge()). */
  readonly wwwAuthenticate?: string;
  readonly failure: AuthFailure;

  private constructor(
    code: AuthErrorCode,
    status: 401 | 403,
    message: string,
    failure: AuthFailure,
    wwwAuthenticate?: string,
  ) {
    super(code, message);
    this.status = status;
    this.failure = failure;
    if (wwwAuthenticate !== undefined) this.wwwAuthenticate = wwwAuthenticate;
  }

  /** 401 `missing authentication credentials`. The realm is optional because access policies do not know it. */
  static missingCredentials(realm?: string): AuthError {
    return new AuthError('GATE_AUTH_MISSING', 401, 'missing authentication credentials', 'missing', realm === undefined ? undefined : bearerChallenge(realm));
  }

  /** 401 `anonymous access not supported`: the operation needs a principal. */
  static anonymousNotSupported(realm?: string): AuthError {
    return new AuthError('GATE_AUTH_ANONYMOUS', 401, 'anonymous access not supported', 'anonymous', realm === undefined ? undefined : bearerChallenge(realm));
  }

  /** 403 `permission denied` (no WWW-Authenticate: the credentials were fine, the policy said no). */
  static permissionDenied(): AuthError {
    return new AuthError('GATE_PERMISSION_DENIED', 403, 'permission denied', 'denied');
  }

  /** 401 error="invalid_request"; the body is the description, or the error code when there is none. */
  static invalidRequest(realm: string, description?: string): AuthError {
    return new AuthError('GATE_AUTH_INVALID_REQUEST', 401, description ?? 'invalid_request', 'invalid-request', bearerChallenge(realm, 'invalid_request', description));
  }

  /** 401 error="invalid_token"; the body is the description, or the error code when there is none. */
  static invalidToken(realm: string, description?: string, failure: AuthFailure = 'invalid-token'): AuthError {
    return new AuthError('GATE_AUTH_INVALID_TOKEN', 401, description ?? 'invalid_token', failure, bearerChallenge(realm, 'invalid_token', description));
  }

  /**
   * The WWW-Authenticate value to send: the precise one if known, else the
   * bare realm challenge for any 401 (as the original does for policy errors).
   */
  challenge(realm: string): string | undefined {
    return this.wwwAuthenticate ?? (this.status === 401 ? bearerChallenge(realm) : undefined);
  }
}

/** Bad `access.policy` / `access.ssh.*` configuration (a startup error). */
export class AccessPolicyConfigError extends GateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GATE_CONFIG_ACCESS_POLICY', message, options);
  }
}

/** The authorized_keys file is missing, unreadable or malformed (at startup or on reload). */
export class AuthorizedKeysError extends GateError {
  readonly file: string;
  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super('GATE_AUTHORIZED_KEYS', message, options);
    this.file = file;
  }
}

/** A server token (API info "jwt") that a client cannot accept. */
export class ServerTokenError extends GateError {
  constructor(message: string) {
    super('GATE_SERVER_TOKEN', message);
  }
}
