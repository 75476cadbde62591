"""SSD MobileNet v2 COCO through the real server, on both backends, with real images.

One server per backend for the whole module: the default model on OpenCV
(what a fresh install runs) and the ONNX conversion on ONNX Runtime.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from framewire.inference.labels import COCO_LABELS
from framewire.v1 import common_pb2, inference_service_pb2
from tests.inference.conftest import (
    RunningServer,
    box,
    encode_jpeg,
    engine_config,
    iou,
    jpeg_image,
    media_bytes,
    model_path,
    running_server,
    synthetic_jpeg,
    video_frames,
)

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
# Small enough that a 1200x1000 test image is over it; the media files are under it.
PIXEL_LIMIT = 1_000_000

# Where the objects are (x_min, y_min, x_max, y_max), looked up by eye on the photos.
DOG_JPG = {
    "bicycle": [0.10, 0.23, 0.71, 0.71],
    "dog": [0.18, 0.36, 0.41, 0.93],
    "car": [0.59, 0.14, 0.90, 0.29],
}
PERSON_JPG = {
    "person": [0.29, 0.24, 0.42, 0.88],
    "horse": [0.62, 0.31, 0.94, 0.81],
}


@pytest.fixture(scope="module")
def opencv_server() -> Iterator[RunningServer]:
    """The default model (no --model), which runs on the opencv backend."""
    yield from running_server(engine_config(max_image_pixels=PIXEL_LIMIT))


@pytest.fixture(scope="module")
def onnx_server() -> Iterator[RunningServer]:
    yield from running_server(
        engine_config(model=model_path("ssd_mobilenet_v2_coco.onnx"), intra_op_threads=2)
    )


@pytest.fixture(params=["opencv", "onnxruntime"])
def server(request: pytest.FixtureRequest) -> RunningServer:
    name = "opencv_server" if request.param == "opencv" else "onnx_server"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def best_by_label(result: inference_service_pb2.ImageResult) -> dict[str, list[float]]:
    """The highest-scoring box of each label."""
    found: dict[str, list[float]] = {}
    for detection in result.detections:  # highest score first
        found.setdefault(detection.label, box(detection))
    return found


def assert_well_formed(result: inference_service_pb2.ImageResult) -> None:
    assert not result.HasField("error"), result.error
    scores = [detection.score for detection in result.detections]
    assert scores == sorted(scores, reverse=True)
    for detection in result.detections:
        x_min, y_min, x_max, y_max = box(detection)
        assert 0.0 <= x_min < x_max <= 1.0
        assert 0.0 <= y_min < y_max <= 1.0
        assert COCO_LABELS[detection.class_id] == detection.label
        assert detection.score >= 0.5  # the default threshold


def test_model_info_describes_the_default_model(opencv_server: RunningServer) -> None:
    info = opencv_server.stub.GetModelInfo(inference_service_pb2.GetModelInfoRequest())
    assert re.fullmatch(r"ssd_mobilenet_v2_coco@[0-9a-f]{8}", info.model_id)
    assert (info.backend, info.head) == ("opencv", "ssd")
    assert (info.input_width, info.input_height) == (300, 300)
    assert tuple(info.labels) == COCO_LABELS
    assert info.max_batch_size == 8
    assert info.max_image_pixels == PIXEL_LIMIT
    assert info.default_score_threshold == pytest.approx(0.5)
    assert info.concurrent_batches == 2  # --concurrent-batches' default


def test_dog_bicycle_and_car(server: RunningServer) -> None:
    response = server.detect(jpeg_image(media_bytes("dog.jpg")))
    (result,) = response.results
    assert_well_formed(result)
    assert (result.width, result.height) == (768, 576)
    found = best_by_label(result)
    for label, expected in DOG_JPG.items():
        assert label in found, f"no {label} in {sorted(found)}"
        assert iou(found[label], expected) >= 0.8, (label, found[label])
    assert response.model_id == server.server.engine.model_id


def test_person_and_horse(server: RunningServer) -> None:
    (result,) = server.detect(jpeg_image(media_bytes("person.jpg"))).results
    assert_well_formed(result)
    assert (result.width, result.height) == (640, 424)
    found = best_by_label(result)
    for label, expected in PERSON_JPG.items():
        assert label in found, f"no {label} in {sorted(found)}"
        assert iou(found[label], expected) >= 0.8, (label, found[label])


def test_people_and_cars_on_video_frames(server: RunningServer) -> None:
    frames = video_frames([0, 100, 200])
    response = server.detect(*(jpeg_image(frame, width=768, height=576) for frame in frames))
    assert len(response.results) == 3
    for result in response.results:
        assert_well_formed(result)
        labels = [detection.label for detection in result.detections]
        assert labels.count("person") >= 2, labels
        assert "car" in labels, labels
        for detection in result.detections:
            if detection.label == "person":
                x_min, y_min, x_max, y_max = box(detection)
                # People standing in a 768x576 frame are taller than wide.
                assert (y_max - y_min) * 576 > (x_max - x_min) * 768


def test_the_two_backends_agree(opencv_server: RunningServer, onnx_server: RunningServer) -> None:
    images = [media_bytes("dog.jpg"), media_bytes("person.jpg"), *video_frames([0])]
    request = [jpeg_image(data) for data in images]
    # A margin around the default threshold keeps borderline scores out of the comparison.
    confident = inference_service_pb2.DetectOptions(score_threshold=0.5)
    for image in request:
        image.options.CopyFrom(confident)
    first = opencv_server.detect(*request)
    second = onnx_server.detect(*request)
    for a, b in zip(first.results, second.results, strict=True):
        assert [d.label for d in a.detections] == [d.label for d in b.detections]
        for one, other in zip(a.detections, b.detections, strict=True):
            assert iou(box(one), box(other)) >= 0.9
            assert one.score == pytest.approx(other.score, abs=0.05)


def test_options_filter_threshold_and_limit(opencv_server: RunningServer) -> None:
    (street,) = video_frames([0])  # people and cars
    plain = jpeg_image(street)
    only_cars = jpeg_image(street, options={"class_filter": ["car", "truck"]})
    confident = jpeg_image(street, options={"score_threshold": 0.8})
    one = jpeg_image(street, options={"max_detections": 1})
    everything = jpeg_image(street, options={"score_threshold": 0.0})
    results = opencv_server.detect(plain, only_cars, confident, one, everything).results
    default = [(d.label, d.score) for d in results[0].detections]
    assert {"person", "car"} <= {label for label, _ in default}, default
    assert {d.label for d in results[1].detections} <= {"car", "truck"}
    assert [(d.label, d.score) for d in results[1].detections] == [
        (label, score) for label, score in default if label in ("car", "truck")
    ]
    high = [(label, score) for label, score in default if score >= 0.8]
    assert 0 < len(high) < len(default), default
    assert [(d.label, d.score) for d in results[2].detections] == high
    assert [(d.label, d.score) for d in results[3].detections] == default[:1]
    # A threshold of 0 is honoured (not taken for "unset"), up to the server's 100 per image.
    assert 10 < len(results[4].detections) <= 100


def with_declared_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrites the size in a baseline JPEG's frame header (SOF0) without touching the pixels."""
    start = data.index(b"\xff\xc0")
    patched = bytearray(data)
    patched[start + 5 : start + 7] = height.to_bytes(2, "big")
    patched[start + 7 : start + 9] = width.to_bytes(2, "big")
    return bytes(patched)


