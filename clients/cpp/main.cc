// framewire-cpp-client: a small device client for framewire's IngestService.
//
// It streams the JPEG files of a folder, in name order, as if a camera captured
// them at --fps, keeps at most the max_in_flight frames that StreamAccepted grants
// unanswered (a capture that finds the window full waits, and a newer capture
// replaces it: an edge skip), prints every server message as one JSON line on
// stdout, sends AgentReports with end-to-end latencies, and exits non-zero with
// the gRPC status and message when the call fails.

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "framewire/v1/ingest_service.grpc.pb.h"

namespace {

namespace v1 = framewire::v1;
using Clock = std::chrono::steady_clock;
using WallClock = std::chrono::system_clock;

constexpr const char* kClientVersion = "framewire-cpp-client/0.1.0";
// Used until StreamAccepted says otherwise (the contract's defaults).
constexpr auto kDefaultReportInterval = std::chrono::seconds(5);
constexpr uint32_t kDefaultMaxReportSamples = 1000;

struct Options {
  std::string server = "localhost:50051";
  std::string dir;
  double fps = 10;
  std::string stream_id = "cpp-client";
  std::string model;
  double score_threshold = -1;
  uint32_t max_in_flight = 0;
  std::string tls_ca;
  std::string tls_server_name;
  std::string token;
  std::string violate;
};

[[noreturn]] void Usage() {
  std::cerr
      << "usage: framewire-cpp-client --dir FOLDER [options]\n"
         "  --server HOST:PORT       ingest address (default localhost:50051)\n"
         "  --dir FOLDER             folder whose *.jpg/*.jpeg files are sent, in name order\n"
         "  --fps N                  capture rate; 0 sends each file as soon as the window has "
         "room (default 10)\n"
         "  --stream-id ID           stream id (default cpp-client)\n"
         "  --model NAME             model to ask for (default: the server's)\n"
         "  --score-threshold X      minimum detection score in [0, 1] (default: the server's)\n"
         "  --max-in-flight N        unanswered frames to ask for (default: the server's)\n"
         "  --tls-ca FILE            PEM file of the CA that signed the server's certificate; "
         "enables TLS\n"
         "  --tls-server-name NAME   name to check in the server's certificate\n"
         "  --token TOKEN            bearer token sent as 'authorization: Bearer TOKEN' "
         "(default $FRAMEWIRE_TOKEN)\n"
         "  --violate RULE           testing only: break one protocol rule on purpose\n"
         "                           (frame-before-config, unspecified-encoding, second-config)\n";
  std::exit(2);
}

Options ParseOptions(int argc, char** argv) {
  Options options;
  if (const char* token = std::getenv("FRAMEWIRE_TOKEN")) options.token = token;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "-h" || flag == "--help" || i + 1 >= argc) Usage();
    std::string value = argv[++i];
    try {
      if (flag == "--server") options.server = value;
      else if (flag == "--dir") options.dir = value;
      else if (flag == "--fps") options.fps = std::stod(value);
      else if (flag == "--stream-id") options.stream_id = value;
      else if (flag == "--model") options.model = value;
      else if (flag == "--score-threshold") options.score_threshold = std::stod(value);
      else if (flag == "--max-in-flight") options.max_in_flight = std::stoul(value);
      else if (flag == "--tls-ca") options.tls_ca = value;
      else if (flag == "--tls-server-name") options.tls_server_name = value;
      else if (flag == "--token") options.token = value;
      else if (flag == "--violate") options.violate = value;
      else Usage();
    } catch (const std::exception&) {
      Usage();
    }
  }
  const std::set<std::string> violations = {"", "frame-before-config", "unspecified-encoding",
                                            "second-config"};
  if (options.dir.empty() || options.fps < 0 || !violations.count(options.violate)) Usage();
  return options;
}

const char* CodeName(int code) {
  static const char* const kNames[] = {
      "OK",        "CANCELLED",         "UNKNOWN",          "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",   "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",      "UNAVAILABLE",      "DATA_LOSS",
      "UNAUTHENTICATED"};
  return code >= 0 && code <= 16 ? kNames[code] : "UNKNOWN_CODE";
}

[[noreturn]] void Fail(const std::string& message) {
  std::cout.flush();
  std::cerr << "error: " << message << "\n";
  std::exit(1);
}

