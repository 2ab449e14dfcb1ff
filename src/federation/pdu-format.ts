/**
 * Our stored copy of an event keeps `event_id`, `room_id` and `unsigned`
 * for local use; other servers get the federation format: no `unsigned`, no
 * `event_id` from room version 3 on, and no `room_id` on a v12 create event.
 */
import { toWireFormat } from '../core/event-hashing.js';
import type { PDU } from '../core/events.js';
import type { RoomVersion } from '../core/room-versions.js';

export function federationPdu(stored: PDU, version: RoomVersion): PDU {
  const { unsigned: _u, ...rest } = stored;
  const wire = toWireFormat(rest as PDU, version);
  if (version.roomIdIsCreateEventHash && wire.type === 'm.room.create' && wire.state_key === '') {
    const { room_id: _r, ...noRoom } = wire;
    return noRoom as PDU;
  }
  return wire;
}
