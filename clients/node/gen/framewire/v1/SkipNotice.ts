// Original file: ../../protos/framewire/v1/ingest_service.proto

import type { SkippedFrame as _framewire_v1_SkippedFrame, SkippedFrame__Output as _framewire_v1_SkippedFrame__Output } from '../../framewire/v1/SkippedFrame';

/**
 * SkipNotice reports dropped frames when no FrameResult is due to carry them,
 * for example when the newest frame of a stream went stale.
 */
export interface SkipNotice {
  /**
   * The dropped frames, in seq order.
   */
  'skipped'?: (_framewire_v1_SkippedFrame)[];
}

/**
 * SkipNotice reports dropped frames when no FrameResult is due to carry them,
 * for example when the newest frame of a stream went stale.
 */
export interface SkipNotice__Output {
  /**
   * The dropped frames, in seq order.
   */
  'skipped': (_framewire_v1_SkippedFrame__Output)[];
}
