// Original file: ../../protos/framewire/v1/ingest_service.proto

import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from '../../google/protobuf/Timestamp';
import type { Detection as _framewire_v1_Detection, Detection__Output as _framewire_v1_Detection__Output } from '../../framewire/v1/Detection';
import type { SkippedFrame as _framewire_v1_SkippedFrame, SkippedFrame__Output as _framewire_v1_SkippedFrame__Output } from '../../framewire/v1/SkippedFrame';
import type { StageTimings as _framewire_v1_StageTimings, StageTimings__Output as _framewire_v1_StageTimings__Output } from '../../framewire/v1/StageTimings';
import type { ErrorStatus as _framewire_v1_ErrorStatus, ErrorStatus__Output as _framewire_v1_ErrorStatus__Output } from '../../framewire/v1/ErrorStatus';
import type { Long } from '@grpc/proto-loader';

/**
 * FrameResult is the outcome of one frame the server processed or failed.
 */
export interface FrameResult {
  /**
   * The seq of the frame this result is for.
   */
  'seq'?: (number | string | Long);
  /**
   * The frame's capture time, echoed from the Frame.
   */
  'capture_time'?: (_google_protobuf_Timestamp | null);
  /**
   * The objects found, highest score first. Empty when error is set.
   */
  'detections'?: (_framewire_v1_Detection)[];
  /**
   * Frames of this stream the server dropped since the previous message that
   * listed skips, in seq order.
   */
  'skipped'?: (_framewire_v1_SkippedFrame)[];
  /**
   * How long each server stage took for this frame.
   */
  'timings'?: (_framewire_v1_StageTimings | null);
  /**
   * How many frames, across all streams, were in this frame's model batch.
   */
  'batch_size'?: (number);
  /**
   * The identifier of the model that produced the detections.
   */
  'model_id'?: (string);
  /**
   * Set when this frame could not be processed (undecodable image, model
   * unavailable); detections is then empty.
   */
  'error'?: (_framewire_v1_ErrorStatus | null);
}

/**
 * FrameResult is the outcome of one frame the server processed or failed.
 */
export interface FrameResult__Output {
  /**
   * The seq of the frame this result is for.
   */
  'seq': (string);
  /**
   * The frame's capture time, echoed from the Frame.
   */
  'capture_time': (_google_protobuf_Timestamp__Output | null);
  /**
   * The objects found, highest score first. Empty when error is set.
   */
  'detections': (_framewire_v1_Detection__Output)[];
  /**
   * Frames of this stream the server dropped since the previous message that
   * listed skips, in seq order.
   */
  'skipped': (_framewire_v1_SkippedFrame__Output)[];
  /**
   * How long each server stage took for this frame.
   */
  'timings': (_framewire_v1_StageTimings__Output | null);
  /**
   * How many frames, across all streams, were in this frame's model batch.
   */
  'batch_size': (number);
  /**
   * The identifier of the model that produced the detections.
   */
  'model_id': (string);
  /**
   * Set when this frame could not be processed (undecodable image, model
   * unavailable); detections is then empty.
   */
  'error': (_framewire_v1_ErrorStatus__Output | null);
}
