"""What ingest tells an observer of its streams (the live preview): a hook with no cost when unused.

The hub and the batcher call these methods on the event loop; the default
observer does nothing, so a server without ``--preview-port`` pays one method
call per event. An observer must return at once and must not keep the
messages it is handed beyond what it needs.
"""

from __future__ import annotations

from framewire.ingest.streams import StreamSession
from framewire.v1 import ingest_service_pb2


class StreamObserver:
    """Receives the life of every stream; the base class ignores everything."""

    def stream_opened(self, session: StreamSession) -> None:
        """A stream was accepted."""

    def stream_closed(self, session: StreamSession) -> None:
        """A stream ended; ``session`` holds its final counts."""

    def report_received(
        self, session: StreamSession, report: ingest_service_pb2.AgentReport
    ) -> None:
        """An AgentReport of ``session`` passed every check."""

    def frame_processed(
        self,
        session: StreamSession,
        frame: ingest_service_pb2.Frame,
        result: ingest_service_pb2.FrameResult,
    ) -> None:
        """A frame's detections are in (``result`` has no error)."""
