import { z } from 'zod';

/**
 * The shape of a filter definition (spec: definitions/sync_filter.yaml),
 * checked leniently: known fields must have the right types, unknown fields
 * are kept as they are.
 */
const strings = z.array(z.string());

const eventFilterShape = {
  limit: z.number().int().min(0).optional(),
  not_senders: strings.optional(),
  not_types: strings.optional(),
  senders: strings.optional(),
  types: strings.optional(),
};

export const eventFilter = z.looseObject(eventFilterShape);

export const roomEventFilter = z.looseObject({
  ...eventFilterShape,
  contains_url: z.boolean().optional(),
  include_redundant_members: z.boolean().optional(),
  lazy_load_members: z.boolean().optional(),
  not_rooms: strings.optional(),
  rooms: strings.optional(),
  unread_thread_notifications: z.boolean().optional(),
});

export const roomFilter = z.looseObject({
  account_data: roomEventFilter.optional(),
  ephemeral: roomEventFilter.optional(),
  include_leave: z.boolean().optional(),
  not_rooms: strings.optional(),
  rooms: strings.optional(),
  state: roomEventFilter.optional(),
  timeline: roomEventFilter.optional(),
});

export const filterDefinition = z.looseObject({
  account_data: eventFilter.optional(),
  event_fields: strings.optional(),
  event_format: z.enum(['client', 'federation']).optional(),
  presence: eventFilter.optional(),
  room: roomFilter.optional(),
});

export type FilterDefinition = z.infer<typeof filterDefinition>;
