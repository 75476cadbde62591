// Original file: ../../protos/framewire/v1/ingest_service.proto

import type { SkipReason as _framewire_v1_SkipReason, SkipReason__Output as _framewire_v1_SkipReason__Output } from '../../framewire/v1/SkipReason';
import type { Long } from '@grpc/proto-loader';

/**
 * SkipCount is how many frames were skipped for one reason.
 */
export interface SkipCount {
  /**
   * Why the frames were skipped.
   */
  'reason'?: (_framewire_v1_SkipReason);
  /**
   * How many frames were skipped for that reason.
   */
  'count'?: (number | string | Long);
}

/**
 * SkipCount is how many frames were skipped for one reason.
 */
export interface SkipCount__Output {
  /**
   * Why the frames were skipped.
   */
  'reason': (_framewire_v1_SkipReason__Output);
  /**
   * How many frames were skipped for that reason.
   */
  'count': (string);
}
