// Original file: ../../protos/framewire/v1/ingest_service.proto

import type { Duration as _google_protobuf_Duration, Duration__Output as _google_protobuf_Duration__Output } from '../../google/protobuf/Duration';
import type { SkipCount as _framewire_v1_SkipCount, SkipCount__Output as _framewire_v1_SkipCount__Output } from '../../framewire/v1/SkipCount';
import type { Long } from '@grpc/proto-loader';

/**
 * AgentReport carries edge-side figures the server cannot measure itself.
 * 
 * Counts are deltas since the previous report on the same stream, so a
 * reconnect never counts anything twice.
 */
export interface AgentReport {
  /**
   * Capture-to-result latencies on the agent's clock, one per result received
   * since the previous report. At most ServerLimits.max_report_samples.
   */
  'end_to_end_latencies'?: (_google_protobuf_Duration)[];
  /**
   * Frames the agent dropped before sending, by reason.
   */
  'skips'?: (_framewire_v1_SkipCount)[];
  /**
   * Compressed image bytes sent.
   */
  'bytes_sent'?: (number | string | Long);
  /**
   * Frames captured from the source.
   */
  'frames_captured'?: (number | string | Long);
  /**
   * Frames sent to the server.
   */
  'frames_sent'?: (number | string | Long);
  /**
   * FrameResults the agent has read on this call so far: a running total,
   * not a delta, because it acknowledges results of this call only. The
   * server ends a stream with RESOURCE_EXHAUSTED when more than
   * ServerLimits.max_unread_results of its results go unacknowledged for
   * longer than ServerLimits.max_unread_age, so a client that stops reading
   * its answers stops using the model. Without this field the server counts
   * end_to_end_latencies as acknowledgements.
   */
  'results_received'?: (number | string | Long);
  '_results_received'?: "results_received";
}

/**
 * AgentReport carries edge-side figures the server cannot measure itself.
 * 
 * Counts are deltas since the previous report on the same stream, so a
 * reconnect never counts anything twice.
 */
export interface AgentReport__Output {
  /**
   * Capture-to-result latencies on the agent's clock, one per result received
   * since the previous report. At most ServerLimits.max_report_samples.
   */
  'end_to_end_latencies': (_google_protobuf_Duration__Output)[];
  /**
   * Frames the agent dropped before sending, by reason.
   */
  'skips': (_framewire_v1_SkipCount__Output)[];
  /**
   * Compressed image bytes sent.
   */
  'bytes_sent': (string);
  /**
   * Frames captured from the source.
   */
  'frames_captured': (string);
  /**
   * Frames sent to the server.
   */
  'frames_sent': (string);
  /**
   * FrameResults the agent has read on this call so far: a running total,
   * not a delta, because it acknowledges results of this call only. The
   * server ends a stream with RESOURCE_EXHAUSTED when more than
   * ServerLimits.max_unread_results of its results go unacknowledged for
   * longer than ServerLimits.max_unread_age, so a client that stops reading
   * its answers stops using the model. Without this field the server counts
   * end_to_end_latencies as acknowledgements.
   */
  'results_received'?: (string);
  '_results_received'?: "results_received";
}
