/**
 * Base of every error Gate raises on purpose. `code` is stable (scripts and
 * clients may match on it); `message` is written for the user who has to act.
 */
export class GateError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}
