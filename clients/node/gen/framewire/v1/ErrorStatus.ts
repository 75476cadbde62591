// Original file: ../../protos/framewire/v1/common.proto


/**
 * ErrorStatus explains why one frame or image could not be processed while
 * the rest of its stream or batch was.
 */
export interface ErrorStatus {
  /**
   * The canonical gRPC status code number, as in google.rpc.Code: 3
   * (INVALID_ARGUMENT) for bytes that are not a valid image, 8
   * (RESOURCE_EXHAUSTED) for an image over a size limit, 14 (UNAVAILABLE) when
   * no model could be reached, 13 (INTERNAL) for a server fault.
   */
  'code'?: (number);
  /**
   * A message a person can act on, for example "declared 640x480 but the JPEG
   * header says 1280x720".
   */
  'message'?: (string);
}

/**
 * ErrorStatus explains why one frame or image could not be processed while
 * the rest of its stream or batch was.
 */
export interface ErrorStatus__Output {
  /**
   * The canonical gRPC status code number, as in google.rpc.Code: 3
   * (INVALID_ARGUMENT) for bytes that are not a valid image, 8
   * (RESOURCE_EXHAUSTED) for an image over a size limit, 14 (UNAVAILABLE) when
   * no model could be reached, 13 (INTERNAL) for a server fault.
   */
  'code': (number);
  /**
   * A message a person can act on, for example "declared 640x480 but the JPEG
   * header says 1280x720".
   */
  'message': (string);
}
