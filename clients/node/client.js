#!/usr/bin/env node
// framewire-node-client: a small device client for framewire's IngestService.
//
// It streams the JPEG files of a folder, in name order, as if a camera captured
// them at --fps, keeps at most the max_in_flight frames that StreamAccepted grants
// unanswered (a capture that finds the window full waits, and a newer capture
// replaces it: an edge skip), prints every server message as one JSON line on
// stdout, sends AgentReports with end-to-end latencies, and exits non-zero with
// the gRPC status and message when the call fails.
//
// The contract is loaded at run time from the .proto files. The types in gen/
// (`npm run gen`, proto-loader-gen-types with the same loader options) describe the
// objects the loader produces; `npm run check` type-checks this file against them.
// @ts-check
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

/** @typedef {import('./gen/ingest_service').ProtoGrpcType} ProtoGrpcType */
/** @typedef {import('./gen/framewire/v1/StreamFramesRequest').StreamFramesRequest} StreamFramesRequest */
/** @typedef {import('./gen/framewire/v1/StreamFramesResponse').StreamFramesResponse__Output} StreamFramesResponse */
/** @typedef {import('./gen/framewire/v1/StreamAccepted').StreamAccepted__Output} StreamAccepted */
/** @typedef {import('./gen/framewire/v1/SkippedFrame').SkippedFrame__Output} SkippedFrame */
/** @typedef {import('./gen/google/protobuf/Timestamp').Timestamp__Output} Timestamp */
/** @typedef {import('./gen/google/protobuf/Duration').Duration__Output} Duration */
/** @typedef {{seq: number, file: string, at: Timestamp}} Capture */

const CLIENT_VERSION = 'framewire-node-client/0.1.0';
// Used until StreamAccepted says otherwise (the contract's defaults).
const DEFAULT_REPORT_INTERVAL_MS = 5000;
const DEFAULT_MAX_REPORT_SAMPLES = 1000;
const VIOLATIONS = ['frame-before-config', 'unspecified-encoding', 'second-config'];
// The contract, found from this folder in a checkout; FRAMEWIRE_PROTOS points elsewhere.
const PROTOS = process.env.FRAMEWIRE_PROTOS || path.join(__dirname, '..', '..', 'protos');

// The loader options a Node user of this contract needs (see docs/clients.md):
// - keepCase: field names as written in the .proto (stream_id, not streamId), as in
//   every other language and in the contract's comments.
// - longs: String: 64-bit fields (seq, counts, Timestamp.seconds, track_id) arrive as
//   decimal strings. Without it they arrive as Long objects, and with Number they
//   silently lose precision above 2^53. Sending accepts numbers, strings or BigInt-free
//   Longs alike.
// - enums: String: enum values as their names ("SKIP_REASON_STALE"), not numbers.
// - defaults: true: fields at their zero value (seq 0, score 0) are present rather than
//   undefined, since proto3 does not put zero values on the wire.
// - oneofs: true: each oneof gets a virtual field naming the member that is set, so
//   `response.kind` says "accepted", "result", "hint" or "skip_notice"; proto3
//   `optional` fields are oneofs too (`hint._target_fps === 'target_fps'` when set).
const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTOS],
};

/** @param {string} [message] @returns {never} */
function usage(message) {
  if (message) process.stderr.write(`error: ${message}\n`);
  process.stderr.write(
    'usage: framewire-node-client --dir FOLDER [options]\n' +
      '  --server HOST:PORT       ingest address (default localhost:50051)\n' +
      '  --dir FOLDER             folder whose *.jpg/*.jpeg files are sent, in name order\n' +
      '  --fps N                  capture rate; 0 sends each file as soon as the window has room (default 10)\n' +
      '  --stream-id ID           stream id (default node-client)\n' +
      "  --model NAME             model to ask for (default: the server's)\n" +
      "  --score-threshold X      minimum detection score in [0, 1] (default: the server's)\n" +
      "  --max-in-flight N        unanswered frames to ask for (default: the server's)\n" +
      "  --tls-ca FILE            PEM file of the CA that signed the server's certificate; enables TLS\n" +
      "  --tls-server-name NAME   name to check in the server's certificate\n" +
      "  --token TOKEN            bearer token sent as 'authorization: Bearer TOKEN' (default $FRAMEWIRE_TOKEN)\n" +
      '  --violate RULE           testing only: break one protocol rule on purpose\n' +
      '                           (frame-before-config, unspecified-encoding, second-config)\n',
  );
  process.exit(2);
}

