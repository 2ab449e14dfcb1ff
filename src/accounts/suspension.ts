/**
 * Account suspension (spec: "Account suspension"). A suspended user keeps
 * their sessions and can read, sync, manage devices and keys, leave rooms,
 * redact their own events and log out; what would let them reach others is
 * refused with 403 M_USER_SUSPENDED: creating, joining and knocking on rooms,
 * inviting, sending messages and state, changing their profile, redacting
 * other people's events.
 */
import { MatrixError } from '../server/errors.js';
import type { Requester } from './tokens.js';

export function suspendedError(): MatrixError {
  return new MatrixError('M_USER_SUSPENDED', 403, 'You cannot perform this action while suspended.');
}

/** Throw 403 M_USER_SUSPENDED for a suspended requester. */
export function refuseIfSuspended(who: Requester): void {
  if (who.suspended) throw suspendedError();
}
