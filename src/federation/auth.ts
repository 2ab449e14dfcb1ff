/**
 * Inbound request authentication (server-server API, "Request
 * Authentication"): every federation request except the key endpoints
 * carries an X-Matrix Authorization header, checked against the origin's
 * published key before the handler runs.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { isValidServerName } from '../core/identifiers.js';
import { parseXMatrix, verifyRequestSignature } from '../core/x-matrix.js';
import { forbidden, MatrixError } from '../server/errors.js';
import type { Context } from '../server/services.js';

const unauthorized = (msg: string) => new MatrixError('M_UNAUTHORIZED', 401, msg);

/**
 * Every Authorization header of the request. Node keeps only the first of
 * duplicated Authorization headers in `headers`, but a sender may send
 * several X-Matrix ones (one per key), so read the raw list.
 */
function authorizationHeaders(req: FastifyRequest): string[] {
  const raw = req.raw.rawHeaders;
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i].toLowerCase() === 'authorization') out.push(raw[i + 1]);
  }
  // Injected requests (tests) may carry headers only in the parsed form.
  if (out.length === 0 && typeof req.headers.authorization === 'string') out.push(req.headers.authorization);
  return out;
}

/** Verify the request's X-Matrix signature; returns the origin server name or throws 401 M_UNAUTHORIZED / 403. */
export async function authenticateFederationRequest(ctx: Context, req: FastifyRequest): Promise<string> {
  const { policy, keys } = ctx.federation;
  if (!policy.enabled) throw forbidden('Federation is disabled on this server');
  const ourName = ctx.config.server_name;
  const headers = authorizationHeaders(req).map(parseXMatrix).filter((a) => a !== undefined);
  if (headers.length === 0) throw unauthorized('Missing or malformed X-Matrix Authorization header');
  // The signature covers the URI exactly as sent, before any rewriting by the router.
  const uri = req.originalUrl ?? req.raw.url ?? req.url;
  let firstError: MatrixError | undefined;
  for (const auth of headers) {
    let error: MatrixError | undefined;
    if (!isValidServerName(auth.origin)) {
      error = unauthorized('Invalid origin in X-Matrix Authorization header');
    } else if (auth.destination !== undefined && auth.destination !== ourName) {
      error = unauthorized(`Request is for ${auth.destination}, not this server`);
    } else if (!policy.allows(auth.origin)) {
      error = forbidden(`Federation with ${auth.origin} is not allowed by this server`);
    } else {
      const key = await keys.getVerifyKey(auth.origin, auth.key);
      if (key === undefined) {
        error = unauthorized(`Unknown key ${auth.key} for ${auth.origin}`);
      } else if (verifyRequestSignature(auth, { method: req.method, uri, destination: ourName, content: req.body }, key)) {
        return auth.origin;
      } else {
        error = unauthorized('Invalid X-Matrix signature');
      }
    }
    firstError ??= error;
  }
  throw firstError ?? unauthorized('Invalid X-Matrix Authorization');
}

export type FederationHandler<T> = (req: FastifyRequest, reply: FastifyReply, origin: string) => Promise<T>;

/** Wrap a fastify handler so it runs only for an authenticated origin, which it receives as third argument. */
export function withFederationAuth<T>(ctx: Context, handler: FederationHandler<T>): (req: FastifyRequest, reply: FastifyReply) => Promise<T> {
  return async (req, reply) => {
    const origin = await authenticateFederationRequest(ctx, req);
    // A server that talks to us is up: whatever we hold for it can go out now.
    ctx.federation.sender.onIncomingFromServer(origin);
    return handler(req, reply, origin);
  };
}
