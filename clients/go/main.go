// Command framewire-go-client is a small device client for framewire's IngestService.
//
// It streams the JPEG files of a folder, in name order, as if a camera captured
// them at --fps, keeps at most the max_in_flight frames that StreamAccepted grants
// unanswered (a capture that finds the window full waits, and a newer capture
// replaces it: an edge skip), prints every server message as one JSON line on
// stdout, sends AgentReports with end-to-end latencies, and exits non-zero with
// the gRPC status and message when the call fails.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image/jpeg"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	framewirev1 "github.com/framewire/framewire/clients/go/gen/framewire/v1"
)

const clientVersion = "framewire-go-client/0.1.0"

// Used until StreamAccepted says otherwise (the contract's defaults).
const (
	defaultReportInterval   = 5 * time.Second
	defaultMaxReportSamples = 1000
)

// Violations the interop tests make the client commit on purpose, to check that
// the server answers a Go client with the same statuses as a Python one.
var violations = map[string]bool{
	"":                     true,
	"frame-before-config":  true,
	"unspecified-encoding": true,
	"second-config":        true,
}

type options struct {
	server         string
	dir            string
	fps            float64
	streamID       string
	model          string
	scoreThreshold float64
	maxInFlight    uint
	tlsCA          string
	tlsServerName  string
	token          string
	violate        string
}

func parseOptions() options {
	var o options
	flag.StringVar(&o.server, "server", "localhost:50051", "ingest address, host:port")
	flag.StringVar(&o.dir, "dir", "", "folder whose *.jpg/*.jpeg files are sent, in name order (required)")
	flag.Float64Var(&o.fps, "fps", 10, "capture rate in frames per second; 0 sends each file as soon as the window has room")
	flag.StringVar(&o.streamID, "stream-id", "go-client", "stream id (1 to 128 of letters, digits, '._:-')")
	flag.StringVar(&o.model, "model", "", "model to ask for; empty means the server's")
	flag.Float64Var(&o.scoreThreshold, "score-threshold", -1, "minimum detection score in [0, 1]; negative means the server's default")
	flag.UintVar(&o.maxInFlight, "max-in-flight", 0, "unanswered frames to ask for; 0 means the server's default")
	flag.StringVar(&o.tlsCA, "tls-ca", "", "PEM file of the CA that signed the server's certificate; enables TLS")
	flag.StringVar(&o.tlsServerName, "tls-server-name", "", "name to check in the server's certificate (default: the host of --server)")
	flag.StringVar(&o.token, "token", os.Getenv("FRAMEWIRE_TOKEN"), "bearer token sent as 'authorization: Bearer TOKEN' (default $FRAMEWIRE_TOKEN)")
	flag.StringVar(&o.violate, "violate", "", "testing only: break one protocol rule on purpose (frame-before-config, unspecified-encoding, second-config)")
	flag.Parse()
	if o.dir == "" || flag.NArg() != 0 || !violations[o.violate] || o.fps < 0 {
		flag.Usage()
		os.Exit(2)
	}
	return o
}

// jsonSkip, jsonDetection, ... are the JSON lines printed on stdout; every client
// of this repository prints the same shapes.
type jsonSkip struct {
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
}

type jsonBox struct {
	XMin float32 `json:"x_min"`
	YMin float32 `json:"y_min"`
	XMax float32 `json:"x_max"`
	YMax float32 `json:"y_max"`
}

type jsonDetection struct {
	ClassID uint32  `json:"class_id"`
	Label   string  `json:"label"`
	Score   float32 `json:"score"`
	Box     jsonBox `json:"box"`
}

type jsonError struct {
	Code    int32  `json:"code"`
	Message string `json:"message"`
}

func skipsOf(skipped []*framewirev1.SkippedFrame) []jsonSkip {
	out := make([]jsonSkip, 0, len(skipped))
	for _, s := range skipped {
		out = append(out, jsonSkip{Seq: s.GetSeq(), Reason: skipReasonName(s.GetReason())})
	}
	return out
}

// skipReasonName turns SKIP_REASON_SUPERSEDED into "superseded", the name the
// server's metrics and the Python agent use.
func skipReasonName(reason framewirev1.SkipReason) string {
	return strings.ToLower(strings.TrimPrefix(reason.String(), "SKIP_REASON_"))
}

func printJSON(value interface{}) {
	line, err := json.Marshal(value)
	if err != nil {
		fail(fmt.Errorf("encoding output: %w", err))
	}
	fmt.Println(string(line))
}

