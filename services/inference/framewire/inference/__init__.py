"""InferenceService: batched object detection on JPEG images (model adapters, backends, server).

:class:`Engine` is the model with its decode pool and input batches, usable
in-process (``framewire serve``) or behind the gRPC server
(:func:`framewire.inference.server.start_inference_server`).
"""

from __future__ import annotations

from framewire.inference.config import EngineConfig, InferenceServerConfig
from framewire.inference.engine import Engine

__all__ = ["Engine", "EngineConfig", "InferenceServerConfig"]
