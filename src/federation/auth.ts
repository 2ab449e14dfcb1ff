/**
 * Inbound request authentication: every federation request except the key
 * endpoints carries an X-Matrix Authorization header, checked against the
 * origin's published key before the handler runs.
 *
 * SCAFFOLD: implemented by the keys/auth work item.
 */
import type { FastifyRequest } from 'fastify';
import { MatrixError } from '../server/errors.js';
import type { Context } from '../server/services.js';

/** Verify the request's X-Matrix signature; returns the origin server name or throws 401 M_UNAUTHORIZED / 403. */
export async function authenticateFederationRequest(ctx: Context, req: FastifyRequest): Promise<string> {
  void ctx;
  void req;
  throw new MatrixError('M_UNAUTHORIZED', 401, 'Federation request authentication is not implemented');
}
