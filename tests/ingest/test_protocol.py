"""StreamFrames against a real `framewire serve`: results, every protocol rule, exact statuses."""

from __future__ import annotations

import time

import grpc
import pytest

from framewire.common.protoutil import seconds
from framewire.ingest.server import IngestServer
from framewire.v1 import common_pb2, ingest_service_pb2
from tests.harness import ServerThread, health_status, metric_value, scrape, wait_until
from tests.streaming import Jpeg, SyncStream, config_request, frame_request, vtest_jpegs

Server = ServerThread[IngestServer]


def open_stream(
    server: Server, **config: object
) -> tuple[SyncStream, ingest_service_pb2.StreamAccepted]:
    stream = SyncStream(server.server.port)
    stream.send(config_request(**config))
    first = stream.read()
    assert first.WhichOneof("kind") == "accepted"
    return stream, first.accepted


def refused(server: Server, *requests: ingest_service_pb2.StreamFramesRequest) -> grpc.RpcError:
    stream = SyncStream(server.server.port)
    try:
        for request in requests:
            stream.send(request)
        return stream.error()
    finally:
        stream.close()


def test_health_is_serving(serve: Server) -> None:
    assert health_status(serve.server.port) == "SERVING"
    assert health_status(serve.server.port, "framewire.v1.IngestService") == "SERVING"


def test_vtest_frames_come_back_in_order_with_people_and_cars(serve: Server) -> None:
    stream, accepted = open_stream(serve, stream_id="vtest")
    try:
        assert accepted.stream_id == "vtest"
        assert accepted.model_id.startswith("ssd_mobilenet_v2_coco@")
        assert accepted.max_in_flight == 2
        assert "person" in accepted.labels
        assert accepted.limits.max_frame_bytes == 150_000
        assert seconds(accepted.limits.max_frame_age) == 5.0
        results = []
        for seq, jpeg in enumerate(vtest_jpegs()[:12], start=1):
            stream.send(frame_request(seq, jpeg))
            response = stream.read()
            assert response.WhichOneof("kind") == "result", response
            results.append(response.result)
        stream.close_input()
        assert stream.read_all() == []  # the call ends OK once everything is answered
    finally:
        stream.close()
    assert [result.seq for result in results] == list(range(1, 13))
    people = sum(any(d.label == "person" for d in r.detections) for r in results)
    cars = sum(any(d.label == "car" for d in r.detections) for r in results)
    assert people >= 10, f"person in only {people} of 12 vtest frames"
    assert cars >= 1, "no car found in 12 vtest frames"
    for result in results:
        assert not result.HasField("error")
        assert result.model_id == accepted.model_id
        assert result.batch_size == 1
        assert result.capture_time.seconds > 0
        for stage in ("queue", "decode", "preprocess", "inference", "postprocess", "total"):
            assert result.timings.HasField(stage), stage
        assert seconds(result.timings.total) >= seconds(result.timings.inference) > 0
        for detection in result.detections:
            box = detection.box
            assert 0 <= box.x_min < box.x_max <= 1
            assert 0 <= box.y_min < box.y_max <= 1
            assert detection.score >= accepted.score_threshold


def test_stream_settings_are_applied(serve: Server) -> None:
    stream, accepted = open_stream(
        serve, stream_id="filtered", class_filter=["car"], score_threshold=0.3, max_in_flight=5
    )
    try:
        assert list(accepted.class_filter) == ["car"]
        assert accepted.score_threshold == pytest.approx(0.3)
        assert accepted.max_in_flight == 5
        labels = set()
        for seq, jpeg in enumerate(vtest_jpegs()[:6], start=1):
            stream.send(frame_request(seq, jpeg))
            labels |= {d.label for d in stream.read().result.detections}
        assert labels == {"car"}
    finally:
        stream.close()


