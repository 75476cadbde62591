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


@dataclass
class AdaptiveWindow:
    """The agent's window: 1 until the first answer, then follows the measurements."""

    granted: int
    fixed: bool = False  # --fixed-window: always ``granted``, whatever is measured
    smoothing: float = SMOOTHING
    network: float | None = None  # smoothed seconds on the wire, both ways
    server: float | None = None  # smoothed seconds at the server

    def observe(self, round_trip: float, server_total: float) -> None:
        """One answer: its round trip from send to answer, and the server's own total time."""
        network = max(0.0, round_trip - server_total)
        self.network = self._smooth(self.network, network)
        self.server = self._smooth(self.server, max(server_total, 0.0))

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
