"""Capture pacing: the capture thread reads the source at its pace, never waiting on the network.

Each frame goes into a one-frame handoff (:class:`~framewire.edge_agent.ledger.LatestFrame`);
a newer frame replaces one still waiting there. :class:`Pacer` decides when a
frame is due: a file plays at its own rate (or ``--fps``) without bursting to
catch up after a stall, and a camera faster than ``--fps`` has its extra reads
skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from framewire.edge_agent.config import CaptureOptions
from framewire.edge_agent.ledger import LatestFrame
from framewire.edge_agent.sources import FrameSource, SourceError

_LOGGER = logging.getLogger(__name__)


class Pacer:
    """When the next capture is due, on the monotonic clock.

    A live source (a camera) is read as fast as it delivers, and frames read
    before the next slot are dropped unseen. A file is read one frame per
    slot, waiting in between; when reading fell more than a slot behind, the
    schedule restarts from now instead of bursting to catch up.
    """

    def __init__(self, rate: float | None, *, live: bool, start: float) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.live = live
        self.due = start

    def admits(self, now: float) -> bool:
        """Whether a frame read at ``now`` is kept (a camera faster than the rate: not yet)."""
        return not (self.live and self.interval and now < self.due)

    def kept(self, now: float) -> None:
        """Books a kept frame: the next slot is one interval on."""
        self.due = max(self.due + self.interval, now) if self.live else self.due + self.interval

    def wait(self, now: float) -> float:
        """Seconds a file source waits before its next read (0: read now)."""
        if self.live or not self.interval:
            return 0.0
        delay = self.due - now
        if delay < -self.interval:
            self.due = now  # fell behind: do not burst to catch up
        return max(0.0, delay)


class CaptureThread:
    """Reads ``source`` into ``handoff`` on its own thread until the source ends or a limit.

    ``stop`` ends it early. When it has finished, for any reason, ``done`` is
    set and ``on_done`` called (from the capture thread); :attr:`error` then
    holds what broke it, if anything.
    """

    def __init__(
        self,
        source: FrameSource,
        options: CaptureOptions,
        handoff: LatestFrame,
        *,
        stop: threading.Event,
        done: threading.Event,
        on_done: Callable[[], None],
    ) -> None:
        self._source = source
        self._options = options
        self._handoff = handoff
        self._stop = stop
        self._on_done = on_done
        self.done = done
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._capture()
        except SourceError as error:
            self.error = error
        except Exception as error:
            _LOGGER.exception("capture failed")
            self.error = error
        finally:
            self.done.set()
            self._on_done()

    def _capture(self) -> None:
        options, source = self._options, self._source
        started = time.monotonic()
        pacer = Pacer(
            options.fps or (None if source.is_live else source.native_fps),
            live=source.is_live,
            start=started,
        )
        count = 0
        while not self._stop.is_set():
            if options.frames is not None and count >= options.frames:
                return
            if options.duration is not None and time.monotonic() - started >= options.duration:
                return
            frame = source.read()
            if frame is None:
                return
            now = time.monotonic()
            if not pacer.admits(now):
                continue  # a camera faster than --fps: skip reads until the next slot
            if self._stop.is_set():
                return  # read while the agent was stopping: it would never be sent
            self._handoff.put(frame)
            count += 1
            pacer.kept(now)
            delay = pacer.wait(time.monotonic())
            if delay > 0:
                self._stop.wait(delay)
