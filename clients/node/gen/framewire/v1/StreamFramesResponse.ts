// Original file: ../../protos/framewire/v1/ingest_service.proto

import type { StreamAccepted as _framewire_v1_StreamAccepted, StreamAccepted__Output as _framewire_v1_StreamAccepted__Output } from '../../framewire/v1/StreamAccepted';
import type { FrameResult as _framewire_v1_FrameResult, FrameResult__Output as _framewire_v1_FrameResult__Output } from '../../framewire/v1/FrameResult';
import type { FlowHint as _framewire_v1_FlowHint, FlowHint__Output as _framewire_v1_FlowHint__Output } from '../../framewire/v1/FlowHint';
import type { SkipNotice as _framewire_v1_SkipNotice, SkipNotice__Output as _framewire_v1_SkipNotice__Output } from '../../framewire/v1/SkipNotice';

/**
 * StreamFramesResponse is one message from the server.
 */
export interface StreamFramesResponse {
  /**
   * The answer to the StreamConfig; always the first response.
   */
  'accepted'?: (_framewire_v1_StreamAccepted | null);
  /**
   * The outcome of one frame.
   */
  'result'?: (_framewire_v1_FrameResult | null);
  /**
   * Advice on sending rate and compression.
   */
  'hint'?: (_framewire_v1_FlowHint | null);
  /**
   * Frames dropped when no result was due to report them.
   */
  'skip_notice'?: (_framewire_v1_SkipNotice | null);
  /**
   * What this message carries.
   */
  'kind'?: "accepted"|"result"|"hint"|"skip_notice";
}

/**
 * StreamFramesResponse is one message from the server.
 */
export interface StreamFramesResponse__Output {
  /**
   * The answer to the StreamConfig; always the first response.
   */
  'accepted'?: (_framewire_v1_StreamAccepted__Output | null);
  /**
   * The outcome of one frame.
   */
  'result'?: (_framewire_v1_FrameResult__Output | null);
  /**
   * Advice on sending rate and compression.
   */
  'hint'?: (_framewire_v1_FlowHint__Output | null);
  /**
   * Frames dropped when no result was due to report them.
   */
  'skip_notice'?: (_framewire_v1_SkipNotice__Output | null);
  /**
   * What this message carries.
   */
  'kind'?: "accepted"|"result"|"hint"|"skip_notice";
}
