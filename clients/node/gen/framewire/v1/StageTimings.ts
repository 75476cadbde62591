// Original file: ../../protos/framewire/v1/common.proto

import type { Duration as _google_protobuf_Duration, Duration__Output as _google_protobuf_Duration__Output } from '../../google/protobuf/Duration';

/**
 * StageTimings says how long each server stage took for one image or frame.
 * 
 * A stage that did not run for this image (for example decode after a
 * rejected header) is left unset rather than set to zero.
 */
export interface StageTimings {
  /**
   * In a FrameResult (ingest): the time between the server receiving the
   * frame and its batch being dispatched to a model (waiting in the stream's
   * slot and for a batch), plus the model server's own queue time. In an
   * ImageResult (InferenceService): the time the image's prepared batch
   * waited for the model while another batch ran; ingest uses it to time
   * when it sends its next batch, and holds none back at a server that
   * leaves it unset.
   */
  'queue'?: (_google_protobuf_Duration | null);
  /**
   * The time spent decoding this image's compressed bytes into pixels.
   */
  'decode'?: (_google_protobuf_Duration | null);
  /**
   * The time spent resizing, letterboxing and normalizing this image.
   */
  'preprocess'?: (_google_protobuf_Duration | null);
  /**
   * The time the model took for the whole batch this image was part of.
   */
  'inference'?: (_google_protobuf_Duration | null);
  /**
   * The time spent turning this image's model outputs into detections
   * (box decoding, non-maximum suppression, filtering).
   */
  'postprocess'?: (_google_protobuf_Duration | null);
  /**
   * The time from the server receiving the frame or request to the result
   * being ready to send.
   */
  'total'?: (_google_protobuf_Duration | null);
}

/**
 * StageTimings says how long each server stage took for one image or frame.
 * 
 * A stage that did not run for this image (for example decode after a
 * rejected header) is left unset rather than set to zero.
 */
export interface StageTimings__Output {
  /**
   * In a FrameResult (ingest): the time between the server receiving the
   * frame and its batch being dispatched to a model (waiting in the stream's
   * slot and for a batch), plus the model server's own queue time. In an
   * ImageResult (InferenceService): the time the image's prepared batch
   * waited for the model while another batch ran; ingest uses it to time
   * when it sends its next batch, and holds none back at a server that
   * leaves it unset.
   */
  'queue': (_google_protobuf_Duration__Output | null);
  /**
   * The time spent decoding this image's compressed bytes into pixels.
   */
  'decode': (_google_protobuf_Duration__Output | null);
  /**
   * The time spent resizing, letterboxing and normalizing this image.
   */
  'preprocess': (_google_protobuf_Duration__Output | null);
  /**
   * The time the model took for the whole batch this image was part of.
   */
  'inference': (_google_protobuf_Duration__Output | null);
  /**
   * The time spent turning this image's model outputs into detections
   * (box decoding, non-maximum suppression, filtering).
   */
  'postprocess': (_google_protobuf_Duration__Output | null);
  /**
   * The time from the server receiving the frame or request to the result
   * being ready to send.
   */
  'total': (_google_protobuf_Duration__Output | null);
}
