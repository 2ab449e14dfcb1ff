/**
 * multipart/mixed for federation media: header parameters and boundaries,
 * the builder, and the streaming parser on good, split and malformed input.
 *
 *   node --import tsx --test test/media/multipart.test.ts
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import {
  MAX_JSON_PART_BYTES, MAX_PART_HEADER_BYTES, MultipartError, buildMultipart, dispositionFilename, multipartBoundary,
  newBoundary, parseHeaderValue, parseMultipart, readFederationMedia, type MultipartEvent,
} from '../../src/media/multipart.js';

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Feed `data` to the parser in chunks of `size` bytes. */
function chunked(data: Buffer | string, size: number): Readable {
  const buf = Buffer.from(data);
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) parts.push(buf.subarray(i, i + size));
  return Readable.from(parts);
}

/** Parse fully into [{headers, body}]. */
async function parts(source: Readable, boundary: string): Promise<Array<{ headers: Record<string, string>; body: string }>> {
  const out: Array<{ headers: Record<string, string>; body: Buffer[] }> = [];
  for await (const e of parseMultipart(source, boundary) as AsyncGenerator<MultipartEvent>) {
    if (e.type === 'part') out.push({ headers: e.headers, body: [] });
    else out[out.length - 1].body.push(e.chunk);
  }
  return out.map((p) => ({ headers: p.headers, body: Buffer.concat(p.body).toString('utf8') }));
}

const SAMPLE =
  'preamble to ignore\r\n' +
  '--xyz\r\n' +
  'Content-Type: application/json\r\n' +
  '\r\n' +
  '{}\r\n' +
  '--xyz  \r\n' +
  'Content-Type: text/plain\r\n' +
  'Content-Disposition: attachment;\r\n  filename="a b.txt"\r\n' +
  '\r\n' +
  'hello\r\n--xy not a delimiter\r\nworld\r\n' +
  '--xyz--\r\n' +
  'epilogue';

describe('header values', () => {
  test('parameters, quoted and not, with escapes and ; inside quotes', () => {
    const v = parseHeaderValue('Multipart/Mixed; boundary="a;b\\"c"; Charset=utf-8');
    assert.equal(v.value, 'multipart/mixed');
    assert.deepEqual(v.params, { boundary: 'a;b"c', charset: 'utf-8' });
  });

  test('boundary from Content-Type, quoted or not; invalid ones refused', () => {
    assert.equal(multipartBoundary('multipart/mixed; boundary=abc123'), 'abc123');
    assert.equal(multipartBoundary('multipart/mixed; boundary="with space:and=more"'), 'with space:and=more');
    assert.equal(multipartBoundary('multipart/form-data; boundary=abc'), undefined);
    assert.equal(multipartBoundary('multipart/mixed'), undefined);
    assert.equal(multipartBoundary('multipart/mixed; boundary=""'), undefined);
    assert.equal(multipartBoundary(`multipart/mixed; boundary=${'a'.repeat(71)}`), undefined);
    assert.equal(multipartBoundary('multipart/mixed; boundary="ends with space "'), undefined);
    assert.equal(multipartBoundary('multipart/mixed; boundary="bad\r\nline"'), undefined);
    assert.equal(multipartBoundary(undefined), undefined);
  });

  test('Content-Disposition file names: filename* wins, plain filename otherwise', () => {
    assert.equal(dispositionFilename('inline; filename=cat.png'), 'cat.png');
    assert.equal(dispositionFilename('attachment; filename="my file.pdf"'), 'my file.pdf');
    assert.equal(dispositionFilename("attachment; filename=fallback.txt; filename*=utf-8''%C3%A9t%C3%A9.txt"), 'été.txt');
    assert.equal(dispositionFilename("attachment; filename*=UTF-8''%FF%FE; filename=ok.txt"), 'ok.txt');
    assert.equal(dispositionFilename('inline'), undefined);
    assert.equal(dispositionFilename(undefined), undefined);
  });
});

