/**
 * Outbound server-server HTTP: every request goes through discovery, TLS
 * (verified, with the right SNI) and, unless told otherwise, X-Matrix signing.
 *
 * SCAFFOLD: implemented by the discovery/client work item.
 */
import type { Readable } from 'node:stream';
import type { BaseContext } from '../server/context.js';
import type { ServerDiscovery } from './discovery.js';

export interface FederationRequest {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Path, already percent-encoded, e.g. /_matrix/federation/v1/version */
  path: string;
  query?: Record<string, string | string[] | undefined>;
  /** JSON body. */
  body?: unknown;
  /** Add an X-Matrix Authorization header (default true). */
  signed?: boolean;
  /** Whole-request time limit (default 30 s). */
  timeoutMs?: number;
  /** Largest response body accepted (default 16 MiB for JSON). */
  maxBytes?: number;
}

/** A failed request: network error, timeout, refused by policy, or a non-2xx answer. */
export class FederationRequestError extends Error {
  constructor(
    readonly destination: string,
    message: string,
    /** HTTP status when the server answered. */
    readonly status?: number,
    /** Matrix errcode from the body, when there was one. */
    readonly errcode?: string,
    readonly body?: unknown,
  ) {
    super(`${destination}: ${message}`);
  }
}

export interface StreamResponse {
  status: number;
  headers: Record<string, string>;
  body: Readable;
}

export class FederationClient {
  constructor(protected readonly ctx: BaseContext, protected readonly discovery: ServerDiscovery) {}

  /** Send a request and parse the JSON answer; throws FederationRequestError on any failure or non-2xx status. */
  async request<T = unknown>(destination: string, req: FederationRequest): Promise<T> {
    throw new FederationRequestError(destination, `federation client not implemented (${req.method} ${req.path})`);
  }

  /** Like request, but hands back the body as a stream (media); non-2xx still throws. */
  async requestStream(destination: string, req: FederationRequest): Promise<StreamResponse> {
    throw new FederationRequestError(destination, `federation client not implemented (${req.method} ${req.path})`);
  }
}
