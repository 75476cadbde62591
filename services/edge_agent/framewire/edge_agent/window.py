"""How many frames the agent keeps unanswered: the window, adapted to what it measures.

A second frame in flight only helps while the first one is on the network:
it lets the server start on it the moment it finishes the first. When the
server is the bottleneck, the second frame just waits there, and the answer
the agent gets is older than it had to be. So the agent keeps

    1 + ceil(network time / server time - 0.1)

frames in flight, measured per answer (network time is the round trip less
the server's own total), within what the server granted: 1 on a LAN in
front of a busy model, more across a slow link. Until the first answer it
keeps 1: a burst of frames sent before anything was measured would wait at
a busy server, and across a slow link one round trip is all it costs.

The window also says when: after an answer the agent holds its next frame back
by :attr:`AdaptiveWindow.hold`, learned from the queue time the server reports
for each frame (waiting at ingest and at the model). When the model is shared
and busy, a frame sent at once only waits there while the camera captures
newer ones; held back until about when the model gets to it, the frame sent is
the newest capture, and the model is not kept waiting. Each answer moves the
hold by half the difference between its queue time and :data:`QUEUE_TARGET`,
a little queue left on purpose so that the model never waits for a frame.
Alone in front of the model a frame does not queue, and the hold stays 0. Nor is
anything held while the server batches frames together (a GPU): there a frame waits
to share a batch, and one held back would miss it (measured with 32 cameras on the
bench's GPU-like model: 0.43-0.73 of the frames, batches of 6.3-10.6 instead of 16).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SMOOTHING = 0.2
# Below this the server time is noise, not a reason for a huge window.
MIN_SERVER_TIME = 0.001
# A network time under this share of the server's time is not worth a frame
# waiting at the server (loopback and a LAN are well under it).
NETWORK_SLACK = 0.1
# The queue time at the server the hold aims for (seconds): frames that arrive this much
# before the model is free for them, rather than after it has gone idle.
QUEUE_TARGET = 0.008
# How far one answer moves the hold: that share of its queue time's distance from the target.
HOLD_GAIN = 0.5
# The longest hold: beyond it the server is far behind, and the window and its skips cope.
MAX_HOLD = 0.5


@dataclass
class AdaptiveWindow:
    """The agent's window: 1 until the first answer, then follows the measurements."""

    granted: int
    fixed: bool = False  # --fixed-window: always ``granted``, no hold, whatever is measured
    smoothing: float = SMOOTHING
    network: float | None = None  # smoothed seconds on the wire, both ways
    server: float | None = None  # smoothed seconds at the server
    hold: float = 0.0  # seconds to hold the next frame back after an answer

    def observe(
        self, round_trip: float, server_total: float, queued: float = 0.0, batch_size: int = 1
    ) -> None:
        """One answer: its round trip from send to answer, the server's own total time, how
        long the frame waited there before the model took it (its queue time), and how many
        frames its model batch held."""
        network = max(0.0, round_trip - server_total)
        self.network = self._smooth(self.network, network)
        self.server = self._smooth(self.server, max(server_total, 0.0))
        if self.fixed or batch_size > 1:
            # A frame that shared its batch waited for the others to join it (a GPU
            # batches): held back, it would miss the batch, and batches would shrink.
            self.hold = 0.0
        else:
            moved = self.hold + HOLD_GAIN * (max(queued, 0.0) - QUEUE_TARGET)
            self.hold = min(MAX_HOLD, max(0.0, moved))

    def _smooth(self, previous: float | None, value: float) -> float:
        return value if previous is None else previous + self.smoothing * (value - previous)

    @property
    def size(self) -> int:
        """Frames to keep in flight now, from 1 to ``granted``."""
        if self.fixed:
            return max(1, self.granted)
        if self.network is None or self.server is None:
            return 1
        share = self.network / max(self.server, MIN_SERVER_TIME)
        wanted = 1 + math.ceil(max(0.0, share - NETWORK_SLACK))
        return max(1, min(self.granted, wanted))
