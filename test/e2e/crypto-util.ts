/**
 * Helpers for end-to-end encryption tests with matrix-js-sdk's Rust crypto
 * (@matrix-org/matrix-sdk-crypto-wasm, in memory: no IndexedDB in Node).
 */
import './sdk-setup.js'; // before matrix-js-sdk
import * as sdk from 'matrix-js-sdk';
import type { CryptoApi } from 'matrix-js-sdk/lib/crypto-api/index.js';
import * as RustSdkCryptoJs from '@matrix-org/matrix-sdk-crypto-wasm';
import { describeFailures, makeClient, startAndSync, waitFor, type SdkUser } from './util.js';

// The Rust crypto's tracing writes to console.debug/info/warn/error; initRustCrypto
// turns it on at debug level on every call. Drop its lines (they all name a
// matrix_sdk_* module) unless RANVIER_TEST_CRYPTO_LOG is set.
if (!process.env.RANVIER_TEST_CRYPTO_LOG) {
  for (const level of ['debug', 'info', 'warn', 'error'] as const) {
    const original = console[level].bind(console);
    console[level] = (...args: unknown[]) => {
      if (typeof args[0] === 'string' && /\bmatrix_sdk_\w+::/.test(args[0])) return;
      original(...args);
    };
  }
}

export interface CryptoUser extends SdkUser {
  deviceId: string;
  accessToken: string;
  password: string;
  crypto: CryptoApi;
}

/** A matrix-js-sdk client with Rust crypto initialised and its first sync done. */
export async function startCryptoClient(
  url: string,
  creds: { userId: string; accessToken: string; deviceId: string },
  password: string,
): Promise<CryptoUser> {
  const u = makeClient(url, creds);
  await u.client.initRustCrypto({ useIndexedDB: false });
  // initRustCrypto turns the WASM tracing on at debug level, straight to the
  // console; keep it quiet unless RANVIER_TEST_CRYPTO_LOG=1.
  if (!process.env.RANVIER_TEST_CRYPTO_LOG) new RustSdkCryptoJs.Tracing(RustSdkCryptoJs.LoggerLevel.Error).turnOff();
  const crypto = u.client.getCrypto();
  if (!crypto) throw new Error('initRustCrypto left no CryptoApi');
  await startAndSync(u, {}, 15_000);
  return { ...u, deviceId: creds.deviceId, accessToken: creds.accessToken, password, crypto };
}

/** The UIA callback bootstrapCrossSigning needs to upload the cross-signing keys. */
export function passwordUia(u: CryptoUser) {
  return async <T>(makeRequest: (auth: Record<string, unknown> | null) => Promise<T>): Promise<void> => {
    await makeRequest({ type: 'm.login.password', identifier: { type: 'm.id.user', user: u.userId }, password: u.password });
  };
}

/** Find an event by id anywhere in a room's timelines (live and paginated). */
export function findEvent(client: sdk.MatrixClient, roomId: string, eventId: string): sdk.MatrixEvent | undefined {
  const room = client.getRoom(roomId);
  if (!room) return undefined;
  const direct = room.findEventById(eventId);
  if (direct) return direct;
  for (const tl of room.getTimelineSets().flatMap((s) => s.getTimelines())) {
    const e = tl.getEvents().find((ev) => ev.getId() === eventId);
    if (e) return e;
  }
  return undefined;
}

/** Describe an event's decryption state for failure messages. */
export function decryptionState(ev: sdk.MatrixEvent | undefined): string {
  if (!ev) return 'event not in the client';
  return JSON.stringify({
    wireType: ev.getWireType(),
    type: ev.getType(),
    beingDecrypted: ev.isBeingDecrypted(),
    failure: ev.isDecryptionFailure(),
    reason: ev.decryptionFailureReason,
    clear: ev.getClearContent(),
  });
}

/**
 * Wait until `u` has the event and it decrypts to a message with `body`.
 * With `retry`, re-attempt decryption of failed events while waiting (for
 * keys that arrive by a route the SDK does not retry on by itself).
 */
export async function waitDecrypted(
  u: SdkUser,
  roomId: string,
  eventId: string,
  body: string,
  opts: { timeoutMs?: number; retry?: boolean } = {},
): Promise<sdk.MatrixEvent> {
  let last: sdk.MatrixEvent | undefined;
  try {
    return await waitFor(
      `${u.userId} decrypts ${eventId} ("${body}")`,
      async () => {
        const ev = findEvent(u.client, roomId, eventId);
        last = ev;
        if (!ev) return undefined;
        if (ev.isBeingDecrypted()) return undefined;
        if (ev.isDecryptionFailure() && opts.retry) {
          await u.client.decryptEventIfNeeded(ev, { isRetry: true });
        }
        if (ev.isDecryptionFailure()) return undefined;
        if (ev.getWireType() !== 'm.room.encrypted') throw new Error(`event ${eventId} was not encrypted on the wire`);
        return ev.getClearContent()?.body === body ? ev : undefined;
      },
      { timeoutMs: opts.timeoutMs ?? 10_000, intervalMs: 50 },
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; state ${decryptionState(last)}; failed requests:\n  ${describeFailures(u)}`);
  }
}
