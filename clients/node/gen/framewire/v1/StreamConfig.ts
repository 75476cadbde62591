// Original file: ../../protos/framewire/v1/ingest_service.proto


/**
 * StreamConfig opens a stream. It is the first request and is sent once.
 */
export interface StreamConfig {
  /**
   * Identifies the device or camera, 1 to 128 characters from letters,
   * digits and "._:-". It names the stream in logs; metrics never use it
   * as a label.
   */
  'stream_id'?: (string);
  /**
   * The model the stream wants. Empty means the server's model; any other
   * value must equal the served model id or its name before "@".
   */
  'model'?: (string);
  /**
   * Detections scoring below this are dropped, in [0, 1]. When absent the
   * server's default applies.
   */
  'score_threshold'?: (number | string);
  /**
   * Only detections with these labels are returned. Empty means all.
   */
  'class_filter'?: (string)[];
  /**
   * How many frames the agent lets go unanswered at once. Zero means the
   * server's default (2 unless its operator changed it); larger values are
   * capped at ServerLimits.max_in_flight. StreamAccepted.max_in_flight says
   * what was granted.
   */
  'max_in_flight'?: (number);
  /**
   * The agent's name and version, for example "framewire-edge-agent/0.1.0".
   */
  'client_version'?: (string);
  /**
   * True asks the server to follow objects across this stream's frames and
   * set Detection.track_id: the same id for the same object in every result,
   * counted per stream. Ids survive skipped frames. A server started with
   * tracking on for every stream tracks this stream even when false.
   */
  'track'?: (boolean);
  '_score_threshold'?: "score_threshold";
}

/**
 * StreamConfig opens a stream. It is the first request and is sent once.
 */
export interface StreamConfig__Output {
  /**
   * Identifies the device or camera, 1 to 128 characters from letters,
   * digits and "._:-". It names the stream in logs; metrics never use it
   * as a label.
   */
  'stream_id': (string);
  /**
   * The model the stream wants. Empty means the server's model; any other
   * value must equal the served model id or its name before "@".
   */
  'model': (string);
  /**
   * Detections scoring below this are dropped, in [0, 1]. When absent the
   * server's default applies.
   */
  'score_threshold'?: (number);
  /**
   * Only detections with these labels are returned. Empty means all.
   */
  'class_filter': (string)[];
  /**
   * How many frames the agent lets go unanswered at once. Zero means the
   * server's default (2 unless its operator changed it); larger values are
   * capped at ServerLimits.max_in_flight. StreamAccepted.max_in_flight says
   * what was granted.
   */
  'max_in_flight': (number);
  /**
   * The agent's name and version, for example "framewire-edge-agent/0.1.0".
   */
  'client_version': (string);
  /**
   * True asks the server to follow objects across this stream's frames and
   * set Detection.track_id: the same id for the same object in every result,
   * counted per stream. Ids survive skipped frames. A server started with
   * tracking on for every stream tracks this stream even when false.
   */
  'track': (boolean);
  '_score_threshold'?: "score_threshold";
}
