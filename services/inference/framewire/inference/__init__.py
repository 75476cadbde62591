"""InferenceService: batched object detection on JPEG images (model adapters, backends, server).

:meth:`Engine.load` loads the configured model (:mod:`framewire.inference.loading`)
and returns the engine that serves it: a :class:`ModelEngine` with its decode
pool and input batches, or the :class:`NullEngine` of ``--backend null``. Either
runs in-process (``framewire serve``) or behind the gRPC server
(:func:`framewire.inference.server.start_inference_server`).
"""

from __future__ import annotations

from framewire.inference.config import EngineConfig, InferenceServerConfig
from framewire.inference.engine import Engine, ModelEngine, NullEngine

__all__ = ["Engine", "EngineConfig", "InferenceServerConfig", "ModelEngine", "NullEngine"]
