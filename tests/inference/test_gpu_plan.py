"""The GPU backends' plans without a GPU, PyTorch or TensorRT: precision, profiles, cache."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from framewire.inference.gpu.plan import (
    EngineCache,
    EngineKey,
    bucket_for,
    graph_batch_sizes,
    has_fast_fp16,
    input_profile,
    plan_buffers,
    resolve_precision,
)
from framewire.inference.inputs import InputSpec

YOLO_640 = InputSpec("NCHW", "float32", 640, 640)


def key(**changes: object) -> EngineKey:
    base = EngineKey(
        model_sha256="ab" * 32,
        tensorrt_version="10.13.0",
        gpu_name="NVIDIA H100 80GB HBM3",
        compute_capability=(9, 0),
        precision="fp16",
        profile=input_profile("images", YOLO_640, 64),
        workspace_mib=4096,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_precision_auto_is_fp16_only_on_a_gpu_with_fast_fp16() -> None:
    assert resolve_precision("auto", "cuda", True) == "fp16"
    assert resolve_precision("auto", "cuda", False) == "fp32"
    assert resolve_precision("auto", "cpu", False) == "fp32"
    assert resolve_precision("fp32", "cuda", True) == "fp32"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_precision("fp16", "cpu", False)
    with pytest.raises(ValueError, match="no fast FP16"):
        resolve_precision("fp16", "cuda", False)


def test_fast_fp16_by_compute_capability() -> None:
    assert has_fast_fp16((9, 0))
    assert has_fast_fp16((7, 5))
    assert has_fast_fp16((6, 0))
    assert not has_fast_fp16((6, 1))  # consumer Pascal: FP16 at 1/64 rate
    assert not has_fast_fp16((5, 2))


def test_profile_spans_one_to_the_max_batch_tuned_for_the_max() -> None:
    profile = input_profile("images", YOLO_640, 32)
    assert profile.minimum == (1, 3, 640, 640)
    assert profile.optimum == profile.maximum == (32, 3, 640, 640)
    nhwc = input_profile("image_tensor:0", InputSpec("NHWC", "uint8", 300, 200), 8)
    assert nhwc.maximum == (8, 200, 300, 3)
    fixed = input_profile("images", InputSpec("NCHW", "float32", 640, 640, fixed_batch=4), 4)
    assert fixed.minimum == fixed.optimum == fixed.maximum == (4, 3, 640, 640)


def test_the_key_changes_with_everything_an_engine_depends_on() -> None:
    digests = {
        key().digest,
        key(model_sha256="cd" * 32).digest,
        key(tensorrt_version="10.14.1").digest,
        key(gpu_name="NVIDIA H200").digest,
        key(compute_capability=(8, 0)).digest,
        key(precision="fp32").digest,
        key(profile=input_profile("images", YOLO_640, 32)).digest,
        key(workspace_mib=1024).digest,
    }
    assert len(digests) == 8
    assert key().digest == key().digest  # stable across calls and processes (canonical JSON)
    assert key().file_name("yolo v8/n") == f"yolo_v8_n-{key().digest}.engine"


def test_cache_round_trip(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path / "engines")
    assert cache.load(key(), "yolov8n") is None
    path = cache.store(key(), "yolov8n", b"serialized engine")
    assert path.parent == tmp_path / "engines"
    assert json.loads(path.with_suffix(".json").read_text()) == key().as_json()
    assert cache.load(key(), "yolov8n") == b"serialized engine"
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_a_mismatched_or_corrupt_cache_entry_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = EngineCache(tmp_path)
    path = cache.store(key(), "yolov8n", b"engine")
    sidecar = path.with_suffix(".json")
    # A sidecar that names another GPU (a copied cache folder, a hash collision).
    sidecar.write_text(json.dumps(key(gpu_name="NVIDIA A10").as_json()))
    with caplog.at_level(logging.WARNING):
        assert cache.load(key(), "yolov8n") is None
    assert "rebuilding" in caplog.text
    sidecar.write_text("{not json")
    assert cache.load(key(), "yolov8n") is None
    cache.store(key(), "yolov8n", b"engine")
    path.write_bytes(b"")
    assert cache.load(key(), "yolov8n") is None
    cache.discard(key(), "yolov8n")
    assert not path.exists()
    assert not sidecar.exists()


def test_buffers_are_planned_at_the_max_batch_for_every_concurrent_batch() -> None:
    plan = plan_buffers(
        [
            ("images", True, "float32", (-1, 3, 640, 640)),
            ("output0", False, "float16", (-1, 84, 8400)),
        ],
        max_batch=64,
        copies=2,
    )
    assert plan.inputs[0].shape == (64, 3, 640, 640)
    assert plan.outputs[0].shape == (64, 84, 8400)
    per_batch = 64 * 3 * 640 * 640 * 4 + 64 * 84 * 8400 * 2
    assert plan.bytes_per_batch == per_batch
    assert plan.total_bytes == 2 * per_batch


def test_a_data_dependent_output_cannot_be_preallocated() -> None:
    with pytest.raises(ValueError, match="data-dependent"):
        plan_buffers(
            [
                ("images", True, "float32", (-1, 3, 640, 640)),
                ("boxes", False, "float32", (8, -1, 4)),
            ],
            max_batch=8,
            copies=1,
        )
    with pytest.raises(ValueError, match="no input"):
        plan_buffers([("boxes", False, "float32", (8, 4))], max_batch=8, copies=1)


def test_graph_buckets_cover_every_batch_with_at_most_twice_the_work() -> None:
    assert graph_batch_sizes(1) == (1,)
    assert graph_batch_sizes(8) == (1, 2, 4, 8)
    assert graph_batch_sizes(48) == (1, 2, 4, 8, 16, 32, 48)
    sizes = graph_batch_sizes(64)
    for count in range(1, 65):
        bucket = bucket_for(count, sizes)
        assert count <= bucket < 2 * count or bucket == 1
    with pytest.raises(ValueError, match="larger than"):
        bucket_for(65, sizes)