// fail prints the gRPC status and message of err (or the error itself) and exits 1.
func fail(err error) {
	if s, ok := status.FromError(err); ok && s.Code() != 0 {
		fmt.Fprintf(os.Stderr, "error: %s (%d): %s\n", codeName(uint32(s.Code())), uint32(s.Code()), s.Message())
	} else {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
	}
	os.Exit(1)
}

// codeName is the canonical name of a gRPC status code, as in the gRPC spec.
func codeName(code uint32) string {
	names := []string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
		"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
		"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
		"UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}
	if int(code) < len(names) {
		return names[code]
	}
	return fmt.Sprintf("CODE_%d", code)
}

func jpegFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, entry := range entries {
		ext := strings.ToLower(filepath.Ext(entry.Name()))
		if !entry.IsDir() && (ext == ".jpg" || ext == ".jpeg") {
			files = append(files, filepath.Join(dir, entry.Name()))
		}
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("no .jpg or .jpeg files in %s", dir)
	}
	return files, nil
}

// capture is a frame taken from the folder and not yet sent.
type capture struct {
	seq  uint64
	file string
	at   time.Time
}

// stream holds one StreamFrames call and the client's books on it.
type stream struct {
	opts    options
	call    framewirev1.IngestService_StreamFramesClient
	sendSeq uint64
	// What the reader goroutine reads: responses, then the call's end (io.EOF when OK).
	responses chan *framewirev1.StreamFramesResponse
	failures  chan error

	maxInFlight      int
	reportInterval   time.Duration
	maxReportSamples int
	inFlight         map[uint64]bool

	// Deltas for the next AgentReport.
	latencies      []time.Duration
	edgeSkipped    uint64
	bytesSent      uint64
	framesCaptured uint64
	framesSent     uint64

	// Totals for the summary line.
	totalCaptured, totalSent, totalResults, totalServerSkipped, totalEdgeSkipped uint64
}

func (s *stream) send(request *framewirev1.StreamFramesRequest) {
	if err := s.call.Send(request); err != nil {
		if errors.Is(err, io.EOF) {
			// The call is over and its status comes from Recv, which only the reader
			// goroutine calls (two concurrent Recvs are not allowed).
			s.failWithStatus()
		}
		fail(err)
	}
}

// failWithStatus waits for the reader goroutine to reach the end of the call and
// fails with the call's status.
func (s *stream) failWithStatus() {
	for {
		select {
		case <-s.responses:
		case err := <-s.failures:
			if errors.Is(err, io.EOF) {
				fail(errors.New("protocol error: the server ended the call with frames unanswered"))
			}
			fail(err)
		}
	}
}

func (s *stream) config() *framewirev1.StreamFramesRequest {
	config := &framewirev1.StreamConfig{
		StreamId:      s.opts.streamID,
		Model:         s.opts.model,
		MaxInFlight:   uint32(s.opts.maxInFlight),
		ClientVersion: clientVersion,
	}
	if s.opts.scoreThreshold >= 0 {
		threshold := float32(s.opts.scoreThreshold)
		config.ScoreThreshold = &threshold
	}
	return &framewirev1.StreamFramesRequest{Kind: &framewirev1.StreamFramesRequest_Config{Config: config}}
}

func (s *stream) sendFrame(c capture) {
	data, err := os.ReadFile(c.file)
	if err != nil {
		fail(err)
	}
	header, err := jpeg.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		fail(fmt.Errorf("%s: not a JPEG: %w", c.file, err))
	}
	encoding := framewirev1.Encoding_ENCODING_JPEG
	if s.opts.violate == "unspecified-encoding" {
		encoding = framewirev1.Encoding_ENCODING_UNSPECIFIED
	}
	frame := &framewirev1.Frame{
		Seq:         c.seq,
		CaptureTime: timestamppb.New(c.at),
		Encoding:    encoding,
		Width:       uint32(header.Width),
		Height:      uint32(header.Height),
		Data:        data,
	}
	s.send(&framewirev1.StreamFramesRequest{Kind: &framewirev1.StreamFramesRequest_Frame{Frame: frame}})
	s.inFlight[c.seq] = true
	s.bytesSent += uint64(len(data))
	s.framesSent++
	s.totalSent++
}

