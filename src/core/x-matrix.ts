/**
 * The X-Matrix authorization scheme for server-server requests (server-server
 * API, "Request Authentication"). The origin signs a JSON object describing
 * the request; the destination rebuilds that object from what it received and
 * checks the signature with the origin's published key.
 */
import type { SigningKey } from './signing-key.js';
import { signJson, verifyJsonSignature } from './json-signing.js';

export interface XMatrixAuth {
  origin: string;
  /** Absent in requests from servers older than v1.3 of the spec. */
  destination?: string;
  key: string;
  sig: string;
}

/** The object whose signature the X-Matrix header carries. */
export function requestSigningObject(req: {
  method: string;
  /** Path and query exactly as sent on the wire, e.g. /_matrix/federation/v1/send/123?x=1 */
  uri: string;
  origin: string;
  destination: string;
  content?: unknown;
}): Record<string, unknown> {
  const obj: Record<string, unknown> = { method: req.method.toUpperCase(), uri: req.uri, origin: req.origin, destination: req.destination };
  if (req.content !== undefined) obj.content = req.content;
  return obj;
}

function quoteParam(value: string): string {
  return /^[A-Za-z0-9!#$%&'*+.^_`|~:-]+$/.test(value) ? value : `"${value.replace(/["\\]/g, (c) => '\\' + c)}"`;
}

/** The Authorization header value for a request signed with `key`. */
export function signRequest(
  key: SigningKey,
  req: { method: string; uri: string; origin: string; destination: string; content?: unknown },
): string {
  const signed = signJson(requestSigningObject(req), req.origin, key);
  const sig = signed.signatures[req.origin][key.keyId];
  return `X-Matrix origin=${quoteParam(req.origin)},destination=${quoteParam(req.destination)},key="${key.keyId}",sig="${sig}"`;
}

/**
 * Parse an Authorization header in the X-Matrix scheme. Returns undefined when
 * the header is not X-Matrix or lacks origin, key or sig. Parameter names are
 * case-insensitive; values may be quoted (with backslash escapes) or tokens.
 */
export function parseXMatrix(header: string): XMatrixAuth | undefined {
  const m = /^\s*X-Matrix\s+(.*)$/is.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s"]*))\s*(?:,|$)/gy;
  const rest = m[1];
  let pos = 0;
  while (pos < rest.length) {
    re.lastIndex = pos;
    const p = re.exec(rest);
    if (!p || p[0] === '') return undefined;
    const name = p[1].toLowerCase();
    const value = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3];
    if (!Object.hasOwn(params, name)) params[name] = value;
    pos = re.lastIndex;
  }
  if (!params.origin || !params.key || !params.sig) return undefined;
  const out: XMatrixAuth = { origin: params.origin, key: params.key, sig: params.sig };
  if (params.destination) out.destination = params.destination;
  return out;
}

/** Check an X-Matrix signature against the origin's public key (unpadded base64). */
export function verifyRequestSignature(
  auth: XMatrixAuth,
  req: { method: string; uri: string; destination: string; content?: unknown },
  publicKeyB64: string,
): boolean {
  const obj = requestSigningObject({ ...req, origin: auth.origin });
  obj.signatures = { [auth.origin]: { [auth.key]: auth.sig } };
  return verifyJsonSignature(obj, auth.origin, auth.key, publicKeyB64);
}