[[noreturn]] void FailStatus(const grpc::Status& status) {
  std::ostringstream message;
  message << CodeName(status.error_code()) << " (" << status.error_code()
          << "): " << status.error_message();
  Fail(message.str());
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail("cannot read " + path.string());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The width and height in a JPEG's start-of-frame header.
std::pair<uint32_t, uint32_t> JpegSize(const std::string& data, const std::string& name) {
  auto byte = [&](size_t i) { return static_cast<uint8_t>(data[i]); };
  if (data.size() < 4 || byte(0) != 0xFF || byte(1) != 0xD8) Fail(name + ": not a JPEG");
  size_t i = 2;
  while (i + 4 <= data.size()) {
    if (byte(i) != 0xFF) Fail(name + ": broken JPEG marker");
    uint8_t marker = byte(i + 1);
    if (marker == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    size_t length = (byte(i + 2) << 8) | byte(i + 3);
    bool start_of_frame = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 &&
                          marker != 0xC8 && marker != 0xCC;
    if (start_of_frame) {
      if (i + 9 > data.size()) break;
      uint32_t height = (byte(i + 5) << 8) | byte(i + 6);
      uint32_t width = (byte(i + 7) << 8) | byte(i + 8);
      return {width, height};
    }
    i += 2 + length;
  }
  Fail(name + ": no JPEG start-of-frame header");
}

std::string JsonString(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
          out += escaped;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string JsonFloat(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", value);
  return text;
}

// SKIP_REASON_SUPERSEDED -> "superseded", the name the server's metrics and the Python agent use.
std::string SkipReasonName(v1::SkipReason reason) {
  std::string name = v1::SkipReason_Name(reason);
  const std::string prefix = "SKIP_REASON_";
  if (name.rfind(prefix, 0) == 0) name = name.substr(prefix.size());
  std::transform(name.begin(), name.end(), name.begin(), ::tolower);
  return name;
}

template <typename Skipped>
std::string JsonSkips(const Skipped& skipped) {
  std::string out = "[";
  for (int i = 0; i < skipped.size(); ++i) {
    if (i) out += ",";
    out += "{\"seq\":" + std::to_string(skipped.Get(i).seq()) +
           ",\"reason\":" + JsonString(SkipReasonName(skipped.Get(i).reason())) + "}";
  }
  return out + "]";
}

void PrintLine(const std::string& line) { std::cout << line << "\n" << std::flush; }

google::protobuf::Timestamp ToTimestamp(WallClock::time_point at) {
  auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count();
  google::protobuf::Timestamp timestamp;
  timestamp.set_seconds(nanos / 1000000000);
  timestamp.set_nanos(static_cast<int32_t>(nanos % 1000000000));
  return timestamp;
}

std::chrono::nanoseconds ToNanos(const google::protobuf::Duration& duration) {
  return std::chrono::seconds(duration.seconds()) + std::chrono::nanoseconds(duration.nanos());
}

using Call = grpc::ClientReaderWriter<v1::StreamFramesRequest, v1::StreamFramesResponse>;

// Responses read by the reader thread, handed to the main thread.
class Inbox {
 public:
  void Put(v1::StreamFramesResponse response) {
    std::lock_guard<std::mutex> lock(mutex_);
    responses_.push_back(std::move(response));
    ready_.notify_one();
  }
  void Close() {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    ready_.notify_one();
  }
  // The next response, or nothing when the call ended or `until` passed first.
  std::optional<v1::StreamFramesResponse> Take(Clock::time_point until, bool* ended) {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait_until(lock, until, [&] { return !responses_.empty() || closed_; });
    *ended = responses_.empty() && closed_;
    if (responses_.empty()) return std::nullopt;
    v1::StreamFramesResponse response = std::move(responses_.front());
    responses_.pop_front();
    return response;
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<v1::StreamFramesResponse> responses_;
  bool closed_ = false;
};

struct Capture {
  uint64_t seq;
  std::filesystem::path file;
  WallClock::time_point at;
};

class Client {
 public:
  Client(Options options, std::vector<std::filesystem::path> files)
      : options_(std::move(options)), files_(std::move(files)) {}

  int Run() {
    std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
    grpc::ChannelArguments arguments;
    if (!options_.tls_ca.empty()) {
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = ReadFile(options_.tls_ca);
      credentials = grpc::SslCredentials(ssl);
      if (!options_.tls_server_name.empty()) {
        arguments.SetSslTargetNameOverride(options_.tls_server_name);
      }
    }
    auto channel = grpc::CreateCustomChannel(options_.server, credentials, arguments);
    auto stub = v1::IngestService::NewStub(channel);
    if (!options_.token.empty()) context_.AddMetadata("authorization", "Bearer " + options_.token);
    call_ = stub->StreamFrames(&context_);
    std::thread reader([this] {
      v1::StreamFramesResponse response;
      while (call_->Read(&response)) inbox_.Put(response);
      inbox_.Close();
    });
    int code = Stream();
    reader.join();
    grpc::Status status = call_->Finish();
    if (!status.ok()) FailStatus(status);
    if (code == 0) {
      PrintLine("{\"type\":\"summary\",\"frames_captured\":" + std::to_string(total_captured_) +
                ",\"frames_sent\":" + std::to_string(total_sent_) +
                ",\"results\":" + std::to_string(total_results_) +
                ",\"server_skipped\":" + std::to_string(total_server_skipped_) +
                ",\"edge_skipped\":" + std::to_string(total_edge_skipped_) + "}");
    }
    return code;
  }

 private:
  // Runs the stream; returns 0 after a clean end, or fails with the call's status.
  int Stream() {
    if (options_.violate == "frame-before-config") SendFrame({1, files_[0], WallClock::now()});
    Send(Config());

    bool ended = false;
    auto first = inbox_.Take(Clock::now() + std::chrono::hours(1), &ended);
    if (!first) EndWithStatus();
    if (!first->has_accepted()) Fail("protocol error: the first response is not StreamAccepted");
    const v1::StreamAccepted& accepted = first->accepted();
    max_in_flight_ = std::max<uint32_t>(1, accepted.max_in_flight());
    if (accepted.limits().has_report_interval() &&
        ToNanos(accepted.limits().report_interval()).count() > 0) {
      report_interval_ = ToNanos(accepted.limits().report_interval());
    }
    if (accepted.limits().max_report_samples() > 0) {
      max_report_samples_ = accepted.limits().max_report_samples();
    }
    PrintLine("{\"type\":\"accepted\",\"stream_id\":" + JsonString(accepted.stream_id()) +
              ",\"model_id\":" + JsonString(accepted.model_id()) +
              ",\"max_in_flight\":" + std::to_string(accepted.max_in_flight()) +
              ",\"score_threshold\":" + JsonFloat(accepted.score_threshold()) + "}");
    if (options_.violate == "second-config") Send(Config());

    std::chrono::nanoseconds interval{0};
    if (options_.fps > 0) {
      interval = std::chrono::nanoseconds(static_cast<int64_t>(1e9 / options_.fps));
    }
    size_t next = 0;
    std::optional<Capture> waiting;
    Clock::time_point next_capture = Clock::now();
    Clock::time_point next_report = Clock::now() + report_interval_;
    while (true) {
      Clock::time_point now = Clock::now();
      bool capture_due = next < files_.size() &&
                         ((interval.count() > 0 && now >= next_capture) ||
                          (interval.count() == 0 && !waiting && in_flight_.size() < max_in_flight_));
      if (capture_due) {
        if (waiting) {  // a newer capture replaces the one still waiting
          ++edge_skipped_;
          ++total_edge_skipped_;
        }
        waiting = Capture{++seq_, files_[next++], WallClock::now()};
        ++frames_captured_;
        ++total_captured_;
        next_capture += interval;
        if (next_capture < now) next_capture = now + interval;
      }
      if (waiting && in_flight_.size() < max_in_flight_) {
        SendFrame(*waiting);
        waiting.reset();
        continue;
      }
      if (now >= next_report) {
        SendReport();
        next_report = now + report_interval_;
      }
      if (next == files_.size() && !waiting && in_flight_.empty()) break;
      Clock::time_point wake = next_report;
      if (interval.count() > 0 && next < files_.size()) wake = std::min(wake, next_capture);
      auto response = inbox_.Take(wake, &ended);
      if (ended) {
        // The server ended the call: with an error, or with OK while frames were unanswered.
        grpc::Status status = call_->Finish();
        if (!status.ok()) FailStatus(status);
        Fail("protocol error: the server ended the call with frames unanswered");
      }
      if (response) Handle(*response, &interval);
    }

    SendReport();
    call_->WritesDone();
    while (true) {
      auto response = inbox_.Take(Clock::now() + std::chrono::hours(1), &ended);
      if (!response) break;
      Handle(*response, &interval);
    }
    return 0;
  }

  [[noreturn]] void EndWithStatus() {
    grpc::Status status = call_->Finish();
    if (!status.ok()) FailStatus(status);
    Fail("protocol error: the server ended the call before StreamAccepted");
  }

  v1::StreamFramesRequest Config() const {
    v1::StreamFramesRequest request;
    v1::StreamConfig* config = request.mutable_config();
    config->set_stream_id(options_.stream_id);
    config->set_model(options_.model);
    config->set_max_in_flight(options_.max_in_flight);
    config->set_client_version(kClientVersion);
    if (options_.score_threshold >= 0) {
      config->set_score_threshold(static_cast<float>(options_.score_threshold));
    }
    return request;
  }

  void Send(const v1::StreamFramesRequest& request) {
    // A failed write means the call is over; Finish, after the reader is done, says why.
    if (!call_->Write(request)) {
      bool ended = false;
      while (!ended) inbox_.Take(Clock::now() + std::chrono::hours(1), &ended);
      EndWithStatus();
    }
  }

  void SendFrame(const Capture& capture) {
    std::string data = ReadFile(capture.file);
    auto [width, height] = JpegSize(data, capture.file.string());
    v1::StreamFramesRequest request;
    v1::Frame* frame = request.mutable_frame();
    frame->set_seq(capture.seq);
    *frame->mutable_capture_time() = ToTimestamp(capture.at);
    frame->set_encoding(options_.violate == "unspecified-encoding" ? v1::ENCODING_UNSPECIFIED
                                                                   : v1::ENCODING_JPEG);
    frame->set_width(width);
    frame->set_height(height);
    bytes_sent_ += data.size();
    frame->set_data(std::move(data));
    Send(request);
    in_flight_.insert(capture.seq);
    ++frames_sent_;
    ++total_sent_;
  }

  void SendReport() {
    size_t count = std::min<size_t>(latencies_.size(), max_report_samples_);
    if (count == 0 && bytes_sent_ == 0 && frames_captured_ == 0 && frames_sent_ == 0 &&
        edge_skipped_ == 0) {
      return;  // nothing happened since the last report
    }
    v1::StreamFramesRequest request;
    v1::AgentReport* report = request.mutable_report();
    for (size_t i = 0; i < count; ++i) {
      auto nanos = latencies_[i].count();
      google::protobuf::Duration* latency = report->add_end_to_end_latencies();
      latency->set_seconds(nanos / 1000000000);
      latency->set_nanos(static_cast<int32_t>(nanos % 1000000000));
    }
    if (edge_skipped_ > 0) {
      v1::SkipCount* skip = report->add_skips();
      skip->set_reason(v1::SKIP_REASON_SUPERSEDED);
      skip->set_count(edge_skipped_);
    }
    report->set_bytes_sent(bytes_sent_);
    report->set_frames_captured(frames_captured_);
    report->set_frames_sent(frames_sent_);
    // A running total on this call: it acknowledges the results read so far.
    report->set_results_received(total_results_);
    Send(request);
    latencies_.erase(latencies_.begin(), latencies_.begin() + count);
    edge_skipped_ = bytes_sent_ = frames_captured_ = frames_sent_ = 0;
  }

  template <typename Skipped>
  void Forget(const Skipped& skipped) {
    for (const auto& skip : skipped) {
      in_flight_.erase(skip.seq());
      ++total_server_skipped_;
    }
  }

  void Handle(const v1::StreamFramesResponse& response, std::chrono::nanoseconds* interval) {
    switch (response.kind_case()) {
      case v1::StreamFramesResponse::kResult: {
        const v1::FrameResult& result = response.result();
        Forget(result.skipped());
        in_flight_.erase(result.seq());
        ++total_results_;
        auto captured = WallClock::time_point(std::chrono::duration_cast<WallClock::duration>(
            std::chrono::seconds(result.capture_time().seconds()) +
            std::chrono::nanoseconds(result.capture_time().nanos())));
        auto latency = std::chrono::duration_cast<std::chrono::nanoseconds>(
            WallClock::now() - captured);
        latencies_.push_back(latency);
        std::string detections = "[";
        for (int i = 0; i < result.detections_size(); ++i) {
          const v1::Detection& d = result.detections(i);
          if (i) detections += ",";
          detections += "{\"class_id\":" + std::to_string(d.class_id()) +
                        ",\"label\":" + JsonString(d.label()) +
                        ",\"score\":" + JsonFloat(d.score()) +
                        ",\"box\":{\"x_min\":" + JsonFloat(d.box().x_min()) +
                        ",\"y_min\":" + JsonFloat(d.box().y_min()) +
                        ",\"x_max\":" + JsonFloat(d.box().x_max()) +
                        ",\"y_max\":" + JsonFloat(d.box().y_max()) + "}}";
        }
        detections += "]";
        std::string error = "null";
        if (result.has_error()) {
          error = "{\"code\":" + std::to_string(result.error().code()) +
                  ",\"message\":" + JsonString(result.error().message()) + "}";
        }
        PrintLine("{\"type\":\"result\",\"seq\":" + std::to_string(result.seq()) +
                  ",\"latency_ms\":" + JsonFloat(latency.count() / 1e6) +
                  ",\"detections\":" + detections + ",\"skipped\":" + JsonSkips(result.skipped()) +
                  ",\"error\":" + error + "}");
        break;
      }
      case v1::StreamFramesResponse::kSkipNotice:
        Forget(response.skip_notice().skipped());
        PrintLine("{\"type\":\"skip_notice\",\"skipped\":" +
                  JsonSkips(response.skip_notice().skipped()) + "}");
        break;
      case v1::StreamFramesResponse::kHint: {
        const v1::FlowHint& hint = response.hint();
        // Files are sent as they are, so only the frame rate can be followed.
        if (hint.has_target_fps() && hint.target_fps() > 0 && interval->count() > 0) {
          *interval = std::chrono::nanoseconds(static_cast<int64_t>(1e9 / hint.target_fps()));
        }
        PrintLine(
            "{\"type\":\"hint\",\"target_fps\":" +
            (hint.has_target_fps() ? JsonFloat(hint.target_fps()) : "null") +
            ",\"jpeg_quality\":" +
            (hint.has_jpeg_quality() ? std::to_string(hint.jpeg_quality()) : "null") +
            ",\"scale\":" + (hint.has_scale() ? JsonFloat(hint.scale()) : "null") +
            ",\"reason\":" + JsonString(hint.reason()) + "}");
        break;
      }
      case v1::StreamFramesResponse::kAccepted:
        Fail("protocol error: a second StreamAccepted");
      default:
        Fail("protocol error: an empty or unknown response");
    }
  }

  Options options_;
  std::vector<std::filesystem::path> files_;
  grpc::ClientContext context_;
  std::unique_ptr<Call> call_;
  Inbox inbox_;

  uint64_t seq_ = 0;
  uint32_t max_in_flight_ = 1;
  std::chrono::nanoseconds report_interval_ = kDefaultReportInterval;
  uint32_t max_report_samples_ = kDefaultMaxReportSamples;
  std::set<uint64_t> in_flight_;

  // Deltas for the next AgentReport.
  std::vector<std::chrono::nanoseconds> latencies_;
  uint64_t edge_skipped_ = 0, bytes_sent_ = 0, frames_captured_ = 0, frames_sent_ = 0;
  // Totals for the summary line.
  uint64_t total_captured_ = 0, total_sent_ = 0, total_results_ = 0, total_server_skipped_ = 0,
           total_edge_skipped_ = 0;
};

std::vector<std::filesystem::path> JpegFiles(const std::string& dir) {
  std::vector<std::filesystem::path> files;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    std::string ext = entry.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
    if (entry.is_regular_file() && (ext == ".jpg" || ext == ".jpeg")) files.push_back(entry.path());
  }
  if (error) Fail("cannot list " + dir + ": " + error.message());
  std::sort(files.begin(), files.end());
  if (files.empty()) Fail("no .jpg or .jpeg files in " + dir);
  return files;
}

}  // namespace

int main(int argc, char** argv) {
  Options options = ParseOptions(argc, argv);
  auto files = JpegFiles(options.dir);
  Client client(std::move(options), std::move(files));
  return client.Run();
}
