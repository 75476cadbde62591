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
   * so the agent can measure end-to-end latency on one clock. Required: a
   * frame without it, with the empty Timestamp (1970-01-01T00:00:00Z), with
   * nanos outside [0, 999999999], or before 1970 or after 9999, ends the
   * stream with INVALID_ARGUMENT. The server never substitutes its own time.
   * The clocks need not agree unless the server's operator sets a maximum
   * skew (--max-capture-time-skew), which is off by default.
   */
  'capture_time'?: (_google_protobuf_Timestamp | null);
  /**
   * How data is compressed. ENCODING_UNSPECIFIED is rejected.
   */
  'encoding'?: (_framewire_v1_Encoding);
  /**
   * The width of the encoded image in pixels. Zero means "read it from the
   * image header" (for clients without a JPEG header reader); otherwise it
   * must match the header, or the frame fails with INVALID_ARGUMENT.
   */
  'width'?: (number);
  /**
   * The height of the encoded image in pixels. Zero means "read it from the
   * image header"; otherwise it must match the header, or the frame fails
   * with INVALID_ARGUMENT.
   */
  'height'?: (number);
  /**
   * The compressed image, at most ServerLimits.max_frame_bytes long. A frame
   * whose image is unusable fails alone with INVALID_ARGUMENT and the stream
   * goes on: not a JPEG, truncated, more than 1024 markers before its first
   * scan, or far fewer bytes than its declared size needs (more than 1000
   * pixels per byte by default; real JPEGs stay under about 260).
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
   * so the agent can measure end-to-end latency on one clock. Required: a
   * frame without it, with the empty Timestamp (1970-01-01T00:00:00Z), with
   * nanos outside [0, 999999999], or before 1970 or after 9999, ends the
   * stream with INVALID_ARGUMENT. The server never substitutes its own time.
   * The clocks need not agree unless the server's operator sets a maximum
   * skew (--max-capture-time-skew), which is off by default.
   */
  'capture_time': (_google_protobuf_Timestamp__Output | null);
  /**
   * How data is compressed. ENCODING_UNSPECIFIED is rejected.
   */
  'encoding': (_framewire_v1_Encoding__Output);
  /**
   * The width of the encoded image in pixels. Zero means "read it from the
   * image header" (for clients without a JPEG header reader); otherwise it
   * must match the header, or the frame fails with INVALID_ARGUMENT.
   */
  'width': (number);
  /**
   * The height of the encoded image in pixels. Zero means "read it from the
   * image header"; otherwise it must match the header, or the frame fails
   * with INVALID_ARGUMENT.
   */
  'height': (number);
  /**
   * The compressed image, at most ServerLimits.max_frame_bytes long. A frame
   * whose image is unusable fails alone with INVALID_ARGUMENT and the stream
   * goes on: not a JPEG, truncated, more than 1024 markers before its first
   * scan, or far fewer bytes than its declared size needs (more than 1000
   * pixels per byte by default; real JPEGs stay under about 260).
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
