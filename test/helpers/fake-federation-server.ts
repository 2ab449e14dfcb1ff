/**
 * A hand-driven federation peer for tests: an HTTPS server with its own name,
 * certificate and signing key that publishes its key (so real servers accept
 * its signatures), and a client that sends X-Matrix-signed requests. Tests use
 * it to play a misbehaving ("evil") server.
 */
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import { signJson } from '../../src/core/json-signing.js';
import { generateSigningKey, publicKeyBase64, type SigningKey } from '../../src/core/signing-key.js';
import { signRequest } from '../../src/core/x-matrix.js';
import type { TestCa } from './tls.js';

export interface FakeServer {
  name: string;
  port: number;
  key: SigningKey;
  /** A signed request to a real server's federation listener (base URL https://127.0.0.1:port). */
  call(baseUrl: string, destination: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  close(): Promise<void>;
}

export async function startFakeServer(name: string, ca: TestCa, port = 0): Promise<FakeServer> {
  const key = generateSigningKey('evil1');
  const cert = await ca.issue([name]);
  const keyResponse = () => signJson({
    server_name: name,
    verify_keys: { [key.keyId]: { key: publicKeyBase64(key) } },
    old_verify_keys: {},
    valid_until_ts: Date.now() + 3_600_000,
  }, name, key);
  const server = https.createServer({ cert: cert.cert, key: cert.key }, (req, res) => {
    if (req.url?.startsWith('/_matrix/key/v2/server')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(keyResponse()));
      return;
    }
    // Transactions and anything else the real servers push at us: accept and ignore.
    res.writeHead(req.url?.startsWith('/_matrix/federation/v1/send/') ? 200 : 404, { 'content-type': 'application/json' });
    res.end(req.url?.startsWith('/_matrix/federation/v1/send/') ? '{"pdus":{}}' : '{"errcode":"M_UNRECOGNIZED","error":"fake"}');
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const agent = new Agent({ connect: { ca: ca.cert, servername: undefined } });
  return {
    name,
    port: (server.address() as AddressInfo).port,
    key,
    async call(baseUrl, destination, method, path, body) {
      const auth = signRequest(key, { method, uri: path, origin: name, destination, content: body });
      const res = await request(`${baseUrl}${path}`, {
        method: method as 'GET',
        headers: { authorization: auth, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        dispatcher: agent,
      });
      const text = await res.body.text();
      return { status: res.statusCode, body: text ? JSON.parse(text) : undefined };
    },
    async close() {
      await agent.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
