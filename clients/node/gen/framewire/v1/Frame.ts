// Original file: ../../protos/framewire/v1/ingest_service.proto

import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from '../../google/protobuf/Timestamp';
import type { Encoding as _framewire_v1_Encoding, Encoding__Output as _framewire_v1_Encoding__Output } from '../../framewire/v1/Encoding';
import type { BoundingBox as _framewire_v1_BoundingBox, BoundingBox__Output as _framewire_v1_BoundingBox__Output } from '../../framewire/v1/BoundingBox';
import type { Long } from '@grpc/proto-loader';

/**
 * Frame is one captured image.
 */
export interface Frame {
  /**
   * The frame's sequence number: strictly increasing within a stream, gaps
   * allowed, starting at 1 or more.
   */
  'seq'?: (number | string | Long);
  /**
   * When the frame was captured, on the agent's clock. Echoed in the result
   * so the agent can measure end-to-end latency on one clock.
   */
  'capture_time'?: (_google_protobuf_Timestamp | null);
  /**
   * How data is compressed. ENCODING_UNSPECIFIED is rejected.
   */
  'encoding'?: (_framewire_v1_Encoding);
  /**
   * The width of the encoded image in pixels; must match its header.
   */
  'width'?: (number);
  /**
   * The height of the encoded image in pixels; must match its header.
   */
  'height'?: (number);
  /**
   * The compressed image, at most ServerLimits.max_frame_bytes long.
   */
  'data'?: (Buffer | Uint8Array | string);
  /**
   * True when the agent sent the whole picture (a periodic or forced full
   * frame) even though it blacks out frames in between.
   */
  'keyframe'?: (boolean);
  /**
   * When not empty, everything outside these regions was blacked out by the
   * agent to save bytes; detections are only meaningful inside them. Empty
   * means the whole image is real.
   */
  'kept_regions'?: (_framewire_v1_BoundingBox)[];
}

/**
 * Frame is one captured image.
 */
export interface Frame__Output {
  /**
   * The frame's sequence number: strictly increasing within a stream, gaps
   * allowed, starting at 1 or more.
   */
  'seq': (string);
  /**
   * When the frame was captured, on the agent's clock. Echoed in the result
   * so the agent can measure end-to-end latency on one clock.
   */
  'capture_time': (_google_protobuf_Timestamp__Output | null);
  /**
   * How data is compressed. ENCODING_UNSPECIFIED is rejected.
   */
  'encoding': (_framewire_v1_Encoding__Output);
  /**
   * The width of the encoded image in pixels; must match its header.
   */
  'width': (number);
  /**
   * The height of the encoded image in pixels; must match its header.
   */
  'height': (number);
  /**
   * The compressed image, at most ServerLimits.max_frame_bytes long.
   */
  'data': (Buffer);
  /**
   * True when the agent sent the whole picture (a periodic or forced full
   * frame) even though it blacks out frames in between.
   */
  'keyframe': (boolean);
  /**
   * When not empty, everything outside these regions was blacked out by the
   * agent to save bytes; detections are only meaningful inside them. Empty
   * means the whole image is real.
   */
  'kept_regions': (_framewire_v1_BoundingBox__Output)[];
}
