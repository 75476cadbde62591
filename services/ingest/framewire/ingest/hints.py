"""When to advise an agent to send less: the FlowHint policy, as pure functions.

The server sees what the agent cannot: how many of its frames the model
actually takes, how large its frames are next to the model's input, and how
close they come to the byte limit. Advice is only advice; the agent decides.
"""

from __future__ import annotations

from dataclasses import dataclass

from framewire.common.contract import FLOW_HINT_LIFETIME
from framewire.v1 import ingest_service_pb2

# A stream is advised to slow down when at least this share of its frames
# were skipped over a review interval with at least MIN_FRAMES received.
SKIP_SHARE = 0.25
MIN_FRAMES = 4
# Frames whose longer side is more than this many times the model input's
# longer side carry pixels the model throws away.
OVERSIZE_FACTOR = 2.0
# Scaling by less than this much is not worth a hint (and would flap around the limit).
MIN_SCALE_ADVICE = 0.9
# Frames above this share of the byte limit risk being refused.
BYTES_SHARE = 0.5
SUGGESTED_QUALITY = 70


@dataclass(frozen=True)
class StreamLoad:
    """A stream's counters at one moment (cumulative), and its largest recent frame."""

    received: int
    answered: int  # processed + failed
    skipped: int
    largest_side: int = 0  # the longer side of the largest frame since the last review
    largest_bytes: int = 0  # the byte size of the largest frame since the last review


def advise(
    before: StreamLoad,
    now: StreamLoad,
    elapsed: float,
    *,
    model_side: int,
    max_frame_bytes: int,
) -> ingest_service_pb2.FlowHint | None:
    """The hint for one review interval, or None when the stream is fine."""
    hint = ingest_service_pb2.FlowHint()
    reasons = []
    received = now.received - before.received
    skipped = now.skipped - before.skipped
    if received >= MIN_FRAMES and elapsed > 0 and skipped >= SKIP_SHARE * received:
        rate = max(0.5, (now.answered - before.answered) / elapsed)
        hint.target_fps = round(rate, 1)
        reasons.append(
            f"{skipped} of {received} frames were skipped in {elapsed:.0f}s; "
            f"the server keeps up with about {hint.target_fps:g} fps for this stream"
        )
    scale = OVERSIZE_FACTOR * model_side / now.largest_side if now.largest_side else 1.0
    if model_side and scale <= MIN_SCALE_ADVICE:
        hint.scale = round(scale, 2)
        reasons.append(
            f"frames are {now.largest_side}px wide or tall but the model looks at "
            f"{model_side}px; scaling by {hint.scale:g} loses nothing"
        )
    if now.largest_bytes > BYTES_SHARE * max_frame_bytes:
        hint.jpeg_quality = SUGGESTED_QUALITY
        reasons.append(
            f"frames reach {now.largest_bytes} bytes, near the limit of {max_frame_bytes}"
        )
    if not reasons:
        return None
    hint.reason = "; ".join(reasons)
    return hint


# Unchanged advice is repeated, while it still applies, after this long: well
# within the time an agent holds a hinted rate, so a stream whose hint lapsed and
# that again sends more than the server takes is told again at the next review.
# (At 30 s, past the agents' 15 s, such a stream sent at full rate, its frames
# thrown away, for up to 15 s of every 30.)
REPEAT_AFTER = FLOW_HINT_LIFETIME / 2


def worth_sending(
    previous: ingest_service_pb2.FlowHint | None,
    hint: ingest_service_pb2.FlowHint,
    since_previous: float,
) -> bool:
    """Whether ``hint`` tells the agent something the previous hint did not."""
    if previous is None or since_previous >= REPEAT_AFTER:
        return True
    for field in ("target_fps", "scale", "jpeg_quality"):
        if previous.HasField(field) != hint.HasField(field):
            return True
    if hint.HasField("target_fps"):
        change = abs(hint.target_fps - previous.target_fps)
        if change > 0.2 * max(previous.target_fps, 0.5):
            return True
    return hint.scale != previous.scale or hint.jpeg_quality != previous.jpeg_quality


@dataclass
class HintReviewer:
    """One stream's FlowHint bookkeeping between reviews.

    It keeps the largest frame seen since the last review, that review's
    counters, and the last hint sent, so each review advises on one interval
    and repeats nothing the agent was already told.
    """

    largest_side: int = 0
    largest_bytes: int = 0
    last_review: tuple[float, StreamLoad] | None = None
    last_hint: tuple[float, ingest_service_pb2.FlowHint] | None = None

    def saw_frame(self, width: int, height: int, size: int) -> None:
        """Notes one received frame's dimensions and byte size."""
        self.largest_side = max(self.largest_side, width, height)
        self.largest_bytes = max(self.largest_bytes, size)

    def review(
        self,
        now: float,
        *,
        received: int,
        answered: int,
        skipped: int,
        model_side: int,
        max_frame_bytes: int,
    ) -> ingest_service_pb2.FlowHint | None:
        """The hint to send now, or None; ``now`` is monotonic seconds, counters cumulative."""
        load = StreamLoad(
            received=received,
            answered=answered,
            skipped=skipped,
            largest_side=self.largest_side,
            largest_bytes=self.largest_bytes,
        )
        self.largest_side = self.largest_bytes = 0
        previous, self.last_review = self.last_review, (now, load)
        if previous is None:
            return None
        hint = advise(
            previous[1],
            load,
            now - previous[0],
            model_side=model_side,
            max_frame_bytes=max_frame_bytes,
        )
        if hint is None:
            return None
        last = self.last_hint
        if not worth_sending(last[1] if last else None, hint, now - last[0] if last else 0.0):
            return None
        self.last_hint = (now, hint)
        return hint
