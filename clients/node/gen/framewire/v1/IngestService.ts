// Original file: ../../protos/framewire/v1/ingest_service.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { StreamFramesRequest as _framewire_v1_StreamFramesRequest, StreamFramesRequest__Output as _framewire_v1_StreamFramesRequest__Output } from '../../framewire/v1/StreamFramesRequest';
import type { StreamFramesResponse as _framewire_v1_StreamFramesResponse, StreamFramesResponse__Output as _framewire_v1_StreamFramesResponse__Output } from '../../framewire/v1/StreamFramesResponse';

/**
 * IngestService is where edge devices send frames and get detections back.
 * 
 * Each device keeps one StreamFrames call open. The server keeps results
 * real-time by skipping frames that waited too long or were overtaken by a
 * newer frame of the same stream, and says so: every frame the server
 * received is answered exactly once, either by a FrameResult (processed or
 * failed) or by being listed as skipped.
 * 
 * The server also exposes grpc.health.v1 and server reflection.
 */
export interface IngestServiceClient extends grpc.Client {
  /**
   * StreamFrames carries one device's frames up and its results down.
   * 
   * The first request must be a StreamConfig and no other request may be one
   * (INVALID_ARGUMENT otherwise). The server answers with StreamAccepted,
   * then with one FrameResult per processed or failed frame, in seq order,
   * listing in `skipped` the frames it dropped since the previous result. A
   * frame dropped when no later result is due is reported in a SkipNotice.
   * 
   * Status codes that end the call:
   * - INVALID_ARGUMENT: a broken protocol rule or a malformed frame.
   * - RESOURCE_EXHAUSTED: a frame over the size limits; the server already
   * carries its maximum number of streams (counted from the moment a call
   * opens); more than ServerLimits.max_unread_results results unread.
   * - NOT_FOUND: StreamConfig.model names a model this server does not serve.
   * - DEADLINE_EXCEEDED: no StreamConfig arrived within the server's
   * configuration timeout after the call opened.
   * - UNAVAILABLE: the server is shutting down, or no inference replica is
   * ready yet (reconnect, possibly to another replica).
   */
  StreamFrames(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_framewire_v1_StreamFramesRequest, _framewire_v1_StreamFramesResponse__Output>;
  StreamFrames(options?: grpc.CallOptions): grpc.ClientDuplexStream<_framewire_v1_StreamFramesRequest, _framewire_v1_StreamFramesResponse__Output>;
  /**
   * StreamFrames carries one device's frames up and its results down.
   * 
   * The first request must be a StreamConfig and no other request may be one
   * (INVALID_ARGUMENT otherwise). The server answers with StreamAccepted,
   * then with one FrameResult per processed or failed frame, in seq order,
   * listing in `skipped` the frames it dropped since the previous result. A
   * frame dropped when no later result is due is reported in a SkipNotice.
   * 
   * Status codes that end the call:
   * - INVALID_ARGUMENT: a broken protocol rule or a malformed frame.
   * - RESOURCE_EXHAUSTED: a frame over the size limits; the server already
   * carries its maximum number of streams (counted from the moment a call
   * opens); more than ServerLimits.max_unread_results results unread.
   * - NOT_FOUND: StreamConfig.model names a model this server does not serve.
   * - DEADLINE_EXCEEDED: no StreamConfig arrived within the server's
   * configuration timeout after the call opened.
   * - UNAVAILABLE: the server is shutting down, or no inference replica is
   * ready yet (reconnect, possibly to another replica).
   */
  streamFrames(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_framewire_v1_StreamFramesRequest, _framewire_v1_StreamFramesResponse__Output>;
  streamFrames(options?: grpc.CallOptions): grpc.ClientDuplexStream<_framewire_v1_StreamFramesRequest, _framewire_v1_StreamFramesResponse__Output>;
  
}

/**
 * IngestService is where edge devices send frames and get detections back.
 * 
 * Each device keeps one StreamFrames call open. The server keeps results
 * real-time by skipping frames that waited too long or were overtaken by a
 * newer frame of the same stream, and says so: every frame the server
 * received is answered exactly once, either by a FrameResult (processed or
 * failed) or by being listed as skipped.
 * 
 * The server also exposes grpc.health.v1 and server reflection.
 */
export interface IngestServiceHandlers extends grpc.UntypedServiceImplementation {
  /**
   * StreamFrames carries one device's frames up and its results down.
   * 
   * The first request must be a StreamConfig and no other request may be one
   * (INVALID_ARGUMENT otherwise). The server answers with StreamAccepted,
   * then with one FrameResult per processed or failed frame, in seq order,
   * listing in `skipped` the frames it dropped since the previous result. A
   * frame dropped when no later result is due is reported in a SkipNotice.
   * 
   * Status codes that end the call:
   * - INVALID_ARGUMENT: a broken protocol rule or a malformed frame.
   * - RESOURCE_EXHAUSTED: a frame over the size limits; the server already
   * carries its maximum number of streams (counted from the moment a call
   * opens); more than ServerLimits.max_unread_results results unread.
   * - NOT_FOUND: StreamConfig.model names a model this server does not serve.
   * - DEADLINE_EXCEEDED: no StreamConfig arrived within the server's
   * configuration timeout after the call opened.
   * - UNAVAILABLE: the server is shutting down, or no inference replica is
   * ready yet (reconnect, possibly to another replica).
   */
  StreamFrames: grpc.handleBidiStreamingCall<_framewire_v1_StreamFramesRequest__Output, _framewire_v1_StreamFramesResponse>;
  
}

export interface IngestServiceDefinition extends grpc.ServiceDefinition {
  StreamFrames: MethodDefinition<_framewire_v1_StreamFramesRequest, _framewire_v1_StreamFramesResponse, _framewire_v1_StreamFramesRequest__Output, _framewire_v1_StreamFramesResponse__Output>
}
