/**
 * Test helpers for building rooms and events without a server.
 */
import {
  computeRoomIdFromCreateEvent,
  createEventIdFromRoomId,
  getRoomVersion,
  stateMapFromEvents,
  stateMapKey,
  type PDU,
  type RoomVersion,
  type StateMap,
} from '../../src/core/index.js';

export function version(id: string): RoomVersion {
  const v = getRoomVersion(id);
  if (!v) throw new Error(`unknown room version ${id}`);
  return v;
}

export interface EventSpec {
  type: string;
  sender: string;
  state_key?: string;
  content?: Record<string, unknown>;
  prev_events?: string[];
  [key: string]: unknown;
}

/**
 * A room under construction: a create event (v12-aware) plus a state map that
 * tests extend event by event.
 */
export class TestRoom {
  readonly version: RoomVersion;
  readonly roomId: string;
  readonly create: PDU;
  state: StateMap;
  private counter = 0;

  constructor(versionId: string, readonly creator = '@alice:a.test', createContent: Record<string, unknown> = {}) {
    this.version = version(versionId);
    const content: Record<string, unknown> = { room_version: versionId, ...createContent };
    if (!this.version.msc2175ImpliedCreator) content.creator ??= creator;
    const create: PDU = {
      type: 'm.room.create',
      state_key: '',
      sender: creator,
      content,
      origin_server_ts: 1,
      depth: 1,
      prev_events: [],
      auth_events: [],
      hashes: { sha256: 'x' },
      signatures: {},
    };
    if (this.version.roomIdIsCreateEventHash) {
      this.roomId = computeRoomIdFromCreateEvent(create, this.version);
      create.event_id = createEventIdFromRoomId(this.roomId);
    } else {
      this.roomId = `!room:${creator.split(':')[1]}`;
      create.room_id = this.roomId;
      create.event_id = `$create:${creator.split(':')[1]}`;
    }
    this.create = create;
    this.state = stateMapFromEvents([create]);
  }

  /** Build an event in this room (not added to the state). */
  event(spec: EventSpec): PDU {
    this.counter += 1;
    const server = spec.sender.split(':')[1];
    const { prev_events, content, ...rest } = spec;
    return {
      event_id: `$e${this.counter}:${server}`,
      room_id: this.roomId,
      origin_server_ts: 1000 + this.counter,
      depth: 2 + this.counter,
      prev_events: prev_events ?? ['$previous'],
      auth_events: [],
      hashes: { sha256: 'x' },
      signatures: { [server]: { 'ed25519:k': 'sig' } },
      content: content ?? {},
      ...rest,
    };
  }

  /** Add a state event to the room's state (no auth check). */
  set(spec: EventSpec): PDU {
    const ev = this.event(spec);
    this.state = new Map(this.state);
    this.state.set(stateMapKey(ev.type, ev.state_key ?? ''), ev);
    return ev;
  }

  member(userId: string, membership: string, extra: Record<string, unknown> = {}, sender = userId): PDU {
    return this.set({ type: 'm.room.member', sender, state_key: userId, content: { membership, ...extra } });
  }

  powerLevels(content: Record<string, unknown>, sender = this.creator): PDU {
    return this.set({ type: 'm.room.power_levels', sender, state_key: '', content });
  }

  joinRules(joinRule: string, extra: Record<string, unknown> = {}): PDU {
    return this.set({
      type: 'm.room.join_rules',
      sender: this.creator,
      state_key: '',
      content: { join_rule: joinRule, ...extra },
    });
  }

  /** Creator joined, power levels giving the creator 100 (pre-v12), join rule set. */
  static standard(versionId: string, joinRule = 'invite', creator = '@alice:a.test'): TestRoom {
    const room = new TestRoom(versionId, creator);
    room.member(creator, 'join');
    room.powerLevels(room.version.additionalCreators ? {} : { users: { [creator]: 100 } });
    room.joinRules(joinRule);
    return room;
  }
}
