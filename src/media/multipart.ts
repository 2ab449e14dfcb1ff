/**
 * multipart/mixed bodies (RFC 2046 section 5.1) as the federation media
 * endpoints use them: exactly two parts, JSON metadata then the media (or a
 * Location to fetch it from).
 *
 * The parser is a streaming state machine over untrusted input: it never
 * holds more than one bounded header block, one bounded line after a
 * delimiter, or a delimiter's length of body bytes in memory, so a peer
 * cannot make us buffer a whole file or an endless header.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';

export class MultipartError extends Error {}

/** Largest header block of one part; real ones are a few hundred bytes. */
export const MAX_PART_HEADER_BYTES = 16 * 1024;
/** Largest JSON metadata part of a federation media response. */
export const MAX_JSON_PART_BYTES = 64 * 1024;
/** Bytes before the first delimiter we skip before calling the body garbage. */
const MAX_PREAMBLE_BYTES = 64 * 1024;
/** Transport padding allowed after a delimiter, before its CRLF. */
const MAX_DELIMITER_LINE_BYTES = 256;

const CRLF = Buffer.from('\r\n');
const CRLFCRLF = Buffer.from('\r\n\r\n');
const DASHDASH = Buffer.from('--');

// ---- header values with parameters (Content-Type, Content-Disposition)

export interface HeaderValue {
  /** The value before the first ';', trimmed and lowercased. */
  value: string;
  /** Parameters, names lowercased; quoted strings unquoted. */
  params: Record<string, string>;
}

/** Parse `type/subtype; a=b; c="d;e"` (RFC 9110 parameters). Malformed parameters are skipped. */
export function parseHeaderValue(header: string): HeaderValue {
  const semi = header.indexOf(';');
  const value = (semi < 0 ? header : header.slice(0, semi)).trim().toLowerCase();
  const params: Record<string, string> = {};
  let i = semi < 0 ? header.length : semi + 1;
  while (i < header.length) {
    while (i < header.length && (header[i] === ' ' || header[i] === '\t' || header[i] === ';')) i++;
    const eq = header.indexOf('=', i);
    if (eq < 0) break;
    const name = header.slice(i, eq).trim().toLowerCase();
    i = eq + 1;
    while (header[i] === ' ' || header[i] === '\t') i++;
    let val = '';
    if (header[i] === '"') {
      i++;
      while (i < header.length && header[i] !== '"') {
        if (header[i] === '\\' && i + 1 < header.length) i++;
        val += header[i++];
      }
      i++; // closing quote
      const next = header.indexOf(';', i);
      i = next < 0 ? header.length : next;
    } else {
      const next = header.indexOf(';', i);
      const end = next < 0 ? header.length : next;
      val = header.slice(i, end).trim();
      i = end;
    }
    if (/^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(name) && !(name in params)) params[name] = val;
  }
  return { value, params };
}

// RFC 2046: bchars, at most 70 of them, not ending in a space.
const BOUNDARY = /^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$/;

/** The boundary of a multipart/mixed Content-Type, or undefined when it is not one or the boundary is invalid. */
export function multipartBoundary(contentType: string | undefined): string | undefined {
  if (!contentType) return undefined;
  const { value, params } = parseHeaderValue(contentType);
  if (value !== 'multipart/mixed') return undefined;
  const b = params.boundary;
  return b !== undefined && BOUNDARY.test(b) ? b : undefined;
}

/**
 * The file name of a Content-Disposition value: `filename*` (RFC 5987,
 * UTF-8 or ISO-8859-1) wins over `filename`. Undefined when there is none
 * or it does not decode.
 */
