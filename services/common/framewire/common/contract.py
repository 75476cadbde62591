"""Facts the contract defines, read from it once so that no copy can drift.

Stage names are the fields of ``StageTimings``; skip-reason names come from the
``SkipReason`` enum. Limits that both ends of a stream must agree on, and that
several services state as defaults, are defined here and nowhere else.
"""

from __future__ import annotations

import re
from typing import Final

from framewire.v1 import common_pb2, ingest_service_pb2

#: Every timed stage of a frame's trip through the server, in pipeline order:
#: ``queue, decode, preprocess, inference, postprocess, total``.
STAGES: Final[tuple[str, ...]] = tuple(
    field.name for field in common_pb2.StageTimings.DESCRIPTOR.fields
)
#: The stages that run next to the model (everything but ingest's queue and the total).
MODEL_STAGES: Final[tuple[str, ...]] = tuple(
    stage for stage in STAGES if stage not in ("queue", "total")
)

_SKIP_PREFIX = "SKIP_REASON_"


def skip_reason_name(reason: int) -> str:
    """``SKIP_REASON_SUPERSEDED`` -> ``superseded``: the name used in metrics and output."""
    return ingest_service_pb2.SkipReason.Name(reason).removeprefix(_SKIP_PREFIX).lower()  # type: ignore[arg-type]


#: The contract's skip reasons by enum value, without UNSPECIFIED.
SKIP_REASONS: Final[dict[int, str]] = {
    value: skip_reason_name(value)
    for value in ingest_service_pb2.SkipReason.values()
    if value != ingest_service_pb2.SKIP_REASON_UNSPECIFIED
}
#: A frame still waiting at the server when its client vanished. It has no enum
#: value because no client can be told about it; only the server's metrics count it.
ABANDONED: Final = "abandoned"
#: Why the server drops a received frame (metrics label values).
SERVER_SKIP_REASONS: Final[tuple[str, ...]] = (
    skip_reason_name(ingest_service_pb2.SKIP_REASON_SUPERSEDED),
    skip_reason_name(ingest_service_pb2.SKIP_REASON_STALE),
    ABANDONED,
)
#: Why an agent drops a captured frame before sending it (reported in AgentReport).
EDGE_SKIP_REASONS: Final[tuple[str, ...]] = tuple(SKIP_REASONS.values())

#: A stream id: 1 to 128 letters, digits or any of ``._:-``.
STREAM_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
STREAM_ID_RULE: Final = "1 to 128 letters, digits or any of '._:-'"

#: Seconds an agent holds a FlowHint's frame rate unless the server repeats it. The
#: server repeats advice that still applies well within this, so a hint never lapses
#: while the stream would still be skipped; a lapse lets a stream find out that the
#: server has room again.
FLOW_HINT_LIFETIME: Final = 15.0
#: Unanswered frames a stream gets when its StreamConfig asks for none.
DEFAULT_MAX_IN_FLIGHT: Final = 2
#: Most end-to-end latency samples in one AgentReport.
MAX_REPORT_SAMPLES: Final = 1000
#: Largest width x height a server decodes by default (a decompression-bomb guard).
MAX_FRAME_PIXELS: Final = 4096 * 4096

#: Batches worth having in flight at once where more would not run at once: one runs
#: while the next is prepared. Ingest keeps this many at a target where batching pays
#: (a GPU: more would split frames that could share a batch), and an inference server
#: whose runs cannot overlap (OpenCV) says it is worth this many.
PIPELINE_DEPTH: Final = 2
