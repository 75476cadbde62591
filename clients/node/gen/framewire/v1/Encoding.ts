// Original file: ../../protos/framewire/v1/common.proto

/**
 * Encoding names how the bytes of an image are compressed.
 */
export const Encoding = {
  /**
   * The sender did not say. Always rejected with INVALID_ARGUMENT: an image
   * whose encoding is unknown cannot be decoded safely.
   */
  ENCODING_UNSPECIFIED: 'ENCODING_UNSPECIFIED',
  /**
   * Baseline or progressive JPEG (JFIF or EXIF), 8-bit, 1 or 3 channels.
   */
  ENCODING_JPEG: 'ENCODING_JPEG',
} as const;

/**
 * Encoding names how the bytes of an image are compressed.
 */
export type Encoding =
  /**
   * The sender did not say. Always rejected with INVALID_ARGUMENT: an image
   * whose encoding is unknown cannot be decoded safely.
   */
  | 'ENCODING_UNSPECIFIED'
  | 0
  /**
   * Baseline or progressive JPEG (JFIF or EXIF), 8-bit, 1 or 3 channels.
   */
  | 'ENCODING_JPEG'
  | 1

/**
 * Encoding names how the bytes of an image are compressed.
 */
export type Encoding__Output = typeof Encoding[keyof typeof Encoding]