export function dispositionFilename(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const { params } = parseHeaderValue(header);
  const ext = params['filename*'];
  if (ext !== undefined) {
    const m = /^([\w!#$%&+^`{}~-]+)'[^']*'(.*)$/.exec(ext);
    if (m) {
      const charset = m[1].toLowerCase();
      try {
        const bytes = Buffer.from(m[2].replace(/%([0-9a-fA-F]{2})|([^%])/g, (_s, hex: string | undefined, ch: string | undefined) =>
          hex ? String.fromCharCode(parseInt(hex, 16)) : ch!), 'latin1');
        if (charset === 'utf-8') return new TextDecoder('utf-8', { fatal: true }).decode(bytes) || undefined;
        if (charset === 'iso-8859-1') return bytes.toString('latin1') || undefined;
      } catch {
        // Not valid UTF-8: fall back to the plain parameter.
      }
    }
  }
  return params.filename || undefined;
}

// ---- building

export interface OutgoingPart {
  headers: Record<string, string>;
  /** Bytes of the part (streamed as they come for a Readable); none for a Location-only part. */
  body?: Buffer | string | Readable;
}

/** A fresh random boundary (base64url is all bchars). */
export function newBoundary(): string {
  return randomBytes(24).toString('base64url');
}

function headerBlock(headers: Record<string, string>): string {
  let s = '';
  for (const [name, value] of Object.entries(headers)) {
    if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) throw new Error(`header ${name} contains a line break`);
    s += `${name}: ${value}\r\n`;
  }
  return s + '\r\n';
}

/**
 * A multipart/mixed body of `parts` separated by `boundary`, streamed: a
 * Readable body is piped through as it is read, never gathered. The caller
 * sends it with `Content-Type: multipart/mixed; boundary=<boundary>`.
 */
export function buildMultipart(boundary: string, parts: OutgoingPart[]): Readable {
  if (!BOUNDARY.test(boundary)) throw new Error('invalid multipart boundary');
  // Validate every header before the first byte goes out.
  const heads = parts.map((p) => headerBlock(p.headers));
  async function* generate(): AsyncGenerator<Buffer> {
    for (let i = 0; i < parts.length; i++) {
      yield Buffer.from(`${i === 0 ? '' : '\r\n'}--${boundary}\r\n${heads[i]}`, 'utf8');
      const body = parts[i].body;
      if (body === undefined) continue;
      if (typeof body === 'string' || Buffer.isBuffer(body)) {
        yield Buffer.from(body);
      } else {
        for await (const chunk of body) yield Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
      }
    }
    yield Buffer.from(`\r\n--${boundary}--\r\n`, 'utf8');
  }
  return Readable.from(generate(), { objectMode: false });
}

// ---- parsing

export type MultipartEvent =
  | { type: 'part'; headers: Record<string, string> }
  | { type: 'data'; chunk: Buffer };

type State = 'preamble' | 'delimiter' | 'headers' | 'body';

/** Parse one header block (without its final empty line). Names lowercased; folded lines joined. */
function parseHeaderBlock(block: string): Record<string, string> {
  const headers: Record<string, string> = {};
  let last: string | undefined;
  for (const line of block.split('\r\n')) {
    if (line === '') continue;
    if ((line[0] === ' ' || line[0] === '\t') && last !== undefined) {
      headers[last] += ' ' + line.trim();
      continue;
    }
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon).trim().toLowerCase() : '';
    if (!/^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(name)) throw new MultipartError('Malformed part header');
    const value = line.slice(colon + 1).trim();
    // A repeated header is joined the way HTTP joins them.
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
    last = name;
  }
  return headers;
}

/**
 * Parse a multipart body into a stream of events: each part's headers, then
 * its bytes in chunks. Throws MultipartError on malformed or truncated
 * input (a body that ends before the close delimiter is truncated).
 */
