"""Settings: flags, environment and defaults map onto one dataclass, in that order."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from framewire.common import settings
from framewire.common.settings import option, parse_duration, parse_wxh


@dataclass(frozen=True)
class InnerConfig:
    max_batch_size: int = option(8, "largest batch")
    enabled: bool = option(True, "whether on")


@dataclass(frozen=True)
class OuterConfig:
    inner: InnerConfig = InnerConfig()
    max_frame_age: float = option(0.5, "seconds", parse=parse_duration)
    model: Path | None = option(None, "model path")
    classes: tuple[str, ...] = option((), "labels")
    backend: str = option("opencv", "which", choices=("opencv", "onnxruntime"))
    size: tuple[int, int] | None = option(None, "WxH", parse=parse_wxh)

    def __post_init__(self) -> None:
        if self.max_frame_age <= 0:
            raise ValueError("max_frame_age must be positive")


def build(argv: list[str], environ: dict[str, str] | None = None) -> OuterConfig:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, OuterConfig)
    return settings.from_namespace(OuterConfig, parser.parse_args(argv), environ or {})


def test_defaults_when_nothing_is_given() -> None:
    assert build([]) == OuterConfig()


def test_flags_cover_nested_fields_and_types() -> None:
    config = build(
        [
            "--max-batch-size=4",
            "--no-enabled",
            "--max-frame-age=250ms",
            "--model=/m.onnx",
            "--classes=person, car",
            "--backend=onnxruntime",
        ]
    )
    assert config == OuterConfig(
        inner=InnerConfig(max_batch_size=4, enabled=False),
        max_frame_age=0.25,
        model=Path("/m.onnx"),
        classes=("person", "car"),
        backend="onnxruntime",
    )


def test_flag_beats_environment_beats_default() -> None:
    environ = {"FRAMEWIRE_MAX_BATCH_SIZE": "16", "FRAMEWIRE_MAX_FRAME_AGE": "2s"}
    config = build(["--max-frame-age=1"], environ)
    assert config.inner.max_batch_size == 16
    assert config.max_frame_age == 1.0


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ValueError, match="FRAMEWIRE_MAX_BATCH_SIZE='many'"):
        build([], {"FRAMEWIRE_MAX_BATCH_SIZE": "many"})


def test_bad_flag_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build(["--max-frame-age=soon"])
    assert exit_info.value.code == 2
    assert "'soon' is not a duration" in capsys.readouterr().err


def test_validation_runs_on_the_result() -> None:
    with pytest.raises(ValueError, match="max_frame_age must be positive"):
        build(["--max-frame-age=0"])


def test_describe_flattens_for_logging() -> None:
    assert settings.describe(OuterConfig())["max_batch_size"] == 8


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("2s", 2.0), ("1.5", 1.5), ("5m", 300.0), ("1h", 3600.0), (".5", 0.5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "-1s", "1d", "fast"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_parse_wxh() -> None:
    assert parse_wxh("640x480") == (640, 480)
    assert parse_wxh(" 480X270 ") == (480, 270)
    for bad in ("640", "0x480", "axb"):
        with pytest.raises(ValueError, match=r"size|positive"):
            parse_wxh(bad)


def test_optional_settings_with_their_own_parser_accept_none() -> None:
    assert build(["--size=640x480"]).size == (640, 480)
    assert build(["--size=none"]).size is None
    assert build([], {"FRAMEWIRE_SIZE": ""}).size is None
    assert build(["--model=none"]).model is None


@dataclass(frozen=True)
class DerivingConfig:
    """Holds InnerConfig's max_batch_size under another name and sets it itself."""

    DERIVED: ClassVar[frozenset[str]] = frozenset({"max_batch_size"})

    inner: InnerConfig = InnerConfig()
    batch: int = option(4, "the one batch size")

    def __post_init__(self) -> None:
        inner = dataclasses.replace(self.inner, max_batch_size=self.batch)
        object.__setattr__(self, "inner", inner)


def test_derived_settings_have_no_flag_and_ignore_the_environment() -> None:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, DerivingConfig)
    flags = {option for action in parser._actions for option in action.option_strings}
    assert "--batch" in flags
    assert "--enabled" in flags
    assert "--max-batch-size" not in flags
    environ = {"FRAMEWIRE_MAX_BATCH_SIZE": "99"}
    config = settings.from_namespace(DerivingConfig, parser.parse_args(["--batch", "6"]), environ)
    assert config.inner.max_batch_size == 6


def test_framewire_serve_has_one_flag_per_idea() -> None:
    from framewire.ingest.serve_command import ServeConfig

    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, ServeConfig)
    flags = [option for action in parser._actions for option in action.option_strings]
    assert len(flags) == len(set(flags))
    assert "--max-batch" not in flags
    assert "--concurrent-batches" not in flags
    assert "--max-image-pixels" not in flags
    argv = ["--max-batch-size", "3", "--batches-in-flight", "1", "--max-frame-pixels", "1000"]
    config = settings.from_namespace(ServeConfig, parser.parse_args(argv), {})
    assert config.engine.max_batch == 3
    assert config.engine.concurrent_batches == 1
    assert config.engine.max_image_pixels == 1000


def test_framewire_serve_preallocates_for_the_batches_ingest_will_keep_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from framewire.common.contract import PIPELINE_DEPTH
    from framewire.inference import EngineConfig
    from framewire.ingest import serve_command
    from framewire.ingest.config import IngestConfig
    from framewire.ingest.serve_command import ServeConfig

    ingest = IngestConfig(batches_in_flight=4)
    # A CPU model: a run per core at most, each with its input batch; more would only
    # share the cores.
    for cores, runs in ((16, 4), (4, 4), (2, 2), (1, 1)):
        monkeypatch.setattr(serve_command, "usable_cores", lambda cores=cores: cores)
        assert ServeConfig(ingest=ingest).engine.concurrent_batches == runs
    # A GPU: batching pays, ingest keeps PIPELINE_DEPTH in flight; no unused device buffers.
    for engine in (EngineConfig(backend="torch"), EngineConfig(device="cuda")):
        config = ServeConfig(engine=engine, ingest=ingest)
        assert config.engine.concurrent_batches == PIPELINE_DEPTH