function parseOptions() {
  /** @type {{[name: string]: string | boolean | undefined}} */
  let values = {};
  try {
    ({ values } = parseArgs({
      options: {
        server: { type: 'string', default: 'localhost:50051' },
        dir: { type: 'string' },
        fps: { type: 'string', default: '10' },
        'stream-id': { type: 'string', default: 'node-client' },
        model: { type: 'string', default: '' },
        'score-threshold': { type: 'string' },
        'max-in-flight': { type: 'string', default: '0' },
        'tls-ca': { type: 'string' },
        'tls-server-name': { type: 'string' },
        token: { type: 'string', default: process.env.FRAMEWIRE_TOKEN || '' },
        violate: { type: 'string', default: '' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    usage(String(error));
  }
  if (values.help) usage();
  const text = (/** @type {string} */ name) => String(values[name] ?? '');
  const options = {
    server: text('server'),
    dir: text('dir'),
    fps: Number(values.fps),
    streamId: text('stream-id'),
    model: text('model'),
    scoreThreshold: values['score-threshold'] === undefined ? null : Number(values['score-threshold']),
    maxInFlight: Number(values['max-in-flight']),
    tlsCa: text('tls-ca'),
    tlsServerName: text('tls-server-name'),
    token: text('token'),
    violate: text('violate'),
  };
  if (!options.dir) usage('--dir is required');
  if (!(options.fps >= 0)) usage('--fps must be 0 or more');
  if (!Number.isInteger(options.maxInFlight) || options.maxInFlight < 0) usage('--max-in-flight must be a whole number');
  if (options.scoreThreshold !== null && Number.isNaN(options.scoreThreshold)) usage('--score-threshold must be a number');
  if (options.violate && !VIOLATIONS.includes(options.violate)) usage(`unknown --violate ${options.violate}`);
  return options;
}

/** @param {string} message @returns {never} */
function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(1);
}

/** @param {number} code */
function statusName(code) {
  const name = grpc.status[code];
  return typeof name === 'string' ? name : `CODE_${code}`;
}

/** @param {Error & Partial<grpc.ServiceError>} error @returns {never} */
function failStatus(error) {
  if (typeof error.code === 'number') {
    fail(`${statusName(error.code)} (${error.code}): ${error.details}`);
  }
  fail(error.message);
}

/** @param {string} dir @returns {string[]} */
function jpegFiles(dir) {
  /** @type {string[]} */
  let names = [];
  try {
    names = fs.readdirSync(dir);
  } catch (error) {
    fail(`cannot list ${dir}: ${error}`);
  }
  const files = names
    .filter((name) => /\.jpe?g$/i.test(name))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((name) => path.join(dir, name))
    .filter((file) => fs.statSync(file).isFile());
  if (files.length === 0) fail(`no .jpg or .jpeg files in ${dir}`);
  return files;
}

// The width and height in a JPEG's start-of-frame header (Node has no image decoder).
/** @param {Buffer} data @param {string} name @returns {{width: number, height: number}} */
function jpegSize(data, name) {
  if (data.length < 4 || data[0] !== 0xff || data[1] !== 0xd8) fail(`${name}: not a JPEG`);
  let i = 2;
  while (i + 4 <= data.length) {
    if (data[i] !== 0xff) fail(`${name}: broken JPEG marker`);
    const marker = data[i + 1];
    if (marker === 0xff) {
      i += 1; // fill byte
      continue;
    }
    const length = data.readUInt16BE(i + 2);
    const startOfFrame = marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker);
    if (startOfFrame) {
      if (i + 9 > data.length) break;
      return { height: data.readUInt16BE(i + 5), width: data.readUInt16BE(i + 7) };
    }
    i += 2 + length;
  }
  fail(`${name}: no JPEG start-of-frame header`);
}

/** @returns {Timestamp} */
function timestampNow() {
  const nanos = process.hrtime.bigint() - hrtimeOrigin + epochOriginNs;
  return { seconds: String(nanos / 1000000000n), nanos: Number(nanos % 1000000000n) };
}
// Wall-clock nanoseconds, anchored once and advanced by the monotonic clock.
const hrtimeOrigin = process.hrtime.bigint();
const epochOriginNs = BigInt(Date.now()) * 1000000n;

/** @param {Timestamp | Duration} timestamp */
function timestampNs(timestamp) {
  return BigInt(timestamp.seconds) * 1000000000n + BigInt(timestamp.nanos);
}

/** @param {string} reason */
function skipReasonName(reason) {
  return String(reason).replace(/^SKIP_REASON_/, '').toLowerCase();
}

/** @param {SkippedFrame[]} skipped */
function skips(skipped) {
  return skipped.map((skip) => ({ seq: Number(skip.seq), reason: skipReasonName(skip.reason) }));
}

/** @param {object} value */
function print(value) {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

function main() {
  const options = parseOptions();
  const files = jpegFiles(options.dir);
  const definition = protoLoader.loadSync(path.join(PROTOS, 'framewire/v1/ingest_service.proto'), LOADER_OPTIONS);
  const contract = /** @type {ProtoGrpcType} */ (/** @type {unknown} */ (grpc.loadPackageDefinition(definition)));
  const { IngestService } = contract.framewire.v1;

  let credentials = grpc.credentials.createInsecure();
  /** @type {grpc.ChannelOptions} */
  const channelOptions = {};
  if (options.tlsCa) {
    let ca = Buffer.alloc(0);
    try {
      ca = fs.readFileSync(options.tlsCa);
    } catch (error) {
      fail(`reading --tls-ca: ${error}`);
    }
    credentials = grpc.credentials.createSsl(ca);
    if (options.tlsServerName) channelOptions['grpc.ssl_target_name_override'] = options.tlsServerName;
  }
  const client = new IngestService(options.server, credentials, channelOptions);
  const metadata = new grpc.Metadata();
  if (options.token) metadata.add('authorization', `Bearer ${options.token}`);
  const call = client.StreamFrames(metadata);

  /** @type {StreamAccepted | null} */
  let accepted = null;
  let maxInFlight = 1;
  let reportIntervalMs = DEFAULT_REPORT_INTERVAL_MS;
  let maxReportSamples = DEFAULT_MAX_REPORT_SAMPLES;
  let intervalMs = options.fps > 0 ? 1000 / options.fps : 0;
  let seq = 0;
  let next = 0; // the index of the next file to capture
  /** @type {Capture | null} */
  let waiting = null; // captured, waiting for room in the window
  let nextCapture = 0;
  let nextReport = 0;
  let finished = false;
  /** @type {NodeJS.Timeout | undefined} */
  let timer;
  /** @type {Set<number>} */
  const inFlight = new Set();
  // Deltas for the next AgentReport, and totals for the summary line.
  /** @type {{latenciesNs: bigint[], edgeSkipped: number, bytesSent: number, framesCaptured: number, framesSent: number}} */
  const delta = { latenciesNs: [], edgeSkipped: 0, bytesSent: 0, framesCaptured: 0, framesSent: 0 };
  const totals = { frames_captured: 0, frames_sent: 0, results: 0, server_skipped: 0, edge_skipped: 0 };

  /** @returns {StreamFramesRequest} */
  const config = () => {
    /** @type {import('./gen/framewire/v1/StreamConfig').StreamConfig} */
    const streamConfig = {
      stream_id: options.streamId,
      model: options.model,
      max_in_flight: options.maxInFlight,
      client_version: CLIENT_VERSION,
    };
    if (options.scoreThreshold !== null) streamConfig.score_threshold = options.scoreThreshold;
    return { config: streamConfig };
  };

  /** @param {Capture} capture */
  const sendFrame = (capture) => {
    let data = Buffer.alloc(0);
    try {
      data = fs.readFileSync(capture.file);
    } catch (error) {
      fail(String(error));
    }
    const { width, height } = jpegSize(data, capture.file);
    call.write({
      frame: {
        seq: String(capture.seq),
        capture_time: capture.at,
        encoding: options.violate === 'unspecified-encoding' ? 'ENCODING_UNSPECIFIED' : 'ENCODING_JPEG',
        width,
        height,
        data,
      },
    });
    inFlight.add(capture.seq);
    delta.bytesSent += data.length;
    delta.framesSent += 1;
    totals.frames_sent += 1;
  };

  const sendReport = () => {
    const samples = delta.latenciesNs.splice(0, maxReportSamples);
    if (samples.length === 0 && !delta.bytesSent && !delta.framesCaptured && !delta.framesSent && !delta.edgeSkipped) {
      return; // nothing happened since the last report
    }
    call.write({
      report: {
        end_to_end_latencies: samples.map((ns) => ({ seconds: String(ns / 1000000000n), nanos: Number(ns % 1000000000n) })),
        skips: delta.edgeSkipped ? [{ reason: 'SKIP_REASON_SUPERSEDED', count: String(delta.edgeSkipped) }] : [],
        bytes_sent: String(delta.bytesSent),
        frames_captured: String(delta.framesCaptured),
        frames_sent: String(delta.framesSent),
        // A running total on this call: it acknowledges the results read so far.
        results_received: String(totals.results),
      },
    });
    Object.assign(delta, { edgeSkipped: 0, bytesSent: 0, framesCaptured: 0, framesSent: 0 });
  };

  /** @param {SkippedFrame[]} skipped */
  const forget = (skipped) => {
    for (const skip of skipped) {
      inFlight.delete(Number(skip.seq));
      totals.server_skipped += 1;
    }
  };

  // Captures, sends and reports whatever is due, then sleeps until the next thing is.
  const pump = () => {
    if (accepted === null || finished) return;
    const now = Date.now();
    const captureDue =
      next < files.length &&
      ((intervalMs > 0 && now >= nextCapture) || (intervalMs === 0 && waiting === null && inFlight.size < maxInFlight));
    if (captureDue) {
      if (waiting !== null) {
        delta.edgeSkipped += 1; // a newer capture replaces the one still waiting
        totals.edge_skipped += 1;
      }
      seq += 1;
      waiting = { seq, file: files[next], at: timestampNow() };
      next += 1;
      delta.framesCaptured += 1;
      totals.frames_captured += 1;
      nextCapture = Math.max(nextCapture + intervalMs, now);
    }
    if (waiting !== null && inFlight.size < maxInFlight) {
      sendFrame(waiting);
      waiting = null;
      setImmediate(pump);
      return;
    }
    if (now >= nextReport) {
      sendReport();
      nextReport = now + reportIntervalMs;
    }
    if (next === files.length && waiting === null && inFlight.size === 0) {
      finished = true;
      clearTimeout(timer);
      sendReport();
      call.end();
      return;
    }
    let wake = nextReport;
    if (intervalMs > 0 && next < files.length) wake = Math.min(wake, nextCapture);
    clearTimeout(timer);
    timer = setTimeout(pump, Math.max(0, wake - now));
  };

  /** @param {StreamAccepted} message */
  const onAccepted = (message) => {
    if (accepted !== null) fail('protocol error: a second StreamAccepted');
    accepted = message;
    maxInFlight = Math.max(1, message.max_in_flight);
    const limits = message.limits;
    if (limits?.report_interval) {
      const ms = Number(timestampNs(limits.report_interval) / 1000000n);
      if (ms > 0) reportIntervalMs = ms;
    }
    if (limits && limits.max_report_samples > 0) maxReportSamples = limits.max_report_samples;
    print({
      type: 'accepted',
      stream_id: message.stream_id,
      model_id: message.model_id,
      max_in_flight: message.max_in_flight,
      score_threshold: message.score_threshold,
    });
    if (options.violate === 'second-config') call.write(config());
    nextCapture = Date.now();
    nextReport = Date.now() + reportIntervalMs;
  };

  /** @param {import('./gen/framewire/v1/FrameResult').FrameResult__Output} result */
  const onResult = (result) => {
    forget(result.skipped);
    inFlight.delete(Number(result.seq));
    totals.results += 1;
    // With defaults: true an absent message field is null, not an empty message.
    if (!result.capture_time) fail(`protocol error: result ${result.seq} has no capture_time`);
    const latencyNs = timestampNs(timestampNow()) - timestampNs(result.capture_time);
    delta.latenciesNs.push(latencyNs);
    print({
      type: 'result',
      seq: Number(result.seq),
      latency_ms: Number(latencyNs / 1000n) / 1000,
      detections: result.detections.map((d) => ({
        class_id: d.class_id,
        label: d.label,
        score: d.score,
        box: d.box && { x_min: d.box.x_min, y_min: d.box.y_min, x_max: d.box.x_max, y_max: d.box.y_max },
      })),
      skipped: skips(result.skipped),
      error: result.error ? { code: result.error.code, message: result.error.message } : null,
    });
  };

  /** @param {import('./gen/framewire/v1/FlowHint').FlowHint__Output} hint */
  const onHint = (hint) => {
    // proto3 optional fields are oneofs: present only when the virtual field names them.
    const targetFps = hint._target_fps ? hint.target_fps ?? null : null;
    // Files are sent as they are, so only the frame rate can be followed.
    if (targetFps !== null && targetFps > 0 && intervalMs > 0) intervalMs = 1000 / targetFps;
    print({
      type: 'hint',
      target_fps: targetFps,
      jpeg_quality: hint._jpeg_quality ? hint.jpeg_quality : null,
      scale: hint._scale ? hint.scale : null,
      reason: hint.reason,
    });
  };

  /** @param {StreamFramesResponse} response */
  const handle = (response) => {
    if (response.kind === 'accepted' && response.accepted) {
      onAccepted(response.accepted);
    } else if (response.kind === 'result' && response.result) {
      onResult(response.result);
    } else if (response.kind === 'skip_notice' && response.skip_notice) {
      forget(response.skip_notice.skipped);
      print({ type: 'skip_notice', skipped: skips(response.skip_notice.skipped) });
    } else if (response.kind === 'hint' && response.hint) {
      onHint(response.hint);
    } else {
      fail(`protocol error: an empty or unknown response ${JSON.stringify(response)}`);
    }
    pump();
  };

  call.on('data', (/** @type {StreamFramesResponse} */ response) => {
    if (accepted === null && response.kind !== 'accepted') {
      fail(`protocol error: the first response is not StreamAccepted: ${response.kind}`);
    }
    handle(response);
  });
  call.on('error', failStatus);
  call.on('status', (/** @type {grpc.StatusObject} */ status) => {
    if (status.code !== grpc.status.OK) return; // 'error' reports it
    if (!finished) fail('protocol error: the server ended the call with frames unanswered');
    print({ type: 'summary', ...totals });
    client.close();
  });

  if (options.violate === 'frame-before-config') {
    sendFrame({ seq: 1, file: files[0], at: timestampNow() });
  }
  call.write(config());
}

main();