export async function* parseMultipart(source: AsyncIterable<Buffer | string>, boundary: string): AsyncGenerator<MultipartEvent> {
  if (!BOUNDARY.test(boundary)) throw new MultipartError('Invalid multipart boundary');
  const delimiter = Buffer.from(`\r\n--${boundary}`, 'latin1');
  // A CRLF in front lets the first delimiter (at the very start) match like every other one.
  let buf: Buffer = Buffer.from(CRLF);
  let state: State = 'preamble';
  let preambleSeen = 0;

  for await (const raw of source) {
    const chunk = typeof raw === 'string' ? Buffer.from(raw, 'latin1') : raw;
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    for (;;) {
      if (state === 'preamble' || state === 'body') {
        const at = buf.indexOf(delimiter);
        if (at >= 0) {
          if (state === 'body' && at > 0) yield { type: 'data', chunk: buf.subarray(0, at) };
          buf = buf.subarray(at + delimiter.length);
          state = 'delimiter';
          continue;
        }
        // Everything but a possible partial delimiter at the end is settled.
        const safe = buf.length - (delimiter.length - 1);
        if (safe > 0) {
          if (state === 'body') {
            yield { type: 'data', chunk: buf.subarray(0, safe) };
          } else if ((preambleSeen += safe) > MAX_PREAMBLE_BYTES) {
            throw new MultipartError('No multipart delimiter found');
          }
          buf = buf.subarray(safe);
        }
        break;
      }
      if (state === 'delimiter') {
        if (buf.length < 2) break;
        // The close delimiter: what follows is epilogue, never read (leaving the loop ends the source).
        if (buf.subarray(0, 2).equals(DASHDASH)) return;
        const eol = buf.indexOf(CRLF);
        if (eol < 0) {
          if (buf.length > MAX_DELIMITER_LINE_BYTES) throw new MultipartError('Malformed multipart delimiter');
          break;
        }
        if (!/^[ \t]*$/.test(buf.subarray(0, eol).toString('latin1'))) throw new MultipartError('Malformed multipart delimiter');
        buf = buf.subarray(eol + 2);
        state = 'headers';
        continue;
      }
      if (state === 'headers') {
        // An empty header block is just the blank line.
        let end: number;
        let skip: number;
        if (buf.length >= 2 && buf[0] === 0x0d && buf[1] === 0x0a) {
          end = 0;
          skip = 2;
        } else {
          end = buf.indexOf(CRLFCRLF);
          skip = 4;
        }
        if (end < 0) {
          if (buf.length > MAX_PART_HEADER_BYTES) throw new MultipartError('Part headers too large');
          break;
        }
        if (end > MAX_PART_HEADER_BYTES) throw new MultipartError('Part headers too large');
        const headers = parseHeaderBlock(buf.subarray(0, end).toString('utf8'));
        buf = buf.subarray(end + skip);
        state = 'body';
        yield { type: 'part', headers };
        continue;
      }
    }
  }
  throw new MultipartError('Multipart body ended early');
}

// ---- the federation media response shape

export interface FederationMediaParts {
  /** The JSON metadata of the first part (currently always {}). */
  metadata: Record<string, unknown>;
  /** Headers of the second part, names lowercased. */
  headers: Record<string, string>;
  /** Where to fetch the media instead, when the second part is a redirect. */
  location?: string;
  /** The media bytes, streamed, when the second part carries them. */
  body?: Readable;
}

/**
 * Read a federation media download/thumbnail response: a JSON part (at most
 * MAX_JSON_PART_BYTES) then the media part, whose body is handed back as a
 * stream still being parsed. Throws MultipartError when the body does not
 * have that shape (the media stream errors if it goes wrong later).
 */
export async function readFederationMedia(source: Readable, contentType: string | undefined): Promise<FederationMediaParts> {
  const boundary = multipartBoundary(contentType);
  if (!boundary) throw new MultipartError('Response is not multipart/mixed with a valid boundary');
  const events = parseMultipart(source, boundary);
  try {
    const first = await events.next();
    if (first.done || first.value.type !== 'part') throw new MultipartError('Multipart body has no parts');
    if (parseHeaderValue(first.value.headers['content-type'] ?? '').value !== 'application/json') {
      throw new MultipartError('First part is not application/json');
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let next = await events.next();
    for (; !next.done && next.value.type === 'data'; next = await events.next()) {
      size += next.value.chunk.length;
      if (size > MAX_JSON_PART_BYTES) throw new MultipartError('JSON part too large');
      chunks.push(next.value.chunk);
    }
    if (next.done || next.value.type !== 'part') throw new MultipartError('Multipart body has no media part');
    let metadata: unknown;
    try {
      metadata = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      throw new MultipartError('JSON part is not valid JSON');
    }
    if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) throw new MultipartError('JSON part is not an object');
    const headers = next.value.headers;
    const meta = metadata as Record<string, unknown>;
    if (headers.location !== undefined) {
      await events.return(undefined);
      source.destroy();
      return { metadata: meta, headers, location: headers.location };
    }
    async function* media(): AsyncGenerator<Buffer> {
      for (let e = await events.next(); !e.done; e = await events.next()) {
        if (e.value.type !== 'data') throw new MultipartError('More than two parts in a media response');
        yield e.value.chunk;
      }
    }
    return { metadata: meta, headers, body: Readable.from(media(), { objectMode: false }) };
  } catch (err) {
    await events.return(undefined).catch(() => {});
    source.destroy();
    throw err;
  }
}
