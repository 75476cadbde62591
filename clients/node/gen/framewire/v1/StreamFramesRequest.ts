// Original file: ../../protos/framewire/v1/ingest_service.proto

import type { StreamConfig as _framewire_v1_StreamConfig, StreamConfig__Output as _framewire_v1_StreamConfig__Output } from '../../framewire/v1/StreamConfig';
import type { Frame as _framewire_v1_Frame, Frame__Output as _framewire_v1_Frame__Output } from '../../framewire/v1/Frame';
import type { AgentReport as _framewire_v1_AgentReport, AgentReport__Output as _framewire_v1_AgentReport__Output } from '../../framewire/v1/AgentReport';

/**
 * StreamFramesRequest is one message from the agent.
 */
export interface StreamFramesRequest {
  /**
   * Opens the stream; first and exactly once.
   */
  'config'?: (_framewire_v1_StreamConfig | null);
  /**
   * A captured frame.
   */
  'frame'?: (_framewire_v1_Frame | null);
  /**
   * Periodic edge-side figures.
   */
  'report'?: (_framewire_v1_AgentReport | null);
  /**
   * What this message carries.
   */
  'kind'?: "config"|"frame"|"report";
}

/**
 * StreamFramesRequest is one message from the agent.
 */
export interface StreamFramesRequest__Output {
  /**
   * Opens the stream; first and exactly once.
   */
  'config'?: (_framewire_v1_StreamConfig__Output | null);
  /**
   * A captured frame.
   */
  'frame'?: (_framewire_v1_Frame__Output | null);
  /**
   * Periodic edge-side figures.
   */
  'report'?: (_framewire_v1_AgentReport__Output | null);
  /**
   * What this message carries.
   */
  'kind'?: "config"|"frame"|"report";
}
