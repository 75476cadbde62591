"""The inference service refuses the same hostile images as ingest, before decoding."""

from __future__ import annotations

import cv2
import grpc
import numpy as np
import pytest

from framewire.common.errors import FramewireError
from framewire.inference import EngineConfig
from framewire.inference.validation import check_header
from framewire.v1 import common_pb2, inference_service_pb2


def image(data: bytes, width: int = 0, height: int = 0) -> inference_service_pb2.Image:
    return inference_service_pb2.Image(
        encoding=common_pb2.ENCODING_JPEG, data=data, width=width, height=height
    )


def refusal(data: bytes, config: EngineConfig) -> FramewireError:
    with pytest.raises(FramewireError) as raised:
        check_header(image(data), data, config)
    return raised.value


def test_a_tiny_body_claiming_4096x4096_is_refused_before_decoding() -> None:
    data = bytearray(cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))[1].tobytes())
    start = data.index(b"\xff\xc0")
    data[start + 5 : start + 9] = (4096).to_bytes(2, "big") * 2
    error = refusal(bytes(data), EngineConfig(backend="null"))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot hold a 4096x4096 JPEG" in error.message
    # The limit is the engine's own setting.
    lenient = EngineConfig(backend="null", max_image_pixels_per_byte=10**6)
    assert check_header(image(bytes(data)), bytes(data), lenient).pixels == 4096 * 4096


def test_a_flood_of_empty_segments_is_refused() -> None:
    flood = b"\xff\xd8" + b"\xff\xe0\x00\x02" * (512 * 1024)
    error = refusal(flood, EngineConfig(backend="null"))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "markers before the first scan" in error.message


def test_real_images_pass_declared_or_not() -> None:
    pixels = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    data = cv2.imencode(".jpg", pixels)[1].tobytes()
    config = EngineConfig(backend="null")
    assert check_header(image(data), data, config).pixels == 64 * 48
    assert check_header(image(data, 64, 48), data, config).pixels == 64 * 48
