import { z } from 'zod';
import { badJson, MatrixError, missingParam } from '../server/errors.js';

/**
 * Like parseBody, but a required field that is simply absent is reported as
 * M_MISSING_PARAM (what clients and the spec expect) rather than M_BAD_JSON.
 */
export function parseRequest<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  if (body === undefined || body === null) body = {};
  if (typeof body !== 'object' || Array.isArray(body)) {
    throw new MatrixError('M_NOT_JSON', 400, 'Request body must be a JSON object');
  }
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const where = issue.path.length ? issue.path.join('.') : 'body';
  if (issue.code === 'invalid_type' && issue.path.length > 0 && valueAt(body, issue.path) === undefined) {
    throw missingParam(`Missing parameter: ${where}`);
  }
  throw badJson(`${where}: ${issue.message}`);
}

function valueAt(root: unknown, path: PropertyKey[]): unknown {
  let v: unknown = root;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

/** The `auth` dict of user-interactive auth: any object, interpreted by uia.ts. */
export const authDict = z.record(z.string(), z.unknown()).optional();
