/**
 * Shared types of the state resolution algorithms.
 */
import type { AuthCheckOptions } from '../auth-rules.js';
import type { PDU } from '../events.js';

/** An event as state resolution sees it: any PDU whose id is known. */
export type StateResEvent = PDU & { event_id: string };

/**
 * A room state as event ids, keyed by `stateMapKey(type, stateKey)` (the same
 * key as the rooms state store's `stateKeyOf`).
 */
export type StateIdMap = Map<string, string>;

/** Event lookup; undefined means the event is not available and is ignored, as the spec allows. */
export type EventLookup = (eventId: string) => StateResEvent | undefined;

export interface ResolveStateOptions {
  /**
   * The union of the auth chains of `eventIds` (whether the given events are
   * included does not matter). Lets a caller answer from a chain-cover index
   * instead of walking `auth_events` event by event. v2 only.
   */
  authChainOf?: (eventIds: Iterable<string>) => Set<string>;
  /**
   * Whether an event was rejected because it failed auth against its own
   * auth events. Such events are never used as auth events during the
   * iterative auth checks (spec: "if the auth event is not rejected"), nor
   * admitted into the resolved state.
   */
  isRejected?: (eventId: string) => boolean;
  /** Passed through to `checkEventAuth`. */
  authOptions?: AuthCheckOptions;
}