func (s *stream) sendReport() {
	count := len(s.latencies)
	if count > s.maxReportSamples {
		count = s.maxReportSamples
	}
	// A running total on this call: it acknowledges the results read so far.
	resultsReceived := s.totalResults
	report := &framewirev1.AgentReport{
		BytesSent:       s.bytesSent,
		FramesCaptured:  s.framesCaptured,
		FramesSent:      s.framesSent,
		ResultsReceived: &resultsReceived,
	}
	for _, latency := range s.latencies[:count] {
		report.EndToEndLatencies = append(report.EndToEndLatencies, durationpb.New(latency))
	}
	if s.edgeSkipped > 0 {
		report.Skips = []*framewirev1.SkipCount{{Reason: framewirev1.SkipReason_SKIP_REASON_SUPERSEDED, Count: s.edgeSkipped}}
	}
	if count == 0 && report.BytesSent == 0 && report.FramesCaptured == 0 && report.FramesSent == 0 && s.edgeSkipped == 0 {
		return // nothing happened since the last report
	}
	s.send(&framewirev1.StreamFramesRequest{Kind: &framewirev1.StreamFramesRequest_Report{Report: report}})
	s.latencies = s.latencies[count:]
	s.edgeSkipped, s.bytesSent, s.framesCaptured, s.framesSent = 0, 0, 0, 0
}

func (s *stream) forgetSkipped(skipped []*framewirev1.SkippedFrame) {
	for _, skip := range skipped {
		delete(s.inFlight, skip.GetSeq())
		s.totalServerSkipped++
	}
}

// handle acts on one server message and prints it; it returns the new
// capture interval when a FlowHint changes it.
func (s *stream) handle(response *framewirev1.StreamFramesResponse, interval time.Duration) time.Duration {
	switch kind := response.Kind.(type) {
	case *framewirev1.StreamFramesResponse_Result:
		result := kind.Result
		s.forgetSkipped(result.GetSkipped())
		delete(s.inFlight, result.GetSeq())
		s.totalResults++
		latency := time.Since(result.GetCaptureTime().AsTime())
		s.latencies = append(s.latencies, latency)
		detections := make([]jsonDetection, 0, len(result.GetDetections()))
		for _, d := range result.GetDetections() {
			box := d.GetBox()
			detections = append(detections, jsonDetection{
				ClassID: d.GetClassId(), Label: d.GetLabel(), Score: d.GetScore(),
				Box: jsonBox{box.GetXMin(), box.GetYMin(), box.GetXMax(), box.GetYMax()},
			})
		}
		var resultError *jsonError
		if result.GetError() != nil {
			resultError = &jsonError{Code: result.GetError().GetCode(), Message: result.GetError().GetMessage()}
		}
		printJSON(struct {
			Type       string          `json:"type"`
			Seq        uint64          `json:"seq"`
			LatencyMs  float64         `json:"latency_ms"`
			Detections []jsonDetection `json:"detections"`
			Skipped    []jsonSkip      `json:"skipped"`
			Error      *jsonError      `json:"error"`
		}{"result", result.GetSeq(), float64(latency.Microseconds()) / 1000, detections, skipsOf(result.GetSkipped()), resultError})
	case *framewirev1.StreamFramesResponse_SkipNotice:
		s.forgetSkipped(kind.SkipNotice.GetSkipped())
		printJSON(struct {
			Type    string     `json:"type"`
			Skipped []jsonSkip `json:"skipped"`
		}{"skip_notice", skipsOf(kind.SkipNotice.GetSkipped())})
	case *framewirev1.StreamFramesResponse_Hint:
		hint := kind.Hint
		// Files are sent as they are, so only the frame rate can be followed.
		if hint.TargetFps != nil && hint.GetTargetFps() > 0 && interval > 0 {
			interval = time.Duration(float64(time.Second) / float64(hint.GetTargetFps()))
		}
		printJSON(struct {
			Type        string   `json:"type"`
			TargetFps   *float32 `json:"target_fps"`
			JpegQuality *uint32  `json:"jpeg_quality"`
			Scale       *float32 `json:"scale"`
			Reason      string   `json:"reason"`
		}{"hint", hint.TargetFps, hint.JpegQuality, hint.Scale, hint.GetReason()})
	case *framewirev1.StreamFramesResponse_Accepted:
		fail(errors.New("protocol error: a second StreamAccepted"))
	default:
		fail(fmt.Errorf("protocol error: an empty or unknown response %v", response))
	}
	return interval
}

