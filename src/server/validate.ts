import { z } from 'zod';
import { badJson, MatrixError } from './errors.js';

/**
 * Validate a request body (or query) against a zod schema, turning the first
 * problem into M_BAD_JSON (or M_NOT_JSON when the body is not an object).
 */
export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  if (body === undefined || body === null) body = {};
  if (typeof body !== 'object' || Array.isArray(body)) {
    throw new MatrixError('M_NOT_JSON', 400, 'Request body must be a JSON object');
  }
  const r = schema.safeParse(body);
  if (!r.success) {
    const issue = r.error.issues[0];
    const where = issue.path.length ? issue.path.join('.') : 'body';
    throw badJson(`${where}: ${issue.message}`);
  }
  return r.data;
}

export function parseQuery<S extends z.ZodType>(schema: S, query: unknown): z.infer<S> {
  const r = schema.safeParse(query ?? {});
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new MatrixError('M_INVALID_PARAM', 400, `${issue.path.join('.') || 'query'}: ${issue.message}`);
  }
  return r.data;
}

/** Query-string integer with bounds, e.g. `limit`. */
export const queryInt = (min: number, max: number) =>
  z.union([z.string().regex(/^-?\d+$/), z.number().int()]).transform(Number).pipe(z.number().int().min(min).max(max));

export const jsonObject = z.record(z.string(), z.unknown());
