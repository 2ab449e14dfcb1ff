/** Values of events.rejected: anything but ACCEPTED stays out of timelines. */
export const EventStatus = {
  ACCEPTED: 0,
  REJECTED: 1,
  /** Known for its place in auth chains or room state, not as part of the timeline. */
  OUTLIER: 2,
  /** Passed auth against its own state but not against the current state. */
  SOFT_FAILED: 3,
} as const;
