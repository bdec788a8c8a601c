/** Every error the SDK throws or rejects with. `code` is stable; switch on it. */
export class SandrunError extends Error {
  constructor(code, message, extra = {}) {
    super(message, extra.cause !== undefined ? { cause: extra.cause } : undefined);
    this.name = 'SandrunError';
    this.code = code;
    if (extra.status !== undefined) this.status = extra.status;
    if (extra.retryAfterMs !== undefined) this.retryAfterMs = extra.retryAfterMs;
    if (extra.details !== undefined) this.details = extra.details;
  }
}

export function makeError(code, message, extra) {
  return new SandrunError(code, message, extra);
}

/** A host failure the Rust side maps to NETWORK / TIMEOUT / IO / UNSUPPORTED. */
export function hostFailure(kind, message) {
  return { kind, message };
}
