// Original file: ../../protos/framewire/v1/ingest_service.proto

/**
 * SkipReason says why a frame was dropped without being processed.
 */
export const SkipReason = {
  /**
   * Never used for a real skip; rejected if an agent reports it.
   */
  SKIP_REASON_UNSPECIFIED: 'SKIP_REASON_UNSPECIFIED',
  /**
   * A newer frame of the same stream replaced this one while it waited: in
   * the agent's send window, or in the server's per-stream slot before a
   * batch took it.
   */
  SKIP_REASON_SUPERSEDED: 'SKIP_REASON_SUPERSEDED',
  /**
   * The frame was older than the server's max frame age when a batch could
   * take it, so its result would no longer be real-time.
   */
  SKIP_REASON_STALE: 'SKIP_REASON_STALE',
  /**
   * Agent only: the frame was captured while no connection was up, or was
   * sent on a connection that broke before it was answered.
   */
  SKIP_REASON_DISCONNECTED: 'SKIP_REASON_DISCONNECTED',
} as const;

/**
 * SkipReason says why a frame was dropped without being processed.
 */
export type SkipReason =
  /**
   * Never used for a real skip; rejected if an agent reports it.
   */
  | 'SKIP_REASON_UNSPECIFIED'
  | 0
  /**
   * A newer frame of the same stream replaced this one while it waited: in
   * the agent's send window, or in the server's per-stream slot before a
   * batch took it.
   */
  | 'SKIP_REASON_SUPERSEDED'
  | 1
  /**
   * The frame was older than the server's max frame age when a batch could
   * take it, so its result would no longer be real-time.
   */
  | 'SKIP_REASON_STALE'
  | 2
  /**
   * Agent only: the frame was captured while no connection was up, or was
   * sent on a connection that broke before it was answered.
   */
  | 'SKIP_REASON_DISCONNECTED'
  | 3

/**
 * SkipReason says why a frame was dropped without being processed.
 */
export type SkipReason__Output = typeof SkipReason[keyof typeof SkipReason]
