// Original file: ../../protos/framewire/v1/ingest_service.proto

import type { SkipReason as _framewire_v1_SkipReason, SkipReason__Output as _framewire_v1_SkipReason__Output } from '../../framewire/v1/SkipReason';
import type { Long } from '@grpc/proto-loader';

/**
 * SkippedFrame names one frame the server dropped and why.
 */
export interface SkippedFrame {
  /**
   * The seq of the dropped frame.
   */
  'seq'?: (number | string | Long);
  /**
   * Why it was dropped.
   */
  'reason'?: (_framewire_v1_SkipReason);
}

/**
 * SkippedFrame names one frame the server dropped and why.
 */
export interface SkippedFrame__Output {
  /**
   * The seq of the dropped frame.
   */
  'seq': (string);
  /**
   * Why it was dropped.
   */
  'reason': (_framewire_v1_SkipReason__Output);
}
