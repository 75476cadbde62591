"""The ingest service: one bidirectional stream per device, latest-frame skipping,
cross-stream batching, and results routed back in order."""

from framewire.ingest.config import IngestConfig, IngestServerConfig, TargetsConfig
from framewire.ingest.server import IngestServer, start_ingest_server
from framewire.ingest.targets import InferenceTarget, LocalTarget, RemoteTarget

__all__ = [
    "InferenceTarget",
    "IngestConfig",
    "IngestServer",
    "IngestServerConfig",
    "LocalTarget",
    "RemoteTarget",
    "TargetsConfig",
    "start_ingest_server",
]
