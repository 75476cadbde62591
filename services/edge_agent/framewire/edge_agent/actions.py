"""``--on-detect CMD`` and ``--on-enter CMD``: run a command when a result holds what matters.

The seed design's "Action". The agent hands every result to
:meth:`ActionRunner.offer`, which never blocks: it queues the event (as JSON)
when a detection matches the class filter, and drops it, counted, when the
bounded queue is full because the command is slower than the results. One
worker thread runs ``/bin/sh -c CMD`` per queued event, one at a time, with
the event's JSON on stdin and a time limit; failures are logged with the end
of the command's stderr and counted.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from framewire.v1 import common_pb2

_LOGGER = logging.getLogger(__name__)

SHELL = "/bin/sh"
# How much of a failed command's stderr goes to the log.
STDERR_TAIL_CHARS = 500
# Drops are logged on the first one and then every this many.
_DROP_LOG_EVERY = 100


class ActionRunner:
    """Runs a shell command for matching detections, off the caller's thread.

    Counters: ``runs`` (commands that ran to an end, successful or not),
    ``failures`` (non-zero exit, time-out or failure to start; part of
    ``runs``), ``dropped`` (matching events lost to a full queue or to
    :meth:`close` running out of time) and ``skipped_no_match`` (events with
    no detection of the wanted classes). ``offer`` may be called from several
    threads.
    """

    def __init__(
        self,
        command: str,
        classes: frozenset[str],
        *,
        queue_size: int = 8,
        timeout: float = 30.0,
    ) -> None:
        if not command.strip():
            raise ValueError("the --on-detect command is empty")
        if "\0" in command:
            raise ValueError("the --on-detect command contains a NUL character")
        if queue_size < 1:
            raise ValueError(f"queue_size {queue_size}: must be 1 or more")
        if not timeout > 0:
            raise ValueError(f"timeout {timeout}: must be positive seconds")
        self.command = command
        self.classes = classes
        self.timeout = timeout
        self.runs = 0
        self.failures = 0
        self.dropped = 0
        self.skipped_no_match = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=queue_size)
        self._closed = False
        self._abandon = threading.Event()
        self._process_lock = threading.Lock()
        # Guards `dropped`, the one counter more than one thread writes.
        self._count_lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._error: BaseException | None = None
        self._worker = threading.Thread(target=self._work, name="on-detect", daemon=True)
        self._worker.start()

    @property
    def pending(self) -> int:
        """Events queued and not yet run."""
        return self._queue.qsize()

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether ``event`` has a detection whose label is wanted (any label when none is set)."""
        detections = event.get("detections") or ()
        if not self.classes:
            return len(detections) > 0
        return any(detection.get("label") in self.classes for detection in detections)

    def offer(self, event: Mapping[str, Any]) -> bool:
        """Queues ``event`` for the command if it matches; never blocks.

        Returns True when queued; False when nothing matched or the queue was
        full (counted in ``skipped_no_match`` and ``dropped``). Raises
        :class:`RuntimeError` once the worker has died or the runner was
        closed, and :class:`TypeError` when ``event`` is not JSON-serializable.
        """
        if self._error is not None:
            raise RuntimeError(f"the --on-detect worker died: {self._error!r}") from self._error
        if self._closed:
            raise RuntimeError("offer() after close()")
        if not self.matches(event):
            with self._count_lock:
                self.skipped_no_match += 1
            return False
        payload = json.dumps(event).encode()
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            with self._count_lock:
                self.dropped += 1
                dropped = self.dropped
            if dropped % _DROP_LOG_EVERY == 1:
                _LOGGER.warning(
                    "--on-detect is slower than the results: %d event(s) dropped so far "
                    "(queue of %d full)",
                    dropped,
                    self._queue.maxsize,
                )
            return False
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Lets queued runs finish, for at most ``timeout`` seconds, then stops the worker.

        Runs still queued after that are abandoned (counted as dropped) and a
        running command is killed. Re-raises nothing: worker errors were logged.
        """
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=max(0.0, timeout))
        self._worker.join(max(0.0, deadline - time.monotonic()))
        if self._worker.is_alive():
            self._abandon.set()
            with self._process_lock:
                if self._process is not None:
                    _kill_group(self._process)
            abandoned = 0
            while True:
                try:
                    if self._queue.get_nowait() is not None:
                        abandoned += 1
                except queue.Empty:
                    break
            with self._count_lock:
                self.dropped += abandoned
            self._worker.join(1.0)
            _LOGGER.warning(
                "--on-detect: gave up waiting after %.1f s; %d queued run(s) abandoned",
                timeout,
                abandoned,
            )

    def _work(self) -> None:
        try:
            while True:
                payload = self._queue.get()
                if payload is None:
                    return
                if self._abandon.is_set():
                    with self._count_lock:
                        self.dropped += 1
                    return
                self._run(payload)
        except BaseException as error:
            # Never die silently: offer() re-raises this to the agent.
            self._error = error
            _LOGGER.exception("the --on-detect worker died")

    def _run(self, payload: bytes) -> None:
        try:
            process = subprocess.Popen(
                [SHELL, "-c", self.command],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # Its own process group, so a time-out kills what it started too.
                start_new_session=True,
            )
        except OSError as error:
            self.runs += 1
            self.failures += 1
            _LOGGER.error("--on-detect could not start %s: %s", SHELL, error)
            return
        with self._process_lock:
            self._process = process
        timed_out = False
        try:
            stdout, stderr = process.communicate(payload, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(process)
            stdout, stderr = process.communicate()
        finally:
            with self._process_lock:
                self._process = None
        self.runs += 1
        if stdout:
            _LOGGER.debug("--on-detect output: %s", _tail(stdout))
        if timed_out or process.returncode != 0:
            self.failures += 1
            why = (
                f"timed out after {self.timeout:g} s"
                if timed_out
                else f"exited with status {process.returncode}"
            )
            _LOGGER.warning(
                "--on-detect command %s (%d of %d runs failed); stderr: %s",
                why,
                self.failures,
                self.runs,
                _tail(stderr) or "(empty)",
            )


class EntryWatcher:
    """``--on-enter``: which detections are an object's first sighting (a new track id).

    "A new person entered": a detection of a wanted class whose track id has
    not been seen before. Ids are numbered per server stream, so the agent
    calls :meth:`reset` when its stream reconnects. Memory is bounded: the
    ``remember`` most recently seen ids are kept, enough for any scene a
    camera can hold; an id forgotten after that long unseen would also be
    forgotten by the server's tracker.
    """

    def __init__(self, classes: frozenset[str], *, remember: int = 4096) -> None:
        if remember < 1:
            raise ValueError(f"remember {remember}: must be 1 or more")
        self.classes = classes
        self.remember = remember
        self._seen: collections.OrderedDict[int, None] = collections.OrderedDict()

    def entered(self, detections: Iterable[common_pb2.Detection]) -> list[common_pb2.Detection]:
        """The detections whose track appears for the first time (untracked ones never do)."""
        new = []
        for detection in detections:
            if not detection.HasField("track_id"):
                continue
            if self.classes and detection.label not in self.classes:
                continue
            track_id = detection.track_id
            if track_id in self._seen:
                self._seen.move_to_end(track_id)
                continue
            self._seen[track_id] = None
            if len(self._seen) > self.remember:
                self._seen.popitem(last=False)
            new.append(detection)
        return new

    def reset(self) -> None:
        """A new connection: its tracks are numbered anew."""
        self._seen.clear()


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _tail(data: bytes) -> str:
    return data.decode(errors="replace")[-STDERR_TAIL_CHARS:].strip()
