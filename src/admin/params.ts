/**
 * Request plumbing shared by the Synapse-compatible admin routes: path
 * prefixes, and query parameters parsed the way Synapse parses them (so
 * admin tools get the same 400 answers).
 */
import type { FastifyRequest } from 'fastify';
import { invalidParam, missingParam } from '../server/errors.js';

export const V1 = '/_synapse/admin/v1';
export const V2 = '/_synapse/admin/v2';

export type Query = Record<string, unknown>;
export const params = (req: FastifyRequest) => req.params as Record<string, string>;
export const query = (req: FastifyRequest) => (req.query ?? {}) as Query;

/** A non-negative integer query parameter; without a fallback it is required (400 M_MISSING_PARAM). */
export function intParam(q: Query, name: string, fallback?: number): number {
  const v = q[name];
  if (v === undefined) {
    if (fallback === undefined) throw missingParam(`Missing integer query parameter '${name}'`);
    return fallback;
  }
  if (typeof v !== 'string' || !/^\d{1,15}$/.test(v)) throw invalidParam(`Query parameter '${name}' must be a string representing a positive integer`);
  return Number(v);
}
