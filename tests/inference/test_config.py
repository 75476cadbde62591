"""Inference settings: flags and environment map onto one config; bad values are refused."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from pathlib import Path
from typing import Any

import pytest

from framewire.common import settings
from framewire.common.contract import MAX_FRAME_PIXELS
from framewire.inference.backends import Backend
from framewire.inference.command import add_arguments
from framewire.inference.config import (
    BACKENDS,
    HEADS,
    MAX_DEFAULT_DECODE_THREADS,
    EngineConfig,
    InferenceServerConfig,
    parse_input_size,
)
from framewire.inference.heads import Head


def build(argv: list[str], environ: dict[str, str] | None = None) -> InferenceServerConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return settings.from_namespace(InferenceServerConfig, parser.parse_args(argv), environ or {})


def test_defaults() -> None:
    config = build([])
    assert config == InferenceServerConfig()
    assert config.engine.model is None
    assert config.engine.backend is None
    assert config.engine.max_batch == 8
    assert config.listen.port == 50051
    # The pixel limit is the contract's, shared with ingest.
    assert config.engine.max_image_pixels == MAX_FRAME_PIXELS


def _concrete(base: type[Any]) -> set[type[Any]]:
    found = set()
    for subclass in base.__subclasses__():
        found |= _concrete(subclass)
        if not inspect.isabstract(subclass):
            found.add(subclass)
    return found


def test_choices_name_exactly_the_backends_and_heads_there_are() -> None:
    # The device backends live in modules imported only when chosen; they import
    # PyTorch and TensorRT only when they open a model, so this works without either.
    import framewire.inference.gpu.tensorrt_backend
    import framewire.inference.gpu.torch_backend  # noqa: F401

    assert set(BACKENDS) == {backend.name for backend in _concrete(Backend)}
    assert set(HEADS) == {"auto"} | {head.name for head in _concrete(Head)}


def test_decode_threads_default_to_the_cores_up_to_a_limit() -> None:
    assert 1 <= EngineConfig().decode_thread_count() <= MAX_DEFAULT_DECODE_THREADS
    assert EngineConfig(decode_threads=12).decode_thread_count() == 12


def test_flags_and_environment_reach_the_nested_configs() -> None:
    config = build(
        [
            "--model=/models/yolo.onnx",
            "--backend=opencv",
            "--max-batch=4",
            "--input-size=640x384",
            "--score-threshold=0.25",
            "--spin-wait=1ms",
            "--port=0",
            "--metrics-port=-1",
        ],
        {"FRAMEWIRE_DECODE_THREADS": "3", "FRAMEWIRE_HEAD": "yolov5", "FRAMEWIRE_MAX_BATCH": "2"},
    )
    engine = config.engine
    assert engine.model == Path("/models/yolo.onnx")
    assert engine.backend == "opencv"
    assert engine.max_batch == 4  # the flag beats the environment
    assert engine.input_size == (640, 384)
    assert engine.score_threshold == 0.25
    assert engine.spin_wait == 0.001
    assert engine.decode_threads == 3
    assert engine.head == "yolov5"
    assert (config.listen.port, config.listen.metrics_port) == (0, -1)


def test_spin_wait_is_a_duration() -> None:
    assert EngineConfig().spin_wait == 0.0  # the threads sleep at once
    assert build(["--spin-wait=2ms"]).engine.spin_wait == 0.002
    assert build([], {"FRAMEWIRE_SPIN_WAIT": "5ms"}).engine.spin_wait == 0.005
    with pytest.raises(ValueError, match="spin_wait"):
        build([], {"FRAMEWIRE_SPIN_WAIT": "500ms"})  # past MAX_SPIN_WAIT


def test_input_size_forms() -> None:
    assert parse_input_size("640") == (640, 640)
    assert parse_input_size("640x384") == (640, 384)
    for text in ("", "0", "x640", "640x", "-1"):
        with pytest.raises(ValueError, match=r"input size|positive"):
            parse_input_size(text)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_batch": 0}, "max_batch"),
        ({"max_batch": 65}, "max_batch"),
        ({"score_threshold": 1.5}, "score_threshold"),
        ({"iou_threshold": float("nan")}, "iou_threshold"),
        ({"max_detections": 0}, "max_detections"),
        ({"max_image_pixels": 0}, "max_image_pixels"),
        ({"concurrent_batches": 0}, "concurrent_batches"),
        ({"decode_threads": -1}, "decode_threads"),
        ({"spin_wait": -0.001}, "spin_wait"),
        ({"spin_wait": 0.5}, "spin_wait"),
        ({"backend": "tensorflow"}, "backend must be one of"),
        ({"model_config": Path("graph.pbtxt")}, "give --model too"),
    ],
)
def test_bad_values_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EngineConfig(**fields)  # type: ignore[arg-type]


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ValueError, match="FRAMEWIRE_MAX_BATCH"):
        build([], {"FRAMEWIRE_MAX_BATCH": "eight"})


def test_bad_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build(["--backend=tensorflow"])
    assert "invalid choice" in capsys.readouterr().err


# Prefixes of settings that other configs put on the same command line in
# `framewire serve`; EngineConfig is embedded there as-is.
RESERVED_PREFIXES = (
    "max_frame",
    "max_batch_size",
    "max_streams",
    "max_in_flight",
    "batch",
    "port",
    "host",
    "metrics",
    "shutdown",
    "log_level",
    "keepalive",
    "max_message",
    "max_connection",
)


def test_engine_settings_do_not_collide_with_the_serve_command_line() -> None:
    names = [field.name for field in dataclasses.fields(EngineConfig)]
    clashes = [name for name in names if name.startswith(RESERVED_PREFIXES)]
    assert clashes == []
