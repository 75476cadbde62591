"""The TensorRT backend's load-or-build logic, without TensorRT.

``prepare_engine`` is driven here with a stand-in for TensorRT's runtime and
builder that records what it was asked: what this proves is framewire's
handling of the cache (hit, miss, corrupt file, unwritable folder), not
TensorRT itself, which has never run on this project's machines (docs/gpu.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from framewire.inference.gpu import tensorrt_backend
from framewire.inference.gpu.plan import EngineCache, EngineKey, input_profile
from framewire.inference.inputs import InputSpec

KEY = EngineKey(
    model_sha256="ef" * 32,
    tensorrt_version="10.13.0",
    gpu_name="NVIDIA H200",
    compute_capability=(9, 0),
    precision="fp16",
    profile=input_profile("images", InputSpec("NCHW", "float32", 640, 640), 64),
    workspace_mib=4096,
)


class Runtime:
    """Deserializes what the stand-in builder built; anything else is 'corrupt' (None)."""

    def __init__(self) -> None:
        self.loaded: list[bytes] = []

    def deserialize_cuda_engine(self, data: bytes) -> Any:
        self.loaded.append(data)
        return SimpleNamespace(data=data) if data.startswith(b"ENGINE:") else None


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[EngineKey]:
    made: list[EngineKey] = []

    def build(trt: Any, logger: Any, path: Path, key: EngineKey) -> bytes:
        made.append(key)
        return b"ENGINE:" + key.digest.encode()

    monkeypatch.setattr(tensorrt_backend, "build_serialized", build)
    return made


def prepare(cache: EngineCache, runtime: Runtime) -> tensorrt_backend.PreparedEngine:
    return tensorrt_backend.prepare_engine(
        None, runtime, None, Path("/models/yolov8n.onnx"), key=KEY, cache=cache
    )


def test_built_once_then_loaded_from_the_cache(tmp_path: Path, builds: list[EngineKey]) -> None:
    cache = EngineCache(tmp_path)
    first = prepare(cache, Runtime())
    assert first.build_seconds is not None
    assert first.path == cache.path(KEY, "yolov8n")
    assert builds == [KEY]
    again = prepare(cache, Runtime())
    assert again.build_seconds is None  # a restart deserializes, never rebuilds
    assert again.engine.data == first.engine.data
    assert builds == [KEY]


def test_a_corrupt_engine_is_rebuilt_with_a_warning(
    tmp_path: Path, builds: list[EngineKey], caplog: pytest.LogCaptureFixture
) -> None:
    cache = EngineCache(tmp_path)
    cache.store(KEY, "yolov8n", b"\x00garbage from a crashed copy")
    with caplog.at_level(logging.WARNING):
        prepared = prepare(cache, Runtime())
    assert "cannot be deserialized" in caplog.text
    assert builds == [KEY]
    assert prepared.build_seconds is not None
    assert cache.load(KEY, "yolov8n") == b"ENGINE:" + KEY.digest.encode()


def test_an_unwritable_cache_still_serves(
    tmp_path: Path, builds: list[EngineKey], caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING):
        prepared = prepare(EngineCache(blocker / "engines"), Runtime())
    assert prepared.path is None
    assert prepared.engine.data.startswith(b"ENGINE:")
    assert "cannot write the engine cache" in caplog.text


def test_an_engine_that_cannot_load_after_building_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tensorrt_backend, "build_serialized", lambda *args: b"not loadable")
    with pytest.raises(ValueError, match="cannot load it"):
        prepare(EngineCache(tmp_path), Runtime())
