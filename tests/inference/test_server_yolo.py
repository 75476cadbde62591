"""The untrained YOLO ONNX files end to end: shapes, batching, order, both backends.

Their weights are random, so what they find means nothing; these tests check
that batches of mixed sizes go through the YOLO path (letterbox, model, NMS)
and come back complete and in order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from framewire.v1 import inference_service_pb2
from tests.inference.conftest import (
    RunningServer,
    box,
    engine_config,
    jpeg_image,
    media_bytes,
    model_path,
    running_server,
    synthetic_jpeg,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def yolov8_server() -> Iterator[RunningServer]:
    yield from running_server(engine_config(model=model_path("yolov8n-untrained.onnx")))


@pytest.fixture(scope="module")
def yolo11_opencv_server() -> Iterator[RunningServer]:
    yield from running_server(
        engine_config(model=model_path("yolo11n-untrained.onnx"), backend="opencv", max_batch=4)
    )


def mixed_images() -> list[tuple[bytes, int, int]]:
    """Eight images of different sizes and aspect ratios, with their sizes."""
    return [
        (media_bytes("dog.jpg"), 768, 576),
        (synthetic_jpeg(101, 403, seed=1), 101, 403),
        (media_bytes("person.jpg"), 640, 424),
        (media_bytes("giraffe.jpg"), 500, 500),
        (synthetic_jpeg(1001, 33, seed=2), 1001, 33),
        (media_bytes("kite.jpg"), 1352, 900),
        (synthetic_jpeg(1, 1, seed=3), 1, 1),
        (media_bytes("messi5.jpg"), 548, 342),
    ]


def assert_complete(result: inference_service_pb2.ImageResult, width: int, height: int) -> None:
    assert not result.HasField("error"), result.error
    assert (result.width, result.height) == (width, height)
    for stage in ("decode", "preprocess", "inference", "postprocess", "total"):
        assert result.timings.HasField(stage), stage


def test_model_info(yolov8_server: RunningServer) -> None:
    info = yolov8_server.stub.GetModelInfo(inference_service_pb2.GetModelInfoRequest())
    assert re.fullmatch(r"yolov8n-untrained@[0-9a-f]{8}", info.model_id)
    assert (info.backend, info.head) == ("onnxruntime", "yolov8")
    # From the model's imgsz metadata; the untrained names are placeholders, so COCO.
    assert (info.input_width, info.input_height) == (640, 640)
    assert len(info.labels) == 80
    assert info.labels[0] == "person"


def test_batch_of_one(yolov8_server: RunningServer) -> None:
    response = yolov8_server.detect(jpeg_image(media_bytes("dog.jpg")))
    (result,) = response.results
    assert_complete(result, 768, 576)
    assert response.model_id.startswith("yolov8n-untrained@")


def test_batch_of_eight_mixed_sizes_in_order(yolov8_server: RunningServer) -> None:
    images = mixed_images()
    response = yolov8_server.detect(*(jpeg_image(data) for data, _, _ in images))
    assert len(response.results) == 8
    for result, (_, width, height) in zip(response.results, images, strict=True):
        assert_complete(result, width, height)
    # One model run for the batch: every image reports the same inference time.
    assert len({result.timings.inference.nanos for result in response.results}) == 1


def test_nms_path_with_every_anchor_a_candidate(yolov8_server: RunningServer) -> None:
    # Untrained scores are tiny; a zero threshold makes all 8400 anchors go through NMS.
    options = {"score_threshold": 0.0, "max_detections": 25}
    response = yolov8_server.detect(
        jpeg_image(media_bytes("person.jpg"), options=options),
        jpeg_image(media_bytes("person.jpg"), options={"score_threshold": 0.0}),
    )
    limited, default_limit = response.results
    assert len(limited.detections) == 25
    assert len(default_limit.detections) == 100  # the server's max_detections
    scores = [d.score for d in default_limit.detections]
    assert scores == sorted(scores, reverse=True)
    for detection in default_limit.detections:
        x_min, y_min, x_max, y_max = box(detection)
        assert 0 <= x_min < x_max <= 1
        assert 0 <= y_min < y_max <= 1
    # The limit keeps the best: the first 25 are the same either way.
    assert [box(d) for d in limited.detections] == [box(d) for d in default_limit.detections[:25]]


def test_failed_images_leave_no_gap(yolov8_server: RunningServer) -> None:
    """A bad image in the middle: the others still line up with their own outputs."""
    dog, person = media_bytes("dog.jpg"), media_bytes("person.jpg")
    options = {"score_threshold": 0.0, "max_detections": 5}
    alone = yolov8_server.detect(jpeg_image(person, options=options)).results[0]
    results = yolov8_server.detect(
        jpeg_image(dog, options=options),
        jpeg_image(b"\xff\xd8 broken"),
        jpeg_image(person, options=options),
    ).results
    assert_complete(results[0], 768, 576)
    assert results[1].HasField("error")
    assert_complete(results[2], 640, 424)
    # The person photo gave the same boxes as when sent alone (to float precision).
    for a, b in zip(alone.detections, results[2].detections, strict=True):
        assert box(a) == pytest.approx(box(b), abs=1e-3)


def test_yolo11_on_the_opencv_backend(yolo11_opencv_server: RunningServer) -> None:
    info = yolo11_opencv_server.stub.GetModelInfo(inference_service_pb2.GetModelInfoRequest())
    assert (info.backend, info.head, info.max_batch_size) == ("opencv", "yolov8", 4)
    images = mixed_images()[2:6]
    response = yolo11_opencv_server.detect(*(jpeg_image(data) for data, _, _ in images))
    for result, (_, width, height) in zip(response.results, images, strict=True):
        assert_complete(result, width, height)
    (single,) = yolo11_opencv_server.detect(jpeg_image(images[0][0])).results
    assert_complete(single, images[0][1], images[0][2])