def test_bad_images_get_their_own_errors_while_the_rest_are_answered(
    opencv_server: RunningServer,
) -> None:
    (dog,) = video_frames([0])  # 768x576, people and cars
    png = b"\x89PNG\r\n\x1a\n" + bytes(100)
    bomb = with_declared_size(synthetic_jpeg(64, 64), 60000, 60000)
    batch = [
        jpeg_image(dog),
        inference_service_pb2.Image(encoding=common_pb2.ENCODING_UNSPECIFIED, data=dog),
        jpeg_image(b""),
        jpeg_image(png),
        jpeg_image(dog[: len(dog) // 2]),
        jpeg_image(dog, width=640, height=480),
        jpeg_image(bomb),
        jpeg_image(dog, options={"class_filter": ["person", "unicorn"]}),
    ]
    results = opencv_server.detect(*batch).results
    assert len(results) == len(batch)
    assert_well_formed(results[0])
    assert "person" in {d.label for d in results[0].detections}
    expected = [
        (INVALID_ARGUMENT, "ENCODING_UNSPECIFIED"),
        (INVALID_ARGUMENT, "empty"),
        (INVALID_ARGUMENT, "not a JPEG"),
        (INVALID_ARGUMENT, "truncated"),
        (INVALID_ARGUMENT, "declared 640x480 but the JPEG header says 768x576"),
        (RESOURCE_EXHAUSTED, "60000x60000"),
        (INVALID_ARGUMENT, "'unicorn'"),
    ]
    for result, (code, message) in zip(results[1:], expected, strict=True):
        assert result.error.code == code, result.error
        assert message in result.error.message
        assert len(result.detections) == 0
        # Rejected before decoding: no decode time, no size.
        assert not result.timings.HasField("decode")
        assert (result.width, result.height) == (0, 0)
        assert result.timings.HasField("total")


def test_more_per_image_errors(opencv_server: RunningServer) -> None:
    big = synthetic_jpeg(1200, 1000)  # 1.2 million pixels, over this server's limit
    (person,) = video_frames([100])  # 768x576, people
    results = opencv_server.detect(
        jpeg_image(big, width=1200, height=1000),
        jpeg_image(person, options={"score_threshold": 1.5}),
        jpeg_image(person, options={"score_threshold": math.nan}),
        jpeg_image(person, width=768),  # half-declared and right
        inference_service_pb2.Image(
            encoding=common_pb2.Encoding.ValueType(7), data=person
        ),  # an encoding from the future
    ).results
    assert results[0].error.code == RESOURCE_EXHAUSTED
    assert str(PIXEL_LIMIT) in results[0].error.message
    assert results[1].error.code == INVALID_ARGUMENT
    assert "score_threshold" in results[1].error.message
    assert results[2].error.code == INVALID_ARGUMENT
    assert_well_formed(results[3])
    assert "person" in {d.label for d in results[3].detections}
    assert results[4].error.code == INVALID_ARGUMENT
    assert "not supported" in results[4].error.message


def test_unusable_batches_fail_the_call_and_the_server_keeps_serving(
    opencv_server: RunningServer,
) -> None:
    with pytest.raises(grpc.RpcError) as empty:
        opencv_server.detect()
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "empty" in str(empty.value.details())
    image = jpeg_image(synthetic_jpeg(32, 32))
    with pytest.raises(grpc.RpcError) as too_many:
        opencv_server.detect(*[image] * 9)
    assert too_many.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = str(too_many.value.details())
    assert "9 images" in details
    assert "maximum of 8" in details
    # Still serving, and a full batch works.
    health = health_pb2_grpc.HealthStub(opencv_server.channel)
    status = health.Check(health_pb2.HealthCheckRequest(service="framewire.v1.InferenceService"))
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    results = opencv_server.detect(*[image] * 8).results
    assert [r.HasField("error") for r in results] == [False] * 8


def test_timings_are_set_per_stage(server: RunningServer) -> None:
    (result,) = server.detect(jpeg_image(video_frames([0])[0])).results
    timings = result.timings
    for stage in ("queue", "decode", "preprocess", "inference", "postprocess", "total"):
        assert timings.HasField(stage), stage
    # Queue: waiting for another batch to leave the model (none here).
    assert timings.queue.seconds == 0

    def seconds(stage: str) -> float:
        value = getattr(timings, stage)
        return float(value.seconds + value.nanos / 1e9)

    assert 0 < seconds("inference") < seconds("total")
    assert seconds("decode") + seconds("inference") <= seconds("total")


def test_engine_is_safe_to_call_from_several_threads(opencv_server: RunningServer) -> None:
    """What ingest does in-process: overlapping detect calls from worker threads."""
    engine = opencv_server.server.engine
    images = video_frames([0, 50, 100])
    requests = [
        inference_service_pb2.DetectRequest(images=[jpeg_image(images[i % 3]) for i in range(n)])
        for n in (1, 3, 2, 2)
    ]
    serial = [engine.detect(request) for request in requests]
    concurrent: list[inference_service_pb2.DetectResponse | None] = [None] * len(requests)
    failures: list[BaseException] = []

    def work(index: int) -> None:
        try:
            concurrent[index] = engine.detect(requests[index])
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    for alone, together in zip(serial, concurrent, strict=True):
        assert together is not None
        for a, b in zip(alone.results, together.results, strict=True):
            assert [(d.label, d.score, box(d)) for d in a.detections] == [
                (d.label, d.score, box(d)) for d in b.detections
            ]


def scrape(server: RunningServer) -> str:
    url = f"http://127.0.0.1:{server.server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{name} not in the scrape"
    return float(match[1])


def test_metrics_count_images_batches_and_stages(opencv_server: RunningServer) -> None:
    before = scrape(opencv_server)
    processed = metric(before, 'framewire_inference_images_total{outcome="processed"}')
    failed = metric(before, 'framewire_inference_images_total{outcome="failed"}')
    batches = metric(before, "framewire_inference_batch_size_count")
    opencv_server.detect(jpeg_image(video_frames([0])[0]), jpeg_image(b"not a jpeg"))
    after = scrape(opencv_server)
    assert metric(after, 'framewire_inference_images_total{outcome="processed"}') == processed + 1
    assert metric(after, 'framewire_inference_images_total{outcome="failed"}') == failed + 1
    assert metric(after, "framewire_inference_batch_size_count") == batches + 1
    assert metric(after, 'framewire_inference_image_errors_total{code="INVALID_ARGUMENT"}') >= 1
    for stage in ("decode", "preprocess", "inference", "postprocess"):
        assert metric(after, f'framewire_inference_stage_seconds_count{{stage="{stage}"}}') >= 1
    engine = opencv_server.server.engine
    info = f'framewire_model_info{{backend="opencv",head="ssd",model_id="{engine.model_id}"}}'
    assert metric(after, info) == 1.0


def test_metrics_pass_promtool(opencv_server: RunningServer) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    opencv_server.detect(jpeg_image(video_frames([0])[0]))
    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=scrape(opencv_server),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "", checked.stdout
    assert checked.stderr.strip() == "", checked.stderr


def test_a_rotated_exif_photo_keeps_the_size_as_sent(opencv_server: RunningServer) -> None:
    """Boxes are relative to the pixels as stored: EXIF orientation is ignored."""
    import cv2
    import numpy as np

    pixels = np.zeros((40, 80, 3), np.uint8)
    data = encode_jpeg(pixels)
    # An APP1 Exif segment with Orientation = 6 (rotate 90 degrees clockwise).
    tiff = (
        b"MM\x00\x2a\x00\x00\x00\x08\x00\x01"
        + b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00"
        + b"\x00\x00\x00\x00"
    )
    payload = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    rotated = data[:2] + segment + data[2:]
    turned = cv2.imdecode(np.frombuffer(rotated, np.uint8), cv2.IMREAD_COLOR)
    assert turned is not None
    assert turned.shape[:2] == (80, 40)  # what a decoder that follows EXIF makes of it
    (result,) = opencv_server.detect(jpeg_image(rotated, width=80, height=40)).results
    assert not result.HasField("error"), result.error
    assert (result.width, result.height) == (80, 40)
