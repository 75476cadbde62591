"""ONNX Runtime on a CPU: a run alone gets every core, runs that overlap one session each
with fewer threads (backends.threads_per_overlapping_run)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from framewire.inference.backends import (
    OnnxRuntimeBackend,
    runs_alone,
    threads_per_overlapping_run,
    usable_cores,
)
from tests.inference.conftest import model_path


@pytest.mark.parametrize(
    ("intra_op_threads", "concurrent_runs", "cores", "expected"),
    [
        (0, 4, 2, 1),  # serve's 4 runs on this project's 2 cores
        (0, 2, 2, 1),  # framewire inference's default of 2
        (0, 4, 16, 4),  # a share of the cores each
        (0, 3, 16, 5),
        (0, 1, 16, None),  # runs never overlap: one session
        (0, 2, 1, None),  # one core: a thread per run is what a run alone has
        (4, 4, 16, None),  # the operator's thread count holds for every run
    ],
)
def test_threads_for_a_run_that_overlaps_another(
    intra_op_threads: int, concurrent_runs: int, cores: int, expected: int | None
) -> None:
    assert threads_per_overlapping_run(intra_op_threads, concurrent_runs, cores) == expected


def test_a_run_is_alone_only_after_an_idle_spell_as_long_as_the_last_run() -> None:
    assert runs_alone(running=0, idle=0.5, last_run=0.03)  # one camera, now and then
    assert not runs_alone(running=1, idle=0.5, last_run=0.03)  # another is running
    # None running, but the last ended just now: under load, another follows soon.
    assert not runs_alone(running=0, idle=0.002, last_run=0.03)
    assert runs_alone(running=0, idle=0.0, last_run=0.0)  # the first run


class Counted:
    """An InferenceSession that counts its runs."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.runs = 0
        self._lock = threading.Lock()

    def run(self, names: Any, feeds: dict[str, Any]) -> Any:
        with self._lock:
            self.runs += 1
        return self._session.run(names, feeds)


def test_overlapping_runs_use_the_second_session_and_get_the_same_outputs() -> None:
    model = model_path("yolov8n-untrained.onnx")
    expected_threads = threads_per_overlapping_run(0, 4, usable_cores())
    backend = OnnxRuntimeBackend(model, intra_op_threads=0, device="cpu", concurrent_runs=4)
    if expected_threads is None:
        pytest.skip("one core: every run uses the one session")
    assert backend.overlapping_threads == expected_threads
    assert f"{expected_threads} thread" in backend.describe()
    batch = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
    reference = backend.warm_up(batch)[0]
    alone, overlapping = Counted(backend.session), Counted(backend._overlapping_session)
    backend.session, backend._overlapping_session = alone, overlapping
    outputs: list[np.ndarray] = []
    start = threading.Barrier(4)

    def runs() -> None:
        start.wait()
        for _ in range(3):
            outputs.append(backend.run(batch)[0])

    threads = [threading.Thread(target=runs) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outputs) == 12
    assert alone.runs + overlapping.runs == 12
    assert overlapping.runs >= 8, "runs that started while others ran used the first session"
    for output in outputs:
        np.testing.assert_allclose(output, reference, rtol=1e-4, atol=1e-4)
    # Idle for longer than a run takes: the next run has every core again.
    backend._idle_since -= 10.0
    backend.run(batch)
    assert alone.runs == 12 - overlapping.runs + 1


def test_one_session_where_runs_never_overlap() -> None:
    model = model_path("yolov8n-untrained.onnx")
    backend = OnnxRuntimeBackend(model, intra_op_threads=0, device="cpu", concurrent_runs=1)
    assert backend.overlapping_threads is None
    assert backend._overlapping_session is None