func main() {
	opts := parseOptions()
	files, err := jpegFiles(opts.dir)
	if err != nil {
		fail(err)
	}

	transport := grpc.WithInsecure()
	if opts.tlsCA != "" {
		tlsCredentials, err := credentials.NewClientTLSFromFile(opts.tlsCA, opts.tlsServerName)
		if err != nil {
			fail(fmt.Errorf("reading --tls-ca: %w", err))
		}
		transport = grpc.WithTransportCredentials(tlsCredentials)
	}
	connection, err := grpc.Dial(opts.server, transport)
	if err != nil {
		fail(err)
	}
	defer connection.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if opts.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+opts.token)
	}
	call, err := framewirev1.NewIngestServiceClient(connection).StreamFrames(ctx)
	if err != nil {
		fail(err)
	}
	responses := make(chan *framewirev1.StreamFramesResponse)
	failures := make(chan error, 1)
	s := &stream{
		opts: opts, call: call, inFlight: map[uint64]bool{},
		reportInterval: defaultReportInterval, maxReportSamples: defaultMaxReportSamples,
		responses: responses, failures: failures,
	}
	go func() {
		for {
			response, err := call.Recv()
			if err != nil {
				failures <- err // io.EOF when the call ends with OK
				return
			}
			responses <- response
		}
	}()

	if opts.violate == "frame-before-config" {
		s.sendFrame(capture{seq: 1, file: files[0], at: time.Now()})
	}
	s.send(s.config())

	var accepted *framewirev1.StreamAccepted
	select {
	case response := <-responses:
		accepted = response.GetAccepted()
		if accepted == nil {
			fail(fmt.Errorf("protocol error: the first response is not StreamAccepted: %v", response))
		}
	case err := <-failures:
		if errors.Is(err, io.EOF) {
			fail(errors.New("protocol error: the call ended before StreamAccepted"))
		}
		fail(err)
	}
	s.maxInFlight = int(accepted.GetMaxInFlight())
	if s.maxInFlight < 1 {
		s.maxInFlight = 1
	}
	if d := accepted.GetLimits().GetReportInterval(); d != nil && d.AsDuration() > 0 {
		s.reportInterval = d.AsDuration()
	}
	if n := accepted.GetLimits().GetMaxReportSamples(); n > 0 {
		s.maxReportSamples = int(n)
	}
	printJSON(struct {
		Type           string  `json:"type"`
		StreamID       string  `json:"stream_id"`
		ModelID        string  `json:"model_id"`
		MaxInFlight    uint32  `json:"max_in_flight"`
		ScoreThreshold float32 `json:"score_threshold"`
	}{"accepted", accepted.GetStreamId(), accepted.GetModelId(), accepted.GetMaxInFlight(), accepted.GetScoreThreshold()})
	if opts.violate == "second-config" {
		s.send(s.config())
	}

	var interval time.Duration
	if opts.fps > 0 {
		interval = time.Duration(float64(time.Second) / opts.fps)
	}
	next := 0                 // the index of the next file to capture
	var waiting *capture      // captured, waiting for room in the window
	nextCapture := time.Now() // when the next file is captured (with --fps)
	nextReport := time.Now().Add(s.reportInterval)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()

	for {
		now := time.Now()
		// Capture: on the clock with --fps, or whenever the window has room without it.
		if next < len(files) && ((interval > 0 && !now.Before(nextCapture)) ||
			(interval == 0 && waiting == nil && len(s.inFlight) < s.maxInFlight)) {
			if waiting != nil {
				s.edgeSkipped++ // a newer capture replaces the one still waiting
				s.totalEdgeSkipped++
			}
			s.sendSeq++
			waiting = &capture{seq: s.sendSeq, file: files[next], at: now}
			next++
			s.framesCaptured++
			s.totalCaptured++
			nextCapture = nextCapture.Add(interval)
			if nextCapture.Before(now) {
				nextCapture = now.Add(interval)
			}
		}
		if waiting != nil && len(s.inFlight) < s.maxInFlight {
			s.sendFrame(*waiting)
			waiting = nil
			continue
		}
		if !now.Before(nextReport) {
			s.sendReport()
			nextReport = now.Add(s.reportInterval)
		}
		if next == len(files) && waiting == nil && len(s.inFlight) == 0 {
			break
		}
		wake := nextReport
		if interval > 0 && next < len(files) && nextCapture.Before(wake) {
			wake = nextCapture
		}
		timer.Reset(time.Until(wake))
		select {
		case response := <-responses:
			interval = s.handle(response, interval)
		case err := <-failures:
			failures <- err
			s.failWithStatus()
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}

	s.sendReport()
	if err := call.CloseSend(); err != nil {
		fail(err)
	}
	for {
		select {
		case response := <-responses:
			s.handle(response, interval)
			continue
		case err := <-failures:
			if !errors.Is(err, io.EOF) {
				fail(err)
			}
		}
		break
	}
	printJSON(struct {
		Type           string `json:"type"`
		FramesCaptured uint64 `json:"frames_captured"`
		FramesSent     uint64 `json:"frames_sent"`
		Results        uint64 `json:"results"`
		ServerSkipped  uint64 `json:"server_skipped"`
		EdgeSkipped    uint64 `json:"edge_skipped"`
	}{"summary", s.totalCaptured, s.totalSent, s.totalResults, s.totalServerSkipped, s.totalEdgeSkipped})
}
