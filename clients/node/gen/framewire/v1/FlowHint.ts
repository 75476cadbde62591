// Original file: ../../protos/framewire/v1/ingest_service.proto


/**
 * FlowHint is the server's advice to the agent on how much to send. Following
 * it is optional; an absent field means no advice on that setting.
 */
export interface FlowHint {
  /**
   * The frame rate the server can keep up with for this stream, in frames per
   * second.
   */
  'target_fps'?: (number | string);
  /**
   * A JPEG quality, 1 to 100, that would keep frames within the limits.
   */
  'jpeg_quality'?: (number);
  /**
   * A factor in (0, 1] to scale frames by before encoding, relative to the
   * frames the server has been receiving (0.5 halves their width and height).
   */
  'scale'?: (number | string);
  /**
   * Why the server gives this advice, for people reading agent logs.
   */
  'reason'?: (string);
  '_target_fps'?: "target_fps";
  '_jpeg_quality'?: "jpeg_quality";
  '_scale'?: "scale";
}

/**
 * FlowHint is the server's advice to the agent on how much to send. Following
 * it is optional; an absent field means no advice on that setting.
 */
export interface FlowHint__Output {
  /**
   * The frame rate the server can keep up with for this stream, in frames per
   * second.
   */
  'target_fps'?: (number);
  /**
   * A JPEG quality, 1 to 100, that would keep frames within the limits.
   */
  'jpeg_quality'?: (number);
  /**
   * A factor in (0, 1] to scale frames by before encoding, relative to the
   * frames the server has been receiving (0.5 halves their width and height).
   */
  'scale'?: (number);
  /**
   * Why the server gives this advice, for people reading agent logs.
   */
  'reason': (string);
  '_target_fps'?: "target_fps";
  '_jpeg_quality'?: "jpeg_quality";
  '_scale'?: "scale";
}
