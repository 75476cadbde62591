// Original file: ../../protos/framewire/v1/ingest_service.proto

import type { ServerLimits as _framewire_v1_ServerLimits, ServerLimits__Output as _framewire_v1_ServerLimits__Output } from '../../framewire/v1/ServerLimits';

/**
 * StreamAccepted answers a StreamConfig with the settings now in force.
 */
export interface StreamAccepted {
  /**
   * The stream identifier, as given.
   */
  'stream_id'?: (string);
  /**
   * The identifier of the model serving the stream.
   */
  'model_id'?: (string);
  /**
   * The score threshold in force, in [0, 1].
   */
  'score_threshold'?: (number | string);
  /**
   * The label filter in force; empty means all labels.
   */
  'class_filter'?: (string)[];
  /**
   * The number of unanswered frames the agent may have, after capping.
   */
  'max_in_flight'?: (number);
  /**
   * The limits the server enforces.
   */
  'limits'?: (_framewire_v1_ServerLimits | null);
  /**
   * The server's name and version, for example "framewire-ingest/0.1.0".
   */
  'server_version'?: (string);
  /**
   * The model's class names, indexed by Detection.class_id.
   */
  'labels'?: (string)[];
}

/**
 * StreamAccepted answers a StreamConfig with the settings now in force.
 */
export interface StreamAccepted__Output {
  /**
   * The stream identifier, as given.
   */
  'stream_id': (string);
  /**
   * The identifier of the model serving the stream.
   */
  'model_id': (string);
  /**
   * The score threshold in force, in [0, 1].
   */
  'score_threshold': (number);
  /**
   * The label filter in force; empty means all labels.
   */
  'class_filter': (string)[];
  /**
   * The number of unanswered frames the agent may have, after capping.
   */
  'max_in_flight': (number);
  /**
   * The limits the server enforces.
   */
  'limits': (_framewire_v1_ServerLimits__Output | null);
  /**
   * The server's name and version, for example "framewire-ingest/0.1.0".
   */
  'server_version': (string);
  /**
   * The model's class names, indexed by Detection.class_id.
   */
  'labels': (string)[];
}
