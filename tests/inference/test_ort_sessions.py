"""ONNX Runtime on a CPU: a run alone gets every core, runs that overlap another one thread
each, in a second session (backends.single_threaded_overlaps)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import onnxruntime
import pytest

from framewire.inference import backends
from framewire.inference.backends import (
    OnnxRuntimeBackend,
    runs_alone,
    single_threaded_overlaps,
    spinning_entries,
)
from tests.inference.conftest import model_path


@pytest.mark.parametrize(
    ("intra_op_threads", "concurrent_runs", "cores", "expected"),
    [
        (0, 4, 2, True),  # serve's 4 runs on this project's 2 cores
        (0, 2, 2, True),  # framewire inference's default of 2
        (0, 4, 4, True),
        (0, 4, 16, False),  # more cores than runs: they would share a pool again
        (0, 1, 2, False),  # runs never overlap
        (0, 2, 1, False),  # one core: one thread is what a run alone has
        (2, 4, 2, False),  # the operator's thread count holds for every run
    ],
)
def test_which_overlapping_runs_go_to_a_single_threaded_session(
    intra_op_threads: int, concurrent_runs: int, cores: int, expected: bool
) -> None:
    assert single_threaded_overlaps(intra_op_threads, concurrent_runs, cores) is expected


def test_a_run_is_alone_when_none_runs_and_the_last_did_not_overlap_another() -> None:
    assert runs_alone(running=0, last_overlapped=False)  # now and then, or one caller
    assert not runs_alone(running=1, last_overlapped=False)  # another is running
    # None running, but the last run overlapped another: under load, another follows soon.
    assert not runs_alone(running=0, last_overlapped=True)


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


def test_overlapping_runs_use_the_second_session_and_get_the_same_outputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = model_path("yolov8n-untrained.onnx")
    monkeypatch.setattr(backends, "usable_cores", lambda: 2)  # as on this project's machines
    monkeypatch.setattr(backends, "quota_cap", lambda: None)
    backend = OnnxRuntimeBackend(model, intra_op_threads=0, device="cpu", concurrent_runs=4)
    assert backend.splits_overlapping_runs
    assert "one thread each" in backend.describe()
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
    # The load has gone: the first run alone still expects company, the next ones not.
    runs_before = alone.runs
    for _ in range(3):
        backend.run(batch)
    assert alone.runs == runs_before + 2
    assert overlapping.runs == 13 - runs_before


def test_one_session_where_runs_never_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    model = model_path("yolov8n-untrained.onnx")
    monkeypatch.setattr(backends, "usable_cores", lambda: 2)
    backend = OnnxRuntimeBackend(model, intra_op_threads=0, device="cpu", concurrent_runs=1)
    assert not backend.splits_overlapping_runs


def test_the_engine_opens_the_second_session_for_its_concurrent_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from framewire.inference import Engine, EngineConfig

    monkeypatch.setattr(backends, "usable_cores", lambda: 2)
    model = model_path("yolov8n-untrained.onnx")
    for threads, split in ((0, True), (2, False)):
        config = EngineConfig(
            model=model, backend="onnxruntime", concurrent_batches=2, intra_op_threads=threads
        )
        engine = Engine.load(config)
        try:
            backend = engine.backend
            assert isinstance(backend, OnnxRuntimeBackend)
            assert backend.splits_overlapping_runs is split
        finally:
            engine.close()


@pytest.mark.parametrize(("quota_cores", "split"), [(1, False), (2, True)])
def test_a_cpu_quota_sets_the_threads_of_a_run_alone(
    monkeypatch: pytest.MonkeyPatch, quota_cores: int, split: bool
) -> None:
    # A container limited to 1 or 2 CPUs on a 16-core node: ONNX Runtime's default would
    # start 16 threads in the quota of 1 or 2.
    monkeypatch.setattr(backends, "usable_cores", lambda: quota_cores)
    monkeypatch.setattr(backends, "quota_cap", lambda: quota_cores)
    model = model_path("yolov8n-untrained.onnx")
    backend = OnnxRuntimeBackend(model, intra_op_threads=0, device="cpu", concurrent_runs=4)
    assert backend.session.get_session_options().intra_op_num_threads == quota_cores
    assert backend.splits_overlapping_runs is split
    if split:
        overlapping = backend._overlapping_session.get_session_options()
        assert overlapping.intra_op_num_threads == 1
    assert "its CPU quota's cores" in backend.describe()
    # An operator's own thread count wins over the quota.
    backend = OnnxRuntimeBackend(model, intra_op_threads=3, device="cpu", concurrent_runs=4)
    assert backend.session.get_session_options().intra_op_num_threads == 3
    assert "quota" not in backend.describe()


OFF = {"session.intra_op.allow_spinning": "0"}


@pytest.mark.parametrize(
    ("spin_wait", "version", "expected"),
    [
        (0.001, "1.32.0", {"session.intra_op.allow_spinning": "1",
                           "session.intra_op.spin_duration_us": "1000"}),
        (0.00025, "1.26.0", {"session.intra_op.allow_spinning": "1",
                             "session.intra_op.spin_duration_us": "250"}),
        (0.001, "1.27.0.dev20260501", {"session.intra_op.allow_spinning": "1",
                                       "session.intra_op.spin_duration_us": "1000"}),
        (0.0, "1.32.0", OFF),  # --spin-wait 0
        # Under a microsecond still spins (0 would read as "no bound" to some and "off" to
        # others), for the shortest bound there is.
        (1e-9, "1.26.0", {"session.intra_op.allow_spinning": "1",
                          "session.intra_op.spin_duration_us": "1"}),
        # Before 1.26 the bound is ignored and threads would spin as long as they always did.
        (0.001, "1.25.1", OFF),
        (0.001, "1.9.0", OFF),
        (0.001, "unknown", OFF),
    ],
)  # fmt: skip
def test_threads_spin_for_the_spin_wait_where_the_runtime_bounds_it(
    spin_wait: float, version: str, expected: dict[str, str]
) -> None:
    assert spinning_entries(spin_wait, version) == expected


def test_the_sessions_are_opened_with_the_spin_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "usable_cores", lambda: 2)
    monkeypatch.setattr(backends, "quota_cap", lambda: None)
    model = model_path("yolov8n-untrained.onnx")
    backend = OnnxRuntimeBackend(
        model, intra_op_threads=0, device="cpu", spin_wait=0.002, concurrent_runs=4
    )
    expected = spinning_entries(0.002, onnxruntime.__version__)
    assert backend._overlapping_session is not None
    for session in (backend.session, backend._overlapping_session):
        options = session.get_session_options()
        for key, value in expected.items():
            assert options.get_session_config_entry(key) == value


def test_an_older_runtime_ignores_the_spin_wait_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(onnxruntime, "__version__", "1.25.1")
    model = model_path("yolov8n-untrained.onnx")
    backend = OnnxRuntimeBackend(
        model, intra_op_threads=0, device="cpu", spin_wait=0.001, concurrent_runs=1
    )
    options = backend.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert "--spin-wait is ignored" in caplog.text
