import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { AgentReport as _framewire_v1_AgentReport, AgentReport__Output as _framewire_v1_AgentReport__Output } from './framewire/v1/AgentReport';
import type { BoundingBox as _framewire_v1_BoundingBox, BoundingBox__Output as _framewire_v1_BoundingBox__Output } from './framewire/v1/BoundingBox';
import type { Detection as _framewire_v1_Detection, Detection__Output as _framewire_v1_Detection__Output } from './framewire/v1/Detection';
import type { ErrorStatus as _framewire_v1_ErrorStatus, ErrorStatus__Output as _framewire_v1_ErrorStatus__Output } from './framewire/v1/ErrorStatus';
import type { FlowHint as _framewire_v1_FlowHint, FlowHint__Output as _framewire_v1_FlowHint__Output } from './framewire/v1/FlowHint';
import type { Frame as _framewire_v1_Frame, Frame__Output as _framewire_v1_Frame__Output } from './framewire/v1/Frame';
import type { FrameResult as _framewire_v1_FrameResult, FrameResult__Output as _framewire_v1_FrameResult__Output } from './framewire/v1/FrameResult';
import type { IngestServiceClient as _framewire_v1_IngestServiceClient, IngestServiceDefinition as _framewire_v1_IngestServiceDefinition } from './framewire/v1/IngestService';
import type { ServerLimits as _framewire_v1_ServerLimits, ServerLimits__Output as _framewire_v1_ServerLimits__Output } from './framewire/v1/ServerLimits';
import type { SkipCount as _framewire_v1_SkipCount, SkipCount__Output as _framewire_v1_SkipCount__Output } from './framewire/v1/SkipCount';
import type { SkipNotice as _framewire_v1_SkipNotice, SkipNotice__Output as _framewire_v1_SkipNotice__Output } from './framewire/v1/SkipNotice';
import type { SkippedFrame as _framewire_v1_SkippedFrame, SkippedFrame__Output as _framewire_v1_SkippedFrame__Output } from './framewire/v1/SkippedFrame';
import type { StageTimings as _framewire_v1_StageTimings, StageTimings__Output as _framewire_v1_StageTimings__Output } from './framewire/v1/StageTimings';
import type { StreamAccepted as _framewire_v1_StreamAccepted, StreamAccepted__Output as _framewire_v1_StreamAccepted__Output } from './framewire/v1/StreamAccepted';
import type { StreamConfig as _framewire_v1_StreamConfig, StreamConfig__Output as _framewire_v1_StreamConfig__Output } from './framewire/v1/StreamConfig';
import type { StreamFramesRequest as _framewire_v1_StreamFramesRequest, StreamFramesRequest__Output as _framewire_v1_StreamFramesRequest__Output } from './framewire/v1/StreamFramesRequest';
import type { StreamFramesResponse as _framewire_v1_StreamFramesResponse, StreamFramesResponse__Output as _framewire_v1_StreamFramesResponse__Output } from './framewire/v1/StreamFramesResponse';
import type { Duration as _google_protobuf_Duration, Duration__Output as _google_protobuf_Duration__Output } from './google/protobuf/Duration';
import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from './google/protobuf/Timestamp';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  framewire: {
    v1: {
      AgentReport: MessageTypeDefinition<_framewire_v1_AgentReport, _framewire_v1_AgentReport__Output>
      BoundingBox: MessageTypeDefinition<_framewire_v1_BoundingBox, _framewire_v1_BoundingBox__Output>
      Detection: MessageTypeDefinition<_framewire_v1_Detection, _framewire_v1_Detection__Output>
      Encoding: EnumTypeDefinition
      ErrorStatus: MessageTypeDefinition<_framewire_v1_ErrorStatus, _framewire_v1_ErrorStatus__Output>
      FlowHint: MessageTypeDefinition<_framewire_v1_FlowHint, _framewire_v1_FlowHint__Output>
      Frame: MessageTypeDefinition<_framewire_v1_Frame, _framewire_v1_Frame__Output>
      FrameResult: MessageTypeDefinition<_framewire_v1_FrameResult, _framewire_v1_FrameResult__Output>
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
      IngestService: SubtypeConstructor<typeof grpc.Client, _framewire_v1_IngestServiceClient> & { service: _framewire_v1_IngestServiceDefinition }
      ServerLimits: MessageTypeDefinition<_framewire_v1_ServerLimits, _framewire_v1_ServerLimits__Output>
      SkipCount: MessageTypeDefinition<_framewire_v1_SkipCount, _framewire_v1_SkipCount__Output>
      SkipNotice: MessageTypeDefinition<_framewire_v1_SkipNotice, _framewire_v1_SkipNotice__Output>
      SkipReason: EnumTypeDefinition
      SkippedFrame: MessageTypeDefinition<_framewire_v1_SkippedFrame, _framewire_v1_SkippedFrame__Output>
      StageTimings: MessageTypeDefinition<_framewire_v1_StageTimings, _framewire_v1_StageTimings__Output>
      StreamAccepted: MessageTypeDefinition<_framewire_v1_StreamAccepted, _framewire_v1_StreamAccepted__Output>
      StreamConfig: MessageTypeDefinition<_framewire_v1_StreamConfig, _framewire_v1_StreamConfig__Output>
      StreamFramesRequest: MessageTypeDefinition<_framewire_v1_StreamFramesRequest, _framewire_v1_StreamFramesRequest__Output>
      StreamFramesResponse: MessageTypeDefinition<_framewire_v1_StreamFramesResponse, _framewire_v1_StreamFramesResponse__Output>
    }
  }
  google: {
    protobuf: {
      Duration: MessageTypeDefinition<_google_protobuf_Duration, _google_protobuf_Duration__Output>
      Timestamp: MessageTypeDefinition<_google_protobuf_Timestamp, _google_protobuf_Timestamp__Output>
    }
  }
}