def test_config_must_come_first(serve: Server) -> None:
    error = refused(serve, frame_request(1, vtest_jpegs()[0]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "first message of a stream must be a StreamConfig, not frame" in error.details()


def test_a_second_config_ends_the_stream(serve: Server) -> None:
    stream, _ = open_stream(serve)
    try:
        stream.send(config_request())
        error = stream.error()
    finally:
        stream.close()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "got a second one" in error.details()


def test_empty_request_is_refused(serve: Server) -> None:
    stream, _ = open_stream(serve)
    try:
        stream.send(ingest_service_pb2.StreamFramesRequest())
        error = stream.error()
    finally:
        stream.close()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "empty StreamFramesRequest" in error.details()


def test_seq_going_backwards_ends_the_stream(serve: Server) -> None:
    jpeg = vtest_jpegs()[0]
    stream, _ = open_stream(serve)
    try:
        stream.send(frame_request(5, jpeg))
        assert stream.read().result.seq == 5
        stream.send(frame_request(4, jpeg))
        error = stream.error()
    finally:
        stream.close()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "frame seq 4 is not greater than the previous seq 5" in error.details()


def test_unspecified_encoding_ends_the_stream(serve: Server) -> None:
    request = frame_request(1, vtest_jpegs()[0], encoding=common_pb2.ENCODING_UNSPECIFIED)
    error = refused(serve, config_request(), request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ENCODING_UNSPECIFIED" in error.details()


def test_oversize_frame_ends_the_stream(serve: Server) -> None:
    big = Jpeg(data=vtest_jpegs()[0].data + bytes(200_000), width=480, height=360)
    error = refused(serve, config_request(), frame_request(1, big))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "over the limit of 150000" in error.details()


@pytest.mark.parametrize(
    ("config", "code", "words"),
    [
        ({"class_filter": ["unicorn"]}, grpc.StatusCode.INVALID_ARGUMENT, "unicorn"),
        ({"model": "yolov8n"}, grpc.StatusCode.NOT_FOUND, "not served here"),
        ({"stream_id": "bad id!"}, grpc.StatusCode.INVALID_ARGUMENT, "stream_id"),
        ({"score_threshold": 2.0}, grpc.StatusCode.INVALID_ARGUMENT, "score_threshold"),
    ],
)
def test_bad_stream_configs(
    serve: Server, config: dict[str, object], code: grpc.StatusCode, words: str
) -> None:
    error = refused(serve, config_request(**config))
    assert error.code() == code
    assert words in error.details()


def test_undecodable_frames_fail_alone(serve: Server) -> None:
    good = vtest_jpegs()[1]
    corrupt = Jpeg(data=good.data[: len(good.data) // 3], width=good.width, height=good.height)
    liar = Jpeg(data=good.data, width=good.width + 1, height=good.height)
    stream, _ = open_stream(serve)
    try:
        answers = []
        for seq, jpeg in enumerate([corrupt, liar, good], start=1):
            stream.send(frame_request(seq, jpeg))
            answers.append(stream.read().result)
    finally:
        stream.close()
    assert answers[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "truncated" in answers[0].error.message
    assert "declares 481x360 but its JPEG header says 480x360" in answers[1].error.message
    assert not answers[2].HasField("error")
    assert any(d.label == "person" for d in answers[2].detections)


def test_too_many_streams_are_refused_fast(serve: Server) -> None:
    streams = [open_stream(serve, stream_id=f"cam-{n}")[0] for n in range(3)]
    try:
        started = time.monotonic()
        error = refused(serve, config_request(stream_id="one-too-many"))
        elapsed = time.monotonic() - started
    finally:
        for stream in streams:
            stream.close()
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "maximum of 3 streams" in error.details()
    assert elapsed < 5.0


def test_server_still_serves_and_counts_add_up(serve: Server) -> None:
    # After every refusal above, a normal stream still works...
    stream, _ = open_stream(serve, stream_id="after")
    try:
        stream.send(frame_request(1, vtest_jpegs()[2]))
        assert stream.read().result.detections
        stream.close_input()
        assert stream.read_all() == []
    finally:
        stream.close()
    # ...and every frame the server received was processed, failed or skipped.
    metrics_port = serve.server.metrics_port
    assert metrics_port is not None
    wait_until(
        lambda: metric_value(scrape(metrics_port), "framewire_active_streams") == 0,
        10,
        "the last stream's close to reach the gauges",
    )
    text = scrape(metrics_port)
    received = metric_value(text, "framewire_frames_received_total")
    processed = metric_value(text, "framewire_frames_processed_total")
    failed = metric_value(text, "framewire_frames_failed_total")
    skipped = metric_value(text, "framewire_frames_skipped_total")
    assert received > 0
    assert received == processed + failed + skipped
    assert metric_value(text, "framewire_active_streams") == 0
    assert metric_value(text, "framewire_streams_rejected_total", code="INVALID_ARGUMENT") >= 5
