// Original file: ../../protos/framewire/v1/ingest_service.proto

import type { Duration as _google_protobuf_Duration, Duration__Output as _google_protobuf_Duration__Output } from '../../google/protobuf/Duration';
import type { Long } from '@grpc/proto-loader';

/**
 * ServerLimits are the limits the server enforces on this stream.
 */
export interface ServerLimits {
  /**
   * The largest Frame.data accepted, in bytes; larger ends the stream with
   * RESOURCE_EXHAUSTED.
   */
  'max_frame_bytes'?: (number);
  /**
   * The largest width times height accepted, read from the image header.
   */
  'max_frame_pixels'?: (number | string | Long);
  /**
   * Frames waiting longer than this are skipped as stale.
   */
  'max_frame_age'?: (_google_protobuf_Duration | null);
  /**
   * The largest max_in_flight the server grants.
   */
  'max_in_flight'?: (number);
  /**
   * The most latency samples one AgentReport may carry.
   */
  'max_report_samples'?: (number);
  /**
   * How often the server would like an AgentReport. Reports beyond
   * max_reports_per_second are dropped unread.
   */
  'report_interval'?: (_google_protobuf_Duration | null);
  /**
   * The most FrameResults that may go unacknowledged (see
   * AgentReport.results_received). Past it, once the oldest of them has
   * waited max_unread_age, the stream ends with RESOURCE_EXHAUSTED.
   */
  'max_unread_results'?: (number);
  /**
   * The most AgentReports per second the server reads from one stream.
   */
  'max_reports_per_second'?: (number | string);
  /**
   * How long the oldest of more than max_unread_results unacknowledged
   * results may wait before the stream ends.
   */
  'max_unread_age'?: (_google_protobuf_Duration | null);
}

/**
 * ServerLimits are the limits the server enforces on this stream.
 */
export interface ServerLimits__Output {
  /**
   * The largest Frame.data accepted, in bytes; larger ends the stream with
   * RESOURCE_EXHAUSTED.
   */
  'max_frame_bytes': (number);
  /**
   * The largest width times height accepted, read from the image header.
   */
  'max_frame_pixels': (string);
  /**
   * Frames waiting longer than this are skipped as stale.
   */
  'max_frame_age': (_google_protobuf_Duration__Output | null);
  /**
   * The largest max_in_flight the server grants.
   */
  'max_in_flight': (number);
  /**
   * The most latency samples one AgentReport may carry.
   */
  'max_report_samples': (number);
  /**
   * How often the server would like an AgentReport. Reports beyond
   * max_reports_per_second are dropped unread.
   */
  'report_interval': (_google_protobuf_Duration__Output | null);
  /**
   * The most FrameResults that may go unacknowledged (see
   * AgentReport.results_received). Past it, once the oldest of them has
   * waited max_unread_age, the stream ends with RESOURCE_EXHAUSTED.
   */
  'max_unread_results': (number);
  /**
   * The most AgentReports per second the server reads from one stream.
   */
  'max_reports_per_second': (number);
  /**
   * How long the oldest of more than max_unread_results unacknowledged
   * results may wait before the stream ends.
   */
  'max_unread_age': (_google_protobuf_Duration__Output | null);
}
