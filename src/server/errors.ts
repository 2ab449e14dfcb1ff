/**
 * Typed Matrix errors. Services throw these; the HTTP layer turns them into
 * the spec's `{errcode, error}` body in one place (see app.ts).
 */
export class MatrixError extends Error {
  constructor(
    public readonly errcode: string,
    public readonly status: number,
    message: string,
    /** Extra fields merged into the JSON body (retry_after_ms, flows, ...). */
    public readonly extra: Record<string, unknown> = {},
    public readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  toJSON(): Record<string, unknown> {
    return { errcode: this.errcode, error: this.message, ...this.extra };
  }
}

export const forbidden = (msg = 'Forbidden') => new MatrixError('M_FORBIDDEN', 403, msg);
export const notFound = (msg = 'Not found') => new MatrixError('M_NOT_FOUND', 404, msg);
export const badJson = (msg: string) => new MatrixError('M_BAD_JSON', 400, msg);
export const invalidParam = (msg: string) => new MatrixError('M_INVALID_PARAM', 400, msg);
export const missingParam = (msg: string) => new MatrixError('M_MISSING_PARAM', 400, msg);
export const unrecognized = (msg = 'Unrecognized request') => new MatrixError('M_UNRECOGNIZED', 404, msg);
export const tooLarge = (msg = 'Request too large') => new MatrixError('M_TOO_LARGE', 413, msg);
export const limitExceeded = (retryAfterMs: number) =>
  new MatrixError('M_LIMIT_EXCEEDED', 429, 'Too many requests', { retry_after_ms: retryAfterMs }, {
    'Retry-After': String(Math.ceil(retryAfterMs / 1000)),
  });