describe('parser', () => {
  test('parses two parts, skipping preamble and epilogue; folded headers joined', async () => {
    const got = await parts(Readable.from([Buffer.from(SAMPLE)]), 'xyz');
    assert.equal(got.length, 2);
    assert.deepEqual(got[0], { headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(got[1].headers['content-disposition'], 'attachment; filename="a b.txt"');
    assert.equal(got[1].body, 'hello\r\n--xy not a delimiter\r\nworld');
  });

  test('the same result whatever the chunking (delimiters split across chunks)', async () => {
    const whole = await parts(Readable.from([Buffer.from(SAMPLE)]), 'xyz');
    for (const size of [1, 2, 3, 5, 7, 13]) {
      assert.deepEqual(await parts(chunked(SAMPLE, size), 'xyz'), whole, `chunk size ${size}`);
    }
  });

  test('empty bodies and empty header blocks', async () => {
    const body = '--b\r\n\r\n\r\n--b\r\nX-A: 1\r\n\r\n\r\n--b--';
    assert.deepEqual(await parts(chunked(body, 1), 'b'), [{ headers: {}, body: '' }, { headers: { 'x-a': '1' }, body: '' }]);
  });

  test('binary body with CR, LF and almost-delimiters survives byte-exact', async () => {
    // \r\n--c and \r\n-- look like the start of a delimiter for boundary 'b' without being one.
    const payload = Buffer.from([0, 13, 10, 45, 45, 99, 13, 10, 13, 13, 10, 45, 45, 255, 13, 10, 45]);
    const built = await collect(buildMultipart('b', [{ headers: { 'Content-Type': 'application/octet-stream' }, body: payload }]));
    const events = parseMultipart(chunked(built, 3), 'b');
    const data: Buffer[] = [];
    for await (const e of events) if (e.type === 'data') data.push(e.chunk);
    assert.deepEqual(Buffer.concat(data), payload);
  });

  const bad: Array<[string, string | Buffer]> = [
    ['truncated body (no close delimiter)', '--b\r\nContent-Type: text/plain\r\n\r\nhalf a fi'],
    ['no delimiter at all', 'just some bytes'],
    ['garbage after a delimiter', '--b\r\n\r\nx\r\n--bogus\r\n\r\n--b--'],
    ['header line without a colon', '--b\r\nnot a header\r\n\r\nx\r\n--b--'],
    ['header name with spaces', '--b\r\nBad Name: v\r\n\r\nx\r\n--b--'],
    ['endless header block', '--b\r\nX-Long: ' + 'a'.repeat(MAX_PART_HEADER_BYTES + 10)],
    ['endless preamble', 'x'.repeat(200 * 1024)],
    ['endless padding after a delimiter', '--b' + ' '.repeat(1000)],
    ['empty body', ''],
  ];
  for (const [name, input] of bad) {
    test(`refuses ${name}`, async () => {
      await assert.rejects(parts(chunked(input, 4096), 'b'), MultipartError);
    });
  }

  test('a header block too large is refused without reading the rest of the stream', async () => {
    let produced = 0;
    async function* endless() {
      yield Buffer.from('--b\r\nX: ');
      for (;;) {
        produced += 1024;
        yield Buffer.alloc(1024, 0x61);
      }
    }
    await assert.rejects(parts(Readable.from(endless()), 'b'), /too large/);
    assert.ok(produced < MAX_PART_HEADER_BYTES + 4096, `read ${produced} bytes`);
  });

  test('stops at the close delimiter without reading the epilogue', async () => {
    let pulledAfter = false;
    async function* src() {
      yield Buffer.from('--b\r\n\r\nx\r\n--b--');
      pulledAfter = true;
      yield Buffer.from('more');
    }
    // The generator itself, not a Readable over it, which would read ahead.
    const got = [];
    for await (const e of parseMultipart(src(), 'b')) got.push(e);
    assert.equal(got.length, 2);
    assert.equal(pulledAfter, false);
  });
});

describe('builder', () => {
  test('round trip of a streamed body through readFederationMedia', async () => {
    const boundary = newBoundary();
    assert.ok(multipartBoundary(`multipart/mixed; boundary=${boundary}`), 'generated boundary is valid');
    const payload = Buffer.alloc(300_000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31) % 256;
    const body = buildMultipart(boundary, [
      { headers: { 'Content-Type': 'application/json' }, body: '{}' },
      { headers: { 'Content-Type': 'image/png', 'Content-Disposition': 'inline; filename=x.png' }, body: chunked(payload, 65536) },
    ]);
    const res = await readFederationMedia(body, `multipart/mixed; boundary="${boundary}"`);
    assert.deepEqual(res.metadata, {});
    assert.equal(res.headers['content-type'], 'image/png');
    assert.equal(res.location, undefined);
    assert.deepEqual(await collect(res.body!), payload);
  });

  test('refuses headers with line breaks (header injection)', () => {
    assert.throws(() => buildMultipart('b', [{ headers: { 'Content-Type': 'a/b\r\nX-Evil: 1' }, body: '' }]));
  });

  test('a Location part has no body', async () => {
    const built = await collect(buildMultipart('b', [
      { headers: { 'Content-Type': 'application/json' }, body: '{}' },
      { headers: { Location: 'https://cdn.example/x' } },
    ]));
    assert.equal(built.toString(), '--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b\r\nLocation: https://cdn.example/x\r\n\r\n\r\n--b--\r\n');
  });
});

describe('readFederationMedia', () => {
  const ct = 'multipart/mixed; boundary=b';

  test('a Location part', async () => {
    const res = await readFederationMedia(Readable.from([Buffer.from('--b\r\nContent-Type: application/json\r\n\r\n{"a":1}\r\n--b\r\nLocation: https://cdn.example/m\r\n\r\n\r\n--b--\r\n')]), ct);
    assert.deepEqual(res.metadata, { a: 1 });
    assert.equal(res.location, 'https://cdn.example/m');
    assert.equal(res.body, undefined);
  });

  const bad: Array<[string, string, string?]> = [
    ['not multipart', '{}', 'application/json'],
    ['first part not JSON', '--b\r\nContent-Type: text/plain\r\n\r\n{}\r\n--b\r\n\r\nx\r\n--b--'],
    ['invalid JSON', '--b\r\nContent-Type: application/json\r\n\r\n{nope\r\n--b\r\n\r\nx\r\n--b--'],
    ['JSON array instead of object', '--b\r\nContent-Type: application/json\r\n\r\n[]\r\n--b\r\n\r\nx\r\n--b--'],
    ['only one part', '--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b--'],
    ['JSON part over 64 KiB', `--b\r\nContent-Type: application/json\r\n\r\n{"a":"${'x'.repeat(MAX_JSON_PART_BYTES)}"}\r\n--b\r\n\r\nx\r\n--b--`],
  ];
  for (const [name, input, type] of bad) {
    test(`refuses ${name}`, async () => {
      await assert.rejects(readFederationMedia(chunked(input, 1000), type ?? ct), MultipartError);
    });
  }

  test('the JSON cap holds for an endless JSON part', async () => {
    let produced = 0;
    async function* endless() {
      yield Buffer.from('--b\r\nContent-Type: application/json\r\n\r\n');
      for (;;) {
        produced += 4096;
        yield Buffer.alloc(4096, 0x20);
      }
    }
    await assert.rejects(readFederationMedia(Readable.from(endless()), ct), /JSON part too large/);
    assert.ok(produced < MAX_JSON_PART_BYTES + 16 * 1024, `read ${produced} bytes`);
  });

  test('a third part makes the media stream fail', async () => {
    const res = await readFederationMedia(chunked('--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b\r\n\r\nx\r\n--b\r\n\r\ny\r\n--b--', 5), ct);
    await assert.rejects(collect(res.body!), /More than two parts/);
  });

  test('a media part cut short makes the media stream fail', async () => {
    const res = await readFederationMedia(chunked('--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b\r\n\r\npartial', 5), ct);
    await assert.rejects(collect(res.body!), MultipartError);
  });
});
