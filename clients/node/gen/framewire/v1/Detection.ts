// Original file: ../../protos/framewire/v1/common.proto

import type { BoundingBox as _framewire_v1_BoundingBox, BoundingBox__Output as _framewire_v1_BoundingBox__Output } from '../../framewire/v1/BoundingBox';
import type { Long } from '@grpc/proto-loader';

/**
 * Detection is one object found in one image.
 */
export interface Detection {
  /**
   * The index of the class in the model's label list (see
   * GetModelInfoResponse.labels). With the built-in COCO labels this is the
   * contiguous 80-class index: 0 is "person", 2 is "car".
   */
  'class_id'?: (number);
  /**
   * The human-readable class name, for example "person".
   */
  'label'?: (string);
  /**
   * The model's confidence in this detection, in [0, 1].
   */
  'score'?: (number | string);
  /**
   * Where the object is, normalized to the image that was sent.
   */
  'box'?: (_framewire_v1_BoundingBox | null);
  /**
   * The identity of the object across frames of one stream, when a tracker
   * assigned one. Absent when no tracking is done.
   */
  'track_id'?: (number | string | Long);
  '_track_id'?: "track_id";
}

/**
 * Detection is one object found in one image.
 */
export interface Detection__Output {
  /**
   * The index of the class in the model's label list (see
   * GetModelInfoResponse.labels). With the built-in COCO labels this is the
   * contiguous 80-class index: 0 is "person", 2 is "car".
   */
  'class_id': (number);
  /**
   * The human-readable class name, for example "person".
   */
  'label': (string);
  /**
   * The model's confidence in this detection, in [0, 1].
   */
  'score': (number);
  /**
   * Where the object is, normalized to the image that was sent.
   */
  'box': (_framewire_v1_BoundingBox__Output | null);
  /**
   * The identity of the object across frames of one stream, when a tracker
   * assigned one. Absent when no tracking is done.
   */
  'track_id'?: (string);
  '_track_id'?: "track_id";
}
