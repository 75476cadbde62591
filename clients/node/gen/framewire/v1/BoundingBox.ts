// Original file: ../../protos/framewire/v1/common.proto


/**
 * BoundingBox is an axis-aligned rectangle in normalized image coordinates.
 * 
 * Every coordinate is a fraction of the full image as it was sent: x runs from
 * 0 (left edge) to 1 (right edge) and y from 0 (top edge) to 1 (bottom edge).
 * Values are always within [0, 1], with x_min <= x_max and y_min <= y_max.
 * Multiply by the width and height of any rendition of the same image to get
 * pixels, which is why boxes stay correct when the edge resized the frame.
 */
export interface BoundingBox {
  /**
   * The left edge, as a fraction of the image width, in [0, 1].
   */
  'x_min'?: (number | string);
  /**
   * The top edge, as a fraction of the image height, in [0, 1].
   */
  'y_min'?: (number | string);
  /**
   * The right edge, as a fraction of the image width, in [0, 1].
   */
  'x_max'?: (number | string);
  /**
   * The bottom edge, as a fraction of the image height, in [0, 1].
   */
  'y_max'?: (number | string);
}

/**
 * BoundingBox is an axis-aligned rectangle in normalized image coordinates.
 * 
 * Every coordinate is a fraction of the full image as it was sent: x runs from
 * 0 (left edge) to 1 (right edge) and y from 0 (top edge) to 1 (bottom edge).
 * Values are always within [0, 1], with x_min <= x_max and y_min <= y_max.
 * Multiply by the width and height of any rendition of the same image to get
 * pixels, which is why boxes stay correct when the edge resized the frame.
 */
export interface BoundingBox__Output {
  /**
   * The left edge, as a fraction of the image width, in [0, 1].
   */
  'x_min': (number);
  /**
   * The top edge, as a fraction of the image height, in [0, 1].
   */
  'y_min': (number);
  /**
   * The right edge, as a fraction of the image width, in [0, 1].
   */
  'x_max': (number);
  /**
   * The bottom edge, as a fraction of the image height, in [0, 1].
   */
  'y_max': (number);
}
